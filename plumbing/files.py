"""Small files a process keeps (credentials, keys, state, env files, ids, backups): written
whole or not at all, readable by their owner only, and on disk before the caller goes on.

A crash at any point leaves either the old file or the new one, never a torn one; a
failed write leaves no temporary file behind. Temporary files are named
``.<name>.<random>.tmp`` beside the target, so that concurrent writers never share one
and a directory scan can recognise leftovers of a crash (:data:`TMP_SUFFIX`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename, a new file or a removal in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new 0600 temporary file beside ``path``, flushed and fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` durably, mode 0600: temporary file, fsync, atomic
    rename, fsync of the directory. Missing parent directories are created."""
    path = Path(path)
    tmp = _durable_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def create_private(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create ``path`` with ``data`` (mode 0600, durably) unless it exists; never clobbers a file
    another process created meanwhile. True if this call created it."""
    path = Path(path)
    tmp = _durable_temp(path, data)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False  # another process made it first: theirs stands
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return created
