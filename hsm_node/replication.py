"""Replication among cluster members over the peer port (mutual TLS).

Every node keeps an oplog of the writes it has seen, numbered per origin node.
For each other member a sender loop pushes whatever that member lacks (by its
last known position per origin) from the local oplog, in order: the same loop
carries fresh writes, catches up a node that was down, and forwards writes that
originated on a third node. A receiver applies entries in per-origin order and
ignores what it already has, so duplicated or reordered messages change nothing;
records are last-writer-wins, so concurrent writes converge everywhere.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc

from . import records as rec
from .errors import HsmError
from .node import ACTIVE, DELETED, HsmNode
from .storage import OplogEntry, RecordChange
from .storage_sealing import SealError, open_sealed, seal

log = logging.getLogger("hsm_node.replication")
BATCH = 1000
RPC_TIMEOUT_S = 3.0
HEARTBEAT_S = 0.5
HEALTHY_WITHIN_S = 3.0
CLUSTER_ID_HEADER = "x-hsm-cluster-id"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
           ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]


class PeerLink:
    """What this node knows of one other member, and the loop that feeds it."""

    def __init__(self, member: rec.MemberRecord) -> None:
        self.member = member
        self.positions: dict[str, int] | None = None   # None until it answered once
        self.consistency_hash = ""
        self.state = ""
        self.last_ok = 0.0
        self.last_error = ""
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()
        self.hello = asyncio.Event()   # the peer called us (a heartbeat): it is up, retry now
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.HsmPeerStub | None = None  # made once with the channel, not on every turn of the loop

    @property
    def healthy(self) -> bool:
        return self.positions is not None and time.monotonic() - self.last_ok < HEALTHY_WITHIN_S


class Replicator:
    def __init__(self, node: HsmNode, on_event: Callable[[str], None] | None = None) -> None:
        self.node = node
        self.peers: dict[str, PeerLink] = {}
        self._progress = asyncio.Condition()
        self._running = False
        self._on_event = on_event

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._running = True
        self.reconcile()

    async def stop(self) -> None:
        self._running = False
        for link in list(self.peers.values()):
            await self._drop(link)

    def reconcile(self) -> None:
        """Run one sender loop per current member other than ourselves."""
        if not self._running:
            return
        wanted = {m.node_id: m for m in self.node.records.members.values() if m.node_id != self.node.node_id}
        if self.node.state != ACTIVE:
            wanted = {}
        for node_id, link in list(self.peers.items()):
            if node_id not in wanted or link.member.peer_endpoint != wanted[node_id].peer_endpoint:
                self.peers.pop(node_id)
                asyncio.get_running_loop().create_task(self._drop(link))
        for node_id, member in wanted.items():
            if node_id not in self.peers:
                link = PeerLink(member)
                self.peers[node_id] = link
                link.task = asyncio.get_running_loop().create_task(self._run(link), name=f"replicate-{node_id}")

    async def _drop(self, link: PeerLink) -> None:
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link.task
        if link.channel is not None:
            await link.channel.close()

    def notify(self) -> None:
        for link in self.peers.values():
            link.wake.set()

    def cluster_event(self, trigger: str) -> None:
        if self._on_event is not None:
            self._on_event(trigger)

    # ------------------------------------------------------------ queries

    def live_peer_count(self) -> int:
        return sum(1 for link in self.peers.values() if link.healthy)

    def holders(self, origin: str, seq: int) -> list[str]:
        out = [self.node.node_id] if self.node.positions.get(origin, 0) >= seq else []
        out += [nid for nid, link in self.peers.items() if link.positions and link.positions.get(origin, 0) >= seq]
        return out

    async def wait_for(self, origin: str, seq: int, *, need: int, timeout_s: float) -> list[str]:
        """Wait until ``need`` nodes hold the write (or, with need=0, every live peer does)."""
        def done() -> bool:
            holders = self.holders(origin, seq)
            target = need if need > 0 else 1 + self.live_peer_count()
            return len(holders) >= target

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(done)
        return self.holders(origin, seq)

    async def wait_for_peer(self, node_id: str, origin: str, seq: int, *, timeout_s: float) -> bool:
        """Wait until one given peer holds a write (e.g. a member learning it was removed)."""
        def done() -> bool:
            link = self.peers.get(node_id)
            return link is None or (link.positions is not None and link.positions.get(origin, 0) >= seq)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(done)
        return done()

    async def sessions_elsewhere(self, username: str, client_id: str) -> int:
        async def ask(link: PeerLink) -> int:
            if not link.healthy:
                return 0
            try:
                r = await self._stub(link).SessionsFor(
                    pb.SessionsForRequest(username=username, exclude_client_id=client_id), timeout=RPC_TIMEOUT_S,
                    metadata=((CLUSTER_ID_HEADER, self.node.cluster_id),))
                return r.sessions
            except grpc.RpcError:
                return 0
        return sum(await asyncio.gather(*(ask(link) for link in list(self.peers.values()))))

    # ------------------------------------------------------------ sending

    def _stub(self, link: PeerLink) -> pb_grpc.HsmPeerStub:
        if link.channel is None:
            n = self.node
            creds = grpc.ssl_channel_credentials(
                root_certificates=n.trust_anchor_pem.encode(), private_key=n.node_key_pem,
                certificate_chain=(n.node_cert_pem + n.cluster_cert_pem).encode())
            link.channel = grpc.aio.secure_channel(link.member.peer_endpoint, creds, options=OPTIONS)
            link.stub = pb_grpc.HsmPeerStub(link.channel)
        assert link.stub is not None
        return link.stub

    async def _run(self, link: PeerLink) -> None:
        backoff = 0.1
        while self._running:
            try:
                stub = self._stub(link)
                meta = ((CLUSTER_ID_HEADER, self.node.cluster_id),)
                if link.positions is None or time.monotonic() - link.last_ok > HEARTBEAT_S:
                    hb = await stub.Heartbeat(self._heartbeat(), timeout=RPC_TIMEOUT_S, metadata=meta)
                    await self._update(link, dict(hb.positions), hb.consistency_hash, hb.state)
                # Cleared before looking for what the peer lacks, never after: a write that lands
                # while we look sets it again. (Clearing after the look lost that wake-up, and the
                # write waited for the next heartbeat: CreateKey calls of ~0.5 s, 1 in 200.)
                link.wake.clear()
                batch, unreplayable = await self.node.db(self._missing, dict(link.positions or {}))
                if unreplayable and not batch:
                    resp = await stub.Snapshot(self._snapshot(), timeout=RPC_TIMEOUT_S * 10, metadata=meta)
                    log.info("state transfer sent", extra={"event": "snapshot_sent", "peer": link.member.node_id})
                    await self._update(link, dict(resp.positions), resp.consistency_hash or None)
                    continue
                if batch:
                    resp = await stub.Replicate(pb.ReplicateRequest(
                        from_node_id=self.node.node_id, entries=[_entry_pb(e) for e in batch]), timeout=RPC_TIMEOUT_S * 3,
                        metadata=meta)
                    await self._update(link, dict(resp.positions), resp.consistency_hash or None)
                    continue
                backoff = 0.1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT_S):
                        await link.wake.wait()
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as exc:
                if link.last_error != exc.code().name:
                    log.warning("peer unreachable", extra={"event": "peer_unreachable", "peer": link.member.node_id,
                                                           "code": exc.code().name, "detail": exc.details()})
                link.last_error = exc.code().name
                link.last_ok = 0.0
                # A peer that comes back says hello (its first heartbeat) at once: feed it then
                # rather than at the end of the backoff (up to 2 s of a catch-up otherwise).
                link.hello.clear()
                try:
                    async with asyncio.timeout(backoff):
                        await link.hello.wait()
                except TimeoutError:
                    pass
                else:  # a new channel: the old one would wait out gRPC's own reconnect backoff
                    channel, link.channel = link.channel, None
                    if channel is not None:
                        await channel.close()
                backoff = min(backoff * 2, 2.0)
            except HsmError as exc:  # e.g. storage that failed: node.db() logged it, in words
                log.error("replication stopped", extra={"event": "replication_error", "peer": link.member.node_id,
                                                        "detail": exc.message[:300]})
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("replication loop error", extra={"event": "replication_error", "peer": link.member.node_id})
                await asyncio.sleep(1.0)

    def _heartbeat(self) -> pb.HeartbeatRequest:
        return pb.HeartbeatRequest(from_node_id=self.node.node_id, positions=self.node.positions,
                                   consistency_hash=self.node.records.consistency_hash())

    async def _update(self, link: PeerLink, positions: dict[str, int], digest: str | None = None,
                      state: int | None = None) -> None:
        if link.last_error:
            log.info("peer reachable", extra={"event": "peer_reachable", "peer": link.member.node_id})
            link.last_error = ""
        link.positions = positions
        link.last_ok = time.monotonic()
        if digest is not None:
            link.consistency_hash = digest
        if state is not None:
            link.state = pb.NodeState.Name(state)
        async with self._progress:
            self._progress.notify_all()

    def _missing(self, peer_positions: dict[str, int]) -> tuple[list[OplogEntry], bool]:
        """Entries of our oplog the peer has not applied (storage thread), and whether it
        lacks writes we cannot replay (our state has them, our oplog does not: we were
        seeded from a backup after them)."""
        out: list[OplogEntry] = []
        unreplayable = False
        for origin, seq in list(self.node.positions.items()):
            have = peer_positions.get(origin, 0)
            if seq > have and len(out) < BATCH:
                entries = self.node.storage.read_oplog(origin, have, BATCH - len(out))
                if not entries or entries[0].seq != have + 1:
                    unreplayable = True
                    continue
                out += entries
        return out, unreplayable

    def _snapshot(self) -> pb.SnapshotRequest:
        n = self.node
        records = []
        for (kind, entity), version in list(n.records.versions.items()):
            record = n.records.record(kind, entity)
            sealed = b"" if record is None else seal(n.domain_key, rec.encode(record), rec.record_aad(kind, entity, version))
            records.append(pb.ReplicationEntry(origin=version[1], hlc=version[0], kind=kind, entity=entity,
                                               sealed_record=sealed))
        return pb.SnapshotRequest(from_node_id=n.node_id, records=records, positions=n.positions)

    # ------------------------------------------------------------ receiving

    async def apply(self, entries: list[pb.ReplicationEntry]) -> None:
        """Apply entries in per-origin order; duplicates and gaps are skipped."""
        changes = await self.node.uncancellable(self._apply(entries))
        if changes:
            await self._after_apply(changes)

    async def _apply(self, entries: list[pb.ReplicationEntry]) -> list[RecordChange]:
        node = self.node
        async with node._write_lock:
            staged: dict[tuple[str, str], rec.Version] = {}
            changes: list[RecordChange] = []
            accepted: list[OplogEntry] = []
            positions = dict(node.positions)
            for e in sorted(entries, key=lambda e: (e.origin, e.seq)):
                if e.seq != positions.get(e.origin, 0) + 1:
                    continue  # already have it, or a gap that the sender will fill from our position
                version = (e.hlc, e.origin)
                record = None
                if e.sealed_record:
                    try:
                        raw = open_sealed(node.domain_key, e.sealed_record, rec.record_aad(e.kind, e.entity, version))
                    except SealError:
                        log.error("replication entry failed authentication", extra={
                            "event": "replication_rejected", "origin": e.origin, "seq": e.seq})
                        break
                    record = rec.decode(e.kind, raw)
                key = (e.kind, e.entity)
                if version > max(staged.get(key, rec.ZERO_VERSION), node.records.version(*key)):
                    staged[key] = version
                    changes.append(RecordChange(e.kind, e.entity, version, record))
                accepted.append(OplogEntry(e.origin, e.seq, e.hlc, e.kind, e.entity, bytes(e.sealed_record)))
                positions[e.origin] = e.seq
            if not accepted:
                return []
            await node.db(node.storage.commit, changes, accepted)
            for c in changes:
                node.records.apply(c.kind, c.entity, c.version, c.record)
                node.observe_hlc(c.version[0])
            node.positions.update({e.origin: e.seq for e in accepted})
        return changes

    async def apply_snapshot(self, request: pb.SnapshotRequest) -> None:
        """Merge a peer's whole state (LWW per record) and take its positions."""
        changes = await self.node.uncancellable(self._apply_snapshot(request))
        if changes is None:
            return
        log.info("state transfer applied", extra={"event": "snapshot_applied", "from": request.from_node_id,
                                                  "records": len(changes)})
        await self._after_apply(changes)

    async def _apply_snapshot(self, request: pb.SnapshotRequest) -> list[RecordChange] | None:
        node = self.node
        async with node._write_lock:
            changes: list[RecordChange] = []
            for e in request.records:
                version = (e.hlc, e.origin)
                if not node.records.is_newer(e.kind, e.entity, version):
                    continue
                record = None
                if e.sealed_record:
                    try:
                        raw = open_sealed(node.domain_key, e.sealed_record, rec.record_aad(e.kind, e.entity, version))
                    except SealError:
                        log.error("snapshot record failed authentication", extra={"event": "snapshot_rejected"})
                        return None
                    record = rec.decode(e.kind, raw)
                changes.append(RecordChange(e.kind, e.entity, version, record))
            positions = {o: s for o, s in request.positions.items() if s > node.positions.get(o, 0)}
            await node.db(node.storage.commit, changes, [], None, None, positions)
            for c in changes:
                node.records.apply(c.kind, c.entity, c.version, c.record)
                node.observe_hlc(c.version[0])
            node.positions.update(positions)
        return changes

    async def _after_apply(self, changes: list[RecordChange]) -> None:
        node = self.node
        members_changed = any(c.kind == "member" for c in changes)
        if members_changed:
            if node.node_id not in node.records.members and node.state == ACTIVE:
                log.warning("removed from cluster", extra={"event": "removed", "cluster_id": node.cluster_id})
                await node.set_state(DELETED)
            self.reconcile()
        for c in changes:
            if c.kind == "user" and c.record is None:
                node.sessions.drop_user(c.entity)
            elif c.kind in ("user", "login_failures"):  # locked elsewhere: its sessions here end too
                name = c.entity.partition("@")[0]
                user = node.records.users.get(name)
                if user is not None and node.records.is_locked(user):
                    node.sessions.drop_user(name)
        self.notify()  # forward to other peers what they may lack
        async with self._progress:
            self._progress.notify_all()



def _entry_pb(e: OplogEntry) -> pb.ReplicationEntry:
    return pb.ReplicationEntry(origin=e.origin, seq=e.seq, hlc=e.hlc, kind=e.kind, entity=e.entity, sealed_record=e.sealed)


# ------------------------------------------------------------------ the peer port


def peer_node_id(context: grpc.aio.ServicerContext, cluster_cert_pem: str) -> str | None:
    """The node id in the client certificate, if it was issued by our cluster certificate."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    return _node_id_in(bytes(pems[0]), cluster_cert_pem)


@functools.lru_cache(maxsize=256)
def _node_id_in(pem: bytes, cluster_cert_pem: str) -> str | None:
    # Every peer RPC presents the same few certificates: parsing one and checking its signature
    # on each call cost ~4% of a node's CPU under writes. Same answer for the same two inputs.
    try:
        cert = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cluster_cert_pem.encode()))
    except Exception:
        return None
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = str(cn[0].value) if cn else ""
    return value.removeprefix("hsm-node ") if value.startswith("hsm-node ") else None


class PeerServicer(pb_grpc.HsmPeerServicer):
    def __init__(self, node: HsmNode, replicator: Replicator) -> None:
        self.node, self.replicator = node, replicator

    async def _authorize(self, context: grpc.aio.ServicerContext) -> str:
        node_id = peer_node_id(context, self.node.cluster_cert_pem)
        if node_id is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "peer certificate was not issued by this cluster")
        if node_id not in self.node.records.members:
            # Removed members are out for good. A node we have not heard of yet, from our own
            # cluster (not from a cluster restored from the same backup history: same
            # certificate, other id), is a member added while we were away: its writes are how
            # we learn of it, so take them.
            removed = ("member", node_id) in self.node.records.versions
            cluster_id = dict(context.invocation_metadata()).get(CLUSTER_ID_HEADER, "")
            if removed or cluster_id != self.node.cluster_id:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"node {node_id} is not a member of cluster {self.node.cluster_id}")
        if self.node.state != ACTIVE:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"this node is {self.node.state}")
        return node_id  # type: ignore[return-value]

    async def Replicate(self, request: pb.ReplicateRequest, context: Any) -> pb.ReplicateResponse:
        await self._authorize(context)
        await self.replicator.apply(list(request.entries))
        return pb.ReplicateResponse(positions=self.node.positions, consistency_hash=self.node.records.consistency_hash())

    async def Snapshot(self, request: pb.SnapshotRequest, context: Any) -> pb.ReplicateResponse:
        await self._authorize(context)
        await self.replicator.apply_snapshot(request)
        return pb.ReplicateResponse(positions=self.node.positions, consistency_hash=self.node.records.consistency_hash())

    async def Pull(self, request: pb.PullRequest, context: Any) -> pb.PullResponse:
        await self._authorize(context)
        limit = min(request.limit or BATCH, BATCH)
        entries = await self.node.db(self.node.storage.read_oplog, request.origin, request.after_seq, limit)
        return pb.PullResponse(entries=[_entry_pb(e) for e in entries])

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        sender = await self._authorize(context)
        link = self.replicator.peers.get(sender)
        if link is not None:  # what the sender tells us of itself counts as contact too
            await self.replicator._update(link, dict(request.positions), request.consistency_hash)
            link.hello.set()
            self.replicator.notify()
        return pb.HeartbeatResponse(node_id=self.node.node_id, state=pb.NodeState.Value(self.node.state),
                                    positions=self.node.positions, consistency_hash=self.node.records.consistency_hash(),
                                    cluster_id=self.node.cluster_id)

    async def SessionsFor(self, request: pb.SessionsForRequest, context: Any) -> pb.SessionsForResponse:
        await self._authorize(context)
        sessions = [s for s in self.node.sessions.of_user(request.username.lower())
                    if not (request.exclude_client_id and s.client_id == request.exclude_client_id)]
        return pb.SessionsForResponse(sessions=len(sessions))
