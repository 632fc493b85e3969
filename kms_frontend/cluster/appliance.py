"""The control plane's HSM client: what CloudHSM's service does to HSMs (status, initialise with
the customer's signed certificate, add and remove members, take backups, restore a cluster into
an empty HSM), as the appliance user ``app_user`` where a session is needed.

The AU secret is sent only over TLS verified against the cluster's trust anchor; steps that need no
session (status, initialise, restore into an empty node) pin the certificate the node shows, as
discovery does. Results are plain values; failures are :class:`ApplianceError` with the node's
own message, which says what to do (nodes never put secrets in messages).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1 import hsm_pb2_grpc as hsm_grpc

from . import channels

APPLIANCE_USER = "app_user"
CALL_TIMEOUT_S = 15.0
JOIN_TIMEOUT_S = 120.0


class ApplianceError(Exception):
    """A node refused or did not answer. ``unreachable``: it did not answer at all."""

    def __init__(self, endpoint: str, message: str, *, unreachable: bool = False, code: str = "") -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint, self.message, self.unreachable, self.code = endpoint, message, unreachable, code


@dataclass(frozen=True)
class NodeFacts:
    endpoint: str
    node_id: str
    hsm_id: str
    cluster_id: str
    state: str                # UNINITIALIZED, INITIALIZED, ACTIVE, DELETED
    cluster_csr_pem: str
    cluster_certificate_pem: str
    certificate_sha256: str
    trust_anchor_pem: str


@dataclass(frozen=True)
class MemberFacts:
    node_id: str
    hsm_id: str
    endpoint: str


def _error(endpoint: str, exc: grpc.aio.AioRpcError) -> ApplianceError:
    code = exc.code()
    unreachable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return ApplianceError(endpoint, exc.details() or code.name, unreachable=unreachable, code=code.name)


class ApplianceClient:
    def __init__(self, secret: str, client_id: str = "kms-frontend-control-plane") -> None:
        self._secret = secret
        self.client_id = client_id

    @property
    def configured(self) -> bool:
        return bool(self._secret)

    async def _call(self, endpoint: str, anchor: str | None, fn, timeout: float = CALL_TIMEOUT_S):  # type: ignore[no-untyped-def]
        try:
            pem = anchor if anchor else await _pinned(endpoint)
        except OSError as exc:
            raise ApplianceError(endpoint, f"cannot reach it: {exc.strerror or exc}", unreachable=True) from None
        channel = channels.secure(endpoint, pem)
        try:
            return await fn(hsm_grpc.HsmStub(channel), timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(endpoint, exc) from None
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _session(self, stub: hsm_grpc.HsmStub, endpoint: str, timeout: float) -> str:
        if not self._secret:
            raise ApplianceError(endpoint, "the control plane has no appliance key (--appliance-key-file), so it "
                                           "cannot manage this cluster's HSMs", code="FAILED_PRECONDITION")
        try:
            r = await stub.Login(hsm.LoginRequest(user_type=hsm.AU, username=APPLIANCE_USER, password=self._secret,
                                                  client_id=self.client_id), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise ApplianceError(endpoint, "the HSM refused the control plane's appliance user: start its node "
                                               "with the same --appliance-key-file as the frontend",
                                     code="UNAUTHENTICATED") from None
            raise
        return r.session_token

    # ------------------------------------------------------------ no session

    async def status(self, endpoint: str, timeout: float = 5.0) -> NodeFacts:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> NodeFacts:
            s = await stub.GetStatus(hsm.Empty(), timeout=t)
            return NodeFacts(endpoint, s.node_id, s.hsm_id, s.cluster_id, hsm.NodeState.Name(s.state),
                             s.cluster_csr_pem, s.cluster_certificate_pem, s.cluster_certificate_sha256,
                             s.trust_anchor_pem)
        return await self._call(endpoint, None, run, timeout)

    async def members(self, endpoint: str, anchor: str) -> list[MemberFacts]:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> list[MemberFacts]:
            c = await stub.DescribeCluster(hsm.Empty(), timeout=t)
            return [MemberFacts(m.node_id, m.hsm_id, m.endpoint) for m in c.members]
        return await self._call(endpoint, anchor, run)

    async def initialize(self, endpoint: str, signed_cert_pem: str, trust_anchor_pem: str, cluster_id: str) -> None:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> None:
            await stub.Initialize(hsm.InitializeRequest(signed_cluster_certificate_pem=signed_cert_pem,
                                                        trust_anchor_pem=trust_anchor_pem, cluster_id=cluster_id),
                                  timeout=t)
        await self._call(endpoint, None, run)

    async def restore(self, endpoint: str, backup_id: str, cluster_id: str) -> None:
        """Make an empty node the first member of ``cluster_id``, seeded from ``backup_id``."""
        async def run(stub: hsm_grpc.HsmStub, t: float) -> None:
            await stub.RestoreCluster(hsm.RestoreClusterRequest(backup_id=backup_id, cluster_id=cluster_id), timeout=t)
        await self._call(endpoint, None, run, JOIN_TIMEOUT_S)

    # ------------------------------------------------------------ as the appliance user

    async def add_node(self, via: str, anchor: str, endpoint: str, peer_endpoint: str) -> tuple[str, str]:
        """Ask member ``via`` to add the empty node at ``endpoint`` (seeded from a fresh backup, then
        it catches up). Returns (its node id, the backup id)."""
        async def run(stub: hsm_grpc.HsmStub, t: float) -> tuple[str, str]:
            token = await self._session(stub, via, t)
            try:
                r = await stub.AddNode(hsm.AddNodeRequest(session_token=token, endpoint=endpoint,
                                                          peer_endpoint=peer_endpoint), timeout=JOIN_TIMEOUT_S)
                return r.member.node_id, r.backup_id
            finally:
                await _logout(stub, token)
        return await self._call(via, anchor, run)

    async def remove_node(self, via: str, anchor: str, node_id: str) -> str:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> str:
            token = await self._session(stub, via, t)
            try:
                r = await stub.RemoveNode(hsm.RemoveNodeRequest(session_token=token, node_id=node_id),
                                          timeout=JOIN_TIMEOUT_S)
                return r.backup_id
            finally:
                await _logout(stub, token)
        return await self._call(via, anchor, run)

    async def take_backup(self, endpoint: str, anchor: str) -> str:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> str:
            token = await self._session(stub, endpoint, t)
            try:
                return (await stub.CreateBackup(hsm.CreateBackupRequest(session_token=token),
                                                timeout=JOIN_TIMEOUT_S)).backup_id
            finally:
                await _logout(stub, token)
        return await self._call(endpoint, anchor, run)

    async def set_retention(self, endpoint: str, anchor: str, days: int) -> None:
        async def run(stub: hsm_grpc.HsmStub, t: float) -> None:
            token = await self._session(stub, endpoint, t)
            try:
                await stub.SetBackupRetention(hsm.SetBackupRetentionRequest(session_token=token, days=days),
                                              timeout=t)
            finally:
                await _logout(stub, token)
        await self._call(endpoint, anchor, run)


async def _pinned(endpoint: str) -> str:
    import asyncio
    return await asyncio.to_thread(channels.presented_certificate, endpoint, 3.0)


async def _logout(stub: hsm_grpc.HsmStub, token: str) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError):
        await stub.Logout(hsm.SessionRequest(session_token=token), timeout=5.0)
