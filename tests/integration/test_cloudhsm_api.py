"""The CloudHSM v2 control plane end to end, with boto3's ``cloudhsmv2`` client (and the AWS CLI)
pointed at the frontend's AWS endpoint, and real ``hsm-node`` processes that the frontend starts
and stops: AWS's whole flow (create a cluster, create an HSM, sign its CSR with openssl, initialise,
activate with hsm-mgmt, create kmsuser, a custom key store on it), backups and their states,
copies to another Region, tags, resource policies, errors, a frontend restart that re-adopts its
nodes, the automatic replacement of a failed HSM, and a key store moved to a cluster created from a
backup whose old ciphertexts still decrypt.

One frontend and one cluster for the module; the tests run in file order and build on each other.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.harness import FrontendProcess, wait_until

REGION, WEST = "us-east-1", "us-west-2"
CO_PASSWORD = "co-Password1"
KMSUSER_PASSWORD = "kmsPassword1"
SUBNETS = ["subnet-0a1b2c3d", "subnet-1a2b3c4d", "subnet-2a2b3c4d"]


@dataclass
class Env:
    root: Path
    fe: FrontendProcess
    hsm: object = None          # cloudhsmv2 client, us-east-1
    west: object = None         # cloudhsmv2 client, us-west-2
    kms: object = None
    cluster_id: str = ""
    ca_dir: Path | None = None
    store_id: str = ""
    key_id: str = ""
    blobs: list[bytes] = field(default_factory=list)

    def client(self, service: str, region: str = REGION):
        key_id, secret = self.fe.aws_credentials()
        return boto3.client(service, endpoint_url=self.fe.aws_endpoint_url, region_name=region,
                            aws_access_key_id=key_id, aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 1}))

    def cluster(self, cluster_id: str | None = None, client=None) -> dict:
        found = (client or self.hsm).describe_clusters(Filters={"clusterIds": [cluster_id or self.cluster_id]})
        return found["Clusters"][0]

    def mgmt(self, *args: str, endpoint: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HSM_ENV_FILE": os.devnull, "HSM_CO_PASSWORD": CO_PASSWORD}
        cmd = [sys.executable, "-m", "hsm_node.mgmt", "--endpoint", endpoint]
        if self.ca_dir is not None and (self.ca_dir / "customerCA.crt").exists():
            cmd += ["--trust-anchor", str(self.ca_dir / "customerCA.crt")]
        r = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr + r.stdout
        return r


def frontend(root: Path) -> FrontendProcess:
    master = root / "hsm-master.key"
    if not master.exists():
        master.write_text(base64.b64encode(os.urandom(32)).decode())
        master.chmod(0o600)
    return FrontendProcess(root, [], env={
        "KMS_CLOUDHSM_PROVISIONER": "local", "KMS_CLOUDHSM_DIR": str(root / "hsms"),
        "KMS_BACKUP_DIR": str(root / "backups"), "KMS_CLOUDHSM_REGIONS": f"{WEST}={root / 'backups-west'}",
        "KMS_HSM_MASTER_KEY_FILE": str(master), "KMS_HSM_REPLACE_AFTER": "0",
        # one loopback subnet per test run, so a second run (or kms-cluster up) on this machine does not meet it
        "KMS_CLOUDHSM_ADDRESS_PREFIX": f"127.{100 + os.getpid() % 100}"})


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloudhsm")
    fe = frontend(root)
    fe.start()
    await fe.wait_ready()
    e = Env(root, fe)
    e.hsm, e.west, e.kms = e.client("cloudhsmv2"), e.client("cloudhsmv2", WEST), e.client("kms")
    yield e
    await fe.stop()
    _stop_nodes(root / "hsms")


def _stop_nodes(base: Path) -> None:
    """The nodes outlive the frontend by design: stop them at the end of the module."""
    from kms_frontend.controlplane.provisioners import LocalProcesses
    for spec in LocalProcesses(base, master_key_file="", appliance_key_file="", backup_dirs={}).specs().values():
        LocalProcesses._stop(Path(spec["data_dir"]), timeout=5)


async def wait_hsms(e: Env, cluster_id: str, n: int, client=None, timeout: float = 90) -> dict:
    def ready():
        c = e.cluster(cluster_id, client)
        hsms = c["Hsms"]
        return c if len(hsms) == n and all(h["State"] == "ACTIVE" for h in hsms) else None
    return await wait_until(ready, timeout=timeout, interval=0.3, what=f"{n} ACTIVE HSMs in {cluster_id}")


def sign_csr_with_openssl(ca_dir: Path, csr_pem: str) -> tuple[str, str]:
    """What the CloudHSM guide has a customer do: a CA of their own, and the CSR signed by it."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    key, crt = ca_dir / "customerCA.key", ca_dir / "customerCA.crt"
    run = lambda *a: subprocess.run(["openssl", *a], cwd=ca_dir, check=True, capture_output=True)  # noqa: E731
    run("genrsa", "-out", str(key), "2048")
    run("req", "-new", "-x509", "-days", "3652", "-key", str(key), "-out", str(crt), "-subj", "/CN=customerCA")
    (ca_dir / "cluster.csr").write_text(csr_pem)
    (ca_dir / "ca.ext").write_text("basicConstraints=critical,CA:TRUE\n")  # it issues the HSMs' TLS certificates
    run("x509", "-req", "-days", "3652", "-in", "cluster.csr", "-CA", str(crt), "-CAkey", str(key),
        "-CAcreateserial", "-extfile", "ca.ext", "-out", "cluster.crt")
    return (ca_dir / "cluster.crt").read_text(), crt.read_text()


def endpoint(hsm: dict) -> str:
    return f"{hsm['EniIp']}:2225"


# ------------------------------------------------------------------ AWS's flow


async def test_create_initialize_activate_and_use_a_cluster(env: Env) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    c = env.hsm.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:2],
                               TagList=[{"Key": "team", "Value": "payments"}])["Cluster"]
    env.cluster_id = c["ClusterId"]
    assert c["State"] == "UNINITIALIZED" and c["SubnetMapping"] == {"us-east-1a": SUBNETS[0], "us-east-1b": SUBNETS[1]}
    assert c["Hsms"] == [] and c["BackupRetentionPolicy"] == {"Type": "DAYS", "Value": "90"}

    first = env.hsm.create_hsm(ClusterId=env.cluster_id, AvailabilityZone="us-east-1a")["Hsm"]
    assert first["State"] == "CREATE_IN_PROGRESS" and first["HsmId"].startswith("hsm-")
    c = await wait_hsms(env, env.cluster_id, 1)
    assert c["State"] == "UNINITIALIZED"
    csr = await wait_until(lambda: env.cluster()["Certificates"].get("ClusterCsr"), what="the cluster CSR")

    # A second HSM waits for initialisation, as on AWS.
    with pytest.raises(ClientError) as err:
        env.hsm.create_hsm(ClusterId=env.cluster_id, AvailabilityZone="us-east-1b")
    assert err.value.response["Error"]["Code"] == "CloudHsmInvalidRequestException"

    env.ca_dir = env.root / "customer-ca"
    signed, anchor = sign_csr_with_openssl(env.ca_dir, csr)
    r = env.hsm.initialize_cluster(ClusterId=env.cluster_id, SignedCert=signed, TrustAnchor=anchor)
    assert r["State"] == "INITIALIZE_IN_PROGRESS"
    await wait_until(lambda: env.cluster()["State"] == "INITIALIZED", what="INITIALIZED")
    assert "BEGIN CERTIFICATE" in env.cluster()["Certificates"]["ClusterCertificate"]

    env.mgmt("activate", CO_PASSWORD, endpoint=endpoint(first))   # the PRECO password change
    await wait_until(lambda: env.cluster()["State"] == "ACTIVE", what="ACTIVE")

    second = env.hsm.create_hsm(ClusterId=env.cluster_id, AvailabilityZone="us-east-1b")["Hsm"]
    assert second["AvailabilityZone"] == "us-east-1b"
    c = await wait_hsms(env, env.cluster_id, 2)
    assert c["State"] == "ACTIVE"
    env.mgmt("createUser", "CU", "kmsuser", KMSUSER_PASSWORD, endpoint=endpoint(first))
    members = json.loads(env.mgmt("--json", "describeCluster", endpoint=endpoint(second)).stdout)["members"]
    assert sorted(m["hsm_id"] for m in members) == sorted(h["HsmId"] for h in c["Hsms"])

    # KMS reads the same view: a custom key store on the new cluster.
    env.store_id = env.kms.create_custom_key_store(
        CustomKeyStoreName="on-the-api-cluster", CloudHsmClusterId=env.cluster_id, TrustAnchorCertificate=anchor,
        KeyStorePassword=KMSUSER_PASSWORD)["CustomKeyStoreId"]
    env.kms.connect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: env.kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "CONNECTED", timeout=60, what="CONNECTED")
    env.key_id = env.kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.store_id)["KeyMetadata"]["KeyId"]
    env.blobs.append(env.kms.encrypt(KeyId=env.key_id, Plaintext=b"before the move")["CiphertextBlob"])


async def test_kms_needs_two_hsms_in_different_availability_zones(env: Env) -> None:
    c = env.hsm.create_cluster(HsmType="hsm1.medium", SubnetIds=[SUBNETS[2]])["Cluster"]
    with pytest.raises(ClientError) as err:
        env.kms.create_custom_key_store(CustomKeyStoreName="one-zone", CloudHsmClusterId=c["ClusterId"],
                                        TrustAnchorCertificate="x" * 10, KeyStorePassword=KMSUSER_PASSWORD)
    assert err.value.response["Error"]["Code"] == "CloudHsmClusterNotActiveException"
    env.hsm.delete_cluster(ClusterId=c["ClusterId"])
    assert env.hsm.describe_clusters(Filters={"clusterIds": [c["ClusterId"]]})["Clusters"] == []
    deleted = env.hsm.describe_clusters(Filters={"clusterIds": [c["ClusterId"]], "states": ["DELETED"]})["Clusters"]
    assert deleted[0]["State"] == "DELETED"
