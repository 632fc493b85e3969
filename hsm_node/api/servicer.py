"""gRPC servicer of the client port: translates messages, nothing more.

Every rule lives in ``users``, ``keys``, ``membership`` and ``node``; here a
request becomes a call and an ``HsmError`` becomes a status with its message.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from plumbing.drain import CoreCalls, Gate
from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc
from protos.hsm.v1.metadata import DRAINING_KEY

from .. import __version__
from .. import records as rec
from ..appliance import ApplianceUser
from ..errors import HsmError, InvalidArgument, Unavailable
from ..keys import KeyRules
from ..membership import Membership
from ..node import HsmNode, WriteOutcome
from ..observability import CRYPTO_OPS, REQUEST_SECONDS, REQUESTS, request_id
from ..users import UserRules

log = logging.getLogger("hsm_node.api")

USER_TYPES: dict[int, str] = {pb.PRECO: "PRECO", pb.CO: "CO", pb.CU: "CU", pb.AU: "AU"}
USER_TYPE_PB = {"PRECO": pb.PRECO, "CO": pb.CO, "PCO": pb.CO, "CU": pb.CU, "AU": pb.AU}
NODE_STATES = {"UNINITIALIZED": pb.UNINITIALIZED, "INITIALIZED": pb.INITIALIZED, "ACTIVE": pb.ACTIVE, "DELETED": pb.DELETED}


def user_type(value: int, *, required: bool = True) -> str:
    if value == pb.USER_TYPE_UNSPECIFIED and not required:
        return ""
    if value not in USER_TYPES:
        raise InvalidArgument(f"user_type must be one of PRECO, CO, CU (got {value})")
    return USER_TYPES[value]


def write_pb(outcome: WriteOutcome) -> pb.WriteResult:
    return pb.WriteResult(replicas=outcome.replicas, node_ids=outcome.node_ids, members=outcome.members)


# Logged at debug when they succeed: crypto (the hot path) and the read-only calls frontends poll
# every second or few (discovery probes, session upkeep). Every other RPC (management) is logged
# at info; every failure at info.
QUIET_WHEN_OK = frozenset({"Encrypt", "Decrypt", "GenerateRandom", "GenerateDataKey",
                           "GetStatus", "DescribeCluster", "ListUsers", "KeepAlive"})


def rpc(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Map rule errors to statuses; never let a traceback reach a caller. Count, time
    and log each call (method, status code, request id; never the request's fields)."""
    method = fn.__name__
    seconds = REQUEST_SECONDS.labels(method)
    counters = {"OK": REQUESTS.labels(method, "OK")}
    ok_level = logging.DEBUG if method in QUIET_WHEN_OK else logging.INFO

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        code, detail = "OK", ""
        gate: Gate = self.gate
        gate.in_flight += 1
        try:
            if gate.closed:
                gate.last_refused = time.monotonic()
                raise Unavailable(SHUTTING_DOWN)
            return await fn(self, request, context)
        except HsmError as exc:
            code, detail = exc.code.name, exc.message
            await context.abort(exc.code, exc.message, trailing_metadata=exc.trailing_metadata())
        except grpc.aio.AbortError:
            code = "ABORTED_BY_HANDLER"
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            code, detail = "INTERNAL", f"incident {incident}"
            log.exception("internal error", extra={"event": "internal_error", "rpc": method, "incident": incident,
                                                   "request_id": request_id(context)})
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in the HSM (incident {incident}; see the node log)")
        finally:
            gate.in_flight -= 1
            elapsed = time.perf_counter() - started
            seconds.observe(elapsed)
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = REQUESTS.labels(method, code)
            counter.inc()
            level = ok_level if code == "OK" else logging.INFO
            if log.isEnabledFor(level):
                extra = {"event": "rpc", "method": method, "code": code, "duration_ms": round(elapsed * 1000, 3),
                         "request_id": request_id(context)}
                if detail:
                    extra["detail"] = detail[:300]
                log.log(level, f"{method} {code}", extra=extra)
    return wrapper


SHUTTING_DOWN = "the HSM is shutting down; retry on another node"
DRAINING_METADATA = ((DRAINING_KEY, "1"),)  # on a CryptoStream ended by a shutdown


class _Stream:
    """One open CryptoStream, for draining at shutdown."""
    __slots__ = ("task", "waiting")

    def __init__(self, task: asyncio.Task | None) -> None:
        self.task, self.waiting = task, False


class HsmServicer(pb_grpc.HsmServicer):
    def __init__(self, node: HsmNode, users: UserRules, keys: KeyRules, membership: Membership | None = None) -> None:
        self.node, self.users, self.keys, self.membership = node, users, keys, membership
        self.appliance = ApplianceUser(node.config.appliance_key, node.sessions)
        self.gate = Gate()          # unary calls being served; closed at SIGTERM
        self._streams: set[_Stream] = set()

    # ------------------------------------------------------------ graceful stop

    def drain(self) -> None:
        """At SIGTERM. gRPC's own shutdown cancels (CANCELLED) every call that reached the server
        but was not yet handed to a handler, so first: refuse new calls with UNAVAILABLE (retry
        elsewhere) while those in flight finish, and end every CryptoStream once the batch it is on
        has been answered (its caller moves to another node at once, and drops its session here:
        sessions end with the process)."""
        self.gate.close()
        for st in list(self._streams):
            if st.waiting and st.task is not None:
                st.task.cancel()  # idle between batches: nothing of the caller's is in progress here

    async def quiesce(self, timeout: float, core: CoreCalls | None = None) -> bool:
        """Wait (at most ``timeout``) until no call or stream is open, here or still in gRPC's
        core (``core``; without it: none refused lately)."""
        return await self.gate.quiesce(timeout, idle=lambda: not self._streams, core=core)

    # ------------------------------------------------------------ lifecycle

    def status(self) -> pb.NodeStatus:
        n = self.node
        return pb.NodeStatus(
            node_id=n.node_id, hsm_id=n.hsm_id, cluster_id=n.cluster_id, state=NODE_STATES[n.state],
            user_count=len(n.records.users), key_count=len(n.records.keys), cluster_csr_pem=n.cluster_csr(),
            cluster_certificate_pem=n.cluster_cert_pem, trust_anchor_pem=n.trust_anchor_pem,
            cluster_certificate_sha256=n.cluster_fingerprint(), ordinal=n.ordinal, endpoint=n.config.endpoint,
            peer_endpoint=n.config.peer_endpoint, consistency_hash=n.records.consistency_hash(),
            positions=n.positions, version=__version__,
        )

    @rpc
    async def GetStatus(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.NodeStatus:
        return self.status()

    @rpc
    async def Initialize(self, request: pb.InitializeRequest, context: grpc.aio.ServicerContext) -> pb.InitializeResponse:
        await self.node.initialize(request.signed_cluster_certificate_pem, request.trust_anchor_pem, request.cluster_id)
        return pb.InitializeResponse(cluster_id=self.node.cluster_id, state=NODE_STATES[self.node.state],
                                     preco_username="admin")

    # ------------------------------------------------------------ sessions & users

    @rpc
    async def Login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext) -> pb.LoginResponse:
        kind = user_type(request.user_type)
        if kind == "AU":  # the CloudHSM service's own user (appliance.py)
            s = self.appliance.login(request.username, request.password, request.client_id)
        else:
            s = await self.users.login(kind, request.username, request.password, request.client_id)
        return pb.LoginResponse(session_token=s.token, user_id=s.user_id, user_type=USER_TYPE_PB[s.user_type],
                                node_id=self.node.node_id)

    @rpc
    async def Logout(self, request: pb.SessionRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        self.users.logout(request.session_token)
        return pb.Empty()

    @rpc
    async def KeepAlive(self, request: pb.SessionRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        self.node.sessions.get(request.session_token)
        return pb.Empty()

    @rpc
    async def CreateUser(self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext) -> pb.CreateUserResponse:
        user, outcome = await self.users.create(request.session_token, user_type(request.user_type),
                                                request.username, request.password, request.this_node_only)
        return pb.CreateUserResponse(user=self._user(user, 0, False), write=write_pb(outcome))

    @rpc
    async def DeleteUser(self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.users.delete(request.session_token, request.username, request.this_node_only))

    @rpc
    async def ChangePassword(self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.users.change_password(
            request.session_token, user_type(request.user_type, required=False), request.username,
            request.new_password, request.this_node_only))

    @rpc
    async def ListUsers(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.ListUsersResponse:
        return pb.ListUsersResponse(users=[self._user(u, f, locked, self.node.records.version("user", u.name)[0])
                                           for u, f, locked in self.users.list()])

    @rpc
    async def SyncUser(self, request: pb.SyncUserRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.users.sync(request.session_token, request.username))

    @staticmethod
    def _user(u: rec.UserRecord, failures: int, locked: bool, version: int = 0) -> pb.User:
        return pb.User(user_id=u.user_id, user_type=USER_TYPE_PB[u.user_type], username=u.name,
                       login_failure_count=failures, locked=locked, version=version)

    # ------------------------------------------------------------ keys

    @rpc
    async def GenerateKey(self, request: pb.GenerateKeyRequest, context: grpc.aio.ServicerContext) -> pb.GenerateKeyResponse:
        key, outcome = await self.keys.generate(
            request.session_token, request.key_size_bytes, request.label, list(request.share_with_user_ids),
            request.min_replicas, request.timeout_ms, request.session_key)
        return pb.GenerateKeyResponse(key_handle=key.handle, write=write_pb(outcome))

    @rpc
    async def FindKeys(self, request: pb.FindKeysRequest, context: grpc.aio.ServicerContext) -> pb.FindKeysResponse:
        return pb.FindKeysResponse(key_handles=self.keys.find(request.session_token, request.label, request.owner_user_id))

    @rpc
    async def FindAllKeys(self, request: pb.FindAllKeysRequest, context: grpc.aio.ServicerContext) -> pb.FindAllKeysResponse:
        keys, digest = self.keys.find_all(request.session_token, request.user_id)
        return pb.FindAllKeysResponse(keys=[pb.KeyOwnership(key_handle=h, owned=o) for h, o in keys],
                                      key_hash=digest if request.include_hash else "", node_id=self.node.node_id)

    @rpc
    async def GetKeyInfo(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.KeyInfo:
        k = self.keys.info(request.session_token, request.key_handle)
        owner = self.node.records.user_by_id(k.owner_id)
        return pb.KeyInfo(
            key_handle=k.handle, label=k.label, owner_user_id=k.owner_id, owner_username=owner.name if owner else "",
            shared_user_ids=k.shared, key_size_bytes=k.size, key_type="AES",
            token=k.handle not in self.keys.session_keys, extractable=False, never_extractable=True,
            created_ms=k.created_ms, kcv=k.kcv)

    @rpc
    async def ShareKey(self, request: pb.ShareKeyRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.keys.share(request.session_token, request.key_handle, list(request.user_ids),
                                              request.unshare))

    @rpc
    async def DeleteKey(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.keys.delete(request.session_token, request.key_handle))

    @rpc
    async def SyncKey(self, request: pb.SyncKeyRequest, context: grpc.aio.ServicerContext) -> pb.WriteResult:
        return write_pb(await self.keys.sync(request.session_token, request.key_handle))

    # ------------------------------------------------------------ crypto

    @rpc
    async def Encrypt(self, request: pb.EncryptRequest, context: grpc.aio.ServicerContext) -> pb.EncryptResponse:
        return self._encrypt(request)

    @rpc
    async def Decrypt(self, request: pb.DecryptRequest, context: grpc.aio.ServicerContext) -> pb.DecryptResponse:
        return self._decrypt(request)

    @rpc
    async def GenerateRandom(self, request: pb.GenerateRandomRequest, context: grpc.aio.ServicerContext) -> pb.GenerateRandomResponse:
        return self._random(request)

    @rpc
    async def GenerateDataKey(self, request: pb.GenerateDataKeyRequest, context: grpc.aio.ServicerContext) -> pb.GenerateDataKeyResponse:
        return self._data_key(request)

    # Each crypto operation fills its response in place: the unary RPCs pass a new message, the
    # CryptoStream passes the member of the result it adds to its reply (so an operation on the
    # stream costs one message, not a response, a result wrapping a copy of it and a copy of that).

    def _encrypt(self, r: pb.EncryptRequest, out: pb.EncryptResponse | None = None) -> pb.EncryptResponse:
        out = pb.EncryptResponse() if out is None else out
        out.iv, out.ciphertext = self.keys.encrypt(r.session_token, r.key_handle, r.plaintext, r.aad)
        return out

    def _decrypt(self, r: pb.DecryptRequest, out: pb.DecryptResponse | None = None) -> pb.DecryptResponse:
        out = pb.DecryptResponse() if out is None else out
        out.plaintext = self.keys.decrypt(r.session_token, r.key_handle, r.iv, r.ciphertext, r.aad)
        return out

    def _random(self, r: pb.GenerateRandomRequest,
                out: pb.GenerateRandomResponse | None = None) -> pb.GenerateRandomResponse:
        out = pb.GenerateRandomResponse() if out is None else out
        out.random = self.keys.random(r.session_token, r.length)
        return out

    def _data_key(self, r: pb.GenerateDataKeyRequest,
                  out: pb.GenerateDataKeyResponse | None = None) -> pb.GenerateDataKeyResponse:
        out = pb.GenerateDataKeyResponse() if out is None else out
        pt, out.iv, out.ciphertext = self.keys.data_key(r.session_token, r.key_handle, r.length, r.aad)
        out.plaintext = b"" if r.without_plaintext else pt
        return out

    async def CryptoStream(self, request_iterator: AsyncIterator[pb.CryptoBatch],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CryptoBatchResult]:
        handlers = {"encrypt": self._encrypt, "decrypt": self._decrypt, "random": self._random,
                    "data_key": self._data_key}
        counts = CRYPTO_OPS
        st = _Stream(asyncio.current_task())
        self._streams.add(st)
        try:
            if self.gate.closed:
                self.gate.last_refused = time.monotonic()
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, trailing_metadata=DRAINING_METADATA)
            st.waiting = True
            async for batch in request_iterator:
                st.waiting = False
                reply = pb.CryptoBatchResult()
                add = reply.results.add
                for op in batch.ops:
                    kind = op.WhichOneof("op")
                    result = add(id=op.id)
                    try:
                        if kind is None:
                            raise InvalidArgument("crypto op has no operation set")
                        out = getattr(result, kind)
                        out.SetInParent()  # the oneof names this member even if every field stays empty
                        handlers[kind](getattr(op, kind), out)
                        counts[(kind, "OK")] += 1
                    except HsmError as exc:
                        result.error.CopyFrom(pb.CryptoError(code=exc.code.value[0], message=exc.message))
                        self._crypto_failed(op, kind, exc.code.name, exc.message)
                    except Exception:
                        log.exception("internal error in crypto stream", extra={
                            "event": "internal_error", "op": kind, "request_id": op.request_id[:128]})
                        result.error.CopyFrom(pb.CryptoError(code=grpc.StatusCode.INTERNAL.value[0],
                                                             message="internal error in the HSM (see the node log)"))
                        self._crypto_failed(op, kind, "INTERNAL", "internal error")
                yield reply
                if self.gate.closed:
                    break
                st.waiting = True
        except asyncio.CancelledError:
            if not (self.gate.closed and st.waiting):
                raise
            # drained while idle between batches
        finally:
            self._streams.discard(st)
        if self.gate.closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, trailing_metadata=DRAINING_METADATA)

    @staticmethod
    def _crypto_failed(op: pb.CryptoOp, kind: str | None, code: str, message: str) -> None:
        CRYPTO_OPS[(kind or "none", code)] += 1
        log.info("crypto op failed", extra={"event": "crypto_failed", "op": kind, "code": code,
                                            "detail": message[:300], "request_id": op.request_id[:128]})

    # ------------------------------------------------------------ membership & backups (see membership.py)

    def _membership(self) -> Membership:
        if self.membership is None:
            raise HsmError("cluster operations are not available on this node", grpc.StatusCode.UNIMPLEMENTED)
        return self.membership

    @rpc
    async def DescribeCluster(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Cluster:
        return self._membership().describe()

    @rpc
    async def AddNode(self, request: pb.AddNodeRequest, context: grpc.aio.ServicerContext) -> pb.AddNodeResponse:
        member, backup_id = await self._membership().add_node(request.session_token, request.endpoint,
                                                           request.peer_endpoint)
        return pb.AddNodeResponse(member=pb.Member(
            node_id=member.node_id, hsm_id=member.hsm_id, ordinal=member.ordinal, endpoint=member.endpoint,
            peer_endpoint=member.peer_endpoint), backup_id=backup_id)

    @rpc
    async def RemoveNode(self, request: pb.RemoveNodeRequest, context: grpc.aio.ServicerContext) -> pb.RemoveNodeResponse:
        return pb.RemoveNodeResponse(backup_id=await self._membership().remove_node(request.session_token, request.node_id))

    @rpc
    async def JoinCluster(self, request: pb.JoinClusterRequest, context: grpc.aio.ServicerContext) -> pb.NodeStatus:
        await self._membership().join(request.backup_id, request.node_id_expected, request.ordinal, request.cluster_id)
        return self.status()

    @rpc
    async def RestoreCluster(self, request: pb.RestoreClusterRequest, context: grpc.aio.ServicerContext) -> pb.RestoreClusterResponse:
        cluster_id = await self._membership().restore_cluster(request.backup_id, request.cluster_id)
        return pb.RestoreClusterResponse(cluster_id=cluster_id, source_backup_id=request.backup_id)

    @rpc
    async def CreateBackup(self, request: pb.CreateBackupRequest, context: grpc.aio.ServicerContext) -> pb.Backup:
        return backup_pb(await self._membership().create_backup(request.session_token))

    @rpc
    async def ListBackups(self, request: pb.ListBackupsRequest, context: grpc.aio.ServicerContext) -> pb.ListBackupsResponse:
        metas = self._membership().list_backups(request.cluster_id, request.include_deleted)
        return pb.ListBackupsResponse(backups=[backup_pb(m) for m in metas])

    @rpc
    async def DescribeBackup(self, request: pb.BackupRequest, context: grpc.aio.ServicerContext) -> pb.Backup:
        return backup_pb(self._membership().describe_backup(request.backup_id))

    @rpc
    async def DeleteBackup(self, request: pb.BackupRequest, context: grpc.aio.ServicerContext) -> pb.Backup:
        return backup_pb(await self._membership().delete_backup(request.session_token, request.backup_id))

    @rpc
    async def RestoreBackup(self, request: pb.BackupRequest, context: grpc.aio.ServicerContext) -> pb.Backup:
        return backup_pb(await self._membership().restore_backup(request.session_token, request.backup_id))

    @rpc
    async def SetBackupRetention(self, request: pb.SetBackupRetentionRequest, context: grpc.aio.ServicerContext) -> pb.Cluster:
        await self._membership().set_retention(request.session_token, request.days)
        return self._membership().describe()


def backup_pb(m: Any) -> pb.Backup:
    return pb.Backup(
        backup_id=m.backup_id, cluster_id=m.cluster_id, state=pb.BackupState.Value(f"BACKUP_{m.state}"),
        create_timestamp_ms=m.create_timestamp_ms, delete_timestamp_ms=m.delete_timestamp_ms,
        source_backup_id=m.source_backup_id, source_cluster_id=m.source_cluster_id, user_count=m.user_count,
        key_count=m.key_count, trigger=str(m.trigger), never_expires=m.never_expires,
        cluster_certificate_sha256=m.cluster_certificate_sha256, size_bytes=m.size_bytes)
