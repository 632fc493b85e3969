"""`kms-cluster up` as the README runs it: real processes, a CONNECTED store, resume, down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import grpc

from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc
from tests.harness import free_port


def launcher(root, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster_tools.launcher", "--dir", str(root), *args],
                          capture_output=True, text=True, timeout=timeout)


async def describe(endpoint: str) -> kms.CustomKeyStoresListEntry:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        r = await kms_grpc.KmsStub(ch).DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=10)
    assert len(r.custom_key_stores) == 1
    return r.custom_key_stores[0]


async def test_up_status_down_and_resume(tmp_path):
    root = tmp_path / "cluster"
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--address-prefix", f"127.{200 + os.getpid() % 50}"]
    try:
        up = launcher(root, "up", "--detach", *ports)
        assert up.returncode == 0, up.stderr
        assert "CONNECTED" in up.stdout and "kms create-key" in up.stdout
        status = json.loads(launcher(root, "status", "--json").stdout)
        assert status["cluster_id"].startswith("cluster-") and status["custom_key_store_id"].startswith("cks-")
        assert [n["health"] for n in status["nodes"]] == ["ACTIVE"] * 3
        # created through the CloudHSM control plane: the same cluster and HSM ids there
        assert status["cluster"]["cluster_id"] == status["cluster_id"] and status["cluster"]["state"] == "ACTIVE"
        assert sorted(h["hsm_id"] for h in status["cluster"]["hsms"]) == sorted(n["hsm_id"] for n in status["nodes"])
        assert len({h["availability_zone"] for h in status["cluster"]["hsms"]}) == 3
        assert status["aws_endpoint_url"].startswith("http://127.0.0.1:") and status["aws_access_key_id"]
        metrics = urllib.request.urlopen(status["frontend"]["metrics"], timeout=10).read().decode()
        assert "kms_custom_key_store_state" in metrics
        assert "hsm_keys" in urllib.request.urlopen(status["nodes"][0]["metrics"], timeout=10).read().decode()
        store = await describe(status["kms_endpoint"])
        assert store.connection_state == "CONNECTED" and store.custom_key_store_id == status["custom_key_store_id"]
        env = (root / "env").read_text()
        assert "HSM_TRUST_ANCHOR=" in env and "HSM_CO_PASSWORD=" in env and "KMS_ENDPOINT=" in env
        assert (root / "env").stat().st_mode & 0o077 == 0  # credentials: owner only
        # hsm-mgmt picks the environment file up: the operator can act at once
        users = subprocess.run([sys.executable, "-m", "hsm_node.mgmt", "--json", "listUsers"], capture_output=True,
                               text=True, env={"HSM_ENV_FILE": str(root / "env"), "PATH": ""}, timeout=60)
        assert users.returncode == 0, users.stderr
        assert {"admin", "kmsuser"} <= {u["username"] for s in json.loads(users.stdout)["servers"] for u in s["users"]}

        down = launcher(root, "down")
        assert down.returncode == 0
        assert not any(n["running"] for n in json.loads(launcher(root, "status", "--json").stdout)["nodes"])

        again = launcher(root, "up", "--detach")
        assert again.returncode == 0, again.stderr
        resumed = json.loads(launcher(root, "status", "--json").stdout)
        assert resumed["cluster_id"] == status["cluster_id"]
        assert resumed["custom_key_store_id"] == status["custom_key_store_id"]
        assert (await describe(resumed["kms_endpoint"])).connection_state == "CONNECTED"
    finally:
        launcher(root, "down")
