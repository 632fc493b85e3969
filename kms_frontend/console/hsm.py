"""The CloudHSM page's clusters are what ``DescribeClusters`` returns to the signed-in principal
(``views.py`` asks the control plane as that principal); this module lays each HSM's health and
replication lag over them from the frontend's own discovery (``cluster/directory.py``): does its
node answer, is it an ACTIVE member of its cluster, and how many writes its peers say it misses."""
from __future__ import annotations

from typing import Any

from ..cluster.directory import ClusterDirectory
from ..controlplane.service import ControlPlane


def health(directory: ClusterDirectory, endpoint: str, cluster_id: str) -> str:
    """HEALTHY: the node answers as an ACTIVE member of this cluster; UNREACHABLE: it does not answer
    (killed, paused, partitioned); UNHEALTHY: it answers as something else (restarting, removed)."""
    probe = directory.probes.get(endpoint) if endpoint else None
    if probe is None or not probe.reachable:
        return "UNREACHABLE"
    return "HEALTHY" if probe.state == "ACTIVE" and probe.cluster_id == cluster_id else "UNHEALTHY"


def with_health(plane: ControlPlane, clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``DescribeClusters``' clusters, each HSM with its ``Endpoint``, ``Health`` and ``Lag`` added."""
    directory = plane.directory
    for cluster in clusters:
        info = directory.clusters.get(cluster["ClusterId"])
        for hsm in cluster["Hsms"]:
            record = plane.store.hsms.get(hsm["HsmId"])
            endpoint = record.endpoint if record is not None else ""
            hsm["Endpoint"] = endpoint
            hsm["Health"] = health(directory, endpoint, cluster["ClusterId"])
            hsm["Lag"] = info.member_lag.get(endpoint) if info is not None and endpoint else None
    return clusters
