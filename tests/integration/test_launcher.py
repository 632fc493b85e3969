"""`kms-cluster up` as the README runs it: real processes, a CONNECTED store, resume, down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc
from tests.harness import free_port


def launcher(root, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster_tools.launcher", "--dir", str(root), *args],
                          capture_output=True, text=True, timeout=timeout)


async def describe(status: dict) -> kms.CustomKeyStoresListEntry:
    """As the account root whose pair `up` printed (a call without a signature is refused)."""
    credentials = Credentials(status["aws_access_key_id"], status["aws_secret_access_key"])
    async with kms_auth.aio_channel(status["kms_endpoint"], credentials, status["region"]) as ch:
        r = await kms_grpc.KmsStub(ch).DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=10)
    assert len(r.custom_key_stores) == 1
    return r.custom_key_stores[0]


async def test_up_status_down_and_resume(tmp_path):
    root = tmp_path / "cluster"
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--console-port", str(free_port()),
             "--address-prefix", f"127.{200 + os.getpid() % 50}"]
    try:
        up = launcher(root, "up", "--detach", *ports)
        assert up.returncode == 0, up.stderr
        assert "CONNECTED" in up.stdout and "kms create-key" in up.stdout
        assert f"Stop with: kms-cluster --dir {root} down" in up.stdout  # --detach says how to stop
        again = launcher(root, "up", "--detach")          # "make sure it runs": it does, nothing else happens
        assert again.returncode == 0 and "already running" in again.stdout, again
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
        # the web console is on, printed, and in status
        assert f"Web console:           {status['console_url']}" in up.stdout
        signin = urllib.request.urlopen(status["console_url"] + "signin", timeout=10).read().decode()
        assert 'id="access_key_id"' in signin
        assert "hsm_keys" in urllib.request.urlopen(status["nodes"][0]["metrics"], timeout=10).read().decode()
        store = await describe(status)
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

        # a later `up` takes a principals file; a bad one is refused before anything starts
        bad, good = tmp_path / "bad.json", tmp_path / "principals.json"
        bad.write_text('{"principals": [\n  {"arn": "arn:aws:iam::111122223333:user/x", "acces_keys": []}\n]}')
        refused = launcher(root, "up", "--detach", "--principals", str(bad))
        assert refused.returncode == 1 and f"{bad}:2:" in refused.stderr and "acces_keys" in refused.stderr
        assert not any(n["running"] for n in json.loads(launcher(root, "status", "--json").stdout)["nodes"])
        good.write_text(json.dumps({"principals": [
            {"arn": "arn:aws:iam::111122223333:user/ops", "access_keys": [{"id": "AKIAOPS0000000000001",
                                                                           "secret": "ops-secret-ops-secret"}],
             "policies": [{"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": "kms:List*", "Resource": "*"}]}]}]}))
        again = launcher(root, "up", "--detach", "--principals", str(good))
        assert again.returncode == 0, again.stderr
        resumed = json.loads(launcher(root, "status", "--json").stdout)
        assert resumed["cluster_id"] == status["cluster_id"]
        assert resumed["custom_key_store_id"] == status["custom_key_store_id"]
        assert (await describe(resumed)).connection_state == "CONNECTED"
        ops = boto3.client("kms", endpoint_url=resumed["aws_endpoint_url"], region_name=resumed["region"],
                           aws_access_key_id="AKIAOPS0000000000001", aws_secret_access_key="ops-secret-ops-secret")
        assert ops.list_keys()["Keys"] == []
        with pytest.raises(ClientError) as denied:
            ops.describe_custom_key_stores()
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "AWS_ENDPOINT_URL_STS=" in (root / "env").read_text()
    finally:
        launcher(root, "down")


def test_down_stops_a_foreground_up(tmp_path):
    """`kms-cluster down` from another shell ends a foreground `up` cleanly, not only its processes."""
    root = tmp_path / "cluster"
    ports = ["--port", str(free_port()), "--aws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--address-prefix", f"127.{150 + os.getpid() % 50}"]
    out_path = tmp_path / "up.out"
    with open(out_path, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "cluster_tools.launcher", "--dir", str(root), "up", *ports],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while "Running." not in out_path.read_text():
            assert up.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        down = launcher(root, "down")
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0
        shown = out_path.read_text()
        assert "Stopping (kms-cluster down)..." in shown and "Stopped." in shown, shown
        assert "killed for an experiment" not in shown, shown
        status = json.loads(launcher(root, "status", "--json").stdout)
        assert not status["frontend"]["running"] and not any(n["running"] for n in status["nodes"])
    finally:
        if up.poll() is None:
            up.kill()
        launcher(root, "down")
