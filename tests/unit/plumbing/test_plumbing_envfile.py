"""Environment files (plumbing/envfile.py), read under the real environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from plumbing.envfile import EnvFileError, read_env_file, with_env_file


def test_lines_comments_export_and_quotes(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=a:1,b:2\nexport B='/x y/ca.crt'\nC=\"1\"\n  D = spaced  \nE=\n")
    assert read_env_file(f) == {"A": "a:1,b:2", "B": "/x y/ca.crt", "C": "1", "D": "spaced", "E": ""}


@pytest.mark.parametrize("line", ["not a pair", "1X=y", "=value", "A B=c"])
def test_a_bad_line_is_named(tmp_path: Path, line: str) -> None:
    f = tmp_path / "env"
    f.write_text(f"OK=1\n{line}\n")
    with pytest.raises(EnvFileError) as exc:
        read_env_file(f)
    assert (exc.value.path, exc.value.line) == (f, 2)
    assert str(exc.value) == f"{f}:2: expected KEY=VALUE"


def test_the_real_environment_wins(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("A=file\nB=file\n")
    env = with_env_file({"X_ENV_FILE": str(f), "A": "real"}, "X_ENV_FILE", tmp_path / "default")
    assert env == {"X_ENV_FILE": str(f), "A": "real", "B": "file"}


def test_the_default_file_is_read_only_when_present(tmp_path: Path) -> None:
    default = tmp_path / ".kms-cluster" / "env"
    assert with_env_file({"A": "1"}, "X_ENV_FILE", default) == {"A": "1"}
    default.parent.mkdir()
    default.write_text("B=2\n")
    assert with_env_file({"A": "1"}, "X_ENV_FILE", default) == {"A": "1", "B": "2"}


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(OSError) as exc:
        with_env_file({"X_ENV_FILE": str(missing)}, "X_ENV_FILE", tmp_path / "default")
    assert exc.value.filename == str(missing)
