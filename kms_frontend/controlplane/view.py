"""The cluster view: what the control plane's records and the nodes' own answers say together.

Discovery (:class:`~kms_frontend.cluster.directory.ClusterDirectory`) probes every HSM endpoint;
this module is its :class:`~kms_frontend.cluster.directory.ClusterCatalog`: it names the endpoints
of the HSMs the control plane placed, and lays its records over each probe round. The result is
the one view both sides read: KMS's cluster checks (``directory.lookup``) and DescribeClusters.

* A cluster the control plane knows exists even with no HSM answering (KMS then sees no active
  HSM, not a missing cluster); a DELETED one, or one of another Region, is not KMS's to see.
* An HSM whose node does not answer (or answers as something else) is DEGRADED, and so is its
  cluster; each HSM's Availability Zone comes from its record.
* A cluster the nodes report that the control plane does not know yet (its nodes were started by
  someone else: ``kms-cluster`` before the control plane, ``hsm-mgmt`` by hand, compose's static
  nodes) is adopted after the round (:meth:`.service.ControlPlane.sync`), with its members as
  HSMs of the ``static`` provisioner.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..cluster.directory import ClusterInfo, Probe
from . import records as r

if TYPE_CHECKING:
    from .service import ControlPlane

SHOWN_HSM_STATES = (r.ACTIVE, r.DEGRADED)


def node_ok(probe: Probe | None, cluster: r.ClusterRecord) -> bool:
    """Does this probe show a healthy HSM of ``cluster``?"""
    if probe is None or not probe.reachable:
        return False
    if cluster.state in (r.UNINITIALIZED, r.CREATE_IN_PROGRESS):
        return probe.state == "UNINITIALIZED"
    if cluster.state in (r.INITIALIZE_IN_PROGRESS, r.INITIALIZED):
        return probe.cluster_id == cluster.cluster_id and probe.state in ("INITIALIZED", "ACTIVE")
    return probe.cluster_id == cluster.cluster_id and probe.state == "ACTIVE"


class ClusterView:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    # ------------------------------------------------------------ the directory's catalog

    def endpoints(self) -> list[str]:
        """Every HSM the control plane placed, of every Region (KMS sees only the home Region's clusters:
        :meth:`overlay` leaves the others out). Called first in every probe round: a following
        worker takes the leader's newest records here, so KMS there sees what the leader placed."""
        if self.plane.following:
            self.plane.store.reload_if_changed()
        return [h.endpoint for h in self.plane.store.hsms.values() if h.endpoint]

    def overlay(self, clusters: dict[str, ClusterInfo], probes: dict[str, Probe]) -> dict[str, ClusterInfo]:
        store, home = self.plane.store, self.plane.regions.home
        out: dict[str, ClusterInfo] = {}
        for cid, info in clusters.items():
            rec = store.clusters.get(cid)
            if rec is None:
                out[cid] = info  # not known yet: adopted after this round
            elif rec.region == home and rec.state != r.DELETED:
                out[cid] = self._merge(rec, info, probes)
        for rec in store.clusters.values():
            if rec.cluster_id not in out and rec.region == home and rec.state != r.DELETED:
                out[rec.cluster_id] = self._merge(rec, None, probes)
        return out

    def deleted(self, cluster_id: str) -> bool:
        rec = self.plane.store.clusters.get(cluster_id)
        return rec is not None and rec.state == r.DELETED

    def _merge(self, rec: r.ClusterRecord, info: ClusterInfo | None, probes: dict[str, Probe]) -> ClusterInfo:
        hsms = [h for h in self.plane.store.hsms_of(rec.cluster_id) if h.endpoint]
        placed = [h.endpoint for h in hsms if h.state in SHOWN_HSM_STATES]
        if info is None:
            info = ClusterInfo(rec.cluster_id, rec.state, rec.certificate_pem, rec.certificate_sha256,
                               rec.trust_anchor_pem)
        else:
            info = dataclasses.replace(info, member_endpoints=list(info.member_endpoints),
                                       active_endpoints=list(info.active_endpoints))
        info.member_endpoints = sorted(set(info.member_endpoints) | set(placed))
        info.zones = {h.endpoint: h.availability_zone for h in hsms}
        info.subnet_zones = len(rec.subnet_mapping)
        info.state = self.cluster_state(rec, probes)
        return info

    # ------------------------------------------------------------ states as shown

    def hsm_state(self, hsm: r.HsmRecord, probes: dict[str, Probe] | None = None) -> tuple[str, str]:
        """(HsmState, StateMessage) as DescribeClusters shows it now."""
        if hsm.state != r.ACTIVE:
            return hsm.state, hsm.state_message
        cluster = self.plane.store.clusters.get(hsm.cluster_id)
        probe = (probes if probes is not None else self.plane.directory.probes).get(hsm.endpoint)
        if cluster is None or node_ok(probe, cluster):
            return r.ACTIVE, hsm.state_message
        if probe is None:
            return r.DEGRADED, "The HSM has not been reached yet."
        if not probe.reachable:
            return r.DEGRADED, f"The HSM does not answer ({probe.error[:200]})."
        return r.DEGRADED, (f"The HSM answers as {probe.state} of {probe.cluster_id or 'no cluster'}, not as an "
                            f"active HSM of {hsm.cluster_id}.")

    def cluster_state(self, rec: r.ClusterRecord, probes: dict[str, Probe] | None = None) -> str:
        probes = probes if probes is not None else self.plane.directory.probes
        hsms = self.plane.store.hsms_of(rec.cluster_id)
        if rec.state == r.INITIALIZED and any(
                (p := probes.get(h.endpoint)) is not None and p.reachable and p.cluster_id == rec.cluster_id
                and p.state == "ACTIVE" for h in hsms):
            return r.ACTIVE  # activated (hsm-mgmt activate); the record follows after this round
        if rec.state != r.ACTIVE:
            return rec.state
        if any(self.hsm_state(h, probes)[0] == r.DEGRADED for h in hsms):
            return r.DEGRADED
        return r.ACTIVE
