"""Connecting custom key stores to their clusters: the ConnectionState machine.

ConnectCustomKeyStore returns at once; the work happens here: find the
cluster, check kmsuser on every active node, log in, rotate the kmsuser
password to a secret only the frontend knows, and keep sessions open while the
store is CONNECTED. Failures end in FAILED with AWS's ConnectionErrorCode.

The rotation is ordered so that a crash at any point leaves a password the
frontend can still recover (see ``_rotate``): the new password is sealed and
stored as *pending* before the HSM changes it, together with the version of the
kmsuser record it replaces; afterwards the record's version tells, without a
login attempt, which of the two passwords the cluster holds.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import string
from collections.abc import Awaitable, Callable

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm

from ..service.context import Context
from ..store.repository import CustomKeyStoreRecord
from .directory import ClusterDirectory
from .sessions import Credential, StoreSessions

log = logging.getLogger("kms_frontend.connector")
ALPHANUMERIC = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
CONNECTED, CONNECTING, DISCONNECTED, DISCONNECTING, FAILED = (
    "CONNECTED", "CONNECTING", "DISCONNECTED", "DISCONNECTING", "FAILED")


class ConnectFailure(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def seal_password(ctx: Context, store_id: str, password: str, version: int = 0, replaces: int | None = None) -> bytes:
    doc: dict = {"password": password, "version": version}
    if replaces is not None:
        doc["replaces_version"] = replaces
    return ctx.box.seal(json.dumps(doc).encode(), context=b"kmsuser-password:" + store_id.encode())


def open_password(ctx: Context, store_id: str, sealed: bytes) -> dict:
    return json.loads(ctx.box.open(sealed, context=b"kmsuser-password:" + store_id.encode()))


def _crash_point(name: str) -> None:
    """Fault injection for crash tests and chaos runs: KMS_CRASH_AT=<name> ends the
    process abruptly (as kill -9 would) at that point."""
    if os.environ.get("KMS_CRASH_AT") == name:
        log.warning("crash point reached", extra={"event": "crash_point", "point": name})
        os._exit(137)


class Connector:
    def __init__(self, ctx: Context, directory: ClusterDirectory, client_id: str) -> None:
        self.ctx, self.directory, self.client_id = ctx, directory, client_id
        self.sessions: dict[str, StoreSessions] = {}
        self.on_keys_changed: Callable[[str], Awaitable[None]] | None = None  # keys of a store changed state
        self._tasks: dict[str, asyncio.Task] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _keys_changed(self, store_id: str) -> None:
        if self.on_keys_changed is not None:
            await self.on_keys_changed(store_id)

    def _lock(self, store_id: str) -> asyncio.Lock:
        return self._locks.setdefault(store_id, asyncio.Lock())

    # ------------------------------------------------------------ entry points

    def start_connect(self, store_id: str) -> None:
        """Run the connection in the background (the caller already set CONNECTING)."""
        if store_id in self._tasks and not self._tasks[store_id].done():
            return
        self._tasks[store_id] = asyncio.get_running_loop().create_task(self._connect(store_id), name=f"connect-{store_id}")

    async def disconnect(self, store_id: str) -> None:
        """DISCONNECTING -> log out everywhere -> DISCONNECTED."""
        task = self._tasks.pop(store_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self._lock(store_id):
            # Keys become Unavailable at once (AWS), not once every HSM has answered the logout.
            await self.ctx.db(self.ctx.repo.mark_store_keys_unavailable, store_id)
            await self._keys_changed(store_id)
            await self._drop_sessions(store_id)
            await self.ctx.update_store(store_id, connection_state=DISCONNECTED, connection_error_code=None)
        log.info("disconnected", extra={"event": "store_disconnected", "store": store_id})

    async def resume(self) -> None:
        """At start: finish what a previous run left, re-open sessions of CONNECTED stores."""
        page = await self.ctx.db(self.ctx.repo.list_custom_key_stores, limit=1000)
        for store in page.items:
            if store.connection_state == CONNECTING:
                self.start_connect(store.custom_key_store_id)
            elif store.connection_state == DISCONNECTING:
                await self.disconnect(store.custom_key_store_id)
            elif store.connection_state == CONNECTED:
                self._tasks[store.custom_key_store_id] = asyncio.get_running_loop().create_task(
                    self._reestablish(store.custom_key_store_id))

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for store_id in list(self.sessions):
            await self._drop_sessions(store_id)

    async def _drop_sessions(self, store_id: str) -> None:
        s = self.sessions.pop(store_id, None)
        if s is not None:
            await s.close()

    # ------------------------------------------------------------ connect

    async def _connect(self, store_id: str) -> None:
        async with self._lock(store_id):
            store = await self.ctx.store_or_none(store_id)
            if store is None or store.connection_state != CONNECTING:
                return
            sessions: StoreSessions | None = None
            try:
                sessions, credential = await self._open(store, rotate=True)
                self.sessions[store_id] = sessions
                sessions.start()
                await self.ctx.db(self.ctx.repo.restore_store_keys, store_id)
                await self._keys_changed(store_id)
                await self.ctx.update_store(store_id, connection_state=CONNECTED, connection_error_code=None)
                log.info("connected", extra={"event": "store_connected", "store": store_id,
                                             "nodes": len(sessions.healthy())})
            except asyncio.CancelledError:
                if sessions is not None:
                    await sessions.close()
                raise
            except ConnectFailure as exc:
                await self._fail(store_id, sessions, exc.code, exc.detail)
            except grpc.aio.AioRpcError as exc:
                await self._fail(store_id, sessions, _network_or_internal(exc), exc.details() or exc.code().name)
            except Exception as exc:
                log.exception("connect failed", extra={"event": "connect_error", "store": store_id})
                await self._fail(store_id, sessions, "INTERNAL_ERROR", type(exc).__name__)

    async def _fail(self, store_id: str, sessions: StoreSessions | None, code: str, detail: str) -> None:
        if sessions is not None:
            await sessions.close()
        self.sessions.pop(store_id, None)
        await self.ctx.update_store(store_id, connection_state=FAILED, connection_error_code=code)
        log.warning("connect failed", extra={"event": "store_connect_failed", "store": store_id, "code": code,
                                             "detail": detail})

    async def _reestablish(self, store_id: str) -> None:
        """A CONNECTED store after a frontend restart: log in again with the password
        it knows (no rotation: this is not a new connection). The store stays
        CONNECTED whatever happens, as in AWS; crypto reports cluster problems."""
        backoff = 1.0
        while True:
            async with self._lock(store_id):
                store = await self.ctx.store_or_none(store_id)
                if store is None or store.connection_state != CONNECTED:
                    return
                try:
                    sessions, _ = await self._open(store, rotate=False)
                    self.sessions[store_id] = sessions
                    sessions.start()
                    log.info("sessions re-established", extra={"event": "store_resumed", "store": store_id})
                    return
                except (ConnectFailure, grpc.aio.AioRpcError) as exc:
                    log.warning("cannot re-establish sessions yet", extra={
                        "event": "store_resume_pending", "store": store_id, "detail": str(exc)[:200]})
                    if isinstance(exc, ConnectFailure) and exc.code in ("INVALID_CREDENTIALS", "USER_LOCKED_OUT"):
                        return  # retrying would only lock kmsuser out; an operator must act
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _open(self, store: CustomKeyStoreRecord, *, rotate: bool) -> tuple[StoreSessions, Credential]:
        store_id = store.custom_key_store_id
        # A fresh look (connecting is rare): a view even half a second old can show HSMs that
        # have died since, and the calls to them would then report network errors.
        info = await self.directory.lookup(store.cloud_hsm_cluster_id, max_age_s=0.0)
        if info is None:
            raise self._cluster_missing(store.cloud_hsm_cluster_id)
        if not info.active_endpoints:
            raise self._no_active_hsms(info.member_endpoints)
        current = open_password(self.ctx, store_id, store.sealed_password)
        sessions = StoreSessions(store_id, info.cluster_id, store.trust_anchor_certificate, self.directory,
                                 self.client_id, Credential(current["password"], int(current.get("version", 0))))
        try:
            users = {}
            for endpoint in info.active_endpoints:
                users[endpoint] = await sessions.kmsuser(endpoint)
            missing = [e for e, u in users.items() if u is None]
            if missing:
                raise ConnectFailure("USER_NOT_FOUND", f"kmsuser does not exist on {', '.join(missing)}")
            if any(u.locked for u in users.values() if u is not None):
                raise ConnectFailure("USER_LOCKED_OUT", "kmsuser is locked out")
            newest = max(users.items(), key=lambda kv: kv[1].version)  # type: ignore[union-attr]
            credential = await self._resolve_pending(store, sessions, newest[1].version)  # type: ignore[union-attr]
            first = newest[0]
            await _login(sessions, first, credential.password)
            if rotate:
                credential = await self._rotate(store_id, sessions, first, credential, newest[1].version)  # type: ignore[union-attr]
            sessions.credential = credential
            for endpoint in info.active_endpoints:
                if endpoint != first:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        user = await sessions.kmsuser(endpoint)
                        if user is not None and user.version >= credential.version:
                            await sessions.login(endpoint)
            return sessions, credential
        except BaseException:
            await sessions.close()
            raise

    async def _resolve_pending(self, store: CustomKeyStoreRecord, sessions: StoreSessions,
                               cluster_version: int) -> Credential:
        """A rotation interrupted by a crash: which password does the cluster hold?"""
        store_id = store.custom_key_store_id
        current = open_password(self.ctx, store_id, store.sealed_password)
        if store.pending_sealed_password is None:
            return Credential(current["password"], int(current.get("version", 0)))
        pending = open_password(self.ctx, store_id, store.pending_sealed_password)
        if cluster_version == pending.get("replaces_version"):
            await self.ctx.db(self.ctx.repo.abort_password_rotation, store_id)
            log.info("interrupted rotation had not reached the HSM", extra={"event": "rotation_aborted", "store": store_id})
            return Credential(current["password"], int(current.get("version", 0)))
        await self.ctx.db(self.ctx.repo.commit_password_rotation, store_id)
        await self.ctx.update_store(store_id, sealed_password=seal_password(
            self.ctx, store_id, pending["password"], cluster_version))
        log.info("interrupted rotation had reached the HSM", extra={"event": "rotation_recovered", "store": store_id})
        return Credential(pending["password"], cluster_version)

    async def _rotate(self, store_id: str, sessions: StoreSessions, endpoint: str, old: Credential,
                      old_version: int) -> Credential:
        new_password = "".join(secrets.choice(ALPHANUMERIC) for _ in range(PASSWORD_LENGTH))
        # 1. Remember the new password (sealed) before the HSM knows it.
        await self.ctx.db(self.ctx.repo.begin_password_rotation, store_id,
                          seal_password(self.ctx, store_id, new_password, replaces=old_version))
        _crash_point("rotation:pending-stored")
        # 2. Change it in the cluster (as kmsuser itself).
        s = sessions.node(endpoint)
        try:
            await s.stub.ChangePassword(hsm.ChangePasswordRequest(
                session_token=s.token, username="kmsuser", new_password=new_password), timeout=15)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "logged in" in (exc.details() or ""):
                await self.ctx.db(self.ctx.repo.abort_password_rotation, store_id)
                raise ConnectFailure("USER_LOGGED_IN", "kmsuser is logged in elsewhere") from None
            raise  # outcome unknown: the pending password stays until the version tells
        _crash_point("rotation:hsm-changed")
        # 3. The new password is now the current one, with the record version it belongs to.
        user = await sessions.kmsuser(endpoint)
        version = user.version if user is not None else 0
        await self.ctx.db(self.ctx.repo.commit_password_rotation, store_id)
        await self.ctx.update_store(store_id, sealed_password=seal_password(self.ctx, store_id, new_password, version))
        log.info("kmsuser password rotated", extra={"event": "password_rotated", "store": store_id})
        return Credential(new_password, version)

    def _cluster_missing(self, cluster_id: str) -> ConnectFailure:
        known = self.directory.last_members.get(cluster_id, [])
        if known and not any(p.reachable for e in known if (p := self.directory.probes.get(e)) is not None):
            return self._no_active_hsms(known)  # seen before, every HSM of it down now
        probes = list(self.directory.probes.values())
        if probes and not any(p.reachable for p in probes):
            return self._no_active_hsms([p.endpoint for p in probes])
        return ConnectFailure("CLUSTER_NOT_FOUND", f"no HSM reports cluster {cluster_id}")

    def _no_active_hsms(self, endpoints: list[str]) -> ConnectFailure:
        probes = [self.directory.probes.get(e) for e in endpoints]
        if any(p is not None and p.timed_out for p in probes):
            return ConnectFailure("NETWORK_ERRORS", "HSM nodes did not answer in time")
        return ConnectFailure("INSUFFICIENT_CLOUDHSM_HSMS", "the cluster has no active HSM")


async def _login(sessions: StoreSessions, endpoint: str, password: str) -> None:
    try:
        await sessions.login(endpoint, password)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise ConnectFailure("INVALID_CREDENTIALS", "the kmsuser password KMS holds is not the cluster's") from None
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            raise ConnectFailure("USER_LOCKED_OUT", "kmsuser is locked out") from None
        raise


def _network_or_internal(exc: grpc.aio.AioRpcError) -> str:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return "NETWORK_ERRORS"
    return "INTERNAL_ERROR"
