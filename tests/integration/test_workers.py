"""``kms-frontend --workers 2``: two processes share the ports, the metadata and each store's quota.
Clients come in on many connections (the kernel spreads them over the workers, SO_REUSEPORT),
and each worker's /metrics (the metrics port + its index) shows that both served them. A change
made through one worker (a key disabled, a new key policy, a grant revoked, the store
disconnected) is refused by every connection from its next call on; the store's quota holds for
the two together; the CloudHSM control plane answers the same through every worker (the leader
runs it); when the leader dies, another worker takes its work over."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request

import aiohttp
import boto3
import grpc
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kms_frontend.errors import METADATA_KEY
from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as k
from protos.kms.v1 import kms_pb2_grpc as kg
from tests.harness import free_port, wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, start_env

CONNECTIONS = 12  # all on one worker by chance: 2 * 2**-12
QUOTA = 40
ACCOUNT = "111122223333"
BOB = ("AKIABOB0000000000001", "bob-secret-key-00000000001")
PRINCIPALS = {"principals": [{"arn": f"arn:aws:iam::{ACCOUNT}:user/bob",
                              "access_keys": [{"id": BOB[0], "secret": BOB[1]}], "policies": []}]}


def metrics_ports() -> int:
    """A port P with P+1 free too (worker i serves /metrics on P+i)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    (root / "principals.json").write_text(json.dumps(PRINCIPALS))
    port, console = metrics_ports(), free_port()
    e = await start_env(root, fe_env={"KMS_WORKERS": "2", "KMS_STORE_QUOTA": str(QUOTA),
                                      "KMS_METRICS_LISTEN": f"127.0.0.1:{port}",
                                      "KMS_CONSOLE_LISTEN": f"127.0.0.1:{console}",
                                      "KMS_PRINCIPALS_FILE": str(root / "principals.json")})
    e.metrics_port, e.console_url = port, f"http://127.0.0.1:{console}"
    e.key = await e.create_key()
    yield e
    await e.close()


class Connections:
    """CONNECTIONS separate connections (no shared subchannels) signed by one principal."""

    def __init__(self, env, credentials: Credentials) -> None:
        self.channels = [kms_auth.aio_channel(env.fe.endpoint, credentials, env.fe.region,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                         for _ in range(CONNECTIONS)]
        self.stubs = [kg.KmsStub(c) for c in self.channels]

    async def outcomes(self, call) -> list[str]:
        """``call(stub)`` on every connection: "OK" or the AWS exception name."""
        async def one(stub) -> str:
            try:
                await call(stub)
                return "OK"
            except grpc.aio.AioRpcError as exc:
                return dict(exc.trailing_metadata() or ()).get(METADATA_KEY, exc.code().name)
        return list(await asyncio.gather(*(one(s) for s in self.stubs)))

    async def close(self) -> None:
        for c in self.channels:
            await c.close()


def served(env, worker: int, operation: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{env.metrics_port + worker}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("kms_requests_total{") and f'operation="{operation}"' in line)


def encrypt(key_id: str):
    return lambda stub: stub.Encrypt(k.EncryptRequest(key_id=key_id, plaintext=b"x"), timeout=CALL_TIMEOUT)


async def everywhere(conns: Connections, call, expected: str, change=None) -> None:
    """Every connection's next call right after ``change`` was acknowledged, with no wait between
    (the quota is given time to refill before the change, so that it refuses none of them)."""
    await asyncio.sleep(1.2 * CONNECTIONS / QUOTA)
    if change is not None:
        await change
    got = await conns.outcomes(call)
    assert got == [expected] * CONNECTIONS, got


@pytest.fixture
async def root_conns(env):
    c = Connections(env, env.fe.root_credentials())
    yield c
    await c.close()


async def test_both_workers_serve_and_see_every_change_from_the_next_call(env, root_conns):
    key_id = env.key.key_id
    before = [served(env, w, "Encrypt") for w in (0, 1)]
    await everywhere(root_conns, encrypt(key_id), "OK")
    assert all(served(env, w, "Encrypt") > before[w] for w in (0, 1)), "both workers take connections"

    await asyncio.sleep(1.2 * CONNECTIONS / QUOTA)
    new = await env.create_key()  # created through one worker, usable through both at once
    await everywhere(root_conns, encrypt(new.key_id), "OK")

    await everywhere(root_conns, encrypt(key_id), "DisabledException",
                     env.kms.DisableKey(k.DisableKeyRequest(key_id=key_id), timeout=CALL_TIMEOUT))
    await everywhere(root_conns, encrypt(key_id), "OK",
                     env.kms.EnableKey(k.EnableKeyRequest(key_id=key_id), timeout=CALL_TIMEOUT))

    default = (await env.kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=key_id, policy_name="default"))).policy
    deny = json.loads(default)
    deny["Statement"].append({"Sid": "no encrypt", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                              "Action": "kms:Encrypt", "Resource": "*"})
    await everywhere(root_conns, encrypt(key_id), "AccessDeniedException", env.kms.PutKeyPolicy(
        k.PutKeyPolicyRequest(key_id=key_id, policy_name="default", policy=json.dumps(deny)), timeout=CALL_TIMEOUT))
    await everywhere(root_conns, encrypt(key_id), "OK", env.kms.PutKeyPolicy(
        k.PutKeyPolicyRequest(key_id=key_id, policy_name="default", policy=default), timeout=CALL_TIMEOUT))


async def test_a_revoked_grant_is_refused_by_every_worker(env):
    key_id = env.key.key_id
    bob = Connections(env, Credentials(*BOB))
    try:
        await everywhere(bob, encrypt(key_id), "AccessDeniedException")
        await asyncio.sleep(1.2 * CONNECTIONS / QUOTA)
        grant = await env.kms.CreateGrant(k.CreateGrantRequest(
            key_id=key_id, grantee_principal=PRINCIPALS["principals"][0]["arn"], operations=["Encrypt"]),
            timeout=CALL_TIMEOUT)
        await everywhere(bob, encrypt(key_id), "OK")
        await everywhere(bob, encrypt(key_id), "AccessDeniedException", env.kms.RevokeGrant(
            k.RevokeGrantRequest(key_id=key_id, grant_id=grant.grant_id), timeout=CALL_TIMEOUT))
    finally:
        await bob.close()


async def test_the_store_quota_holds_for_the_workers_together(env, root_conns):
    """AWS: a CloudHSM key store takes its quota of cryptographic requests per second (1,800),
    shared by every key and operation; beyond it, ThrottlingException. Driven well above a
    lowered quota through both workers for a few seconds, the requests that pass are the quota's
    rate (plus the one second's burst the bucket starts with), not twice it."""
    key_id = env.key.key_id
    await asyncio.sleep(1.2)  # the bucket refills (one second's worth)
    seconds, before = 3.0, [served(env, w, "Encrypt") for w in (0, 1)]
    counts: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def caller(stub) -> None:
        while time.monotonic() < stop:
            try:
                await stub.Encrypt(k.EncryptRequest(key_id=key_id, plaintext=b"x"), timeout=CALL_TIMEOUT)
                counts["OK"] = counts.get("OK", 0) + 1
            except grpc.aio.AioRpcError as exc:
                name = dict(exc.trailing_metadata() or ()).get(METADATA_KEY, exc.code().name)
                counts[name] = counts.get(name, 0) + 1
                await asyncio.sleep(0.005)
    aws_counts: dict[str, int] = {}

    def aws_caller() -> None:  # an AWS SDK caller meanwhile, through the AWS endpoint: the same bucket
        kms = aws_kms(env)
        while time.monotonic() < stop:
            try:
                kms.encrypt(KeyId=key_id, Plaintext=b"x")
                name = "OK"
            except ClientError as exc:
                name = exc.response["Error"]["Code"]
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            aws_counts[name] = aws_counts.get(name, 0) + 1
    await asyncio.gather(asyncio.to_thread(aws_caller), *(caller(s) for s in root_conns.stubs for _ in range(2)))
    assert "ThrottlingException" in aws_counts, aws_counts
    for name, n in aws_counts.items():
        counts[name] = counts.get(name, 0) + n
    assert set(counts) == {"OK", "ThrottlingException"}, counts
    assert all(served(env, w, "Encrypt") > before[w] for w in (0, 1))
    expected = QUOTA * (1 + seconds)
    assert 0.85 * expected <= counts["OK"] <= 1.1 * expected + 2, (counts, expected)
    assert counts["ThrottlingException"] > counts["OK"]  # it was driven well above the quota


def aws_kms(env):
    key_id, secret = env.fe.aws_credentials()
    return boto3.client("kms", endpoint_url=env.fe.aws_endpoint_url, region_name=env.fe.region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))  # see each ThrottlingException


def cloudhsm_clients(env) -> list:
    """CONNECTIONS boto3 clients, each with its own connection pool (spread over the workers)."""
    key_id, secret = env.fe.aws_credentials()
    return [boto3.client("cloudhsmv2", endpoint_url=env.fe.aws_endpoint_url, region_name=env.fe.region,
                         aws_access_key_id=key_id, aws_secret_access_key=secret,
                         config=Config(retries={"max_attempts": 1}))
            for _ in range(CONNECTIONS)]


def cluster_tags(client, env) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in client.list_tags(ResourceId=env.cluster_id)["TagList"]}


async def test_the_control_plane_is_one_for_every_worker(env):
    """Its records and background work live in the leader; a tag written through any worker is
    read back through every one at once, and a wrong call is refused with the same AWS error."""
    clients = cloudhsm_clients(env)
    before = [served(env, w, "DescribeClusters") for w in (0, 1)]
    seen = [await asyncio.to_thread(lambda c=c: [x["ClusterId"] for x in c.describe_clusters()["Clusters"]])
            for c in clients]
    assert all(env.cluster_id in ids for ids in seen), seen
    # the follower served none itself: the leader ran every one
    assert sorted(served(env, w, "DescribeClusters") - before[w] for w in (0, 1)) == [0, CONNECTIONS]
    for i, writer in enumerate(clients[:3]):
        await asyncio.to_thread(writer.tag_resource, ResourceId=env.cluster_id, TagList=[{"Key": "round", "Value": str(i)}])
        tags = [await asyncio.to_thread(cluster_tags, c, env) for c in clients]
        assert all(t.get("round") == str(i) for t in tags), tags
    for c in clients:
        with pytest.raises(c.exceptions.CloudHsmResourceNotFoundException):
            await asyncio.to_thread(c.delete_cluster, ClusterId="cluster-abcdefghijk")


async def test_the_console_is_the_leaders_and_charts_every_worker(env, root_conns):
    """One process holds the console's sign-in sessions (the leader), so a browser's new connections
    stay signed in; its live chart counts the requests of both workers."""
    key_id, secret = env.fe.aws_credentials()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(env.console_url + "/signin", data={"access_key_id": key_id, "secret_access_key": secret},
                             allow_redirects=False) as r:
            assert r.status == 302
            cookie = {"kms_console": r.cookies["kms_console"].value}
        for _ in range(CONNECTIONS):  # a new connection each time: the session is there on every one
            async with aiohttp.ClientSession(cookies=cookie) as fresh, \
                    fresh.get(env.console_url + "/stores", allow_redirects=False) as r:
                assert r.status == 200 and env.store_id in await r.text()
        await asyncio.sleep(1.2 * CONNECTIONS / QUOTA)
        before = [served(env, w, "Encrypt") for w in (0, 1)]
        await everywhere(root_conns, encrypt(env.key.key_id), "OK")
        assert all(served(env, w, "Encrypt") > before[w] for w in (0, 1))

        async def charted() -> bool:  # the last seconds' successful requests, both workers' together
            async with http.get(env.console_url + "/api/activity") as r:
                series = await r.json()
            return sum(series["ok"][-10:]) >= CONNECTIONS
        await wait_until(charted, timeout=30, what="the console to chart both workers' requests")


def worker_pids(env) -> dict[int, bool]:
    """pid -> leader, from the workers' "listening" log lines (the newest per worker index)."""
    found: dict[int, tuple[int, bool]] = {}
    for line in env.fe.log_path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "listening" and "pid" in doc:
            found[doc["worker"]] = (doc["pid"], doc["leader"])
    return dict(found.values())


async def test_when_the_leader_dies_another_worker_connects_stores(env, root_conns):
    leader = next(pid for pid, leads in worker_pids(env).items() if leads)
    os.kill(leader, signal.SIGKILL)
    await asyncio.sleep(1.2 * CONNECTIONS / QUOTA)
    await env.disconnect()  # served by the surviving worker (or the restarted one)
    await everywhere(root_conns, encrypt(env.key.key_id), "KMSInvalidStateException")
    await env.connect()  # only a leader connects: the other worker took over
    await wait_until(lambda: len(worker_pids(env)) == 2 and leader not in worker_pids(env), timeout=30,
                     what="the killed worker to be restarted")

    async def usable_everywhere() -> bool:
        return await root_conns.outcomes(encrypt(env.key.key_id)) == ["OK"] * CONNECTIONS
    # each worker logs in to the HSMs once it sees the store CONNECTED (a moment after the leader)
    await wait_until(usable_everywhere, timeout=30, what="every worker to have sessions again")
    # the control plane moved to the new leader with its records
    tags = [await asyncio.to_thread(cluster_tags, c, env) for c in cloudhsm_clients(env)]
    assert all("round" in t for t in tags), tags

    async def console_back() -> bool:  # and the console with it (its old sessions are gone: sign in again)
        try:
            async with aiohttp.ClientSession() as http, http.get(env.console_url + "/signin") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False
    await wait_until(console_back, timeout=30, what="the new leader to serve the console")
