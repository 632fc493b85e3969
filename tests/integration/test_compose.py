"""`docker compose up` for real: build the image, bring the cluster up, use it through the
published port, kill an HSM container and keep working, restart it and see it catch up,
and take everything down. Skipped (with the reason printed) only where no engine can run."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from botocore.credentials import Credentials

from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc
from tests.harness import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT.parent / "shared" / "tools" / "docker-engine.sh"
# The module's fixture builds the image: on a loaded machine more than the suite's 300 s per test
# (measured: over 300 s beside two CPU hogs). Every step has its own subprocess deadline.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]


def engine_ready() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def ensure_engine() -> list[str]:
    """An engine that runs, or a skip saying why not."""
    if not engine_ready() and ENGINE_SCRIPT.exists():
        r = subprocess.run(["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            reason = f"no Docker engine: {ENGINE_SCRIPT} failed: {r.stderr.strip()[-500:]}"
            print(reason, file=sys.stderr)
            pytest.skip(reason)
    if not engine_ready():
        reason = "no Docker engine can run here (docker info fails and no engine script exists)"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    compose = compose_command()
    if compose is None:
        reason = "no `docker compose` or `docker-compose` command"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    fix = subprocess.run(["bash", str(ROOT / "deploy" / "fix-base-image.sh")], capture_output=True, text=True)
    assert fix.returncode == 0, fix.stderr
    return compose


class Compose:
    def __init__(self, command: list[str]) -> None:
        self.project = "kmsct" + uuid.uuid4().hex[:6]
        self.ports = {"KMS_GRPC_PORT": free_port(), "KMS_AWS_PORT": free_port(), "KMS_METRICS_PORT": free_port(),
                      "KMS_CONSOLE_PORT": free_port()}
        self.base = [*command, "-p", self.project, "-f", str(ROOT / "compose.yaml")]
        # An image tag of this checkout's own: the default tag is shared by every checkout on the
        # engine, and another's build in between made `up` recreate containers from its code. One
        # tag per checkout (not per run) keeps the build cache and leaves one image, not one a run.
        # Compose's HTTP timeout (60 s) is a timing target, not behaviour: a busy engine took longer.
        tag = "checkout-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}, "KMS_IMAGE_TAG": tag,
                    "COMPOSE_HTTP_TIMEOUT": "600", "DOCKER_CLIENT_TIMEOUT": "600"}

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.base, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.strip()

    def init_result(self) -> dict:
        cid = self.run("ps", "-a", "-q", "init").stdout.strip()
        code = subprocess.run(["docker", "wait", cid], capture_output=True, text=True, timeout=300).stdout.strip()
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout
        assert code == "0", f"init exited {code}:\n{logs[-3000:]}"
        start = logs.rfind("\n{") + 1  # a re-run container keeps the logs of earlier runs: take the last report
        return json.loads(logs[start:])

    def root_channel(self) -> grpc.aio.Channel:
        """A channel to the frontend's gRPC port signed as the account root (the pair in the secrets volume)."""
        key_id, secret = self.access_keys()
        return kms_auth.aio_channel(f"127.0.0.1:{self.ports['KMS_GRPC_PORT']}", Credentials(key_id, secret),
                                    "us-east-1")

    def access_keys(self) -> tuple[str, str]:
        """The account root's pair, from the secrets volume (what init prints)."""
        pair = subprocess.run(["docker", "exec", self.container("frontend"), "cat", "/secrets/aws-access-keys"],
                              capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        key_id, _, secret = pair.partition(":")
        return key_id, secret

    def hsm_mgmt(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """hsm-mgmt inside the compose network, with the operator's state (trust anchor, env)."""
        return self.run("run", "--rm", "--no-deps", "-e", "HSM_ENV_FILE=/state/env", "init", "hsm-mgmt", *args,
                        timeout=120, check=check)


@pytest.fixture(scope="module")
def compose():
    c = Compose(ensure_engine())
    try:
        c.run("build", timeout=900)
        c.run("up", "-d", timeout=600)
        yield c
    finally:
        c.run("down", "-v", "--remove-orphans", timeout=300, check=False)
        # volumes of HSM containers the supervisor made (not declared in compose.yaml)
        left = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={c.project}"],
                              capture_output=True, text=True).stdout.split()
        if left:
            subprocess.run(["docker", "volume", "rm", "-f", *left], capture_output=True)


async def test_compose_cluster_serves_survives_a_killed_hsm_and_catches_it_up(compose):
    first = compose.init_result()
    assert first["connection_state"] == "CONNECTED"
    store_id = first["custom_key_store_id"]
    async with compose.root_channel() as ch:
        stub = kms_grpc.KmsStub(ch)
        key = (await stub.CreateKey(kms.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=store_id))).key_metadata
        ctx = {"purpose": "compose-test"}

        async def round_trip(payload: bytes) -> bytes:
            blob = (await stub.Encrypt(kms.EncryptRequest(key_id=key.key_id, plaintext=payload,
                                                          encryption_context=ctx))).ciphertext_blob
            out = await stub.Decrypt(kms.DecryptRequest(ciphertext_blob=blob, encryption_context=ctx))
            assert out.plaintext == payload
            return blob

        before = await round_trip(b"before the kill")
        subprocess.run(["docker", "kill", compose.container("hsm2")], check=True, capture_output=True)
        blobs = [await round_trip(f"while hsm2 is down {i}".encode()) for i in range(20)]
        # a write the killed node misses: a key created while it is down
        missed = (await stub.CreateKey(kms.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=store_id,
                                                            description="made while hsm2 was down"))).key_metadata
        compose.run("start", "hsm2")

        def caught_up() -> bool:
            return compose.hsm_mgmt("checkConsistency", check=False).returncode == 0
        await wait_until(caught_up, timeout=120, interval=2, what="hsm2 to catch up (checkConsistency)")
        listed = json.loads(compose.hsm_mgmt("--json", "--endpoint", "hsm2:2225", "findAllKeys", "0", "1").stdout)
        handles = {k["key_handle"] for s in listed["servers"] for k in s.get("keys", [])}
        assert len(handles) >= 2  # both backing keys, including the one made while it was down
        assert missed.key_state == "Enabled"
        for blob in [before, *blobs]:
            assert (await stub.Decrypt(kms.DecryptRequest(ciphertext_blob=blob, encryption_context=ctx))).plaintext


def test_ports_are_published_on_the_hosts_loopback_only(compose):
    """What the engine bound: 127.0.0.1, not every interface (KMS_PUBLISH_ADDRESS unset)."""
    cid = compose.container("frontend")
    bound = subprocess.run(["docker", "port", cid], capture_output=True, text=True, check=True).stdout.split()
    published = [b for b in bound if ":" in b and not b.endswith("/tcp")]
    assert sorted(int(b.rsplit(":", 1)[1]) for b in published) == sorted(compose.ports.values()), bound
    assert all(b.startswith("127.0.0.1:") for b in published), bound


def test_second_up_is_idempotent(compose):
    first = compose.init_result()
    compose.run("up", "-d")
    deadline = time.monotonic() + 180
    while "Exit" not in compose.run("ps", "init").stdout and time.monotonic() < deadline:
        time.sleep(1)
    again = compose.init_result()
    assert (again["cluster_id"], again["custom_key_store_id"]) == (first["cluster_id"], first["custom_key_store_id"])


def test_kms_chaos_on_the_compose_cluster_passes(compose, tmp_path):
    """kms-chaos against the containers: docker kill / start / pause / unpause of HSM services
    under load, then the same verdict as on the local cluster."""
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "cluster_tools.chaos.cli", "--target", "compose", "--project", compose.project,
         "--compose-file", str(ROOT / "compose.yaml"), "--duration", "15s", "--seed", "5",
         "--fault", "kill:hsm2@2s,restart:hsm2@5s,pause:hsm3@9s", "--pause-for", "2s", "--create-key-every", "3s",
         "--out", str(out), "--keep", "--quiet"],
        cwd=ROOT, env=compose.env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "kms-chaos verdict: PASS" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
    for line in ("fault kill hsm2 -> down", "fault restart hsm2 -> up", "fault pause hsm3 -> paused",
                 "fault resume hsm3 -> up"):
        assert line in r.stdout, r.stdout[-3000:]
    checks = {c["name"]: c for c in json.loads((out / "report.json").read_text())["checks"]}
    assert all(c["passed"] for c in checks.values())
    assert checks["ciphertexts"]["counts"]["acknowledged"] > 50


HSM_SECRETS = ["appliance.key", "hsm-master.key"]


def _secrets_in(container: str) -> list[str]:
    listed = subprocess.run(["docker", "exec", container, "ls", "/secrets"], capture_output=True, text=True,
                            check=True).stdout.split()
    return sorted(listed)


def test_each_container_holds_only_the_secrets_it_uses(compose):
    """No HSM can read the AWS root pair or the token that commands the hsm-supervisor."""
    for service in ("hsm1", "hsm2", "hsm3"):
        assert _secrets_in(compose.container(service)) == HSM_SECRETS
    assert _secrets_in(compose.container("supervisor")) == ["supervisor.token"]
    assert _secrets_in(compose.container("frontend")) == ["appliance.key", "aws-access-keys", "frontend-master.key",
                                                          "supervisor.token"]


def _aws_keys(compose) -> tuple[str, str]:
    pair = subprocess.run(["docker", "exec", compose.container("frontend"), "cat", "/secrets/aws-access-keys"],
                          capture_output=True, text=True, check=True).stdout.strip()
    key_id, _, secret = pair.partition(":")
    return key_id, secret


async def test_the_cloudhsm_api_serves_and_starts_hsm_containers(compose):
    """boto3's cloudhsmv2 on the published AWS port: the init cluster with its three HSMs, then
    CreateHsm starts an HSM container through the supervisor and DeleteHsm removes it."""
    import boto3
    first = compose.init_result()
    key_id, secret = _aws_keys(compose)
    hsm = boto3.client("cloudhsmv2", endpoint_url=f"http://127.0.0.1:{compose.ports['KMS_AWS_PORT']}",
                       region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret)

    def cluster() -> dict:
        return hsm.describe_clusters(Filters={"clusterIds": [first["cluster_id"]]})["Clusters"][0]
    c = await wait_until(lambda: len(cluster()["Hsms"]) == 3 and cluster(), timeout=60, what="the 3 compose HSMs")
    assert c["State"] == "ACTIVE" and {h["State"] for h in c["Hsms"]} == {"ACTIVE"}
    assert len({h["AvailabilityZone"] for h in c["Hsms"]}) == 3
    assert hsm.describe_backups(Filters={"clusterIds": [first["cluster_id"]]})["Backups"]

    new = hsm.create_hsm(ClusterId=first["cluster_id"], AvailabilityZone=c["Hsms"][0]["AvailabilityZone"])["Hsm"]
    active = await wait_until(lambda: next((h for h in cluster()["Hsms"] if h["HsmId"] == new["HsmId"]
                                            and h["State"] == "ACTIVE"), None), timeout=240, interval=1,
                              what="the new HSM container ACTIVE")
    assert active["EniIp"]
    name = f"{compose.project}-{new['HsmId']}"
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True,
                          text=True).stdout.strip() == "true"
    members = json.loads(compose.hsm_mgmt("--json", "describeCluster").stdout)["members"]
    assert new["HsmId"] in {m["hsm_id"] for m in members}
    assert _secrets_in(name) == HSM_SECRETS  # the HSMs' volume, as compose's own HSMs have it

    hsm.delete_hsm(ClusterId=first["cluster_id"], HsmId=new["HsmId"])
    await wait_until(lambda: new["HsmId"] not in {h["HsmId"] for h in cluster()["Hsms"]}, timeout=180, interval=1,
                     what="the HSM deleted")
    gone = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"name={name}"], capture_output=True, text=True)
    assert gone.stdout.strip() == ""


async def test_the_console_is_served_on_the_loopback_port(compose):
    """compose turns the web console on (KMS_CONSOLE_LISTEN) and publishes it on 127.0.0.1 only."""
    import aiohttp

    store_id = compose.init_result()["custom_key_store_id"]
    key_id, secret = compose.access_keys()
    url = f"http://127.0.0.1:{compose.ports['KMS_CONSOLE_PORT']}"
    published = compose.run("port", "frontend", "4600").stdout.strip()
    assert published.startswith("127.0.0.1:"), published
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(url + "/signin", data={"access_key_id": key_id, "secret_access_key": secret}) as r:
            page = await r.text()
        assert r.status == 200 and str(r.url).endswith("/stores") and store_id in page
