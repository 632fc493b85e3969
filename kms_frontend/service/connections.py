"""Connecting custom key stores to their clusters: the ConnectionState machine (AWS KMS
Developer Guide, "Connecting and disconnecting an AWS CloudHSM key store").

ConnectCustomKeyStore returns at once; the work happens here: find the cluster, check kmsuser
on every active node, log in, rotate the kmsuser password to a secret only the frontend knows,
and keep sessions open while the store is CONNECTED. Failures end in FAILED with AWS's
ConnectionErrorCode. The HSMs are reached only through the typed client (``cluster/``).

The rotation is ordered so that a crash at any point leaves a password the frontend can still
recover (see ``_rotate``): the new password is sealed and stored as *pending* before the HSM
changes it, together with the version of the kmsuser record it replaces; afterwards the
record's version tells, without a login attempt, which of the two passwords the cluster holds.
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

from ..cluster.directory import ClusterDirectory
from ..cluster.errors import (
    HsmCallFailed,
    HsmClientError,
    InvalidCredentials,
    KmsuserLockedOut,
    KmsuserLoggedIn,
)
from ..cluster.hsm_client import HsmClients, KmsuserOnNode, StoreHsmClient
from ..cluster.kmsuser_sessions import Credential
from ..store.repository import ConnectionState, CustomKeyStoreRecord
from .context import Context

log = logging.getLogger("kms_frontend.connections")
ALPHANUMERIC = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
FOLLOW_OPEN_S = 5.0  # several workers: how long a worker waits for its own sessions of a store just CONNECTED


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


class Connections:
    """The ConnectionState machine of every custom key store, and the typed HSM clients of the
    connected ones (``clients.get(store_id)``)."""

    def __init__(self, ctx: Context, clients: HsmClients) -> None:
        self.ctx, self.clients = ctx, clients
        self.directory: ClusterDirectory = clients.directory
        self.on_keys_changed: Callable[[str], Awaitable[None]] | None = None  # keys of a store changed state
        # Several workers (service/workers.py): only the leader connects stores and rotates the
        # kmsuser password; a follower opens sessions of CONNECTED stores with the stored password.
        self.leader = True
        self.sibling_client_ids: list[str] = []  # the other workers' HSM client ids
        self._tasks: dict[str, asyncio.Task] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _keys_changed(self, store_id: str) -> None:
        if self.on_keys_changed is not None:
            await self.on_keys_changed(store_id)

    def _lock(self, store_id: str) -> asyncio.Lock:
        return self._locks.setdefault(store_id, asyncio.Lock())

    # ------------------------------------------------------------ entry points

    def start_connect(self, store_id: str) -> None:
        """Run the connection in the background (the caller already set CONNECTING). In a follower
        nothing: the leader sees the store CONNECTING (the change log) and connects it."""
        if not self.leader:
            return
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
            await self.clients.drop(store_id)
            await self.ctx.update_store(store_id, connection_state=ConnectionState.DISCONNECTED, connection_error_code=None)
        log.info("disconnected", extra={"event": "store_disconnected", "store": store_id})

    async def resume(self, sessions: bool = True) -> None:
        """At start (and when a worker becomes the leader): finish what a previous run left (the
        leader), re-open sessions of CONNECTED stores (``sessions``)."""
        page = await self.ctx.db(self.ctx.repo.list_custom_key_stores, limit=1000)
        for store in page.items:
            if store.connection_state == ConnectionState.CONNECTING and self.leader:
                self.start_connect(store.custom_key_store_id)
            elif store.connection_state == ConnectionState.DISCONNECTING and self.leader:
                await self.disconnect(store.custom_key_store_id)
            elif store.connection_state == ConnectionState.CONNECTED and sessions:
                self._tasks[store.custom_key_store_id] = asyncio.get_running_loop().create_task(
                    self._reestablish(store.custom_key_store_id))

    async def follow(self, store_id: str, store: CustomKeyStoreRecord | None) -> None:
        """Another worker changed a store (several workers): the leader connects a store left
        CONNECTING (and stops connecting one being disconnected); every worker opens sessions of a
        CONNECTED store it has none for, and closes them when the store is disconnected or gone."""
        state = store.connection_state if store is not None else None
        task = self._tasks.get(store_id)
        running = task is not None and not task.done()
        if state == ConnectionState.CONNECTING:
            self.start_connect(store_id)
        elif state == ConnectionState.CONNECTED:
            if self.clients.get(store_id) is None and not running:
                task = self._tasks[store_id] = asyncio.get_running_loop().create_task(self._reestablish(store_id))
                await asyncio.wait([task], timeout=FOLLOW_OPEN_S)  # the first attempt; later ones go on alone
        elif state in (None, ConnectionState.DISCONNECTING, ConnectionState.DISCONNECTED):
            if running:
                assert task is not None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.clients.get(store_id) is not None:
                await self.clients.drop(store_id)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await self.clients.close()

    # ------------------------------------------------------------ connect

    async def _connect(self, store_id: str) -> None:
        async with self._lock(store_id):
            store = await self.ctx.store_or_none(store_id)
            if store is None or store.connection_state != ConnectionState.CONNECTING:
                return
            client: StoreHsmClient | None = None
            try:
                client = await self._open(store, rotate=True)
                self.clients.publish(client)
                client.start()
                await self.ctx.db(self.ctx.repo.restore_store_keys, store_id)
                await self._keys_changed(store_id)
                await self.ctx.update_store(store_id, connection_state=ConnectionState.CONNECTED, connection_error_code=None)
                log.info("connected", extra={"event": "store_connected", "store": store_id,
                                             "nodes": client.open_sessions()})
            except asyncio.CancelledError:
                await self._discard(store_id, client)
                raise
            except ConnectFailure as exc:
                await self._fail(store_id, client, exc.code, exc.detail)
            except HsmCallFailed as exc:
                await self._fail(store_id, client, "NETWORK_ERRORS" if exc.network else "INTERNAL_ERROR", str(exc))
            except Exception as exc:
                log.exception("connect failed", extra={"event": "connect_error", "store": store_id})
                await self._fail(store_id, client, "INTERNAL_ERROR", type(exc).__name__)

    async def _discard(self, store_id: str, client: StoreHsmClient | None) -> None:
        if client is not None and self.clients.get(store_id) is client:
            await self.clients.drop(store_id)
        elif client is not None:
            await client.close()

    async def _fail(self, store_id: str, client: StoreHsmClient | None, code: str, detail: str) -> None:
        await self._discard(store_id, client)
        await self.ctx.update_store(store_id, connection_state=ConnectionState.FAILED, connection_error_code=code)
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
                if store is None or store.connection_state != ConnectionState.CONNECTED:
                    return
                if not self.leader and store.pending_sealed_password is not None:
                    return  # the leader settles the rotation; its write brings this worker back here
                try:
                    client = await self._open(store, rotate=False)
                    self.clients.publish(client)
                    client.start()
                    log.info("sessions re-established", extra={"event": "store_resumed", "store": store_id})
                    return
                except (ConnectFailure, HsmClientError) as exc:
                    log.warning("cannot re-establish sessions yet", extra={
                        "event": "store_resume_pending", "store": store_id, "detail": str(exc)[:200]})
                    if isinstance(exc, ConnectFailure) and exc.code in ("INVALID_CREDENTIALS", "USER_LOCKED_OUT"):
                        return  # retrying would only lock kmsuser out; an operator must act
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _open(self, store: CustomKeyStoreRecord, *, rotate: bool) -> StoreHsmClient:
        store_id = store.custom_key_store_id
        # A fresh look (connecting is rare): a view even half a second old can show HSMs that
        # have died since, and the calls to them would then report network errors.
        info = await self.directory.lookup(store.cloud_hsm_cluster_id, max_age_s=0.0)
        if info is None:
            raise self._cluster_missing(store.cloud_hsm_cluster_id)
        if not info.active_endpoints:
            raise self._no_active_hsms(info.member_endpoints)
        current = open_password(self.ctx, store_id, store.sealed_password)
        client = self.clients.new(store_id, info.cluster_id, store.trust_anchor_certificate,
                                  Credential(current["password"], int(current.get("version", 0))))
        try:
            users: dict[str, KmsuserOnNode | None] = {}
            for endpoint in info.active_endpoints:
                users[endpoint] = await client.kmsuser(endpoint)
            missing = [e for e, u in users.items() if u is None]
            if missing:
                raise ConnectFailure("USER_NOT_FOUND", f"kmsuser does not exist on {', '.join(missing)}")
            found = {e: u for e, u in users.items() if u is not None}
            if any(u.locked for u in found.values()):
                raise ConnectFailure("USER_LOCKED_OUT", "kmsuser is locked out")
            first, newest = max(found.items(), key=lambda kv: kv[1].version)
            credential = await self._resolve_pending(store, newest.version)
            await _login(client, first, credential.password)
            if rotate and self.sibling_client_ids:
                # A store is connected only from DISCONNECTED, when no worker should hold a session:
                # any left is a dead worker's, and would refuse the rotation (USER_LOGGED_IN).
                for endpoint in info.active_endpoints:
                    await client.end_sessions_of(endpoint, self.sibling_client_ids, credential.password)
            if rotate:
                credential = await self._rotate(store_id, client, first, newest.version)
            client.credential = credential
            for endpoint in info.active_endpoints:
                if endpoint != first:
                    await client.try_login(endpoint)
            return client
        except BaseException:
            await client.close()
            raise

    async def _resolve_pending(self, store: CustomKeyStoreRecord, cluster_version: int) -> Credential:
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

    async def _rotate(self, store_id: str, client: StoreHsmClient, endpoint: str, old_version: int) -> Credential:
        """AWS: connecting changes the kmsuser password to one only KMS knows."""
        new_password = "".join(secrets.choice(ALPHANUMERIC) for _ in range(PASSWORD_LENGTH))
        # 1. Remember the new password (sealed) before the HSM knows it.
        await self.ctx.db(self.ctx.repo.begin_password_rotation, store_id,
                          seal_password(self.ctx, store_id, new_password, replaces=old_version))
        _crash_point("rotation:pending-stored")
        # 2. Change it in the cluster (as kmsuser itself).
        try:
            await client.change_kmsuser_password(endpoint, new_password)
        except KmsuserLoggedIn:
            await self.ctx.db(self.ctx.repo.abort_password_rotation, store_id)
            raise ConnectFailure("USER_LOGGED_IN", "kmsuser is logged in elsewhere") from None
        # Any other failure: the outcome is unknown, and the pending password stays until the
        # record's version tells (the next connect).
        _crash_point("rotation:hsm-changed")
        # 3. The new password is now the current one, with the record version it belongs to.
        user = await client.kmsuser(endpoint)
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


async def _login(client: StoreHsmClient, endpoint: str, password: str) -> None:
    try:
        await client.login(endpoint, password)
    except InvalidCredentials:
        raise ConnectFailure("INVALID_CREDENTIALS", "the kmsuser password KMS holds is not the cluster's") from None
    except KmsuserLockedOut:
        raise ConnectFailure("USER_LOCKED_OUT", "kmsuser is locked out") from None
