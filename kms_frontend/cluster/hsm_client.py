"""The typed HSM client: the one place in the frontend that speaks ``hsm.v1`` to HSM nodes for a
custom key store. The service layer calls methods with domain arguments (labels, key handles,
bytes) and gets domain results and the errors of :mod:`.errors`; it never sees a protobuf
message or a gRPC status.

Key management calls are unary and move to another node when one is unreachable or lost its
session; crypto calls travel on each node's batching stream (:mod:`.crypto_streams`).
Everything runs as kmsuser, over the store's :class:`~.kmsuser_sessions.KmsuserSessions`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1.metadata import ERROR_KEY, KEY_LIMIT_KEY, REPLICAS_KEY

from .crypto_streams import HsmOpError, run_op
from .directory import ClusterDirectory
from .errors import (
    BadCiphertext,
    HsmCallFailed,
    HsmStorageFull,
    InvalidCredentials,
    KeyLimitReached,
    KmsuserLockedOut,
    KmsuserLoggedIn,
    NoHsmAvailable,
    TooFewReplicas,
)
from .kmsuser_sessions import KMSUSER, Credential, KmsuserSessions, NodeSession

T = TypeVar("T")
KEY_CALL_TIMEOUT_S = 10.0

# On key calls these only say "not this node": another node can take the call.
# FAILED_PRECONDITION: the node is not ACTIVE (e.g. just removed and answering as DELETED);
# RESOURCE_EXHAUSTED: its storage is full, another may have room; DATA_LOSS: its storage was found
# damaged (it must be restored from a backup); UNAUTHENTICATED: it restarted and forgot the session;
# UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED: it did not answer.
_NEXT_NODE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.DATA_LOSS})
_NETWORK = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class HsmKeyInfo:
    handle: int
    label: str
    owner: str  # the owner's user name


@dataclass(frozen=True)
class KmsuserOnNode:
    """kmsuser as one node sees it: whether it is locked, and its record's version (changes with
    every password change, so it tells which password a node holds without a login)."""

    locked: bool
    version: int


def _reason(exc: grpc.aio.AioRpcError) -> str:
    return dict(exc.trailing_metadata() or ()).get(ERROR_KEY, "")


def _failed(exc: grpc.aio.AioRpcError) -> HsmCallFailed:
    return HsmCallFailed(exc.details() or exc.code().name, network=exc.code() in _NETWORK)


class StoreHsmClient:
    """The HSMs of one custom key store's cluster, as kmsuser."""

    def __init__(self, sessions: KmsuserSessions) -> None:
        self.sessions = sessions

    @property
    def store_id(self) -> str:
        return self.sessions.store_id

    @property
    def credential(self) -> Credential:
        return self.sessions.credential

    @credential.setter
    def credential(self, credential: Credential) -> None:
        self.sessions.credential = credential

    def open_sessions(self) -> int:
        return len(self.sessions.healthy())

    def start(self) -> None:
        """Keep sessions open on every active node from now on (logins, keep-alives)."""
        self.sessions.start()

    async def close(self) -> None:
        """Log out everywhere and close the channels."""
        await self.sessions.close()

    # ------------------------------------------------------------ keys (unary, any node)

    async def _on_any_node(self, call: Callable[[NodeSession], Awaitable[T]]) -> T:
        """Run ``call`` on a node with an open session, trying the next node when one cannot take it."""
        tried: set[str] = set()
        last: grpc.aio.AioRpcError | None = None
        too_few: TooFewReplicas | None = None
        while True:
            node = self.sessions.pick(exclude=tried)
            if node is None:
                if too_few is not None:
                    raise too_few
                if last is not None and last.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise HsmStorageFull(last.details() or "storage full")
                raise NoHsmAvailable(f"no HSM node answered ({last.code().name if last else 'none logged in'})")
            tried.add(node.endpoint)
            try:
                return await call(node)
            except grpc.aio.AioRpcError as exc:
                if _reason(exc) == "KeyLimitExceeded":  # every node holds the same keys: none would take it
                    limit = dict(exc.trailing_metadata() or ()).get(KEY_LIMIT_KEY, "0")
                    raise KeyLimitReached(int(limit) if limit.isdigit() else 0, exc.details() or "") from None
                if _reason(exc) == "InsufficientReplicas":
                    # That node could not reach enough peers; another one may (a node that just
                    # came back has not linked up with its peers yet). Report the best count.
                    confirmed = int(dict(exc.trailing_metadata() or ()).get(REPLICAS_KEY, "1") or 1)
                    if too_few is None or confirmed > too_few.confirmed:
                        too_few = TooFewReplicas(confirmed, 0, exc.details() or "")
                    continue
                if exc.code() not in _NEXT_NODE:
                    raise _failed(exc) from None
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self.sessions.invalidate(node.endpoint)
                last = exc

    async def generate_key(self, label: str, *, size_bytes: int, min_replicas: int, timeout_ms: int) -> int:
        """A persistent AES key owned by kmsuser, confirmed on ``min_replicas`` HSMs; its handle."""
        async def generate(n: NodeSession) -> int:
            r = await n.stub.GenerateKey(hsm.GenerateKeyRequest(
                session_token=n.token, key_size_bytes=size_bytes, label=label, min_replicas=min_replicas,
                timeout_ms=timeout_ms), timeout=timeout_ms / 1000 + 5)
            return int(r.key_handle)
        try:
            return await self._on_any_node(generate)
        except TooFewReplicas as exc:
            raise TooFewReplicas(exc.confirmed, min_replicas, str(exc)) from None

    async def find_keys(self, label: str | None = None) -> list[int]:
        """Handles of the keys kmsuser can see, or of those with this label."""
        async def find(n: NodeSession) -> list[int]:
            r = await n.stub.FindKeys(hsm.FindKeysRequest(session_token=n.token, label=label or ""),
                                      timeout=KEY_CALL_TIMEOUT_S)
            return list(r.key_handles)
        return await self._on_any_node(find)

    async def key_info(self, handle: int) -> HsmKeyInfo:
        async def info(n: NodeSession) -> HsmKeyInfo:
            r = await n.stub.GetKeyInfo(hsm.KeyRequest(session_token=n.token, key_handle=handle),
                                        timeout=KEY_CALL_TIMEOUT_S)
            return HsmKeyInfo(int(r.key_handle), r.label, r.owner_username)
        return await self._on_any_node(info)

    async def delete_key(self, handle: int) -> None:
        async def delete(n: NodeSession) -> None:
            await n.stub.DeleteKey(hsm.KeyRequest(session_token=n.token, key_handle=handle),
                                   timeout=KEY_CALL_TIMEOUT_S)
        await self._on_any_node(delete)

    # ------------------------------------------------------------ crypto (streams, any node)

    async def _crypto(self, make_op: Callable[[str], hsm.CryptoOp]) -> hsm.CryptoResult:
        try:
            return await run_op(self.sessions, make_op)
        except HsmOpError as exc:
            raise HsmCallFailed(exc.message) from None

    async def encrypt(self, handle: int, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """AES-GCM under the key: (iv, ciphertext with tag)."""
        # Built in one go (a dict for the oneof member, no separate request message copied in):
        # it is rebuilt for each node tried, with that node's session.
        result = await self._crypto(lambda token: hsm.CryptoOp(encrypt={
            "session_token": token, "key_handle": handle, "plaintext": plaintext, "aad": aad}))
        return result.encrypt.iv, result.encrypt.ciphertext

    async def decrypt(self, handle: int, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            result = await run_op(self.sessions, lambda token: hsm.CryptoOp(decrypt={
                "session_token": token, "key_handle": handle, "iv": iv, "ciphertext": ciphertext, "aad": aad}))
        except HsmOpError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise BadCiphertext(exc.message) from None
            raise HsmCallFailed(exc.message) from None
        return result.decrypt.plaintext

    async def data_key(self, handle: int, length: int, aad: bytes) -> tuple[bytes, bytes, bytes]:
        """A new data key of ``length`` bytes: (iv, ciphertext with tag, plaintext)."""
        result = await self._crypto(lambda token: hsm.CryptoOp(data_key={
            "session_token": token, "key_handle": handle, "length": length, "aad": aad}))
        dk = result.data_key
        return dk.iv, dk.ciphertext, dk.plaintext

    async def random(self, length: int) -> bytes:
        result = await self._crypto(lambda token: hsm.CryptoOp(random={"session_token": token, "length": length}))
        return result.random.random

    # ------------------------------------------------------------ kmsuser on one node (connecting)

    async def kmsuser(self, endpoint: str) -> KmsuserOnNode | None:
        """kmsuser on this node, or None when the node has no such user."""
        try:
            user = await self.sessions.kmsuser(endpoint)
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from None
        return None if user is None else KmsuserOnNode(bool(user.locked), int(user.version))

    async def login(self, endpoint: str, password: str | None = None) -> None:
        """Open a kmsuser session on this node (with ``password``, or the current credential)."""
        try:
            await self.sessions.login(endpoint, password)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise InvalidCredentials(exc.details() or "login failed") from None
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise KmsuserLockedOut(exc.details() or "locked out") from None
            raise _failed(exc) from None

    async def end_sessions_of(self, endpoint: str, client_ids: list[str], password: str) -> None:
        """Best effort: end kmsuser's sessions of these other clients on this node (the sessions a
        worker that died left behind would refuse the password change as "logged in elsewhere")."""
        for client_id in client_ids:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.sessions.end_session_of(endpoint, client_id, password)

    async def try_login(self, endpoint: str) -> None:
        """Log in to this node too if it already holds the current password; never spend a
        failed login (a node that missed the last change is picked up later by the upkeep)."""
        with contextlib.suppress(grpc.aio.AioRpcError):
            user = await self.sessions.kmsuser(endpoint)
            if user is not None and user.version >= self.credential.version:
                await self.sessions.login(endpoint)

    async def change_kmsuser_password(self, endpoint: str, new_password: str) -> None:
        """Change kmsuser's password in the cluster, as kmsuser, through this node's session."""
        s = self.sessions.node(endpoint)
        try:
            await s.stub.ChangePassword(hsm.ChangePasswordRequest(
                session_token=s.token, username=KMSUSER, new_password=new_password), timeout=15)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "logged in" in (exc.details() or ""):
                raise KmsuserLoggedIn(exc.details() or "kmsuser is logged in elsewhere") from None
            raise _failed(exc) from None


class HsmClients:
    """The typed clients of the connected custom key stores, and how to make one."""

    def __init__(self, directory: ClusterDirectory, client_id: str) -> None:
        self.directory, self.client_id = directory, client_id
        self._clients: dict[str, StoreHsmClient] = {}

    def new(self, store_id: str, cluster_id: str, trust_anchor_pem: str, credential: Credential) -> StoreHsmClient:
        """A client for a store, with no session open yet (see :meth:`StoreHsmClient.login`)."""
        return StoreHsmClient(KmsuserSessions(store_id, cluster_id, trust_anchor_pem, self.directory,
                                              self.client_id, credential))

    def publish(self, client: StoreHsmClient) -> None:
        """From now on, the store's operations go through this client."""
        self._clients[client.store_id] = client

    def get(self, store_id: str) -> StoreHsmClient | None:
        return self._clients.get(store_id)

    def require(self, store_id: str) -> StoreHsmClient:
        client = self._clients.get(store_id)
        if client is None:
            raise NoHsmAvailable("the custom key store has no kmsuser sessions")
        return client

    def open_sessions(self) -> dict[str, int]:
        """Open kmsuser sessions per store (read by /metrics)."""
        return {store_id: c.open_sessions() for store_id, c in dict(self._clients).items()}

    async def drop(self, store_id: str) -> None:
        client = self._clients.pop(store_id, None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        for store_id in list(self._clients):
            await self.drop(store_id)
