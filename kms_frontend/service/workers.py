"""Several frontend processes on one machine (``kms-frontend --workers N``): what keeps each
worker's memory in step with the others' writes, and which worker leads.

* **Following changes.** Each worker keeps keys, aliases and grants in memory (the crypto path
  reads no database) and its own kmsuser sessions. Every write logs what it changed in the
  database's ``change_log`` and raises a shared counter (:mod:`..store.changes`). A worker compares
  the counter with the last change it applied at the start of every request (a memory load) and,
  when it moved, reads the new rows and reloads only the records they name before the request goes
  on; so a key disabled, a grant revoked, a policy replaced or a store disconnected through one
  worker is seen by every worker from its next call on. A background look every
  ``FOLLOW_EVERY_S`` does the same for a worker that gets no requests (sessions of a disconnected
  store are closed, the leader starts a connection another worker accepted).
* **The leader.** One worker holds an exclusive ``flock`` on ``<data dir>/leader.lock``: it alone
  runs the connection state machine (connect, kmsuser password rotation, crash recovery of a
  rotation) and the deletion sweep; the others follow (they log in to the HSMs of CONNECTED stores
  with the password the leader stored, and close their sessions when a store leaves CONNECTED).
  When the leader dies the kernel releases its lock and another worker takes over within
  ``LEAD_RETRY_S``, finishing what the old one left (a store left CONNECTING or DISCONNECTING).
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from ..store.changes import ChangeCounter
from ..store.repository import AliasRecord, CustomKeyStoreRecord, GrantRecord, KeyRecord, NotFoundError
from .catalog import Catalog
from .connections import Connections
from .context import Context

log = logging.getLogger("kms_frontend.workers")
T = TypeVar("T")
FOLLOW_EVERY_S = 0.05
LEAD_RETRY_S = 0.5
PRUNE_EVERY_S = 60.0


class Leadership:
    """An exclusive, non-blocking ``flock``: held by one process at a time, released by the kernel
    when that process ends however it ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    def try_acquire(self) -> bool:
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
        return True

    def close(self) -> None:
        os.close(self._fd)  # releases the lock
        self.held = False


Changed = tuple[dict[str, KeyRecord | None], dict[str, AliasRecord | None], dict[str, list[GrantRecord]],
                dict[str, CustomKeyStoreRecord | None], list[str]]


class WorkerSync:
    """This worker's view of the other workers' writes (see the module's docstring)."""

    def __init__(self, ctx: Context, counter: ChangeCounter, catalog: Catalog, connections: Connections) -> None:
        self.ctx, self.counter, self.catalog, self.connections = ctx, counter, catalog, connections
        self.seen = 0
        self._lock = asyncio.Lock()
        self.on_stores_changed: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        """Before the catalogue is loaded: changes after this point will be applied on top of it."""
        self.seen = await self.ctx.db(self.ctx.repo.last_change)

    def stale(self) -> bool:
        return self.counter.value > self.seen

    async def catch_up(self) -> None:
        async with self._lock:
            if self.counter.value <= self.seen:
                return  # another request of this worker caught up meanwhile
            rows, gap = await self.ctx.db(self.ctx.repo.changes_since, self.seen)
            if gap:
                log.info("too far behind: reloading everything", extra={"event": "worker_reload", "seen": self.seen})
                last = await self.ctx.db(self.ctx.repo.last_change)
                await self.catalog.load()
                stores = await self.ctx.db(self.ctx.repo.list_custom_key_stores, limit=10_000)
                for store in stores.items:
                    await self.connections.follow(store.custom_key_store_id, store)
                self.seen = max(self.seen, last)
                return
            if not rows:
                return
            changed = await self.ctx.db(self._read, rows)
            self._apply(changed)
            for store_id in changed[4]:
                await self.catalog.reload_store(store_id)
            # Under the lock: this worker's other requests wait until its sessions follow too (a
            # store just CONNECTED is usable here from the next call on, as where it was connected).
            for store_id, changed_store in changed[3].items():
                await self.connections.follow(store_id, changed_store)
            self.seen = rows[-1][0]

    def _read(self, rows: list[tuple[int, str, str]]) -> Changed:
        """On the storage thread: the current records the changes name (None: gone)."""
        repo = self.ctx.repo
        keys: dict[str, KeyRecord | None] = {}
        aliases: dict[str, AliasRecord | None] = {}
        grants: dict[str, list[GrantRecord]] = {}
        stores: dict[str, CustomKeyStoreRecord | None] = {}
        store_keys: list[str] = []
        for _, kind, ident in rows:
            if kind == "key" and ident not in keys:
                keys[ident] = _current(repo.get_key, ident)
            elif kind == "alias" and ident not in aliases:
                aliases[ident] = _current(repo.get_alias, ident)
            elif kind == "grants" and ident not in grants:
                grants[ident] = repo.list_grants(key_id=ident)
            elif kind == "store" and ident not in stores:
                stores[ident] = _current(repo.get_custom_key_store, ident)
            elif kind == "store_keys" and ident not in store_keys:
                store_keys.append(ident)
        return keys, aliases, grants, stores, store_keys

    def _apply(self, changed: Changed) -> None:
        keys, aliases, grants, _, _ = changed
        catalog = self.catalog
        for key_id, key in keys.items():
            if key is None:
                catalog.forget_key(key_id)
            else:
                catalog.apply_key(key)
        for name, alias in aliases.items():
            if alias is None:
                catalog.aliases.pop(name, None)
            else:
                catalog.aliases[name] = alias
        for key_id, of_key in grants.items():
            catalog.set_grants(key_id, of_key)

    async def run(self) -> None:
        """The background look, for a worker without requests; the leader also prunes the log."""
        pruned = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(FOLLOW_EVERY_S)
            try:
                if self.stale():
                    await self.catch_up()
                now = asyncio.get_running_loop().time()
                if self.connections.leader and now - pruned >= PRUNE_EVERY_S:
                    pruned = now
                    await self.ctx.db(self.ctx.repo.prune_changes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following changes failed", extra={"event": "worker_follow_error"})


def _current(get: Callable[[str], T], ident: str) -> T | None:
    """The record as stored now, or None if it is gone."""
    try:
        return get(ident)
    except NotFoundError:
        return None


async def lead_when_possible(leadership: Leadership, become_leader: Callable[[], Awaitable[None]]) -> None:
    """Wait for the leader's lock (another worker holds it while it lives), then lead."""
    while not leadership.try_acquire():  # noqa: ASYNC110 - a lock of another process: nothing to await
        await asyncio.sleep(LEAD_RETRY_S)
    log.info("this worker leads", extra={"event": "worker_leader", "pid": os.getpid()})
    await become_leader()
