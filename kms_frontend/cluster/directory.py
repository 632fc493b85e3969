"""Cluster discovery: the frontend is given HSM endpoints and learns clusters
from the nodes themselves (id, state, members, cluster certificate).

Every known endpoint (configured seeds, the HSMs the CloudHSM control plane placed, and members
that nodes report) is probed; a cluster's "active HSMs" are the members the frontend itself
reached in state ACTIVE. Probing runs in the background and on demand.

The control plane is the directory's :class:`ClusterCatalog`: it names the endpoints of the HSMs
it knows, and after every probe round it lays its records over what the nodes said (a cluster it
knows with no HSM answering still exists; a deleted one is gone; each HSM's Availability Zone;
DEGRADED while an HSM is missing). So the clusters KMS checks and those DescribeClusters shows come
from one refresh: one view, not two.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from cryptography import x509

from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1 import hsm_pb2_grpc as hsm_grpc

from . import channels

log = logging.getLogger("kms_frontend.directory")
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Probe:
    endpoint: str
    reachable: bool
    node_id: str = ""
    hsm_id: str = ""
    cluster_id: str = ""
    state: str = ""
    error: str = ""
    at: float = 0.0
    timed_out: bool = False  # it did not answer in time (a hung or paused node), as opposed to refusing


@dataclass
class ClusterInfo:
    cluster_id: str
    state: str
    certificate_pem: str
    certificate_sha256: str
    trust_anchor_pem: str
    member_endpoints: list[str] = field(default_factory=list)
    active_endpoints: list[str] = field(default_factory=list)
    member_lag: dict[str, int] = field(default_factory=dict)  # endpoint -> writes it misses, as its peers see it
    zones: dict[str, str] = field(default_factory=dict)  # endpoint -> Availability Zone (control plane)
    subnet_zones: int = 0                                # AZs of its subnets (0: not known)

    @property
    def active_hsms(self) -> int:
        return len(self.active_endpoints)

    @property
    def active_zones(self) -> int:
        """Availability Zones with an active HSM (an HSM of unknown zone counts as its own)."""
        return len({self.zones.get(e, e) for e in self.active_endpoints})

    @property
    def usable(self) -> bool:
        """Initialised and activated: ACTIVE, or DEGRADED (active, with an HSM missing)."""
        return self.state in ("ACTIVE", "DEGRADED")


class ClusterCatalog(Protocol):
    """What the CloudHSM control plane tells discovery (see the module's docstring)."""

    def endpoints(self) -> list[str]: ...

    def overlay(self, clusters: dict[str, ClusterInfo], probes: dict[str, Probe]) -> dict[str, ClusterInfo]: ...

    def deleted(self, cluster_id: str) -> bool: ...


def trust_anchor_verifies(cluster: ClusterInfo, trust_anchor_pem: str) -> bool:
    """Does this trust anchor (customerCA.crt) issue the cluster's certificate?"""
    try:
        anchor = x509.load_pem_x509_certificate(trust_anchor_pem.encode())
        cert = x509.load_pem_x509_certificate(cluster.certificate_pem.encode())
        cert.verify_directly_issued_by(anchor)
        return True
    except Exception:
        return False


class ClusterDirectory:
    def __init__(self, seed_endpoints: list[str], probe_timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.seeds = list(dict.fromkeys(seed_endpoints))
        self.probe_timeout_s = probe_timeout_s
        self.endpoints: list[str] = list(self.seeds)
        self.probes: dict[str, Probe] = {}
        self.clusters: dict[str, ClusterInfo] = {}
        # members of every cluster seen since start: a known cluster whose HSMs are all down
        # has no active HSM, it did not vanish
        self.last_members: dict[str, list[str]] = {}
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}  # endpoint -> (pinned PEM, channel)
        self._refresh_lock = asyncio.Lock()
        self._last_refresh = 0.0
        self.on_refresh: list[Callable[[], None]] = []  # called after every refresh (session upkeep)
        self.catalog: ClusterCatalog | None = None

    async def close(self) -> None:
        for _, ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def lookup(self, cluster_id: str, *, max_age_s: float = 0.5) -> ClusterInfo | None:
        if time.monotonic() - self._last_refresh > max_age_s:
            await self.refresh()
        return self.clusters.get(cluster_id)

    @property
    def last_refresh(self) -> float:
        """time.monotonic() of the last completed probe round."""
        return self._last_refresh

    def clusters_with_certificate(self, sha256: str) -> list[ClusterInfo]:
        return [c for c in self.clusters.values() if c.certificate_sha256 == sha256]

    async def refresh(self) -> None:
        async with self._refresh_lock:
            managed = self.catalog.endpoints() if self.catalog is not None else []
            results = await self._probe_round(managed)
            if self._round_stalled(results):
                # Every HSM that answered last round timed out at once: far likelier this process
                # was starved (a loaded machine) than that all nodes paused together. Ask once more
                # before dropping them all, so one slow round does not fail every crypto call.
                log.info("every HSM probe timed out; probing once more", extra={"event": "discovery_stall"})
                results = await self._probe_round(managed)
            # Seeds and the control plane's HSMs stay; members nodes reported are probed while reported.
            self.endpoints = list(dict.fromkeys(self.seeds + [e for e in results if e not in managed]))
            self.probes = {e: p for e, (p, _) in results.items()}
            clusters: dict[str, ClusterInfo] = {}
            for probe, desc in results.values():
                if desc is None or not desc.cluster_id:
                    continue
                info = clusters.get(desc.cluster_id)
                if info is None:
                    info = clusters[desc.cluster_id] = ClusterInfo(
                        desc.cluster_id, hsm.NodeState.Name(desc.state), desc.cluster_certificate_pem,
                        desc.cluster_certificate_sha256, desc.trust_anchor_pem)
                if probe.state == "ACTIVE":
                    info.state = "ACTIVE"
                info.member_endpoints = sorted(set(info.member_endpoints) | {m.endpoint for m in desc.members})
                for m in desc.members:
                    if m.endpoint:
                        info.member_lag[m.endpoint] = max(info.member_lag.get(m.endpoint, 0), int(m.lag))
            for info in clusters.values():
                info.active_endpoints = sorted(
                    e for e in info.member_endpoints
                    if (p := self.probes.get(e)) and p.reachable and p.cluster_id == info.cluster_id and p.state == "ACTIVE")
            if self.catalog is not None:
                clusters = self.catalog.overlay(clusters, self.probes)
            self.clusters = clusters
            self.last_members.update({c.cluster_id: list(c.member_endpoints) for c in clusters.values()})
            if self.catalog is not None:
                # A cluster its owner deleted does not exist: its last members (down, deleted) must
                # not make it look like a cluster with no active HSM (DeleteHsm, then DeleteCluster
                # before a discovery round saw the cluster empty: INSUFFICIENT_CLOUDHSM_HSMS instead
                # of CLUSTER_NOT_FOUND)
                for cluster_id in [c for c in self.last_members if self.catalog.deleted(c)]:
                    del self.last_members[cluster_id]
            self._last_refresh = time.monotonic()
        for notify in list(self.on_refresh):
            notify()

    async def _probe_round(self, managed: list[str]) -> dict[str, tuple[Probe, hsm.Cluster | None]]:
        seen: set[str] = set()
        results: dict[str, tuple[Probe, hsm.Cluster | None]] = {}
        pending = list(dict.fromkeys(self.endpoints + managed))
        while pending:  # members reported by nodes are probed in the same refresh
            batch = [e for e in pending if e not in seen]
            seen.update(batch)
            for endpoint, result in zip(batch, await asyncio.gather(*(self._probe(e) for e in batch)), strict=True):
                results[endpoint] = result
            pending = [m.endpoint for _, desc in results.values() if desc is not None
                       for m in desc.members if m.endpoint and m.endpoint not in seen]
        return results

    def _round_stalled(self, results: dict[str, tuple[Probe, hsm.Cluster | None]]) -> bool:
        answered_before = [e for e, p in self.probes.items() if p.reachable]
        return bool(answered_before) and all(
            e in results and results[e][0].timed_out for e in answered_before)

    @property
    def degraded(self) -> bool:
        """Some HSM seen before is not ACTIVE and reachable now (down, paused, restarting)."""
        active = {e for c in self.clusters.values() for e in c.active_endpoints}
        return any(e not in active for members in self.last_members.values() for e in members)

    async def _probe(self, endpoint: str) -> tuple[Probe, hsm.Cluster | None]:
        now = time.monotonic()
        try:
            stub = await self._stub(endpoint)
            try:
                status = await stub.GetStatus(hsm.Empty(), timeout=self.probe_timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                # The node may have switched certificates (e.g. initialised): pin again once.
                await self._forget(endpoint)
                stub = await self._stub(endpoint)
                status = await stub.GetStatus(hsm.Empty(), timeout=self.probe_timeout_s)
            desc = None
            if status.cluster_id:
                desc = await stub.DescribeCluster(hsm.Empty(), timeout=self.probe_timeout_s)
            probe = Probe(endpoint, True, status.node_id, status.hsm_id, status.cluster_id,
                          hsm.NodeState.Name(status.state), at=now)
            return probe, desc
        except (grpc.aio.AioRpcError, OSError, ValueError) as exc:
            await self._forget(endpoint)
            if isinstance(exc, grpc.aio.AioRpcError):
                detail, timed_out = exc.details() or "", exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                detail, timed_out = str(exc), isinstance(exc, TimeoutError)
            return Probe(endpoint, False, error=detail or type(exc).__name__, at=now, timed_out=timed_out), None

    async def _stub(self, endpoint: str) -> hsm_grpc.HsmStub:
        cached = self._channels.get(endpoint)
        if cached is None:
            pem = await asyncio.to_thread(channels.presented_certificate, endpoint, self.probe_timeout_s)
            cached = (pem, channels.secure(endpoint, pem))
            self._channels[endpoint] = cached
        return hsm_grpc.HsmStub(cached[1])

    async def _forget(self, endpoint: str) -> None:
        cached = self._channels.pop(endpoint, None)
        if cached is not None:
            with contextlib.suppress(Exception):
                await cached[1].close()

    async def run(self, interval_s: float = 2.0, degraded_interval_s: float = 0.25) -> None:
        """Refresh every ``interval_s``; while an HSM is missing, every ``degraded_interval_s``, so
        a node that comes back (after a crash, or with the whole cluster down) is used within a
        fraction of a second rather than up to a full interval later."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("cluster discovery failed", extra={"event": "discovery_error"})
            await asyncio.sleep(degraded_interval_s if self.degraded else interval_s)
