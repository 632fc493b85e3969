"""The kmsuser sessions of one connected custom key store: one per active node.

Sessions are opened over channels verified against the store's trust anchor.
A maintenance loop logs in to nodes that (re)appear, but only once a node
already holds the current kmsuser password (its record version is not older
than ours), so the frontend never spends failed logins that would lock kmsuser
out. Sessions are kept alive while idle and re-opened when a node restarts.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1 import hsm_pb2_grpc as hsm_grpc

from ..observability import REQUEST_ID
from . import channels
from .directory import ClusterDirectory

if TYPE_CHECKING:
    from .crypto_streams import NodeStream

log = logging.getLogger("kms_frontend.sessions")
KMSUSER = "kmsuser"
RPC_TIMEOUT_S = 5.0
KEEPALIVE_EVERY_S = 60.0
MAINTAIN_EVERY_S = 1.0


@dataclass
class Credential:
    password: str
    version: int = 0  # kmsuser record version this password belongs to (0 = unknown)


@dataclass
class NodeSession:
    endpoint: str
    channel: grpc.aio.Channel
    stub: hsm_grpc.HsmStub
    token: str = ""
    node_id: str = ""
    last_used: float = 0.0
    refused_version: int = -1  # a login failed at this kmsuser version: do not retry until it changes
    crypto_stream: NodeStream | None = None  # opened on first use

    @property
    def open(self) -> bool:
        return bool(self.token)

    @property
    def responsive(self) -> bool:
        """Open, and not sitting on crypto work it has not answered for a while (a paused node)."""
        return bool(self.token) and (self.crypto_stream is None or not self.crypto_stream.stalled)


class KmsuserSessions:
    def __init__(self, store_id: str, cluster_id: str, trust_anchor_pem: str, directory: ClusterDirectory,
                 client_id: str, credential: Credential) -> None:
        self.store_id, self.cluster_id = store_id, cluster_id
        self.trust_anchor = trust_anchor_pem.encode()
        self.directory = directory
        self.client_id = client_id
        self.credential = credential
        self.nodes: dict[str, NodeSession] = {}
        self._rr = itertools.count()
        self._task: asyncio.Task | None = None
        self._discovered = asyncio.Event()  # the directory refreshed: upkeep runs at once

    # ------------------------------------------------------------ node handles

    def node(self, endpoint: str) -> NodeSession:
        s = self.nodes.get(endpoint)
        if s is None:
            ch = channels.secure(endpoint, self.trust_anchor)
            s = self.nodes[endpoint] = NodeSession(endpoint, ch, hsm_grpc.HsmStub(ch))
        return s

    async def kmsuser(self, endpoint: str) -> hsm.User | None:
        users = await self.node(endpoint).stub.ListUsers(hsm.Empty(), timeout=RPC_TIMEOUT_S)
        return next((u for u in users.users if u.username == KMSUSER), None)

    async def login(self, endpoint: str, password: str | None = None) -> NodeSession:
        s = self.node(endpoint)
        r = await s.stub.Login(hsm.LoginRequest(user_type=hsm.CU, username=KMSUSER,
                                                password=password or self.credential.password,
                                                client_id=self.client_id), timeout=RPC_TIMEOUT_S)
        s.token, s.node_id, s.last_used = r.session_token, r.node_id, time.monotonic()
        return s

    async def end_session_of(self, endpoint: str, client_id: str, password: str) -> None:
        """End kmsuser's session of another client on this node, if any: a login as that client
        replaces its session (one per user and client on a node), and the logout ends ours."""
        s = self.node(endpoint)
        r = await s.stub.Login(hsm.LoginRequest(user_type=hsm.CU, username=KMSUSER, password=password,
                                                client_id=client_id), timeout=RPC_TIMEOUT_S)
        await s.stub.Logout(hsm.SessionRequest(session_token=r.session_token), timeout=RPC_TIMEOUT_S)

    def healthy(self) -> list[NodeSession]:
        return [s for s in self.nodes.values() if s.open]

    def pick(self, exclude: set[str] = frozenset()) -> NodeSession | None:  # type: ignore[assignment]
        live = [s for s in self.healthy() if s.endpoint not in exclude]
        live = [s for s in live if s.responsive] or live  # a stalled node only when nothing else is left
        return live[next(self._rr) % len(live)] if live else None

    def invalidate(self, endpoint: str) -> None:
        s = self.nodes.get(endpoint)
        if s is not None:
            s.token = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self.directory.on_refresh.append(self._discovered.set)
            self._task = asyncio.get_running_loop().create_task(self._maintain(), name=f"sessions-{self.store_id}")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.directory.on_refresh.remove(self._discovered.set)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for s in self.nodes.values():
            if s.crypto_stream is not None:
                s.crypto_stream.close("store closing")
            if s.token:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await s.stub.Logout(hsm.SessionRequest(session_token=s.token), timeout=2)
            await s.channel.close()
        self.nodes.clear()

    async def _maintain(self) -> None:
        REQUEST_ID.set("")  # background upkeep: not part of the request that connected the store
        while True:
            # After each discovery round (a node that came back is logged in to at once), and at
            # least every MAINTAIN_EVERY_S (keep-alives).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._discovered.wait(), MAINTAIN_EVERY_S)
            self._discovered.clear()
            try:
                await self.maintain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session maintenance failed", extra={"event": "sessions_error", "store": self.store_id})

    async def maintain_once(self) -> None:
        info = self.directory.clusters.get(self.cluster_id)
        active = set(info.active_endpoints) if info else set()
        now = time.monotonic()
        for endpoint in active:
            s = self.node(endpoint)
            if not s.open:
                await self._try_login(s)
            elif now - s.last_used > KEEPALIVE_EVERY_S:
                try:
                    await s.stub.KeepAlive(hsm.SessionRequest(session_token=s.token), timeout=RPC_TIMEOUT_S)
                    s.last_used = now
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                        s.token = ""  # the node restarted: log in again next round
        for endpoint, s in self.nodes.items():
            if endpoint not in active and s.open:
                # Gone from the active set, or the whole cluster is unreachable (info is None): a
                # node that comes back may have restarted and forgotten the session. Log in again then.
                s.token = ""
                log.info("kmsuser session lost", extra={"event": "session_lost", "store": self.store_id,
                                                        "endpoint": endpoint})

    async def _try_login(self, s: NodeSession) -> None:
        try:
            user = await self.kmsuser(s.endpoint)
            if user is None or user.locked or user.version < self.credential.version or user.version == s.refused_version:
                return
            try:
                await self.login(s.endpoint)
                log.info("kmsuser session opened", extra={"event": "session_opened", "store": self.store_id,
                                                          "endpoint": s.endpoint})
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    s.refused_version = user.version
                    log.warning("kmsuser login refused", extra={"event": "session_refused", "store": self.store_id,
                                                                "endpoint": s.endpoint, "code": exc.code().name})
        except grpc.aio.AioRpcError:
            pass  # unreachable for now
