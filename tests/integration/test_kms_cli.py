"""``kms`` end to end: the CLI as a subprocess (``python -m kms_frontend.cli``) against a real
kms-frontend and hsm-node processes. Every run is checked: never a traceback, never a password."""
from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsm_node import certs
from protos.hsm.v1 import hsm_pb2 as h
from tests.harness import (
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    free_port,
    three_node_cluster,
    wait_until,
)
from tests.harness import (
    CliResult as Result,
)

WRONG_PASSWORD = "wrongPassword9"
SECRETS = (CU_PASSWORD, WRONG_PASSWORD)
ARN_PREFIX = "arn:aws:kms:us-east-1:111122223333"
USAGE_HEAD = "usage: kms [options] <command> [parameters]\n"


class Kms:
    """Runs ``python -m kms_frontend.cli`` in ``cwd`` with a controlled environment."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        cwd.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_", "AWS_"))}
        # no profile of the machine's ~/.aws may stand in for the credentials a test gives
        base.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        self.env = {**base, **env}

    async def __call__(self, *args: str, **env: str) -> Result:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kms_frontend.cli", *args, cwd=self.cwd, env={**self.env, **env},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        r = Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
        assert "Traceback" not in r.err and "Traceback" not in r.out, r
        for secret in SECRETS:
            assert secret not in r.out and secret not in r.err, f"a password was printed\n{r}"
        return r

    async def ok(self, *args: str, **env: str) -> Result:
        r = await self(*args, **env)
        assert r.rc == 0 and r.err == "", r
        return r

    async def json(self, *args: str, **env: str):
        return (await self.ok(*args, **env)).json()

    async def text(self, *args: str, **env: str) -> str:
        return (await self.ok(*args, "--output", "text", **env)).out.strip()


def service_error(r: Result, exception: str, operation: str, message: str | None = None) -> str:
    """The AWS CLI's form: a blank line, then the error line; exit 254; nothing on stdout."""
    assert r.rc == 254 and r.out == "", r
    prefix = f"\nAn error occurred ({exception}) when calling the {operation} operation: "
    assert r.err.startswith(prefix) and r.err.endswith("\n"), r
    got = r.err[len(prefix):-1]
    if message is not None:
        assert got == message, r
    return got


def usage_error(r: Result, fragment: str) -> None:
    assert r.rc == 252 and r.out == "", r
    assert fragment in r.err, r


# ---------------------------------------------------------------- deployment


@dataclass
class Deployment:
    root: Path
    lab: Lab
    nodes: list[NodeProcess]
    fe: FrontendProcess
    cluster_id: str
    kms: Kms


@pytest.fixture(scope="module")
async def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("kms-cli")
    lab = Lab(root)
    fe: FrontendProcess | None = None
    try:
        nodes = await three_node_cluster(lab)
        fe = FrontendProcess(root, [n.endpoint for n in nodes])
        fe.start()
        await fe.wait_ready()
        cluster_id = (await nodes[0].stub().GetStatus(h.Empty(), timeout=10)).cluster_id
        yield Deployment(root, lab, nodes, fe, cluster_id, Kms(root / "cwd", KMS_ENDPOINT=fe.endpoint, **root_env(fe)))
    finally:
        if fe is not None:
            await fe.stop()
        await lab.close()


def root_env(fe: FrontendProcess) -> dict[str, str]:
    """The variables the CLI signs its calls with (kms-cluster's env file sets the same)."""
    key_id, secret = fe.aws_credentials()
    return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}


@dataclass
class StoreSetup:
    store_id: str
    created: Result
    before: dict
    connected: Result
    waited: Result


@pytest.fixture(scope="module")
async def store(dep: Deployment) -> StoreSetup:
    """The operator's first steps, all through the CLI: create the store, connect it, wait."""
    kms = dep.kms
    created = await kms("create-custom-key-store", "--custom-key-store-name", "cli-store",
                        "--cloud-hsm-cluster-id", dep.cluster_id,
                        "--trust-anchor-certificate", f"file://{dep.lab.anchor.cert_path}",
                        "--key-store-password", CU_PASSWORD)
    store_id = created.json()["CustomKeyStoreId"]
    before = await kms.json("describe-custom-key-stores", "--custom-key-store-id", store_id)
    connected = await kms("connect-custom-key-store", "--custom-key-store-id", store_id)
    waited = await kms("wait", "custom-key-store-connected", "--custom-key-store-id", store_id, "--timeout", "60")
    return StoreSetup(store_id, created, before, connected, waited)


async def new_key(dep: Deployment, store: StoreSetup, *extra: str) -> str:
    return await dep.kms.text("create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store.store_id,
                              *extra, "--query", "KeyMetadata.KeyId")


# ---------------------------------------------------------------- custom key stores


async def test_create_connect_and_wait(dep: Deployment, store: StoreSetup) -> None:
    assert store.created.rc == 0 and store.created.err == ""
    assert re.fullmatch(r'\{\n    "CustomKeyStoreId": "cks-[0-9a-f]{17}"\n\}\n', store.created.out), store.created
    assert store.before["CustomKeyStores"][0]["ConnectionState"] == "DISCONNECTED"
    assert (store.connected.rc, store.connected.out, store.connected.err) == (0, "", ""), store.connected
    assert (store.waited.rc, store.waited.out, store.waited.err) == (0, "", ""), store.waited

    described = await dep.kms.json("describe-custom-key-stores", "--custom-key-store-name", "cli-store")
    assert list(described) == ["CustomKeyStores"]
    entry = described["CustomKeyStores"][0]
    assert list(entry) == ["CustomKeyStoreId", "CustomKeyStoreName", "CloudHsmClusterId", "TrustAnchorCertificate",
                           "ConnectionState", "CreationDate", "CustomKeyStoreType"]
    assert entry["CustomKeyStoreId"] == store.store_id and entry["CloudHsmClusterId"] == dep.cluster_id
    assert entry["TrustAnchorCertificate"] == dep.lab.anchor.cert_pem
    assert entry["ConnectionState"] == "CONNECTED" and entry["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert isinstance(entry["CreationDate"], float) and abs(entry["CreationDate"] - time.time()) < 600
    state = await dep.kms.text("describe-custom-key-stores", "--custom-key-store-id", store.store_id,
                               "--query", "CustomKeyStores[0].ConnectionState")
    assert state == "CONNECTED"

    # a connected store cannot be deleted: the AWS error, exit 254
    r = await dep.kms("delete-custom-key-store", "--custom-key-store-id", store.store_id)
    service_error(r, "CustomKeyStoreInvalidStateException", "DeleteCustomKeyStore")


async def test_wait_fails_with_the_connection_error_code(tmp_path: Path) -> None:
    """A store whose kmsuser password is wrong ends FAILED; the waiter exits non-zero naming the code."""
    lab = Lab(tmp_path)
    fe: FrontendProcess | None = None
    try:
        nodes = await three_node_cluster(lab, n=2)  # AWS needs two active HSMs
        fe = FrontendProcess(tmp_path, [nodes[0].endpoint])
        fe.start()
        await fe.wait_ready()
        cluster_id = (await nodes[0].stub().GetStatus(h.Empty(), timeout=10)).cluster_id
        kms = Kms(tmp_path / "cwd", KMS_ENDPOINT=f"grpc://{fe.endpoint}", **root_env(fe))
        store_id = await kms.text("create-custom-key-store", "--custom-key-store-name", "bad-password",
                                  "--cloud-hsm-cluster-id", cluster_id,
                                  "--trust-anchor-certificate", f"file://{lab.anchor.cert_path}",
                                  "--key-store-password", WRONG_PASSWORD, "--query", "CustomKeyStoreId")
        await kms.ok("connect-custom-key-store", "--custom-key-store-id", store_id)
        r = await kms("wait", "custom-key-store-connected", "--custom-key-store-id", store_id, "--timeout", "60")
        assert r.rc == 255 and r.out == "", r
        assert r.err == ("\nWaiter CustomKeyStoreConnected failed: Waiter encountered a terminal failure state: "
                         "ConnectionState is FAILED (ConnectionErrorCode: INVALID_CREDENTIALS)\n"), r
        code = await kms.text("describe-custom-key-stores", "--custom-key-store-id", store_id,
                              "--query", "CustomKeyStores[0].ConnectionErrorCode")
        assert code == "INVALID_CREDENTIALS"
        # waiting on a store that does not exist fails too (the AWS CLI's waiter wording, exit 255)
        r = await kms("wait", "custom-key-store-connected", "--custom-key-store-id", "cks-1234567890abcdef0",
                      "--timeout", "5")
        assert r.rc == 255 and r.err.startswith(
            "\nWaiter CustomKeyStoreConnected failed: An error occurred (CustomKeyStoreNotFoundException): "), r
    finally:
        if fe is not None:
            await fe.stop()
        await lab.close()


# ---------------------------------------------------------------- keys and crypto


async def test_create_key_then_encrypt_a_file_and_decrypt_it(dep: Deployment, store: StoreSetup,
                                                             tmp_path: Path) -> None:
    kms = dep.kms
    created = await kms.json("create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store.store_id,
                             "--description", "cli key", "--tags", "TagKey=team,TagValue=payments",
                             "TagKey=env,TagValue=")
    md = created["KeyMetadata"]
    assert list(md) == ["AWSAccountId", "KeyId", "Arn", "CreationDate", "Enabled", "Description", "KeyUsage",
                        "KeyState", "Origin", "CustomKeyStoreId", "CloudHsmClusterId", "KeyManager",
                        "CustomerMasterKeySpec", "KeySpec", "EncryptionAlgorithms", "MultiRegion"]
    key_id, arn = md["KeyId"], md["Arn"]
    assert arn == f"{ARN_PREFIX}:key/{key_id}" and md["AWSAccountId"] == "111122223333"
    assert (md["KeyState"], md["Enabled"], md["Origin"], md["Description"]) == ("Enabled", True, "AWS_CLOUDHSM",
                                                                                "cli key")
    assert md["CustomKeyStoreId"] == store.store_id and md["CloudHsmClusterId"] == dep.cluster_id
    assert md["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"] and md["MultiRegion"] is False
    assert isinstance(md["CreationDate"], float)
    tags = await kms.json("list-resource-tags", "--key-id", key_id)
    assert sorted((t["TagKey"], t["TagValue"]) for t in tags["Tags"]) == [("env", ""), ("team", "payments")]

    data = bytes(range(256)) * 4
    (tmp_path / "plain.bin").write_bytes(data)
    blob_b64 = await kms.text("encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path}/plain.bin",
                              "--encryption-context", "purpose=backup,team=payments", "--query", "CiphertextBlob")
    (tmp_path / "ct.bin").write_bytes(base64.b64decode(blob_b64, validate=True))   # | base64 -d > ct.bin

    plain_b64 = await kms.text("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct.bin",
                               "--encryption-context", '{"team": "payments", "purpose": "backup"}',
                               "--query", "Plaintext")
    assert base64.b64decode(plain_b64, validate=True) == data
    full = await kms.json("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct.bin", "--encryption-context",
                          "purpose=backup,team=payments")
    assert full == {"KeyId": arn, "Plaintext": base64.b64encode(data).decode(), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    # the wrong context (or none): InvalidCiphertextException, which carries no message in AWS
    r = await kms("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct.bin")
    assert service_error(r, "InvalidCiphertextException", "Decrypt") == ""
    r = await kms("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct.bin", "--encryption-context",
                  "purpose=backup,team=other")
    service_error(r, "InvalidCiphertextException", "Decrypt")

    # text plaintext: base64 by default; UTF-8 text with raw-in-base64-out; the blob back as a base64 argument
    blob = await kms.text("encrypt", "--key-id", key_id, "--plaintext", "hello world",
                          "--cli-binary-format", "raw-in-base64-out", "--query", "CiphertextBlob")
    out = await kms.text("decrypt", "--ciphertext-blob", blob, "--query", "Plaintext")
    assert base64.b64decode(out) == b"hello world"
    r = await kms("encrypt", "--key-id", key_id, "--plaintext", "hello world")
    assert r.rc == 252 and r.err == '\nInvalid base64: "hello world"\n', r

    # re-encrypt under another key, data keys, random bytes
    other = await new_key(dep, store)
    re_enc = await kms.json("re-encrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct.bin",
                            "--source-encryption-context", "purpose=backup,team=payments",
                            "--destination-key-id", other, "--destination-encryption-context", "x=y")
    assert re_enc["SourceKeyId"] == arn and re_enc["KeyId"] == f"{ARN_PREFIX}:key/{other}"
    back = await kms.text("decrypt", "--ciphertext-blob", re_enc["CiphertextBlob"], "--encryption-context", "x=y",
                          "--query", "Plaintext")
    assert base64.b64decode(back) == data
    dk = await kms.json("generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
    assert len(base64.b64decode(dk["Plaintext"])) == 32 and dk["KeyId"] == arn
    again = await kms.text("decrypt", "--ciphertext-blob", dk["CiphertextBlob"], "--query", "Plaintext")
    assert again == dk["Plaintext"]
    dk = await kms.json("generate-data-key-without-plaintext", "--key-id", key_id, "--number-of-bytes", "16")
    assert list(dk) == ["CiphertextBlob", "KeyId"]
    rnd = await kms.text("generate-random", "--number-of-bytes", "24", "--custom-key-store-id", store.store_id,
                         "--query", "Plaintext")
    assert len(base64.b64decode(rnd)) == 24


async def test_aliases(dep: Deployment, store: StoreSetup) -> None:
    kms = dep.kms
    k1, k2 = await new_key(dep, store), await new_key(dep, store)
    assert (await kms("create-alias", "--alias-name", "alias/cli-app", "--target-key-id", k1)).out == ""
    listed = await kms.json("list-aliases", "--key-id", k1)
    assert [(a["AliasName"], a["AliasArn"], a["TargetKeyId"]) for a in listed["Aliases"]] == [
        ("alias/cli-app", f"{ARN_PREFIX}:alias/cli-app", k1)]
    assert isinstance(listed["Aliases"][0]["CreationDate"], float)
    enc = await kms.json("encrypt", "--key-id", "alias/cli-app", "--plaintext", "aGk=")
    assert enc["KeyId"] == f"{ARN_PREFIX}:key/{k1}"

    await kms.ok("update-alias", "--alias-name", "alias/cli-app", "--target-key-id", k2)
    assert await kms.text("describe-key", "--key-id", "alias/cli-app", "--query", "KeyMetadata.KeyId") == k2
    r = await kms("create-alias", "--alias-name", "alias/cli-app", "--target-key-id", k1)
    service_error(r, "AlreadyExistsException", "CreateAlias",
                  f"An alias with the name {ARN_PREFIX}:alias/cli-app already exists")
    text = await kms.text("list-aliases", "--key-id", k2)
    assert text.startswith(f"ALIASES\t{ARN_PREFIX}:alias/cli-app\talias/cli-app\t"), text

    await kms.ok("delete-alias", "--alias-name", "alias/cli-app")
    r = await kms("describe-key", "--key-id", "alias/cli-app")
    service_error(r, "NotFoundException", "DescribeKey")
    assert (await kms.json("list-aliases", "--key-id", k2)) == {"Aliases": []}


# ---------------------------------------------------------------- errors


async def test_bad_key_id_prints_the_aws_error_and_exits_254(dep: Deployment, store: StoreSetup) -> None:
    r = await dep.kms("describe-key", "--key-id", "nope")
    assert r.err == "\nAn error occurred (NotFoundException) when calling the DescribeKey operation: Invalid keyId 'nope'\n"
    service_error(r, "NotFoundException", "DescribeKey", "Invalid keyId 'nope'")
    missing = "1234abcd-12ab-34cd-56ef-1234567890ab"
    r = await dep.kms("encrypt", "--key-id", missing, "--plaintext", "aGk=")
    service_error(r, "NotFoundException", "Encrypt", f"Key '{ARN_PREFIX}:key/{missing}' does not exist")


async def test_invalid_state_errors(dep: Deployment, store: StoreSetup) -> None:
    kms = dep.kms
    key_id = await new_key(dep, store)
    arn = f"{ARN_PREFIX}:key/{key_id}"
    await kms.ok("disable-key", "--key-id", key_id)
    r = await kms("encrypt", "--key-id", key_id, "--plaintext", "aGk=")
    service_error(r, "DisabledException", "Encrypt", f"{arn} is disabled.")

    scheduled = await kms.json("schedule-key-deletion", "--key-id", key_id, "--pending-window-in-days", "7")
    assert list(scheduled) == ["KeyId", "DeletionDate", "KeyState", "PendingWindowInDays"]
    assert (scheduled["KeyId"], scheduled["KeyState"], scheduled["PendingWindowInDays"]) == (arn, "PendingDeletion", 7)
    assert abs(scheduled["DeletionDate"] - (time.time() + 7 * 86400)) < 600
    md = (await kms.json("describe-key", "--key-id", key_id))["KeyMetadata"]
    assert md["DeletionDate"] == scheduled["DeletionDate"] and md["Enabled"] is False

    r = await kms("encrypt", "--key-id", key_id, "--plaintext", "aGk=")
    service_error(r, "KMSInvalidStateException", "Encrypt", f"{arn} is pending deletion.")
    r = await kms("enable-key", "--key-id", key_id)
    service_error(r, "KMSInvalidStateException", "EnableKey", f"{arn} is pending deletion.")

    assert (await kms.json("cancel-key-deletion", "--key-id", key_id)) == {"KeyId": arn}
    assert await kms.text("describe-key", "--key-id", key_id, "--query", "KeyMetadata.KeyState") == "Disabled"
    r = await kms("cancel-key-deletion", "--key-id", key_id)
    service_error(r, "KMSInvalidStateException", "CancelKeyDeletion")


async def test_usage_errors_exit_252_before_calling(dep: Deployment) -> None:
    kms = dep.kms
    r = await kms("encrypt", "--key-id", "k")
    usage_error(r, "kms: error: the following arguments are required: --plaintext")
    assert r.err.startswith(USAGE_HEAD)
    usage_error(await kms("list-keys", "--bogus"), "kms: error: Unknown options: --bogus")
    usage_error(await kms("frobnicate"), "Invalid choice 'frobnicate', valid choices are:")
    usage_error(await kms("tag-resource", "--key-id", "k", "--tags", "Key=a,Value=b"),
                'Unknown parameter in Tags[0]: "Key", must be one of: TagKey, TagValue')
    usage_error(await kms("encrypt", "--key-id", "k", "--plaintext", "fileb:///nonexistent/file"),
                "Error parsing parameter '--plaintext': Unable to load paramfile fileb:///nonexistent/file")
    r = await kms("update-custom-key-store", "--custom-key-store-id", "cks-1", "--key-store-password",
                  CU_PASSWORD, CU_PASSWORD)
    usage_error(r, "Unknown options: ***")        # the runner asserts the password itself never shows
    r = await kms("help")
    assert r.rc == 0 and "create-custom-key-store" in r.out and "list-orphaned-key-material" in r.out


async def test_no_frontend_at_the_endpoint_exits_255(tmp_path: Path) -> None:
    port = free_port()
    r = await Kms(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE01", AWS_SECRET_ACCESS_KEY="x" * 40)(
        "list-keys", "--endpoint-url", f"grpc://127.0.0.1:{port}")
    assert (r.rc, r.out, r.err) == (255, "", f'\nCould not connect to the endpoint URL: "grpc://127.0.0.1:{port}"\n')


# ---------------------------------------------------------------- env file, pagination, operator extensions


async def test_env_file_supplies_the_endpoint_and_the_real_environment_wins(dep: Deployment, tmp_path: Path) -> None:
    (tmp_path / ".kms-cluster").mkdir()
    key_id, secret = dep.fe.aws_credentials()
    (tmp_path / ".kms-cluster" / "env").write_text(
        f"# written by kms-cluster\nKMS_ENDPOINT=127.0.0.1:{dep.fe.port}\nHSM_CO_PASSWORD={CU_PASSWORD}\n"
        f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    bare = Kms(tmp_path)
    assert "Keys" in (await bare.json("list-keys"))
    other = tmp_path / "other.env"
    other.write_text(f"KMS_ENDPOINT=127.0.0.1:{free_port()}\nKMS_OUTPUT=text\n"
                     f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    r = await bare("list-keys", KMS_ENV_FILE=str(other))
    assert r.rc == 255 and "Could not connect to the endpoint URL" in r.err, r
    r = await bare("list-keys", "--query", "Keys[0].KeyId", KMS_ENV_FILE=str(other), KMS_ENDPOINT=dep.fe.endpoint)
    assert r.rc == 0 and not r.out.startswith('"'), r       # the file's KMS_OUTPUT=text applies
    r = await bare("list-keys", KMS_ENV_FILE=str(tmp_path / "missing.env"))
    assert r.rc == 253 and "missing.env" in r.err, r


async def test_list_keys_pages_like_the_aws_cli(dep: Deployment, store: StoreSetup) -> None:
    kms = dep.kms
    for _ in range(3):
        await new_key(dep, store)
    everything = [k["KeyId"] for k in (await kms.json("list-keys", "--page-size", "2"))["Keys"]]
    assert len(everything) >= 3 and len(set(everything)) == len(everything)
    first = await kms.json("list-keys", "--page-size", "2", "--max-items", "3")
    assert [k["KeyId"] for k in first["Keys"]] == everything[:3] and "NextToken" in first
    rest = await kms.json("list-keys", "--page-size", "2", "--starting-token", first["NextToken"])
    assert [k["KeyId"] for k in rest["Keys"]] == everything[3:]
    page = await kms.json("list-keys", "--limit", "1", "--no-paginate")
    assert len(page["Keys"]) == 1 and page["Truncated"] is True and page["NextMarker"]
    nxt = await kms.json("list-keys", "--limit", "1", "--marker", page["NextMarker"])
    assert [k["KeyId"] for k in nxt["Keys"]] == everything[1:2]


async def test_operator_extensions(dep: Deployment, store: StoreSetup) -> None:
    orphans = await dep.kms.json("list-orphaned-key-material", "--custom-key-store-id", store.store_id)
    assert orphans == {"Orphans": []}
    events = await dep.kms.json("list-audit-events", "--limit", "5")
    assert isinstance(events["Events"], list)
    r = await dep.kms("list-orphaned-key-material", "--custom-key-store-id", "cks-1234567890abcdef0")
    service_error(r, "CustomKeyStoreNotFoundException", "ListOrphanedKeyMaterial")


# ---------------------------------------------------------------- TLS to the frontend


def write_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    ca_key, ca_cert = certs.make_trust_anchor("kms-cli-test-ca")
    server_key = certs.new_key()
    cert = certs.issue_node_cert(ca_key, ca_cert, server_key, "frontend", ["127.0.0.1", "localhost"])
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_text(certs.cert_pem(ca_cert))
    paths[1].write_text(certs.cert_pem(cert))
    paths[2].write_bytes(certs.key_pem(server_key))
    return paths


async def test_tls_with_ca_file(dep: Deployment, tmp_path: Path) -> None:
    ca_file, cert, key = write_tls_material(tmp_path / "tls")
    other_ca, _, _ = write_tls_material(tmp_path / "other")
    key_id, secret = dep.fe.aws_credentials()
    fe = FrontendProcess(tmp_path, [n.endpoint for n in dep.nodes], name="frontend-tls",
                         env={"KMS_TLS_CERT": str(cert), "KMS_TLS_KEY": str(key),
                              "KMS_AWS_ACCESS_KEYS": f"{key_id}:{secret}"})
    kms = Kms(tmp_path / "cwd", KMS_ENDPOINT=fe.endpoint, **root_env(dep.fe))
    fe.start()
    try:
        async def serving() -> bool:
            assert fe.proc is not None and fe.proc.poll() is None, fe.log_path.read_text()[-2000:]
            return (await kms("describe-custom-key-stores", "--ca-file", str(ca_file))).rc == 0
        await wait_until(serving, timeout=30, interval=0.3, what="the TLS frontend")

        assert await kms.json("describe-custom-key-stores", KMS_CA_FILE=str(ca_file)) == {"CustomKeyStores": []}
        assert await kms.json("list-keys", "--endpoint-url", f"grpcs://localhost:{fe.port}", "--ca-file",
                              str(ca_file)) == {"Keys": []}
        r = await kms("list-keys", "--ca-file", str(other_ca))
        assert r.rc == 255 and r.out == "" and r.err.startswith(f"\nSSL validation failed for grpcs://{fe.endpoint}"), r
        assert f"the CA in {other_ca}" in r.err and "did not issue" in r.err and "--ca-file" in r.err, r
        assert "CERTIFICATE_VERIFY_FAILED" not in r.err, r
        r = await kms("list-keys")                       # plaintext to a TLS port
        assert r.rc == 255 and "Could not connect to the endpoint URL" in r.err, r
        r = await kms("list-keys", "--ca-file", str(tmp_path / "missing.pem"))
        assert r.rc == 253 and "Unable to read the CA file" in r.err, r
    finally:
        await fe.stop()
