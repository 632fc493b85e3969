"""One HSM node: identity, lifecycle and the durable write path.

The rules of each operation family live beside this module (``users``,
``keys``, ``membership``); this module holds what they share: the records in
memory, the storage, the login sessions, and ``write()``, the only way a record
changes: durable first, then replicated, then acknowledged.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import certs
from . import records as rec
from .errors import DEFAULT_MAX_KEYS, InvalidArgument, StorageFailed, StorageFull, WrongState
from .login_sessions import LoginSessions
from .rules import CLUSTER_ID_RE, PRECO_DEFAULT_PASSWORD, PRECO_USERNAME
from .state import RecordState
from .storage import DAMAGE, OplogEntry, RecordChange, Storage, StorageError, is_storage_full
from .storage_sealing import hash_password, seal

if TYPE_CHECKING:
    from .replication import Replicator

log = logging.getLogger("hsm_node")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
T = TypeVar("T")

UNINITIALIZED, INITIALIZED, ACTIVE, DELETED = "UNINITIALIZED", "INITIALIZED", "ACTIVE", "DELETED"


@dataclass
class NodeConfig:
    data_dir: str
    master_key: bytes
    endpoint: str = "127.0.0.1:2225"          # advertised client endpoint
    peer_endpoint: str = "127.0.0.1:2226"     # advertised peer endpoint
    hosts: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    backup_dir: str = ""
    backup_interval_s: float = 24 * 3600
    session_idle_timeout_s: float = 900.0
    replica_wait_s: float = 2.0               # how long a write waits for live peers to confirm
    max_keys: int = DEFAULT_MAX_KEYS          # keys this HSM may hold (CloudHSM's per-cluster limit); 0 = no limit
    clock: Callable[[], float] = time.time    # injectable wall clock (seconds)
    appliance_key: bytes = b""                # the appliance user's secret (empty: no AU logins)
    hsm_id: str = ""                          # the HSM id the control plane gave it (empty: a new one)


@dataclass
class WriteOutcome:
    replicas: int
    node_ids: list[str]
    members: int


class HsmNode:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.storage = Storage(config.data_dir, config.master_key)
        self.node_id = self.storage.node_id
        self.records = RecordState()
        self.sessions = LoginSessions(config.session_idle_timeout_s)
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm-db")
        self._write_lock = asyncio.Lock()
        self._hlc = 0
        self._seq = 0
        self.replication: Replicator | None = None  # set by membership when the node serves its peer port
        self._finishing: set[asyncio.Task] = set()  # state changes in progress (see uncancellable)
        self.on_identity_change: list[Callable[[], None]] = []
        try:
            self._load()
        except BaseException as exc:
            self.storage.close()
            if isinstance(exc, DAMAGE):  # a damaged page that only a read reached
                raise self.storage.corrupted(exc) from None
            raise

    # ------------------------------------------------------------ loading

    def _load(self, records: list[RecordChange] | None = None) -> None:
        """(Re)build the in-memory state from storage; ``records``: what storage just took
        (a seed from a backup), so that 100k records are not read back and opened again."""
        s = self.storage
        if s.get_meta("state") is None:
            self._create_identity()
        self.state = s.get_meta("state").decode()  # type: ignore[union-attr]
        self.hsm_id = s.get_meta("hsm_id").decode()  # type: ignore[union-attr]
        self.cluster_id = (s.get_meta("cluster_id") or b"").decode()
        self.ordinal = int((s.get_meta("ordinal") or b"1").decode())
        self.cluster_cert_pem = (s.get_meta("cluster_cert") or b"").decode()
        self.trust_anchor_pem = (s.get_meta("trust_anchor") or b"").decode()
        self.node_cert_pem = (s.get_meta("node_cert") or b"").decode()
        self.bootstrap_cert_pem = s.get_meta("bootstrap_cert").decode()  # type: ignore[union-attr]
        self.source_backup_id = (s.get_meta("source_backup_id") or b"").decode()
        self.node_key_pem = s.get_secret("node_key") or b""
        self.cluster_key_pem = s.get_secret("cluster_key") or b""
        self.domain_key = s.get_secret("domain_key") or b""
        self.records.clear()
        with _gc_paused():  # 100k long-lived records, no cycles: collections would only rescan them
            for r in (s.load_records() if records is None else records):
                self.records.apply(r.kind, r.entity, r.version, r.record)
        self.positions = s.positions()
        self._seq = self.positions.get(self.node_id, 0)
        self._hlc = max(s.max_hlc(), max((e.hlc for e in s.read_oplog(self.node_id, self._seq - 1, 1)), default=0))

    def _create_identity(self) -> None:
        node_key, cluster_key = certs.new_key(), certs.new_key()
        hsm_id = self.config.hsm_id or certs.random_id("hsm-")
        bootstrap = certs.self_signed(node_key, f"hsm-node {self.node_id} (uninitialized)", self.config.hosts)
        self.storage.put_meta(
            plain={"state": UNINITIALIZED.encode(), "hsm_id": hsm_id.encode(),
                   "bootstrap_cert": certs.cert_pem(bootstrap).encode()},
            secret={"node_key": certs.key_pem(node_key), "cluster_key": certs.key_pem(cluster_key)},
        )

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)
        self.storage.close()

    # ------------------------------------------------------------ helpers

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking storage call on the node's single storage thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)
        except (sqlite3.Error, OSError, StorageError, UnicodeDecodeError) as exc:
            if is_storage_full(exc):
                log.error("storage full", extra={"event": "storage_full", "data_dir": self.config.data_dir})
                raise StorageFull(f"the HSM's storage is full ({self.config.data_dir}): nothing was changed;"
                                  " free space on that file system and retry") from None
            failed = exc if isinstance(exc, StorageError) else self.storage.corrupted(exc)
            log.error("storage failed", extra={"event": "storage_failed", "detail": str(failed)[:500]})
            raise StorageFailed(str(failed)) from None

    def uncancellable(self, change: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run a state change to its end even if the caller is cancelled.

        A storage commit runs on the storage thread and completes whatever
        happens to the awaiting coroutine; the in-memory records, positions and
        oplog sequence that follow it must then be updated too. A client that
        hangs up (a cancelled RPC) in between used to leave the disk ahead of
        memory: the next write reused the oplog sequence number, which the
        oplog ignored, so that write never replicated and the nodes diverged."""
        task = asyncio.ensure_future(change)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return asyncio.shield(task)

    async def finish_changes(self, timeout_s: float) -> None:
        """At shutdown, before storage closes: let changes in progress end (their callers may be gone)."""
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=max(0.1, timeout_s))

    def now_ms(self) -> int:
        return int(self.config.clock() * 1000)

    def next_hlc(self) -> int:
        self._hlc = max(self._hlc + 1, int(time.time() * 1000) << 16)
        return self._hlc

    def observe_hlc(self, hlc: int) -> None:
        self._hlc = max(self._hlc, hlc)

    def require_state(self, *states: str) -> None:
        if self.state not in states:
            hint = {
                UNINITIALIZED: "initialise it first (hsm-mgmt initialize)",
                INITIALIZED: "activate it first (log in as PRECO and change its password: hsm-mgmt activate)",
                DELETED: "it was removed from its cluster",
            }.get(self.state, "")
            raise WrongState(f"the HSM is {self.state}; {hint}".rstrip("; "))

    def tls_identity(self) -> tuple[bytes, bytes]:
        """(private key PEM, certificate chain PEM) the client port serves now."""
        if self.node_cert_pem:
            return self.node_key_pem, (self.node_cert_pem + self.cluster_cert_pem).encode()
        return self.node_key_pem, self.bootstrap_cert_pem.encode()

    def cluster_csr(self) -> str:
        return certs.make_csr(certs.load_key(self.cluster_key_pem), self.hsm_id) if self.state == UNINITIALIZED else ""

    def cluster_fingerprint(self) -> str:
        return certs.fingerprint(self.cluster_cert_pem) if self.cluster_cert_pem else ""

    # ------------------------------------------------------------ the write path

    async def write(
        self, puts: list[tuple[str, str, rec.Record | None]], *, replicate: bool = True,
    ) -> int:
        """Make record changes durable and visible; returns the oplog seq of the
        last entry (0 when not replicated). Waiting for peers is the caller's
        choice (``confirm``)."""
        if replicate and not self.domain_key:
            raise WrongState("the HSM has no cluster identity yet")
        return await self.uncancellable(self._write(puts, replicate))

    async def _write(self, puts: list[tuple[str, str, rec.Record | None]], replicate: bool) -> int:
        async with self._write_lock:
            version = (self.next_hlc(), self.node_id)
            changes = [RecordChange(kind, entity, version, record) for kind, entity, record in puts]
            entries: list[OplogEntry] = []
            if replicate:
                for i, c in enumerate(changes, start=1):
                    raw = b"" if c.record is None else seal(
                        self.domain_key, rec.encode(c.record), rec.record_aad(c.kind, c.entity, version))
                    entries.append(OplogEntry(self.node_id, self._seq + i, version[0], c.kind, c.entity, raw))
            await self.db(self.storage.commit, changes, entries)
            for c in changes:
                self.records.apply(c.kind, c.entity, c.version, c.record)
            if entries:
                self._seq = entries[-1].seq
                self.positions[self.node_id] = self._seq
        if entries and self.replication is not None:
            self.replication.notify()
        return entries[-1].seq if entries else 0

    async def confirm(self, seq: int, *, need: int = 0, timeout_s: float | None = None) -> WriteOutcome:
        """How many nodes hold our write ``seq``: wait for every live peer (or
        ``need`` nodes) for at most ``timeout_s``."""
        members = max(1, len(self.records.members))
        if seq == 0 or self.replication is None:
            return WriteOutcome(1, [self.node_id], members)
        holders = await self.replication.wait_for(
            self.node_id, seq, need=need, timeout_s=self.config.replica_wait_s if timeout_s is None else timeout_s)
        return WriteOutcome(len(holders), holders, members)

    # ------------------------------------------------------------ lifecycle

    async def initialize(self, signed_cluster_cert_pem: str, trust_anchor_pem: str, cluster_id: str = "") -> None:
        """Install the cluster identity the operator's CA signed. ``cluster_id``: the id the CloudHSM
        control plane gave the cluster (empty: a new one)."""
        self.require_state(UNINITIALIZED)
        if cluster_id and not CLUSTER_ID_RE.fullmatch(cluster_id):
            raise InvalidArgument(f"invalid cluster id {cluster_id[:40]!r}: expected cluster- followed by 11-16"
                                  " characters of [2-7a-zA-Z]")
        anchor = certs.load_cert(trust_anchor_pem, "trust anchor")
        cluster_cert = certs.load_cert(signed_cluster_cert_pem, "signed cluster certificate")
        certs.verify_issued_by(anchor, anchor, "the trust anchor (it must be a self-signed CA certificate)")
        certs.verify_issued_by(cluster_cert, anchor, "the cluster certificate")
        certs.require_ca(cluster_cert, "the signed cluster certificate")
        cluster_key = certs.load_key(self.cluster_key_pem)
        if not certs.public_key_matches(cluster_cert, cluster_key):
            raise InvalidArgument("the signed cluster certificate does not match this HSM's cluster CSR")
        cluster_id = cluster_id or certs.random_id("cluster-")
        await self.adopt_identity(cluster_id, 1, signed_cluster_cert_pem, trust_anchor_pem,
                                  self.cluster_key_pem, os.urandom(32), INITIALIZED)
        hlc_user = rec.UserRecord(PRECO_USERNAME, 1, "PRECO", await asyncio.to_thread(hash_password, PRECO_DEFAULT_PASSWORD))
        await self.write([("user", hlc_user.entity, hlc_user), ("member", self.node_id, self.self_member())])
        log.info("initialized", extra={"event": "initialized", "cluster_id": cluster_id})

    def self_member(self) -> rec.MemberRecord:
        return rec.MemberRecord(self.node_id, self.hsm_id, self.ordinal, self.config.endpoint, self.config.peer_endpoint)

    async def adopt_identity(
        self, cluster_id: str, ordinal: int, cluster_cert_pem: str, trust_anchor_pem: str,
        cluster_key_pem: bytes, domain_key: bytes, state: str, source_backup_id: str = "",
        seed: tuple[list[RecordChange], dict[str, int]] | None = None,
    ) -> None:
        """Install a cluster identity (initialise, join or restore), with a fresh
        node certificate issued by the cluster certificate, in one transaction."""
        node_key = certs.load_key(self.node_key_pem)
        node_cert = certs.issue_node_cert(
            certs.load_key(cluster_key_pem), certs.load_cert(cluster_cert_pem), node_key, self.node_id, self.config.hosts)
        plain = {
            "state": state.encode(), "cluster_id": cluster_id.encode(), "ordinal": str(ordinal).encode(),
            "cluster_cert": cluster_cert_pem.encode(), "trust_anchor": trust_anchor_pem.encode(),
            "node_cert": certs.cert_pem(node_cert).encode(), "source_backup_id": source_backup_id.encode(),
        }
        secret = {"cluster_key": cluster_key_pem, "domain_key": domain_key}

        async def install() -> None:
            if seed is None:
                await self.db(self.storage.put_meta, plain, secret)
            else:
                await self.db(self.storage.replace_all, seed[0], seed[1], plain, secret)
            self._load(None if seed is None else seed[0])
            self.sessions.drop_all()
            for cb in self.on_identity_change:
                cb()
        await self.uncancellable(install())

    async def set_state(self, state: str) -> None:
        async def install() -> None:
            await self.db(self.storage.put_meta, {"state": state.encode()})
            self.state = state
            for cb in self.on_identity_change:
                cb()
        await self.uncancellable(install())
