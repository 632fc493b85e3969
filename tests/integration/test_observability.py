"""Metrics and logs of real processes: three hsm-node processes and a kms-frontend, each with
``--metrics-listen`` (KMS_METRICS_LISTEN for the frontend) and debug logging.

* /metrics moves: requests by operation and outcome (errors by AWS exception name, counted
  alike by the gRPC and the AWS JSON adapter), latency per operation and per HSM node, stream
  batch sizes, store connection state, open sessions; on the nodes RPCs by method and code,
  crypto ops in streams, keys, users, state, backup age, replication lag and peer health (0
  after convergence, > 0 for a killed peer after writes).
* Logs: one JSON object per line; a request id given by the caller (or made by the frontend)
  is in the frontend's request event and in the log lines of the nodes that served it; no
  password, session token, plaintext or data key appears anywhere, even at debug level.
"""
from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import grpc
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from kms_frontend.secret_box import SecretBox
from kms_frontend.store.sqlite import SqliteRepository
from protos.hsm.v1 import hsm_pb2 as h
from protos.kms.v1 import kms_pb2 as k
from tests.harness import (
    CO_PASSWORD,
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    co,
    free_port,
    wait_until,
)
from tests.integration.test_keys_common import CALL_TIMEOUT, KmsEnv, aws_error

REGION = "us-east-1"


# ---------------------------------------------------------------- scraping


class Samples(dict):
    """{(sample name, sorted labels): value} of one scrape."""

    def value(self, name: str, **labels: str) -> float | None:
        return self.get((name, tuple(sorted(labels.items()))))

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample of ``name`` whose labels include ``labels``."""
        return sum(v for (n, ls), v in self.items() if n == name and labels.items() <= dict(ls).items())

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for (n, ls) in self if n == name]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    out = Samples()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ---------------------------------------------------------------- the deployment


@dataclass
class Obs:
    env: KmsEnv
    fe_metrics: int
    node_metrics: dict[str, int] = field(default_factory=dict)  # node name -> metrics port
    node_ids: dict[str, str] = field(default_factory=dict)      # node name -> node id

    @property
    def kms(self):
        return self.env.kms

    def node_scrape(self, node: NodeProcess) -> Samples:
        return scrape(self.node_metrics[node.name])

    def boto(self):
        key_id, secret = self.env.fe.aws_credentials()
        return boto3.client("kms", endpoint_url=self.env.fe.aws_endpoint_url, region_name=REGION,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)


async def metered_cluster(lab: Lab, n: int) -> tuple[list[NodeProcess], dict[str, int]]:
    """As harness.three_node_cluster, with /metrics and debug logs on every node."""
    nodes, ports = [], {}
    for _ in range(n):
        port = free_port()
        node = await lab.start_node(extra_args=["--metrics-listen", f"127.0.0.1:{port}", "--log-level", "debug"])
        nodes.append(node)
        ports[node.name] = port
    await lab.init_active(nodes[0])
    token = await co(nodes[0].stub())
    for node in nodes[1:]:
        await nodes[0].stub().AddNode(h.AddNodeRequest(session_token=token, endpoint=node.endpoint,
                                                       peer_endpoint=node.peer_endpoint))
        node.anchor_pem = lab.anchor.cert_pem
        await node.reset_channel()
    await nodes[0].stub().CreateUser(h.CreateUserRequest(session_token=token, user_type=h.CU, username="kmsuser",
                                                         password=CU_PASSWORD))
    return nodes, ports


@pytest.fixture(scope="module")
async def obs(tmp_path_factory):
    root = tmp_path_factory.mktemp("observability")
    lab = Lab(root)
    fe: FrontendProcess | None = None
    try:
        nodes, ports = await metered_cluster(lab, 3)
        fe_port = free_port()
        fe = FrontendProcess(root, [n.endpoint for n in nodes],
                             env={"KMS_METRICS_LISTEN": f"127.0.0.1:{fe_port}", "KMS_LOG_LEVEL": "debug"})
        fe.start()
        await fe.wait_ready()
        env = KmsEnv(root, lab, nodes, fe)
        env.store_id, env.cluster_id = await env.create_store(lab, nodes, "observed")
        await env.connect()
        ids = {n.name: (await n.stub().GetStatus(h.Empty(), timeout=CALL_TIMEOUT)).node_id for n in nodes}
        yield Obs(env, fe_port, ports, ids)
    finally:
        if fe is not None:
            await fe.stop()
        await lab.close()


@pytest.fixture(scope="module")
async def key(obs):
    return await obs.env.create_key(description="observed key")


# ---------------------------------------------------------------- frontend metrics


async def test_frontend_counts_requests_errors_latency_and_store_state(obs, key):
    env = obs.env
    before = scrape(obs.fe_metrics)
    for i in range(5):
        await env.encrypt(key.key_id, f"payload {i}".encode())
    await aws_error(env.encrypt("alias/does-not-exist", b"x"))
    # the AWS JSON adapter counts the same way, under the same operation names
    client = obs.boto()
    for _ in range(2):
        client.encrypt(KeyId=key.key_id, Plaintext=b"via boto3")
    with pytest.raises(ClientError) as err:
        client.describe_key(KeyId=str(uuid.uuid4()))
    assert err.value.response["Error"]["Code"] == "NotFoundException"
    await aws_error(env.describe(str(uuid.uuid4())))
    after = scrape(obs.fe_metrics)

    def delta(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert delta("kms_requests_total", operation="Encrypt", outcome="ok") == 7
    assert delta("kms_requests_total", operation="Encrypt", outcome="NotFoundException") == 1
    assert delta("kms_requests_total", operation="DescribeKey", outcome="NotFoundException") == 2
    assert delta("kms_request_seconds_count", operation="Encrypt") == 8
    assert after.value("kms_request_seconds_bucket", operation="Encrypt", le="+Inf") == \
        after.value("kms_request_seconds_count", operation="Encrypt")
    # per HSM node: one observation per crypto operation, labelled by the node's endpoint
    assert delta("kms_hsm_op_seconds_count") == 7
    endpoints = {n.endpoint for n in env.nodes}
    assert {ls["node"] for ls in after.labelsets("kms_hsm_op_seconds_count")} <= endpoints
    assert delta("kms_hsm_batch_size_count") >= 1
    assert delta("kms_hsm_batch_size_sum") >= delta("kms_hsm_batch_size_count")

    # connection state, computed on scrape
    assert after.value("kms_custom_key_store_connected", custom_key_store_id=env.store_id) == 1
    assert after.value("kms_custom_key_store_state", custom_key_store_id=env.store_id, state="CONNECTED") == 1
    for state in ("CONNECTING", "DISCONNECTED", "DISCONNECTING", "FAILED"):
        assert after.value("kms_custom_key_store_state", custom_key_store_id=env.store_id, state=state) == 0
    assert after.value("kms_hsm_sessions", custom_key_store_id=env.store_id) == 3


async def test_store_gauges_follow_the_connection_state(obs):
    env = obs.env

    def state_of(store_id: str) -> str:
        s = scrape(obs.fe_metrics)
        on = [ls["state"] for ls in s.labelsets("kms_custom_key_store_state")
              if ls["custom_key_store_id"] == store_id and s.value("kms_custom_key_store_state", **ls) == 1]
        assert len(on) == 1, on
        return on[0]

    await env.disconnect()
    assert state_of(env.store_id) == "DISCONNECTED"
    s = scrape(obs.fe_metrics)
    assert s.value("kms_custom_key_store_connected", custom_key_store_id=env.store_id) == 0
    assert not s.total("kms_hsm_sessions", custom_key_store_id=env.store_id)
    await env.connect()
    assert state_of(env.store_id) == "CONNECTED"
    await wait_until(lambda: scrape(obs.fe_metrics).value("kms_hsm_sessions", custom_key_store_id=env.store_id) == 3,
                     what="a session on every node again")


# ---------------------------------------------------------------- node metrics


async def test_node_metrics_move_and_replication_converges(obs, key):
    env = obs.env
    before = {n.name: obs.node_scrape(n) for n in env.nodes}
    for i in range(6):
        await env.encrypt(key.key_id, f"node payload {i}".encode())
    await env.create_key(description="one more")
    after = {n.name: obs.node_scrape(n) for n in env.nodes}

    def delta(name: str, **labels: str) -> float:
        return sum(after[n].total(name, **labels) - before[n].total(name, **labels) for n in after)

    assert delta("hsm_crypto_ops_total", op="encrypt", code="OK") == 6
    assert delta("hsm_requests_total", method="GenerateKey", code="OK") == 1
    assert delta("hsm_request_seconds_count", method="GenerateKey") == 1
    for node in env.nodes:
        s = after[node.name]
        assert s.value("hsm_state", state="ACTIVE") == 1
        assert s.value("hsm_state", state="UNINITIALIZED") == 0
        assert s.value("hsm_node_info", node_id=obs.node_ids[node.name], cluster_id=env.cluster_id,
                       version="0.1.0") == 1
        assert s.value("hsm_users") >= 2  # admin, kmsuser
        assert s.value("hsm_sessions") >= 1  # the frontend's kmsuser session
        age = s.value("hsm_last_backup_age_seconds")  # the cluster's backups (AddNode takes one)
        assert age is not None and 0 <= age < 600, age
        assert s.value("process_resident_memory_bytes") > 0

    # once every write has reached every node: lag 0, every peer healthy, the same key count
    async def converged() -> bool:
        scrapes = {n.name: obs.node_scrape(n) for n in env.nodes}
        for name, s in scrapes.items():
            peers = {obs.node_ids[o] for o in scrapes if o != name}
            assert {ls["peer"] for ls in s.labelsets("hsm_replication_lag")} == peers
            assert all(s.value("hsm_replication_lag", peer=p) == 0 for p in peers), name
            assert all(s.value("hsm_peer_healthy", peer=p) == 1 for p in peers), name
        assert len({s.value("hsm_keys") for s in scrapes.values()}) == 1
        return True
    await wait_until(converged, timeout=20, what="replication lag 0 everywhere")
    assert obs.node_scrape(env.nodes[0]).value("hsm_keys") >= 2


async def test_node_counts_rpc_errors_by_status_code(obs):
    node = obs.env.nodes[0]
    before = obs.node_scrape(node)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.stub().Login(h.LoginRequest(user_type=h.CO, username="admin", password="wrong-Password1"),
                                timeout=CALL_TIMEOUT)
    code = err.value.code().name
    after = obs.node_scrape(node)
    assert after.total("hsm_requests_total", method="Login", code=code) - \
        before.total("hsm_requests_total", method="Login", code=code) == 1


# ---------------------------------------------------------------- request ids and secrets in logs


def events(path: Path) -> list[dict]:
    """Every line of a process log is one JSON object."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{path.name}: not one JSON event per line: {line[:300]!r}") from None
    return out


def frontend_password(obs: Obs) -> str:
    """The kmsuser password the frontend rotated to on connect (only it knows it)."""
    fe = obs.env.fe
    repo = SqliteRepository(fe.data_dir / "metadata.db")
    try:
        sealed = repo.get_custom_key_store(obs.env.store_id).sealed_password
    finally:
        repo.close()
    box = SecretBox.from_key_file(fe.root / f"{fe.name}-master.key", create=False)
    return json.loads(box.open(sealed, context=b"kmsuser-password:" + obs.env.store_id.encode()))["password"]


async def test_request_ids_cross_processes_and_logs_hold_no_secrets(obs, key):
    env = obs.env
    # gRPC: the caller's x-request-id is used and returned
    rid_create = f"obs-create-{uuid.uuid4().hex}"
    call = env.kms.CreateKey(k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=env.store_id),
                             metadata=(("x-request-id", rid_create),), timeout=CALL_TIMEOUT)
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == rid_create

    plaintext = b"PLAINTEXT-CANARY-" + uuid.uuid4().hex.encode()
    rid_encrypt = f"obs-encrypt-{uuid.uuid4().hex}"
    call = env.kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=plaintext), timeout=CALL_TIMEOUT,
                           metadata=(("x-request-id", rid_encrypt),))
    blob = (await call).ciphertext_blob
    assert (await env.decrypt(blob)).plaintext == plaintext

    # a crypto failure on the node (the tag does not verify): logged at info on both sides
    rid_bad = f"obs-bad-{uuid.uuid4().hex}"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    call = env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=tampered), timeout=CALL_TIMEOUT,
                           metadata=(("x-request-id", rid_bad),))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    md = dict(err.value.trailing_metadata())
    assert md["x-aws-exception"] == "InvalidCiphertextException" and md["x-request-id"] == rid_bad

    # without an id, the frontend makes one and returns it
    call = env.kms.DescribeKey(k.DescribeKeyRequest(key_id=key.key_id), timeout=CALL_TIMEOUT)
    await call
    made = dict(await call.trailing_metadata())["x-request-id"]
    assert str(uuid.UUID(made)) == made

    data_key = (await env.kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id, number_of_bytes=32),
                                              timeout=CALL_TIMEOUT)).plaintext
    # the AWS JSON endpoint: its x-amzn-RequestId is the request id in the logs
    aws = obs.boto()
    aws_resp = aws.encrypt(KeyId=key.key_id, Plaintext=plaintext)
    aws_rid = aws_resp["ResponseMetadata"]["RequestId"]
    aws_data_key = aws.generate_data_key(KeyId=key.key_id, NumberOfBytes=32)["Plaintext"]

    # the HSM side, as an operator: a CO session and a user password go through the node
    node = env.nodes[0]
    co_token = await co(node.stub())
    user_password = "Obs-User-Secret-" + uuid.uuid4().hex[:8]
    await node.stub().CreateUser(h.CreateUserRequest(session_token=co_token, user_type=h.CU, username="obsuser",
                                                     password=user_password), timeout=CALL_TIMEOUT)
    await node.stub().DeleteUser(h.DeleteUserRequest(session_token=co_token, username="obsuser"),
                                 timeout=CALL_TIMEOUT)
    await node.stub().Logout(h.SessionRequest(session_token=co_token), timeout=CALL_TIMEOUT)

    fe_events = events(env.fe.log_path)
    node_events = {n.name: events(n.log_path) for n in env.nodes}
    all_node_events = [e for evs in node_events.values() for e in evs]

    def request_event(rid: str) -> dict:
        found = [e for e in fe_events if e.get("event") == "request" and e.get("request_id") == rid]
        assert len(found) == 1, (rid, found)
        return found[0]

    created = request_event(rid_create)
    assert created["operation"] == "CreateKey" and created["outcome"] == "ok" and created["api"] == "grpc"
    assert created["level"] == "info" and isinstance(created["duration_ms"], float)
    # the node that generated the key logged the RPC under the same id
    assert [e for e in all_node_events if e.get("event") == "rpc" and e.get("method") == "GenerateKey"
            and e.get("request_id") == rid_create and e.get("code") == "OK" and e["level"] == "info"]

    encrypted = request_event(rid_encrypt)
    assert (encrypted["operation"], encrypted["outcome"], encrypted["level"]) == ("Encrypt", "ok", "debug")

    bad = request_event(rid_bad)
    assert (bad["operation"], bad["outcome"], bad["level"]) == ("Decrypt", "InvalidCiphertextException", "info")
    failed_ops = [e for e in all_node_events if e.get("event") == "crypto_failed" and e.get("request_id") == rid_bad]
    assert failed_ops and all(e["op"] == "decrypt" and e["code"] == "INVALID_ARGUMENT" and e["level"] == "info"
                              for e in failed_ops)

    aws_event = request_event(aws_rid)
    assert (aws_event["api"], aws_event["operation"], aws_event["outcome"]) == ("aws", "Encrypt", "ok")
    assert request_event(made)["operation"] == "DescribeKey"

    # the management RPCs of the operator session are logged (without a request id: none was given)
    assert [e for e in node_events[node.name] if e.get("event") == "rpc" and e.get("method") == "CreateUser"
            and e["level"] == "info"]

    # ---- no secrets anywhere, at debug level
    secrets = {
        "initial kmsuser password": CU_PASSWORD,
        "rotated kmsuser password": frontend_password(obs),
        "CO password": CO_PASSWORD,
        "user password": user_password,
        "CO session token": co_token,
        "plaintext": plaintext.decode(),
        "plaintext (base64)": base64.b64encode(plaintext).decode(),
        "data key (base64)": base64.b64encode(data_key).decode(),
        "data key (hex)": data_key.hex(),
        "AWS data key (base64)": base64.b64encode(aws_data_key).decode(),
        "ciphertext (base64)": base64.b64encode(blob).decode(),
    }
    logs = {p.name: p.read_text() for p in [env.fe.log_path, *(n.log_path for n in env.nodes)]}
    assert sum(len(t) for t in logs.values()) > 10_000  # there is something to search
    leaks = [(what, name) for what, secret in secrets.items() for name, text in logs.items() if secret in text]
    assert not leaks, leaks
    # and a sanity check that the search would find things that are there
    assert rid_create in logs[env.fe.log_path.name]


# ---------------------------------------------------------------- a dead peer (last: it stops a node)


async def test_replication_lag_of_a_killed_peer(obs):
    env = obs.env
    first, victim = env.nodes[0], env.nodes[2]
    victim_id = obs.node_ids[victim.name]
    victim.kill()  # SIGKILL
    token = await co(first.stub())
    for i in range(3):
        await first.stub().CreateUser(h.CreateUserRequest(session_token=token, user_type=h.CU, username=f"lagger{i}",
                                                          password="lagger-Password1"), timeout=CALL_TIMEOUT)

    async def lagging() -> bool:
        s = obs.node_scrape(first)
        return s.value("hsm_peer_healthy", peer=victim_id) == 0 and s.value("hsm_replication_lag", peer=victim_id) >= 3
    await wait_until(lagging, timeout=20, what="the dead peer's lag to show")
    healthy_peer = obs.node_ids[env.nodes[1].name]
    s = obs.node_scrape(first)
    assert s.value("hsm_peer_healthy", peer=healthy_peer) == 1
    assert s.value("hsm_replication_lag", peer=healthy_peer) == 0

    await victim.restart()  # same --metrics-listen port

    async def caught_up() -> bool:
        s = obs.node_scrape(first)
        return s.value("hsm_peer_healthy", peer=victim_id) == 1 and s.value("hsm_replication_lag", peer=victim_id) == 0
    await wait_until(caught_up, timeout=30, what="the restarted peer to catch up")
    assert obs.node_scrape(victim).value("hsm_users") == obs.node_scrape(first).value("hsm_users")
    for i in range(3):
        await first.stub().DeleteUser(h.DeleteUserRequest(session_token=token, username=f"lagger{i}"),
                                      timeout=CALL_TIMEOUT)
