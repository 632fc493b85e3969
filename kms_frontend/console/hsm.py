"""The HSM side of the console, from the frontend's own discovery (``cluster/directory.py``): each
cluster the configured nodes report, its HSMs with their state, health (does the node answer, is it
ACTIVE) and replication lag as its peers see it."""
from __future__ import annotations

from typing import Any

from ..cluster.directory import ClusterDirectory


def directory_view(directory: ClusterDirectory) -> dict[str, Any]:
    clusters = []
    for cluster_id in sorted(set(directory.clusters) | set(directory.last_members)):
        info = directory.clusters.get(cluster_id)
        members = info.member_endpoints if info is not None else directory.last_members.get(cluster_id, [])
        hsms = []
        for endpoint in members:
            probe = directory.probes.get(endpoint)
            if probe is None or not probe.reachable:
                health, state = "UNREACHABLE", ""
            else:
                state = probe.state
                health = "HEALTHY" if state == "ACTIVE" and probe.cluster_id == cluster_id else "UNHEALTHY"
            hsms.append({"HsmId": probe.hsm_id if probe is not None else "", "Endpoint": endpoint, "State": state,
                         "Health": health, "Lag": info.member_lag.get(endpoint) if info is not None else None})
        state = info.state if info is not None else "UNREACHABLE"
        if info is not None and info.active_hsms < len(members):
            state = "DEGRADED"
        clusters.append({"ClusterId": cluster_id, "State": state, "Hsms": hsms})
    return {"clusters": clusters, "backups": None}
