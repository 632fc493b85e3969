"""Shared tools of the custom key store tests (test_key_stores*.py); no tests here.

A client for the key store operations of a real kms-frontend process that checks AWS
exception names in the trailing metadata, and an operator's handle on a cluster of
real hsm-node processes (kmsuser, CO password resets, pause/kill/restart).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from kms_frontend.errors import METADATA_KEY
from protos.hsm.v1 import hsm_pb2 as pb
from protos.kms.v1 import kms_pb2 as kms
from tests.harness import (
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    co,
    login,
    three_node_cluster,
    wait_until,
)

ORIGIN = "AWS_CLOUDHSM"
SETTLED = ("CONNECTED", "DISCONNECTED", "FAILED")
UNKNOWN_CLUSTER = "cluster-abcdefghijk"  # well formed, never created


# ---------------------------------------------------------------- errors


def aws_exception(err: grpc.aio.AioRpcError) -> str | None:
    for key, value in err.trailing_metadata() or ():
        if key == METADATA_KEY:
            return value
    return None


async def aws_error(call, name: str) -> str:
    """Await a frontend call that must fail with the AWS exception ``name``; return its message."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    got = aws_exception(info.value)
    assert got == name, f"expected {name}, got {got} ({info.value.code().name}: {info.value.details()})"
    message = info.value.details() or ""
    assert message, f"{name} without a message"
    return message


async def hsm_error(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, f"expected {code.name}, got {info.value.code().name}: {info.value.details()}"
    return info.value.details() or ""


# ---------------------------------------------------------------- the frontend


class Kms:
    """Key store calls against one frontend process (survives its restarts)."""

    def __init__(self, frontend: FrontendProcess) -> None:
        self.fe = frontend

    @property
    def stub(self):
        return self.fe.stub()

    async def create(self, name: str, cluster_id: str, anchor: str, password: str = CU_PASSWORD) -> str:
        r = await self.stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(
            custom_key_store_name=name, cloud_hsm_cluster_id=cluster_id, trust_anchor_certificate=anchor,
            key_store_password=password), timeout=30)
        return r.custom_key_store_id

    def create_call(self, name: str, cluster_id: str, anchor: str, password: str = CU_PASSWORD):
        return self.stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(
            custom_key_store_name=name, cloud_hsm_cluster_id=cluster_id, trust_anchor_certificate=anchor,
            key_store_password=password), timeout=30)

    async def describe(self, store_id: str) -> kms.CustomKeyStoresListEntry:
        r = await self.stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(custom_key_store_id=store_id),
                                                    timeout=10)
        assert len(r.custom_key_stores) == 1 and not r.truncated
        return r.custom_key_stores[0]

    async def state(self, store_id: str) -> str:
        return (await self.describe(store_id)).connection_state

    def connect(self, store_id: str):
        return self.stub.ConnectCustomKeyStore(kms.ConnectCustomKeyStoreRequest(custom_key_store_id=store_id),
                                               timeout=30)

    def disconnect(self, store_id: str):
        return self.stub.DisconnectCustomKeyStore(kms.DisconnectCustomKeyStoreRequest(custom_key_store_id=store_id),
                                                  timeout=60)

    def delete(self, store_id: str):
        return self.stub.DeleteCustomKeyStore(kms.DeleteCustomKeyStoreRequest(custom_key_store_id=store_id), timeout=10)

    def update(self, store_id: str, *, name: str | None = None, password: str | None = None,
               cluster_id: str | None = None):
        req = kms.UpdateCustomKeyStoreRequest(custom_key_store_id=store_id)
        if name is not None:
            req.new_custom_key_store_name = name
        if password is not None:
            req.key_store_password = password
        if cluster_id is not None:
            req.cloud_hsm_cluster_id = cluster_id
        return self.stub.UpdateCustomKeyStore(req, timeout=30)

    async def settled(self, store_id: str, timeout: float = 40) -> kms.CustomKeyStoresListEntry:
        async def done():
            entry = await self.describe(store_id)
            return entry if entry.connection_state in SETTLED else None
        return await wait_until(done, timeout=timeout, interval=0.05, what=f"{store_id} to leave CONNECTING")

    async def connected(self, store_id: str) -> None:
        """Connect and wait for CONNECTED (fails at once on FAILED, showing the code)."""
        await self.connect(store_id)
        entry = await self.settled(store_id)
        assert entry.connection_state == "CONNECTED", \
            f"{store_id} is {entry.connection_state} ({entry.connection_error_code})"

    async def failed_with(self, store_id: str, code: str) -> kms.CustomKeyStoresListEntry:
        """Connect and wait for FAILED with ``code``."""
        await self.connect(store_id)
        entry = await self.settled(store_id)
        assert (entry.connection_state, entry.connection_error_code) == ("FAILED", code), \
            f"{store_id} is {entry.connection_state} ({entry.connection_error_code}), expected FAILED ({code})"
        return entry

    async def disconnected(self, store_id: str) -> None:
        await self.disconnect(store_id)
        entry = await self.describe(store_id)
        assert entry.connection_state == "DISCONNECTED" and not entry.HasField("connection_error_code")


async def start_frontend(root: Path, endpoints: list[str], env: dict[str, str] | None = None) -> FrontendProcess:
    fe = FrontendProcess(root, endpoints, env=dict(env or {}))
    fe.start()
    await fe.wait_ready()
    return fe


async def delete_cluster(fe: FrontendProcess, cluster_id: str) -> None:
    """Delete a cluster through the CloudHSM API (its HSMs first, as AWS requires), so that it no
    longer exists for KMS (CLUSTER_NOT_FOUND), not just has no HSM answering."""
    import boto3
    key_id, secret = fe.aws_credentials()
    hsm = boto3.client("cloudhsmv2", endpoint_url=fe.aws_endpoint_url, region_name="us-east-1",
                       aws_access_key_id=key_id, aws_secret_access_key=secret)

    def hsms() -> list:
        return hsm.describe_clusters(Filters={"clusterIds": [cluster_id]})["Clusters"][0]["Hsms"]
    await wait_until(hsms, timeout=30, what=f"the control plane to know {cluster_id}'s HSMs")
    for h in hsms():
        hsm.delete_hsm(ClusterId=cluster_id, HsmId=h["HsmId"])
    await wait_until(lambda: not hsms(), timeout=60, what=f"{cluster_id}'s HSMs deleted")
    hsm.delete_cluster(ClusterId=cluster_id)


async def restart_frontend(fe: FrontendProcess, *, env: dict[str, str] | None = None,
                           sig: int = signal.SIGTERM) -> None:
    """Stop it (SIGTERM: graceful; SIGKILL: kill -9), then start it again on the same data."""
    if fe._channel is not None:
        await fe._channel.close()
        fe._channel = None
    fe.kill(sig)
    fe.env = dict(env or {})
    await fe.stop()
    fe.start()
    await fe.wait_ready()


def log_offset(fe: FrontendProcess) -> int:
    return fe.log_path.stat().st_size if fe.log_path.exists() else 0


def log_events(fe: FrontendProcess, since: int = 0, **match: str) -> list[dict]:
    """Structured log lines of the frontend written after byte offset ``since`` matching ``match``."""
    out = []
    with open(fe.log_path, "rb") as f:
        f.seek(since)
        for line in f.read().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if all(event.get(k) == v for k, v in match.items()):
                out.append(event)
    return out


# ---------------------------------------------------------------- the HSM side, as an operator


@dataclass
class HsmCluster:
    lab: Lab
    nodes: list[NodeProcess]
    cluster_id: str

    @property
    def anchor(self) -> str:
        return self.lab.anchor.cert_pem

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    async def kmsuser(self, node: NodeProcess) -> pb.User | None:
        users = await node.stub().ListUsers(pb.Empty(), timeout=5)
        return next((u for u in users.users if u.username == "kmsuser"), None)

    async def kmsuser_versions(self) -> list[int]:
        return [(u.version if (u := await self.kmsuser(n)) else -1) for n in self.running()]

    async def kmsuser_version(self) -> int:
        """kmsuser's record version, once every running node holds the same one."""
        async def same():
            versions = await self.kmsuser_versions()
            return versions[0] if len(set(versions)) == 1 else None
        return await wait_until(same, timeout=20, what="kmsuser records to converge")

    async def set_kmsuser_password(self, password: str, node: NodeProcess | None = None) -> None:
        """A CO resets kmsuser's password (also unlocks it), then waits until every node has it."""
        node = node or self.nodes[0]
        token = await co(node.stub())
        await node.stub().ChangePassword(pb.ChangePasswordRequest(
            session_token=token, user_type=pb.CU, username="kmsuser", new_password=password), timeout=15)
        await node.stub().Logout(pb.SessionRequest(session_token=token))
        await self.kmsuser_version()

    async def co_change_refused(self, node: NodeProcess, password: str = "coChosen123") -> str:
        token = await co(node.stub())
        try:
            return await hsm_error(node.stub().ChangePassword(pb.ChangePasswordRequest(
                session_token=token, user_type=pb.CU, username="kmsuser", new_password=password), timeout=15),
                grpc.StatusCode.FAILED_PRECONDITION)
        finally:
            await node.stub().Logout(pb.SessionRequest(session_token=token))

    async def kmsuser_login(self, node: NodeProcess, password: str) -> str:
        return await login(node.stub(), pb.CU, "kmsuser", password)

    async def wait_healthy(self) -> None:
        async def healthy():
            for n in self.running():
                desc = await n.stub().DescribeCluster(pb.Empty(), timeout=3)
                live = {m.endpoint for m in desc.members if m.health in (pb.SELF, pb.HEALTHY)}
                if not {x.endpoint for x in self.running()} <= live:
                    return False
            return True
        await wait_until(healthy, timeout=30, what=f"{self.cluster_id} members to see each other")

    def kill(self) -> None:
        for n in self.running():
            n.kill()

    async def restart(self) -> None:
        await asyncio.gather(*(n.restart() for n in self.nodes))
        await self.wait_healthy()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """SIGSTOP every node (it keeps its sockets but answers nothing); SIGCONT on the way out."""
        procs = [n.proc for n in self.running()]
        try:
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            yield
        finally:
            for p in procs:
                p.send_signal(signal.SIGCONT)

    async def close(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
            await n.stop()


async def make_cluster(lab: Lab, n: int = 2, kmsuser: bool = True) -> HsmCluster:
    """n joined nodes (initialised, activated), with kmsuser (password CU_PASSWORD) unless told not."""
    if kmsuser:
        nodes = await three_node_cluster(lab, n)
    else:
        nodes = [await lab.start_node()]
        await lab.init_active(nodes[0])
        for _ in range(n - 1):
            nodes.append(await add_node(lab, nodes[0]))
    status = await nodes[0].stub().GetStatus(pb.Empty())
    cluster = HsmCluster(lab, nodes, status.cluster_id)
    if n > 1:
        await cluster.wait_healthy()
    return cluster


async def add_node(lab: Lab, via: NodeProcess) -> NodeProcess:
    new = await lab.start_node()
    token = await co(via.stub())
    await via.stub().AddNode(pb.AddNodeRequest(session_token=token, endpoint=new.endpoint,
                                               peer_endpoint=new.peer_endpoint))
    new.anchor_pem = lab.anchor.cert_pem
    await new.reset_channel()
    return new
