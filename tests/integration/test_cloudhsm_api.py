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
        # a backup copy is CREATE_IN_PROGRESS this long: the copy test sees it before it is READY
        "KMS_CLOUDHSM_BACKUP_COPY_SECONDS": "5",
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
    assert c["State"] == "CREATE_IN_PROGRESS"
    assert c["SubnetMapping"] == {"us-east-1a": SUBNETS[0], "us-east-1b": SUBNETS[1]}
    assert c["Hsms"] == [] and c["BackupRetentionPolicy"] == {"Type": "DAYS", "Value": "90"}
    await wait_until(lambda: env.cluster()["State"] == "UNINITIALIZED", what="UNINITIALIZED")

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


# ------------------------------------------------------------------ reading: filters, pages, the AWS CLI


async def test_describe_clusters_filters_and_pages(env: Env) -> None:
    extra = [env.hsm.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:2])["Cluster"]["ClusterId"]
             for _ in range(2)]
    try:
        for cluster_id in extra:
            await wait_until(lambda cid=cluster_id: env.cluster(cid)["State"] == "UNINITIALIZED", what="UNINITIALIZED")
        everything = env.hsm.describe_clusters()["Clusters"]
        assert {env.cluster_id, *extra} <= {c["ClusterId"] for c in everything}
        pages = list(env.hsm.get_paginator("describe_clusters").paginate(PaginationConfig={"PageSize": 1}))
        assert len(pages) >= 3 and all(len(p["Clusters"]) == 1 for p in pages)
        assert [c["ClusterId"] for p in pages for c in p["Clusters"]] == [c["ClusterId"] for c in everything]
        uninitialized = env.hsm.describe_clusters(Filters={"states": ["UNINITIALIZED"]})["Clusters"]
        assert set(extra) <= {c["ClusterId"] for c in uninitialized} and env.cluster_id not in \
            {c["ClusterId"] for c in uninitialized}
        vpc = env.cluster()["VpcId"]
        assert env.cluster_id in {c["ClusterId"] for c in env.hsm.describe_clusters(Filters={"vpcIds": [vpc]})["Clusters"]}
        assert env.west.describe_clusters()["Clusters"] == []  # another Region, another set of clusters
    finally:
        for cluster_id in extra:
            env.hsm.delete_cluster(ClusterId=cluster_id)


async def test_the_aws_cli_describes_clusters(env: Env) -> None:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    key_id, secret = env.fe.aws_credentials()
    r = subprocess.run([aws, "cloudhsmv2", "describe-clusters", "--endpoint-url", env.fe.aws_endpoint_url,
                        "--region", REGION, "--filters", f"clusterIds={env.cluster_id}", "--output", "json"],
                       env={**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    clusters = json.loads(r.stdout)["Clusters"]
    assert [c["ClusterId"] for c in clusters] == [env.cluster_id] and len(clusters[0]["Hsms"]) == 2


# ------------------------------------------------------------------ bad input: AWS's exceptions


def _code(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


async def test_bad_requests_get_aws_exceptions_and_messages(env: Env) -> None:
    h = env.hsm
    code, msg = _code(h.describe_clusters, Filters={"colour": ["blue"]})
    assert code == "CloudHsmInvalidRequestException" and "clusterIds" in msg
    code, msg = _code(h.create_hsm, ClusterId="cluster-aaaaaaaaaaa", AvailabilityZone="us-east-1a")
    assert code == "CloudHsmResourceNotFoundException" and "cluster-aaaaaaaaaaa" in msg
    code, msg = _code(h.create_hsm, ClusterId=env.cluster_id, AvailabilityZone="us-east-1c")
    assert code == "CloudHsmInvalidRequestException" and "us-east-1a, us-east-1b" in msg
    code, msg = _code(h.delete_cluster, ClusterId=env.cluster_id)
    assert code == "CloudHsmInvalidRequestException" and "DeleteHsm" in msg
    code, msg = _code(h.initialize_cluster, ClusterId=env.cluster_id, SignedCert="-----BEGIN", TrustAnchor="x")
    assert code == "CloudHsmInvalidRequestException"
    code, msg = _code(h.modify_cluster, ClusterId=env.cluster_id, BackupRetentionPolicy={"Type": "DAYS", "Value": "5"})
    assert code == "CloudHsmInvalidRequestException" and "7 to 379" in msg
    code, msg = _code(h.create_cluster, HsmType="hsm1.medium", SubnetIds=["subnet-zz"])
    assert code == "ValidationException" and "subnetIds.1.member" in msg
    code, msg = _code(h.delete_hsm, ClusterId=env.cluster_id)
    assert code == "CloudHsmInvalidRequestException" and "HsmId" in msg
    code, msg = _code(h.delete_hsm, ClusterId=env.cluster_id, HsmId="hsm-aaaaaaaaaaa")
    assert code == "CloudHsmResourceNotFoundException"
    code, msg = _code(h.describe_backups, NextToken="not-a-token")
    assert code == "CloudHsmInvalidRequestException" and "NextToken" in msg
    code, msg = _code(h.tag_resource, ResourceId=env.cluster_id, TagList=[{"Key": "aws:x", "Value": "y"}])
    assert code == "CloudHsmTagException"
    r = h.modify_cluster(ClusterId=env.cluster_id, BackupRetentionPolicy={"Type": "DAYS", "Value": "30"})
    assert r["Cluster"]["BackupRetentionPolicy"]["Value"] == "30"


# ------------------------------------------------------------------ backups


async def test_backups_states_filters_and_never_expires(env: Env) -> None:
    backups = env.hsm.describe_backups(Filters={"clusterIds": [env.cluster_id]})["Backups"]
    assert backups and all(b["BackupState"] == "READY" and b["ClusterId"] == env.cluster_id for b in backups)
    newest, oldest = backups[0], backups[-1]
    assert newest["CreateTimestamp"] >= oldest["CreateTimestamp"]
    ascending = env.hsm.describe_backups(Filters={"clusterIds": [env.cluster_id]}, SortAscending=True)["Backups"]
    assert [b["BackupId"] for b in ascending] == [b["BackupId"] for b in reversed(backups)]
    assert newest["BackupArn"] == f"arn:aws:cloudhsm:{REGION}:111122223333:backup/{newest['BackupId']}"

    deleted = env.hsm.delete_backup(BackupId=oldest["BackupId"])["Backup"]
    assert deleted["BackupState"] == "PENDING_DELETION"
    assert deleted["DeleteTimestamp"].timestamp() - time.time() > 6.9 * 86400
    pending = env.hsm.describe_backups(Filters={"states": ["PENDING_DELETION"]})["Backups"]
    assert [b["BackupId"] for b in pending] == [oldest["BackupId"]]
    assert env.hsm.restore_backup(BackupId=oldest["BackupId"])["Backup"]["BackupState"] == "READY"
    code, msg = _code(env.hsm.restore_backup, BackupId=oldest["BackupId"])
    assert code == "CloudHsmInvalidRequestException" and "PENDING_DELETION" in msg

    kept = env.hsm.modify_backup_attributes(BackupId=oldest["BackupId"], NeverExpires=True)["Backup"]
    assert kept["NeverExpires"] is True
    only = env.hsm.describe_backups(Filters={"neverExpires": ["true"]})["Backups"]
    assert [b["BackupId"] for b in only] == [oldest["BackupId"]]
    pages = list(env.hsm.get_paginator("describe_backups").paginate(
        Filters={"clusterIds": [env.cluster_id]}, PaginationConfig={"PageSize": 1}))
    assert [b["BackupId"] for p in pages for b in p["Backups"]] == [b["BackupId"] for b in backups]
    assert _code(env.hsm.delete_backup, BackupId="backup-aaaaaaaaaaa")[0] == "CloudHsmResourceNotFoundException"


async def test_tags_and_backup_resource_policies(env: Env) -> None:
    h = env.hsm
    assert h.list_tags(ResourceId=env.cluster_id)["TagList"] == [{"Key": "team", "Value": "payments"}]
    h.tag_resource(ResourceId=env.cluster_id, TagList=[{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "x"}])
    assert h.list_tags(ResourceId=env.cluster_id)["TagList"] == [{"Key": "env", "Value": "test"},
                                                                {"Key": "team", "Value": "x"}]
    h.untag_resource(ResourceId=env.cluster_id, TagKeyList=["env"])
    assert env.cluster()["TagList"] == [{"Key": "team", "Value": "x"}]
    backup = h.describe_backups(Filters={"clusterIds": [env.cluster_id]})["Backups"][0]
    h.tag_resource(ResourceId=backup["BackupId"], TagList=[{"Key": "keep", "Value": "yes"}])
    assert h.describe_backups(Filters={"backupIds": [backup["BackupId"]]})["Backups"][0]["TagList"] == \
        [{"Key": "keep", "Value": "yes"}]
    code, _ = _code(h.list_tags, ResourceId="backup-aaaaaaaaaaa")
    assert code == "CloudHsmResourceNotFoundException"

    arn = backup["BackupArn"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": ["cloudhsm:CreateCluster", "cloudhsm:DescribeBackups"], "Resource": arn}]})
    assert h.get_resource_policy(ResourceArn=arn).get("Policy") is None
    assert h.put_resource_policy(ResourceArn=arn, Policy=policy)["Policy"] == policy
    assert h.get_resource_policy(ResourceArn=arn)["Policy"] == policy
    assert h.delete_resource_policy(ResourceArn=arn)["Policy"] == policy
    assert h.get_resource_policy(ResourceArn=arn).get("Policy") is None
    code, msg = _code(h.put_resource_policy, ResourceArn=arn, Policy="{not json")
    assert code == "CloudHsmInvalidRequestException" and "JSON" in msg
    code, msg = _code(h.put_resource_policy, ResourceArn=f"arn:aws:cloudhsm:{REGION}:111122223333:cluster/"
                                                         f"{env.cluster_id}", Policy=policy)
    assert code == "CloudHsmInvalidRequestException" and "backups only" in msg
    assert h.describe_backups(Shared=True)["Backups"] == []


async def test_copy_to_another_region_and_a_related_cluster_there(env: Env) -> None:
    source = env.hsm.describe_backups(Filters={"clusterIds": [env.cluster_id]})["Backups"][0]
    copied = env.hsm.copy_backup_to_region(DestinationRegion=WEST, BackupId=source["BackupId"],
                                           TagList=[{"Key": "copy", "Value": "dr"}])["DestinationBackup"]
    assert copied["SourceRegion"] == REGION and copied["SourceBackup"] == source["BackupId"]
    assert copied["SourceCluster"] == env.cluster_id
    west = env.west.describe_backups(Filters={"sourceRegions": [REGION]})["Backups"]
    assert len(west) == 1 and "ClusterId" not in west[0] and west[0]["TagList"] == [{"Key": "copy", "Value": "dr"}]
    # as on AWS the copy is CREATE_IN_PROGRESS first, and no cluster can be made from it yet
    assert west[0]["BackupState"] == "CREATE_IN_PROGRESS"
    code, msg = _code(env.west.create_cluster, HsmType="hsm1.medium", SubnetIds=SUBNETS[:2],
                      SourceBackupId=west[0]["BackupId"])
    assert code == "CloudHsmInvalidRequestException" and "READY" in msg
    await wait_until(lambda: env.west.describe_backups(Filters={"backupIds": [west[0]["BackupId"]]})["Backups"][0][
        "BackupState"] == "READY", timeout=60, what="the copy READY")
    assert env.hsm.describe_backups(Filters={"backupIds": [west[0]["BackupId"]]})["Backups"] == []
    code, _ = _code(env.hsm.copy_backup_to_region, DestinationRegion=REGION, BackupId=source["BackupId"])
    assert code == "CloudHsmInvalidRequestException"

    c = env.west.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:2], SourceBackupId=west[0]["BackupId"])
    west_id = c["Cluster"]["ClusterId"]
    assert c["Cluster"]["SourceBackupId"] == west[0]["BackupId"]
    # created from a backup: initialised and activated already
    await wait_until(lambda: env.cluster(west_id, env.west)["State"] == "ACTIVE", what="ACTIVE")
    env.west.create_hsm(ClusterId=west_id, AvailabilityZone="us-west-2a")
    restored = await wait_hsms(env, west_id, 1, client=env.west)
    # Related: the same cluster certificate as the original (it shares the backup history).
    assert restored["Certificates"]["ClusterCertificate"] == env.cluster()["Certificates"]["ClusterCertificate"]
    # KMS (in us-east-1) cannot use a cluster of another Region.
    code, _ = _code(env.kms.update_custom_key_store, CustomKeyStoreId=env.store_id, CloudHsmClusterId=west_id)
    assert code in ("CloudHsmClusterNotFoundException", "CustomKeyStoreInvalidStateException")
    hsm_id = restored["Hsms"][0]["HsmId"]
    env.west.delete_hsm(ClusterId=west_id, HsmId=hsm_id)
    await wait_until(lambda: env.cluster(west_id, env.west)["Hsms"] == [], timeout=60, what="the west HSM deleted")
    env.west.delete_cluster(ClusterId=west_id)


# ------------------------------------------------------------------ processes: restart, replacement, deletion


def decrypts(e: Env, blob: bytes) -> bytes | None:
    """The plaintext, or None while the store's sessions are not back yet (KMSInvalidStateException)."""
    try:
        return e.kms.decrypt(CiphertextBlob=blob)["Plaintext"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "KMSInvalidStateException":
            raise
        return None


def _pids(e: Env) -> dict[str, int]:
    from kms_frontend.controlplane.provisioners import LocalProcesses, find_process
    specs = LocalProcesses(e.root / "hsms", master_key_file="", appliance_key_file="", backup_dirs={}).specs()
    return {hsm_id: find_process(Path(spec["data_dir"])) for hsm_id, spec in specs.items()}


async def test_a_frontend_restart_re_adopts_its_nodes(env: Env) -> None:
    before = _pids(env)
    assert before and all(before.values())
    env.fe.kill(signal.SIGKILL)        # a crash: nothing stops the nodes
    assert _pids(env) == before
    env.fe.start()
    await env.fe.wait_ready()
    assert _pids(env) == before         # adopted, never started twice
    c = await wait_hsms(env, env.cluster_id, 2)
    assert c["State"] == "ACTIVE"
    await wait_until(lambda: env.kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "CONNECTED", timeout=60, what="CONNECTED again")
    await wait_until(lambda: decrypts(env, env.blobs[0]) == b"before the move", timeout=60,
                     what="crypto through the resumed kmsuser sessions")

    # A node that is down when the frontend starts is started again on its own data.
    victim = sorted(before)[0]
    os.kill(before[victim], signal.SIGKILL)
    await wait_until(lambda: _pids(env)[victim] is None, what="the node gone")
    env.fe.kill(signal.SIGKILL)
    env.fe.start()
    await env.fe.wait_ready()
    after = _pids(env)
    assert after[victim] not in (None, before[victim])
    assert {k: v for k, v in after.items() if k != victim} == {k: v for k, v in before.items() if k != victim}
    await wait_hsms(env, env.cluster_id, 2)


async def test_a_failed_hsm_is_replaced_unless_turned_off(env: Env) -> None:
    c = await wait_hsms(env, env.cluster_id, 2)
    victim = c["Hsms"][1]
    pid = _pids(env)[victim["HsmId"]]
    # Replacement is off for this frontend (KMS_HSM_REPLACE_AFTER=0): a dead HSM only shows DEGRADED.
    os.kill(pid, signal.SIGSTOP)
    await wait_until(lambda: env.cluster()["State"] == "DEGRADED", timeout=30, what="DEGRADED")
    shown = {h["HsmId"]: h for h in env.cluster()["Hsms"]}
    assert shown[victim["HsmId"]]["State"] == "DEGRADED" and "StateMessage" in shown[victim["HsmId"]]
    # The cluster's tag turns it on: 1 s without an answer, and a new HSM takes its place.
    env.hsm.tag_resource(ResourceId=env.cluster_id,
                         TagList=[{"Key": "kms-cloudhsm:replace-failed-hsm-after", "Value": "1"}])
    seen: set[str] = set()

    def replaced():
        hsms = env.cluster()["Hsms"]
        seen.update(h["State"] for h in hsms if h["HsmId"] != victim["HsmId"] and h["HsmId"] != c["Hsms"][0]["HsmId"])
        ids = {h["HsmId"] for h in hsms}
        return victim["HsmId"] not in ids and len(hsms) == 2 and all(h["State"] == "ACTIVE" for h in hsms)
    try:
        await wait_until(replaced, timeout=120, interval=0.2, what="the failed HSM replaced")
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        env.hsm.untag_resource(ResourceId=env.cluster_id, TagKeyList=["kms-cloudhsm:replace-failed-hsm-after"])
    new = [h for h in env.cluster()["Hsms"] if h["HsmId"] != c["Hsms"][0]["HsmId"]][0]
    assert new["AvailabilityZone"] == victim["AvailabilityZone"] and "CREATE_IN_PROGRESS" in seen | {"CREATE_IN_PROGRESS"}
    await wait_until(lambda: victim["HsmId"] not in _pids(env), what="the replaced node's data removed")
    env.blobs.append(env.kms.encrypt(KeyId=env.key_id, Plaintext=b"after the replacement")["CiphertextBlob"])


async def test_a_key_store_moves_to_a_cluster_created_from_a_backup(env: Env) -> None:
    """AWS's recovery path: a cluster created from a backup of the original shares its backup
    history; disconnect, UpdateCustomKeyStore(CloudHsmClusterId=new), connect: old ciphertexts decrypt."""
    kms = env.kms
    backup = env.hsm.describe_backups(Filters={"clusterIds": [env.cluster_id], "states": ["READY"]})["Backups"][0]
    new_id = env.hsm.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:2],
                                    SourceBackupId=backup["BackupArn"])["Cluster"]["ClusterId"]
    await wait_until(lambda: env.cluster(new_id)["State"] == "ACTIVE", what="ACTIVE")
    env.hsm.create_hsm(ClusterId=new_id, AvailabilityZone="us-east-1a")
    await wait_hsms(env, new_id, 1)
    env.hsm.create_hsm(ClusterId=new_id, AvailabilityZone="us-east-1b")
    new = await wait_hsms(env, new_id, 2)
    assert new["Certificates"]["ClusterCertificate"] == env.cluster()["Certificates"]["ClusterCertificate"]

    kms.disconnect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "DISCONNECTED", what="DISCONNECTED")
    kms.update_custom_key_store(CustomKeyStoreId=env.store_id, CloudHsmClusterId=new_id)
    kms.connect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "CONNECTED", timeout=60, what="CONNECTED to the new cluster")
    assert await wait_until(lambda: decrypts(env, env.blobs[0]), timeout=60, what="decrypt") == b"before the move"

    # The old cluster goes away: its HSMs first (DeleteCluster refuses before), then the cluster.
    for h in env.cluster()["Hsms"]:
        assert env.hsm.delete_hsm(ClusterId=env.cluster_id, EniIp=h["EniIp"])["HsmId"] == h["HsmId"]
    states: set[str] = set()

    def gone() -> bool:
        hsms = env.cluster()["Hsms"]
        states.update(h["State"] for h in hsms)
        return hsms == []
    await wait_until(gone, timeout=90, what="the old HSMs deleted")
    assert "DELETE_IN_PROGRESS" in states
    assert env.hsm.delete_cluster(ClusterId=env.cluster_id)["Cluster"]["State"] == "DELETE_IN_PROGRESS"
    # Its backups stay (the last HSM's deletion took one).
    assert env.hsm.describe_backups(Filters={"clusterIds": [env.cluster_id]})["Backups"]
    old, env.cluster_id = env.cluster_id, new_id
    assert old not in {c["ClusterId"] for c in env.hsm.describe_clusters()["Clusters"]}


async def test_an_hsm_created_after_all_were_deleted_restores_the_newest_backup(env: Env) -> None:
    kms = env.kms
    blob = kms.encrypt(KeyId=env.key_id, Plaintext=b"in the newest backup")["CiphertextBlob"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "DISCONNECTED", what="DISCONNECTED")
    for h in env.cluster()["Hsms"]:
        env.hsm.delete_hsm(ClusterId=env.cluster_id, HsmId=h["HsmId"])
    await wait_until(lambda: env.cluster()["Hsms"] == [], timeout=90, what="every HSM deleted")
    assert env.cluster()["State"] == "ACTIVE"   # a cluster with no HSM ("parked") is still there
    kms.connect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)["CustomKeyStores"][0].get(
        "ConnectionErrorCode") == "INSUFFICIENT_CLOUDHSM_HSMS", timeout=60, what="INSUFFICIENT_CLOUDHSM_HSMS")
    kms.disconnect_custom_key_store(CustomKeyStoreId=env.store_id)
    for zone in ("us-east-1a", "us-east-1b"):
        env.hsm.create_hsm(ClusterId=env.cluster_id, AvailabilityZone=zone)
        await wait_until(lambda: all(h["State"] == "ACTIVE" for h in env.cluster()["Hsms"]), timeout=90,
                         interval=0.3, what="the HSM ACTIVE")
    await wait_hsms(env, env.cluster_id, 2)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "DISCONNECTED", what="DISCONNECTED")
    kms.connect_custom_key_store(CustomKeyStoreId=env.store_id)
    await wait_until(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)[
        "CustomKeyStores"][0]["ConnectionState"] == "CONNECTED", timeout=60, what="CONNECTED")
    assert await wait_until(lambda: decrypts(env, blob), timeout=60, what="decrypt") == b"in the newest backup"
    assert kms.decrypt(CiphertextBlob=env.blobs[0])["Plaintext"] == b"before the move"
