"""compose.yaml as Compose reads it (`config`: no engine needed): the frontend's ports are
published on the host's loopback unless KMS_PUBLISH_ADDRESS opens them; each service can read
only the secrets it uses."""
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


def secrets_readable() -> dict[str, set[str]]:
    """Service -> the deployment secrets it can read: the `secrets` service writes every secret
    into the `secrets` volume and copies some into each share volume (its --share=DIR=NAMES)."""
    import yaml

    services = yaml.safe_load("\n".join(config()))["services"]
    maker = services["secrets"]
    mounted_at = {m.split(":")[1]: m.split(":")[0] for m in maker["volumes"]}
    holds = {"secrets": set(launcher_secrets())}
    for arg in maker["command"]:
        if arg.startswith("--share="):
            target, _, names = arg.removeprefix("--share=").partition("=")
            holds[mounted_at[target]] = set(names.split(","))
    readable = {}
    for name, service in services.items():
        volumes = [m.split(":")[0] for m in service.get("volumes", [])]
        readable[name] = set().union(*(holds.get(v, set()) for v in volumes))
        for key, value in (service.get("environment") or {}).items():  # every secret file it is told of exists
            if key.endswith("_FILE") and str(value).startswith("/secrets/"):
                assert value.removeprefix("/secrets/") in readable[name], (name, key)
    return readable


def launcher_secrets() -> list[str]:
    from cluster_tools.launcher import DEPLOYMENT_SECRETS
    return list(DEPLOYMENT_SECRETS)


def test_each_service_reads_only_the_secrets_it_uses():
    hsm = {"hsm-master.key", "appliance.key"}
    assert secrets_readable() == {
        "secrets": set(launcher_secrets()),
        "hsm1": hsm, "hsm2": hsm, "hsm3": hsm,  # not the AWS root pair, not the supervisor's token
        "frontend": {"frontend-master.key", "aws-access-keys", "appliance.key", "supervisor.token"},
        # the HSMs' volume, to mount into the HSM containers it starts (the Docker socket reads any volume)
        "supervisor": {"supervisor.token"} | hsm,
        "init": {"aws-access-keys"},
    }
