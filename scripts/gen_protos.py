#!/usr/bin/env python3
"""Generate the Python code for every .proto under protos/ (the one command).

    python scripts/gen_protos.py           # regenerate in place
    python scripts/gen_protos.py --check   # exit 1 if the committed code is stale

Generated modules live beside their .proto files (protos/hsm/v1/hsm_pb2.py ...),
so both server packages import them as ``protos.hsm.v1.hsm_pb2``.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    protos = sorted(p.relative_to(ROOT) for p in (ROOT / "protos").rglob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
        *map(str, protos),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.name.endswith(SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generated = generate(out)
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / "protos").rglob("*") if p.name.endswith(SUFFIXES))
        if args.check:
            stale = [str(p) for p in generated if not (ROOT / p).exists() or not filecmp.cmp(out / p, ROOT / p, shallow=False)]
            extra = [str(p) for p in committed if p not in generated]
            if stale or extra:
                print("generated protobuf code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for p in stale + extra:
                    print(f"  {p}", file=sys.stderr)
                return 1
            print(f"generated protobuf code is up to date ({len(generated)} files)")
            return 0
        for p in committed:
            if p not in generated:
                (ROOT / p).unlink()
        for p in generated:
            (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / p, ROOT / p)
        for d in {(ROOT / p).parent for p in generated}:
            while d != ROOT:
                (d / "__init__.py").touch()
                d = d.parent
        print(f"generated {len(generated)} files")
        return 0


if __name__ == "__main__":
    sys.exit(main())
