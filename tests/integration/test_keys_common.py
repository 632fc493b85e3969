"""Shared plumbing for the KMS key and crypto integration modules (no tests here).

A ``KmsEnv`` is one running deployment: hsm-node processes forming one cluster, one
kms-frontend process, and one custom key store on that cluster, connected. Each test
module builds its own in a module-scoped fixture.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from protos.hsm.v1 import hsm_pb2 as h
from protos.kms.v1 import kms_pb2 as k
from protos.kms.v1 import kms_pb2_grpc as kg
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

ACCOUNT = "111122223333"
REGION = "us-east-1"
ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT}"
CALL_TIMEOUT = 15.0


def alias_arn(name: str) -> str:
    return f"{ARN_PREFIX}:{name}"


def key_arn(key_id: str) -> str:
    return f"{ARN_PREFIX}:key/{key_id}"


async def aws_error(awaitable) -> tuple[str, str]:
    """Await a call that must fail; return (AWS exception name, message)."""
    try:
        result = await awaitable
    except grpc.aio.AioRpcError as exc:
        md = dict(exc.trailing_metadata() or ())
        return md.get("x-aws-exception", f"<no x-aws-exception; {exc.code().name}>"), exc.details() or ""
    raise AssertionError(f"call succeeded but should have failed: {result!r}")


async def expect(awaitable, name: str, message: str | None = None, *, contains: str | None = None) -> str:
    got_name, got_message = await aws_error(awaitable)
    assert got_name == name, f"expected {name}, got {got_name}: {got_message}"
    if message is not None:
        assert got_message == message, f"message {got_message!r} != {message!r}"
    if contains is not None:
        assert contains in got_message, f"{contains!r} not in {got_message!r}"
    return got_message


@dataclass
class KmsEnv:
    root: Path
    lab: Lab
    nodes: list[NodeProcess]
    fe: FrontendProcess
    cluster_id: str = ""
    store_id: str = ""
    kmsuser_password: str = CU_PASSWORD
    extra_labs: list[Lab] = field(default_factory=list)
    _admin_channel: grpc.aio.Channel | None = None

    # ------------------------------------------------------------ stubs

    @property
    def kms(self) -> kg.KmsStub:
        return self.fe.stub()

    @property
    def admin(self) -> kg.KmsAdminStub:
        if self._admin_channel is None:
            self._admin_channel = self.fe.channel(self.fe.root_credentials())
        return kg.KmsAdminStub(self._admin_channel)

    # ------------------------------------------------------------ store

    async def connection_state(self, store_id: str | None = None) -> str:
        d = await self.kms.DescribeCustomKeyStores(
            k.DescribeCustomKeyStoresRequest(custom_key_store_id=store_id or self.store_id), timeout=CALL_TIMEOUT)
        return d.custom_key_stores[0].connection_state

    async def wait_state(self, state: str, store_id: str | None = None, timeout: float = 30.0) -> None:
        async def reached():
            return await self.connection_state(store_id) == state
        await wait_until(reached, timeout=timeout, what=f"store {store_id or self.store_id} to be {state}")

    async def connect(self, store_id: str | None = None) -> None:
        await self.kms.ConnectCustomKeyStore(k.ConnectCustomKeyStoreRequest(custom_key_store_id=store_id or self.store_id),
                                             timeout=CALL_TIMEOUT)
        await self.wait_state("CONNECTED", store_id)

    async def disconnect(self, store_id: str | None = None) -> None:
        await self.kms.DisconnectCustomKeyStore(
            k.DisconnectCustomKeyStoreRequest(custom_key_store_id=store_id or self.store_id), timeout=CALL_TIMEOUT)
        await self.wait_state("DISCONNECTED", store_id)

    async def create_store(self, lab: Lab, nodes: list[NodeProcess], name: str) -> tuple[str, str]:
        cluster_id = (await nodes[0].stub().GetStatus(h.Empty(), timeout=CALL_TIMEOUT)).cluster_id
        r = await self.kms.CreateCustomKeyStore(k.CreateCustomKeyStoreRequest(
            custom_key_store_name=name, cloud_hsm_cluster_id=cluster_id, trust_anchor_certificate=lab.anchor.cert_pem,
            key_store_password=CU_PASSWORD), timeout=CALL_TIMEOUT)
        return r.custom_key_store_id, cluster_id

    # ------------------------------------------------------------ keys

    async def create_key(self, store_id: str | None = None, **fields) -> k.KeyMetadata:
        r = await self.kms.CreateKey(k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=store_id or self.store_id,
                                                        **fields), timeout=CALL_TIMEOUT)
        return r.key_metadata

    async def describe(self, ref: str) -> k.KeyMetadata:
        return (await self.kms.DescribeKey(k.DescribeKeyRequest(key_id=ref), timeout=CALL_TIMEOUT)).key_metadata

    async def key_state(self, ref: str) -> str:
        return (await self.describe(ref)).key_state

    async def encrypt(self, ref: str, plaintext: bytes = b"secret", context: dict | None = None) -> k.EncryptResponse:
        return await self.kms.Encrypt(k.EncryptRequest(key_id=ref, plaintext=plaintext, encryption_context=context or {}),
                                      timeout=CALL_TIMEOUT)

    async def decrypt(self, blob: bytes, context: dict | None = None, key_id: str | None = None) -> k.DecryptResponse:
        req = k.DecryptRequest(ciphertext_blob=blob, encryption_context=context or {})
        if key_id is not None:
            req.key_id = key_id
        return await self.kms.Decrypt(req, timeout=CALL_TIMEOUT)

    async def list_all_keys(self) -> list[str]:
        out, marker = [], None
        while True:
            req = k.ListKeysRequest(limit=1000)
            if marker:
                req.marker = marker
            r = await self.kms.ListKeys(req, timeout=CALL_TIMEOUT)
            out += [e.key_id for e in r.keys]
            if not r.truncated:
                return out
            marker = r.next_marker

    async def audit_events(self, key_id: str, event: str = "DeleteKey") -> list[k.AuditEventEntry]:
        r = await self.admin.ListAuditEvents(k.ListAuditEventsRequest(event=event, key_id=key_id), timeout=CALL_TIMEOUT)
        return list(r.events)

    # ------------------------------------------------------------ HSM side, as a crypto officer

    async def kmsuser_id(self, node: NodeProcess | None = None) -> int:
        users = await (node or self.nodes[0]).stub().ListUsers(h.Empty(), timeout=CALL_TIMEOUT)
        return next(u.user_id for u in users.users if u.username == "kmsuser")

    async def kmsuser_handles(self, node: NodeProcess | None = None) -> set[int]:
        """Handles of every key kmsuser owns, as a CO sees them (findAllKeys <kmsuser> 0)."""
        node = node or self.nodes[0]
        token = await co(node.stub())
        try:
            r = await node.stub().FindAllKeys(h.FindAllKeysRequest(session_token=token, user_id=await self.kmsuser_id(node)),
                                              timeout=CALL_TIMEOUT)
            return {x.key_handle for x in r.keys if x.owned}
        finally:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await node.stub().Logout(h.SessionRequest(session_token=token), timeout=CALL_TIMEOUT)

    async def kmsuser_handles_anywhere(self) -> set[int]:
        """kmsuser's keys as the CO sees them on any live node (a key confirmed by two HSMs shows
        up here at once, whichever node the frontend used)."""
        out: set[int] = set()
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                out |= await self.kmsuser_handles(node)
        return out

    @contextlib.asynccontextmanager
    async def as_kmsuser(self, password: str, node: NodeProcess | None = None):
        """The documented manual procedure, for a DISCONNECTED store: a CO resets the kmsuser
        password, we log in as kmsuser (yielding the session token), log out, and tell KMS
        the new password with UpdateCustomKeyStore."""
        assert await self.connection_state() == "DISCONNECTED"
        node = node or self.nodes[0]
        officer = await co(node.stub())
        await node.stub().ChangePassword(h.ChangePasswordRequest(session_token=officer, user_type=h.CU, username="kmsuser",
                                                                 new_password=password), timeout=CALL_TIMEOUT)
        await node.stub().Logout(h.SessionRequest(session_token=officer), timeout=CALL_TIMEOUT)
        token = await login(node.stub(), h.CU, "kmsuser", password)
        try:
            yield token
        finally:
            await node.stub().Logout(h.SessionRequest(session_token=token), timeout=CALL_TIMEOUT)
            await self.kms.UpdateCustomKeyStore(k.UpdateCustomKeyStoreRequest(
                custom_key_store_id=self.store_id, key_store_password=password), timeout=CALL_TIMEOUT)
            self.kmsuser_password = password

    # ------------------------------------------------------------ teardown

    def frontend_log(self, chars: int = 4000) -> str:
        try:
            return self.fe.log_path.read_text()[-chars:]
        except OSError:
            return ""

    async def close(self) -> None:
        if self._admin_channel is not None:
            await self._admin_channel.close()
        await self.fe.stop()
        await self.lab.close()
        for lab in self.extra_labs:
            await lab.close()


async def start_env(root: Path, *, nodes: int = 3, fe_env: dict[str, str] | None = None, connect: bool = True,
                    extra_endpoints: list[str] | None = None, name: str = "store-1",
                    node_args: list[str] | None = None) -> KmsEnv:
    """Cluster of ``nodes`` hsm-node processes, a kms-frontend, and a store on the cluster."""
    lab = Lab(root)
    fe: FrontendProcess | None = None
    try:
        cluster = await three_node_cluster(lab, n=nodes, node_args=node_args)
        fe = FrontendProcess(root, [n.endpoint for n in cluster] + list(extra_endpoints or []), env=dict(fe_env or {}))
        fe.start()
        await fe.wait_ready()
        env = KmsEnv(root, lab, cluster, fe)
        env.store_id, env.cluster_id = await env.create_store(lab, cluster, name)
        if connect:
            await env.connect()
        return env
    except BaseException:
        if fe is not None:
            await fe.stop()
        await lab.close()
        raise
