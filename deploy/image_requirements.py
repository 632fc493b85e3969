"""Print the project's runtime dependencies from pyproject.toml as a requirements file.

The image installs them in a layer of its own, before the code is copied in, so that a change to
the code rebuilds in seconds from the cached dependencies instead of installing them all again
(grpcio, cryptography, matplotlib, botocore...). Markers (``; sys_platform != 'win32'``) are kept:
pip evaluates them as it would for ``pip install .``."""
import sys
import tomllib

with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
