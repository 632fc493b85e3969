"""compose.yaml as Compose reads it (`config`: no engine needed): the frontend's ports are
published on the host's loopback unless KMS_PUBLISH_ADDRESS opens them."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def config(**env: str) -> list[str]:
    command = shutil.which("docker-compose")
    if command is None:
        pytest.skip("no docker-compose to read compose.yaml with")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    r = subprocess.run([command, "-f", str(ROOT / "compose.yaml"), "config"], capture_output=True, text=True,
                       env={**clean, **env}, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def published(**env: str) -> list[str]:
    lines = config(**env)
    start = lines.index("  frontend:")
    ports = lines.index("    ports:", start)
    return _items(lines, ports)


def _items(lines: list[str], at: int) -> list[str]:
    out = []
    for line in lines[at + 1:]:
        if not line.startswith("    - "):
            break
        out.append(line.strip().removeprefix("- "))
    return out


def test_ports_are_on_loopback_by_default():
    assert published() == ["127.0.0.1:7800:7800/tcp", "127.0.0.1:4599:4599/tcp", "127.0.0.1:9100:9100/tcp",
                           "127.0.0.1:4600:4600/tcp"]


def test_a_variable_opens_them_and_moves_them():
    assert published(KMS_PUBLISH_ADDRESS="0.0.0.0", KMS_GRPC_PORT="17800") == \
        ["0.0.0.0:17800:7800/tcp", "0.0.0.0:4599:4599/tcp", "0.0.0.0:9100:9100/tcp",
         "127.0.0.1:4600:4600/tcp"]  # the console's sign-in form carries a secret key: loopback whatever is asked


def test_no_other_service_publishes_a_port():
    """The hsm-supervisor holds the Docker socket and the HSMs their peer ports: reached over the
    project network only, never from the host's interfaces."""
    lines = config(KMS_PUBLISH_ADDRESS="0.0.0.0")
    service, publishing = "", set()
    for line in lines:
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":"):
            service = line.strip().rstrip(":")
        elif line == "    ports:":
            publishing.add(service)
    assert publishing == {"frontend"}
