"""Environment files: ``KEY=VALUE`` lines (``#`` comments, blank lines, an optional
``export`` and quotes), as ``kms-cluster`` writes them and a shell's ``set -a; . FILE``
reads them. The command-line tools take their defaults from one, under the real
environment (a real variable always wins)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class EnvFileError(ValueError):
    """A line that is not ``KEY=VALUE``."""

    def __init__(self, path: Path, line: int) -> None:
        super().__init__(f"{path}:{line}: expected KEY=VALUE")
        self.path, self.line = path, line


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of an environment file. Raises :class:`EnvFileError` on a bad line and
    ``OSError`` when the file cannot be read."""
    path = Path(path)
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise EnvFileError(path, number)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def env_file_path(environ: Mapping[str, str], variable: str, default: Path) -> Path | None:
    """The environment file to read: the one ``environ[variable]`` names (it must then exist),
    else ``default`` when it is a file, else None."""
    name = environ.get(variable)
    if name:
        return Path(name)
    return default if default.is_file() else None


def with_env_file(environ: Mapping[str, str], variable: str, default: Path) -> dict[str, str]:
    """The real environment over the environment file (:func:`env_file_path`). Raises
    :class:`EnvFileError` or ``OSError`` (whose ``filename`` is the file)."""
    path = env_file_path(environ, variable, default)
    if path is None:
        return dict(environ)
    return {**read_env_file(path), **environ}
