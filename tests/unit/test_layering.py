"""Which package may import which (DESIGN.md, decision 1; issue 12): the servers share nothing but
``protos`` and ``plumbing``; they import neither their operator CLIs nor ``cluster_tools``;
``plumbing`` knows nothing of the domain; the backup store (the directory nodes write sealed
backups into and the CloudHSM control plane catalogues) is shared and imports neither server."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ("protos", "backup_store", "hsm_node", "kms_frontend", "cluster_tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...], *, skip: str | None = None) -> list[str]:
    bad = []
    for path in files(package):
        name = module_name(path)
        if skip and (name == skip or name.startswith(skip + ".")):
            continue
        for imported in imports(path):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {imported}")
    return bad


def test_plumbing_has_no_domain_imports() -> None:
    assert files("plumbing")
    assert offenders("plumbing", DOMAIN) == []


def test_the_backup_store_imports_no_server() -> None:
    assert offenders("backup_store", ("hsm_node", "kms_frontend", "cluster_tools", "protos")) == []


@pytest.mark.parametrize("server, other", [("hsm_node", "kms_frontend"), ("kms_frontend", "hsm_node")])
def test_the_servers_share_only_protos_and_plumbing(server: str, other: str) -> None:
    assert offenders(server, (other, "cluster_tools")) == []


def test_server_modules_do_not_import_their_operator_clis() -> None:
    assert offenders("hsm_node", ("hsm_node.mgmt",), skip="hsm_node.mgmt") == []
    assert offenders("kms_frontend", ("kms_frontend.cli",), skip="kms_frontend.cli") == []


def test_the_server_processes_load_no_cli_or_tool_module() -> None:
    """What ``hsm-node`` and ``kms-frontend`` actually load, transitively."""
    code = ("import json, sys; import hsm_node.server, kms_frontend.server;"
            " print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout)
    assert "hsm_node.server" in loaded and "kms_frontend.server" in loaded and "plumbing.drain" in loaded
    forbidden = ("hsm_node.mgmt", "kms_frontend.cli", "cluster_tools")
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)] == []


def test_inside_the_frontend_imports_point_down() -> None:
    """api -> service -> cluster -> protos (DESIGN decision 11): only cluster/ speaks hsm.v1 and
    reads gRPC statuses of the HSMs; nothing below points back up."""
    assert offenders("kms_frontend/service", ("grpc", "protos.hsm", "kms_frontend.api")) == []
    assert offenders("kms_frontend/api", ("protos.hsm", "kms_frontend.cluster")) == []
    assert offenders("kms_frontend/cluster", ("kms_frontend.service", "kms_frontend.api")) == []
    assert offenders("kms_frontend/store", ("kms_frontend.service", "kms_frontend.api", "kms_frontend.cluster")) == []
    # The CloudHSM control plane sits beside the service layer: its HSM calls go through
    # cluster/appliance.py, and neither it nor KMS's rules know the adapters.
    assert offenders("kms_frontend/controlplane", ("protos.hsm", "kms_frontend.api")) == []
    assert offenders("kms_frontend/service", ("kms_frontend.controlplane",)) == []
