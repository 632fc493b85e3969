"""Small files a process keeps (credentials, keys, state, env files, ids, backups): written
whole or not at all, readable by their owner only, and on disk before the caller goes on;
and the private directories around them (checked, and made private, at start).

A crash at any point leaves either the old file or the new one, never a torn one; a
failed write leaves no temporary file behind. Temporary files are named
``.<name>.<random>.tmp`` beside the target, so that concurrent writers never share one
and a directory scan can recognise leftovers of a crash (:data:`TMP_SUFFIX`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import resource
import stat
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


# ------------------------------------------------------------------ private data directories

OTHERS = 0o077  # group and other permission bits: none on what a process keeps


def make_private(*paths: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """Take every group and other permission off each existing path and, for a directory,
    everything under it (directories 0700, files 0600 as a process makes them; symbolic links
    are neither followed nor changed). Returns (path, mode it had) for each one it changed.
    A path it may not change (another owner, a read-only mount) raises ``PermissionError``
    with a message that says what to do."""
    changed: list[tuple[Path, int]] = []

    def fix(p: Path) -> None:
        st = p.lstat()
        mode = st.st_mode & 0o7777
        if stat.S_ISLNK(st.st_mode) or not mode & OTHERS:
            return
        try:
            os.chmod(p, mode & ~OTHERS)
        except OSError as exc:
            raise PermissionError(exc.errno, f"{p} is open to other users (mode {mode:04o}) and cannot be made"
                                             f" private ({exc.strerror}): give it to this user, or chmod go-rwx it") \
                from None
        changed.append((p, mode))

    for top in map(Path, paths):
        if not top.exists():
            continue
        fix(top)
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    fix(Path(root) / name)
    return changed


def ensure_private(log: logging.Logger, *paths: str | os.PathLike[str]) -> None:
    """:func:`make_private`, with a warning for each path that was open to others (it may have
    been read meanwhile)."""
    for path, mode in make_private(*paths):
        log.warning(f"{path} was open to other users (mode {mode:04o}); made it private",
                    extra={"event": "made_private", "path": str(path), "was": f"{mode:04o}"})


def harden_process() -> None:
    """For a process that holds secrets: files and directories it creates are its user's only
    (umask 077: SQLite's database, journal and shared-memory files, logs, backups), and it
    never writes a core dump (RLIMIT_CORE 0, soft and hard) that would hold them in clear."""
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
