"""Cluster rules: membership (add, remove, join, restore) and backups.

Adding a node seeds an empty node from a fresh backup, after which the
replicators of the members catch it up; removing one takes a backup first.
Backups hold every record plus the cluster identity (certificates, cluster key,
domain key), sealed under an ephemeral key wrapped by a key derived from the
deployment secret ("manufacturer key") that only nodes hold. Restoring a backup
makes a new cluster (new id) that keeps the cluster certificate, so it shares
the original's backup history.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc

from backup_store import (
    BACKUP_ID_RE,
    BackupInvalidStateError,
    BackupMeta,
    BackupNotFoundError,
    BackupStore,
    BackupStoreError,
    BackupTrigger,
    validate_retention_days,
)
from plumbing.addresses import split_endpoint
from plumbing.drain import add_port
from plumbing.tls import presented_certificate
from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc

from . import certs, client, rules
from . import records as rec
from .backup_crypto import BackupCryptoError, backup_aad, open_backup, seal_backup
from .errors import HsmError, InvalidArgument, NotFound, Unavailable, WrongState
from .node import ACTIVE, UNINITIALIZED, HsmNode
from .replication import PeerServicer, Replicator
from .rules import MAX_ORDINAL
from .storage import RecordChange

log = logging.getLogger("hsm_node.cluster")
CONTENTS_FORMAT = "hsm-backup-contents/1"
# Who may add and remove members, take backups and set their retention: a crypto officer, or the
# appliance user (the CloudHSM service's own, see appliance.py) on behalf of the control plane.
MANAGERS = ("CO", "AU")
JOIN_TIMEOUT_S = 60.0


@dataclass
class Snapshot:
    contents: bytes
    user_count: int
    key_count: int


class Membership:
    """The node's place in its cluster: members (add, remove, join, restore), the peer port and
    its replicator, and the cluster's backups (taken, listed, deleted, restored)."""

    def __init__(self, node: HsmNode, peer_listen: str) -> None:
        self.node = node
        self.peer_listen = peer_listen
        self.replicator = Replicator(node, on_event=self._on_event)
        node.replication = self.replicator
        self.store = BackupStore(node.config.backup_dir, clock=node.now_ms) if node.config.backup_dir else None
        self.peer_server: grpc.aio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._backup_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.node.cluster_cert_pem:
            await self.start_peer_server()
        self._spawn(self._housekeeping(), "housekeeping")

    async def start_peer_server(self) -> None:
        n = self.node
        if self.peer_server is None and n.cluster_cert_pem:
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                              ("grpc.max_send_message_length", 64 << 20),
                                              ("grpc.so_reuseport", 0)])   # a taken port is an error
            pb_grpc.add_HsmPeerServicer_to_server(PeerServicer(n, self.replicator), server)
            creds = grpc.ssl_server_credentials(
                [(n.node_key_pem, (n.node_cert_pem + n.cluster_cert_pem).encode())],
                root_certificates=n.trust_anchor_pem.encode(), require_client_auth=True)
            add_port(server, self.peer_listen, creds, "the peer port")
            await server.start()
            self.peer_server = server
            log.info("peer port open", extra={"event": "peer_listening", "listen": self.peer_listen})
            self.replicator.start()
        self.replicator.reconcile()

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await self.replicator.stop()
        if self.peer_server is not None:
            await self.peer_server.stop(2)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, trigger: str) -> None:
        async def backup() -> None:
            with contextlib.suppress(HsmError):
                await self.take_backup(trigger)
        self._spawn(backup(), f"backup-{trigger}")

    # ------------------------------------------------------------ describe

    def describe(self) -> pb.Cluster:
        n = self.node
        members = []
        for m in sorted(n.records.members.values(), key=lambda m: m.ordinal):
            item = pb.Member(node_id=m.node_id, hsm_id=m.hsm_id, ordinal=m.ordinal, endpoint=m.endpoint,
                             peer_endpoint=m.peer_endpoint)
            if m.node_id == n.node_id:
                item.health = pb.SELF
                item.positions.update(n.positions)
                item.consistency_hash = n.records.consistency_hash()
                item.last_seen_ms = n.now_ms()
            else:
                link = self.replicator.peers.get(m.node_id)
                item.health = pb.HEALTHY if link is not None and link.healthy else pb.UNREACHABLE
                if link is not None and link.positions is not None:
                    item.positions.update(link.positions)
                    item.consistency_hash = link.consistency_hash
                    item.lag = sum(max(0, seq - link.positions.get(o, 0)) for o, seq in n.positions.items())
                    if link.last_ok:
                        item.last_seen_ms = int((time.time() - (time.monotonic() - link.last_ok)) * 1000)
            members.append(item)
        return pb.Cluster(
            cluster_id=n.cluster_id, state=pb.NodeState.Value(n.state), cluster_certificate_pem=n.cluster_cert_pem,
            cluster_certificate_sha256=n.cluster_fingerprint(), trust_anchor_pem=n.trust_anchor_pem, members=members,
            source_backup_id=n.source_backup_id, backup_retention_days=n.records.config.backup_retention_days,
            backup_interval_s=int(n.config.backup_interval_s), reporting_node_id=n.node_id)

    # ------------------------------------------------------------ membership

    async def add_node(self, token: str, endpoint: str, peer_endpoint: str) -> tuple[rec.MemberRecord, str]:
        n = self.node
        n.require_state(ACTIVE)
        n.sessions.require(token, *MANAGERS)
        if not endpoint or not peer_endpoint:
            raise InvalidArgument("adding a node needs its endpoint and peer_endpoint (host:port)")
        try:
            split_endpoint(endpoint)
            split_endpoint(peer_endpoint)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        try:
            pinned = await asyncio.to_thread(presented_certificate, endpoint)
            channel = client.channel(endpoint, pinned)
        except OSError as exc:
            raise Unavailable(f"cannot reach the new node at {endpoint}: {exc.strerror or exc}") from None
        try:
            stub = client.stub(channel)
            try:
                status = await stub.GetStatus(pb.Empty(), timeout=10)
            except grpc.RpcError as exc:
                raise Unavailable(f"cannot reach the new node at {endpoint}: {exc.details()}") from None
            if status.state != pb.UNINITIALIZED:
                raise WrongState(f"the node at {endpoint} is {pb.NodeState.Name(status.state)}"
                                 f" (cluster {status.cluster_id or '-'}); only an empty, UNINITIALIZED node can be added")
            used = {m.ordinal for m in n.records.members.values()}
            free = [i for i in range(1, MAX_ORDINAL + 1) if i not in used]
            if not free:
                raise WrongState(f"the cluster already has {MAX_ORDINAL} members")
            member = rec.MemberRecord(status.node_id, status.hsm_id, free[0], endpoint, peer_endpoint)
            await n.confirm(await n.write([("member", member.entity, member)]))
            self.replicator.reconcile()
            meta = await self.take_backup(BackupTrigger.ADD_NODE.value)
            try:
                await stub.JoinCluster(pb.JoinClusterRequest(
                    backup_id=meta.backup_id, node_id_expected=status.node_id, ordinal=member.ordinal,
                    cluster_id=n.cluster_id), timeout=JOIN_TIMEOUT_S)
            except grpc.RpcError as exc:
                await n.write([("member", member.entity, None)])
                self.replicator.reconcile()
                raise Unavailable(f"the new node at {endpoint} could not join: {exc.details()}") from None
            log.info("node added", extra={"event": "node_added", "node": member.node_id, "ordinal": member.ordinal,
                                          "backup_id": meta.backup_id})
            return member, meta.backup_id
        finally:
            await channel.close()

    async def remove_node(self, token: str, node_id: str) -> str:
        n = self.node
        n.require_state(ACTIVE)
        n.sessions.require(token, *MANAGERS)
        if node_id not in n.records.members:
            raise NotFound(f"node {node_id} is not a member of cluster {n.cluster_id}")
        if node_id == n.node_id:
            raise InvalidArgument("a node cannot remove itself; ask another member to remove it")
        meta = await self.take_backup(BackupTrigger.REMOVE_NODE.value)
        seq = await n.write([("member", node_id, None)])
        # Let the leaving node learn it was removed before we stop talking to it.
        await self.replicator.wait_for_peer(node_id, n.node_id, seq, timeout_s=5.0)
        self.replicator.reconcile()
        log.info("node removed", extra={"event": "node_removed", "node": node_id, "backup_id": meta.backup_id})
        return meta.backup_id

    async def join(self, backup_id: str, node_id_expected: str, ordinal: int, cluster_id: str) -> None:
        n = self.node
        n.require_state(UNINITIALIZED)
        if node_id_expected and node_id_expected != n.node_id:
            raise InvalidArgument(f"this is node {n.node_id}, not {node_id_expected}")
        contents = await self._read_backup(backup_id)
        if cluster_id and contents["cluster_id"] != cluster_id:
            raise InvalidArgument(f"backup {backup_id} belongs to cluster {contents['cluster_id']}, not {cluster_id}")
        changes = _changes(contents)
        if not any(c.kind == "member" and c.entity == n.node_id and c.record is not None for c in changes):
            raise WrongState(f"backup {backup_id} does not list this node as a member; add it with AddNode")
        await self._adopt(contents, contents["cluster_id"], ordinal, changes, contents.get("source_backup_id", ""))
        log.info("joined cluster", extra={"event": "joined", "cluster_id": n.cluster_id, "backup_id": backup_id})

    async def restore_cluster(self, backup_id: str, cluster_id: str = "") -> str:
        """Make this empty node the first member of a cluster seeded from a backup: a new cluster
        (``cluster_id`` empty: a new id), or the control plane's cluster of that id (created from
        that backup, or whose HSMs were all deleted: its newest backup)."""
        n = self.node
        n.require_state(UNINITIALIZED)
        if cluster_id and not rules.CLUSTER_ID_RE.fullmatch(cluster_id):
            raise InvalidArgument(f"invalid cluster id {cluster_id[:40]!r}: expected cluster- followed by 11-16"
                                  " characters of [2-7a-zA-Z]")
        contents = await self._read_backup(backup_id)
        changes = [c for c in _changes(contents) if c.kind != "member"]
        new_id = cluster_id or certs.random_id("cluster-")
        same = new_id == contents["cluster_id"]  # the cluster's own backup: it goes on, it is not a copy
        await self._adopt(contents, new_id, 1, changes, contents.get("source_backup_id", "") if same else backup_id,
                          source_cluster_id="" if same else contents["cluster_id"])
        await n.confirm(await n.write([("member", n.node_id, n.self_member())]))
        self.replicator.reconcile()
        log.info("cluster restored", extra={"event": "restored", "cluster_id": new_id, "backup_id": backup_id})
        return new_id

    async def _adopt(self, contents: dict, cluster_id: str, ordinal: int, changes: list[RecordChange],
                     source_backup_id: str, source_cluster_id: str = "") -> None:
        n = self.node
        await n.db(n.storage.put_meta, {"source_cluster_id": source_cluster_id.encode()})
        await n.adopt_identity(
            cluster_id, ordinal, contents["cluster_cert"], contents["trust_anchor"],
            contents["cluster_key"].encode(), base64.b64decode(contents["domain_key"]), ACTIVE,
            source_backup_id=source_backup_id, seed=(changes, {k: int(v) for k, v in contents["positions"].items()}))

    # ------------------------------------------------------------ backups

    @staticmethod
    def _backup_id(backup_id: str) -> str:
        if not BACKUP_ID_RE.fullmatch(backup_id or ""):
            raise InvalidArgument(f"invalid backup id {backup_id[:40]!r}: expected backup- followed by 11 characters"
                                  " of [2-7a-z]")
        return backup_id

    def _store(self) -> BackupStore:
        if self.store is None:
            raise WrongState("this node has no backup store configured (--backup-dir)")
        return self.store

    async def snapshot(self) -> Snapshot:
        n = self.node
        async with n._write_lock:  # records and positions consistent with each other
            items = [{"kind": kind, "entity": entity, "hlc": v[0], "origin": v[1],
                      "record": None if r is None else base64.b64encode(rec.encode(r)).decode()}
                     for (kind, entity), v in n.records.versions.items()
                     for r in [n.records.record(kind, entity)]]
            positions = dict(n.positions)
            users, keys = len(n.records.users), len(n.records.keys)
        doc = {
            "format": CONTENTS_FORMAT, "cluster_id": n.cluster_id, "cluster_cert": n.cluster_cert_pem,
            "trust_anchor": n.trust_anchor_pem, "cluster_key": n.cluster_key_pem.decode(),
            "domain_key": base64.b64encode(n.domain_key).decode(), "source_backup_id": n.source_backup_id,
            "positions": positions, "records": items,
        }
        return Snapshot(json.dumps(doc).encode(), users, keys)

    async def take_backup(self, trigger: str) -> BackupMeta:
        n = self.node
        n.require_state(ACTIVE)
        store = self._store()
        async with self._backup_lock:
            snap = await self.snapshot()
            backup_id = store.new_backup_id()
            meta = BackupMeta(
                backup_id=backup_id, cluster_id=n.cluster_id, create_timestamp_ms=n.now_ms(),
                source_backup_id=n.source_backup_id,
                source_cluster_id=(n.storage.get_meta("source_cluster_id") or b"").decode(),
                user_count=snap.user_count, key_count=snap.key_count, trigger=BackupTrigger(trigger),
                cluster_certificate_sha256=n.cluster_fingerprint())

            def write() -> BackupMeta:
                blob = seal_backup(snap.contents, n.config.master_key, aad=backup_aad(backup_id, n.cluster_id))
                return store.write(meta, blob)
            written = await asyncio.to_thread(write)
        log.info("backup taken", extra={"event": "backup", "backup_id": backup_id, "trigger": trigger,
                                        "keys": snap.key_count, "users": snap.user_count, "bytes": written.size_bytes})
        return written

    async def _read_backup(self, backup_id: str) -> dict:
        self._backup_id(backup_id)
        store = self._store()

        def read() -> dict:
            meta = store.describe(backup_id)
            blob = store.read_blob(backup_id)
            raw = open_backup(blob, self.node.config.master_key, aad=backup_aad(*meta.sealed_as))
            doc = json.loads(raw)
            if doc.get("format") != CONTENTS_FORMAT:
                raise InvalidArgument(f"backup {backup_id} has unknown contents format {doc.get('format')!r}")
            return doc
        try:
            return await asyncio.to_thread(read)
        except BackupNotFoundError:
            raise NotFound(f"backup {backup_id} not found in the backup store") from None
        except BackupCryptoError as exc:
            raise WrongState(f"backup {backup_id} cannot be opened: {exc}") from None
        except (BackupInvalidStateError, BackupStoreError) as exc:
            raise WrongState(str(exc)) from None

    def list_backups(self, cluster_id: str, include_deleted: bool) -> list[BackupMeta]:
        return self._store().list(cluster_id or None, include_deleted)

    async def create_backup(self, token: str) -> BackupMeta:
        self.node.sessions.require(token, *MANAGERS)
        return await self.take_backup(BackupTrigger.ON_DEMAND.value)

    def describe_backup(self, backup_id: str) -> BackupMeta:
        self._backup_id(backup_id)
        try:
            return self._store().describe(backup_id)
        except BackupNotFoundError:
            raise NotFound(f"backup {backup_id} not found") from None

    async def delete_backup(self, token: str, backup_id: str) -> BackupMeta:
        self.node.sessions.require(token, "CO")
        return await self._mutate(self._store().delete, backup_id)

    async def restore_backup(self, token: str, backup_id: str) -> BackupMeta:
        self.node.sessions.require(token, "CO")
        return await self._mutate(self._store().restore, backup_id)

    async def _mutate(self, fn: Any, backup_id: str) -> BackupMeta:
        self._backup_id(backup_id)
        try:
            return await asyncio.to_thread(fn, backup_id, self.node.now_ms())
        except BackupNotFoundError:
            raise NotFound(f"backup {backup_id} not found") from None
        except BackupInvalidStateError as exc:
            raise WrongState(str(exc)) from None

    async def set_retention(self, token: str, days: int) -> None:
        n = self.node
        n.require_state(ACTIVE)
        n.sessions.require(token, *MANAGERS)
        try:
            validate_retention_days(days)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        await n.confirm(await n.write([("config", "cluster", rec.ConfigRecord(backup_retention_days=days))]))

    # ------------------------------------------------------------ periodic work

    async def _housekeeping(self) -> None:
        interval = self.node.config.backup_interval_s
        tick = max(0.5, min(60.0, interval / 4))
        while True:
            await asyncio.sleep(tick)
            try:
                await self._periodic_backup(interval)
                if self.store is not None and self.node.cluster_id:
                    retention = {self.node.cluster_id: self.node.records.config.backup_retention_days}
                    await asyncio.to_thread(self.store.purge, self.node.now_ms(), retention)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed", extra={"event": "housekeeping_error"})

    async def _periodic_backup(self, interval_s: float) -> None:
        n = self.node
        if n.state != ACTIVE or self.store is None:
            return
        # The lowest-ordinal reachable member takes the cluster's periodic backup.
        live = [n.ordinal] + [link.member.ordinal for link in self.replicator.peers.values() if link.healthy]
        if n.ordinal != min(live):
            return
        latest = await asyncio.to_thread(self.store.latest, n.cluster_id)
        if latest is None or n.now_ms() - latest.create_timestamp_ms >= interval_s * 1000:
            await self.take_backup(BackupTrigger.PERIODIC.value)



def _changes(contents: dict) -> list[RecordChange]:
    out = []
    for item in contents["records"]:
        record = None if item["record"] is None else rec.decode(item["kind"], base64.b64decode(item["record"]))
        out.append(RecordChange(item["kind"], item["entity"], (int(item["hlc"]), item["origin"]), record))
    return out
