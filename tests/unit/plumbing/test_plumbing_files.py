"""Durable private files (plumbing/files.py): whole or not at all, 0600, the directory fsynced,
no temporary file left behind."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plumbing import files


def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every fsync as (path, is a directory)."""
    seen: list[tuple[str, bool]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        seen.append((path, stat.S_ISDIR(os.fstat(fd).st_mode)))
        real(fd)
    monkeypatch.setattr(files.os, "fsync", spy)
    return seen


def test_write_private_is_0600_durable_and_fsyncs_the_directory(tmp_path: Path, monkeypatch) -> None:
    seen = fsyncs(monkeypatch)
    target = tmp_path / "sub" / "secret.json"
    files.write_private(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # the data first (the temporary file), then the directory that holds the rename
    assert [d for _, d in seen] == [False, True]
    assert seen[1][0] == str(target.parent)
    assert os.listdir(target.parent) == ["secret.json"]


def test_write_private_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "state"
    files.write_private(target, b"a much longer first version")
    files.write_private(target, b"v2")
    assert target.read_bytes() == b"v2"
    assert sorted(os.listdir(tmp_path)) == ["state"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "state"
    files.write_private(target, b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        files.write_private(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state"]


def test_a_failed_rename_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(PermissionError):
        files.write_private(tmp_path / "state", b"x")
    assert os.listdir(tmp_path) == []


def test_temporary_files_are_recognisable_leftovers(tmp_path: Path, monkeypatch) -> None:
    names: list[str] = []
    real = files.os.replace

    def look(src: str, dst: str) -> None:
        names.append(os.path.basename(src))
        real(src, dst)
    monkeypatch.setattr(files.os, "replace", look)
    files.write_private(tmp_path / "meta.json", b"{}")
    assert names[0].startswith(".meta.json.") and names[0].endswith(files.TMP_SUFFIX)


def test_create_private_never_clobbers(tmp_path: Path, monkeypatch) -> None:
    seen = fsyncs(monkeypatch)
    key = tmp_path / "keys" / "master.key"
    assert files.create_private(key, b"first") is True
    assert [d for _, d in seen] == [False, True]
    assert files.create_private(key, b"second") is False
    assert key.read_bytes() == b"first"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert os.listdir(key.parent) == ["master.key"]


def test_fsync_dir_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.fsync_dir(tmp_path / "nope")


def test_make_private_closes_a_tree_to_others_and_says_what_it_changed(tmp_path):
    from plumbing.files import make_private

    top = tmp_path / "data"
    (top / "sub").mkdir(parents=True)
    (top / "a.db").write_bytes(b"x")
    (top / "sub" / "b").write_bytes(b"y")
    (top / "link").symlink_to("/etc/passwd")
    os.chmod(top, 0o755)
    os.chmod(top / "sub", 0o775)
    os.chmod(top / "a.db", 0o644)
    os.chmod(top / "sub" / "b", 0o600)
    changed = {p.name: oct(mode) for p, mode in make_private(top, tmp_path / "missing")}
    assert changed == {"data": "0o755", "sub": "0o775", "a.db": "0o644"}
    assert [oct(p.stat().st_mode & 0o777) for p in (top, top / "sub", top / "a.db", top / "sub" / "b")] == \
        ["0o700", "0o700", "0o600", "0o600"]
    assert oct(os.stat("/etc/passwd").st_mode & 0o777) != "0o600"  # a symlink is not followed
    assert make_private(top) == []
