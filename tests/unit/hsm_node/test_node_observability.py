"""The node's scrape-time metrics: replication lag from peer positions, health, backup age."""
from __future__ import annotations

from types import SimpleNamespace

from hsm_node.observability import CRYPTO_OPS, NodeCollector


def samples(collector) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect() for s in m.samples}


def fake(now_ms: int = 100_000, latest_ms: int | None = 40_000):
    node = SimpleNamespace(
        node_id="node-a", cluster_id="cluster-x", state="ACTIVE", positions={"node-a": 7, "node-b": 3},
        records=SimpleNamespace(keys={1: 0, 2: 0}, users={"admin": 0, "kmsuser": 0, "x": 0}),
        sessions=SimpleNamespace(count=lambda: 2), now_ms=lambda: now_ms)
    up = SimpleNamespace(member=SimpleNamespace(node_id="node-b"), positions={"node-a": 7, "node-b": 3}, healthy=True)
    behind = SimpleNamespace(member=SimpleNamespace(node_id="node-c"), positions={"node-a": 4}, healthy=False)
    unknown = SimpleNamespace(member=SimpleNamespace(node_id="node-d"), positions=None, healthy=False)
    latest = None if latest_ms is None else SimpleNamespace(create_timestamp_ms=latest_ms)
    cluster = SimpleNamespace(
        replicator=SimpleNamespace(peers={"node-b": up, "node-c": behind, "node-d": unknown}),
        store=SimpleNamespace(latest=lambda cluster_id: latest))
    return node, cluster


def test_lag_health_state_counts_and_backup_age():
    node, cluster = fake()
    s = samples(NodeCollector(node, cluster))
    assert s[("hsm_replication_lag", (("peer", "node-b"),))] == 0
    assert s[("hsm_replication_lag", (("peer", "node-c"),))] == 3 + 3   # 3 of node-a's writes, 3 of node-b's
    assert ("hsm_replication_lag", (("peer", "node-d"),)) not in s      # never answered: unknown, not 0
    assert s[("hsm_peer_healthy", (("peer", "node-b"),))] == 1
    assert s[("hsm_peer_healthy", (("peer", "node-d"),))] == 0
    assert s[("hsm_state", (("state", "ACTIVE"),))] == 1
    assert s[("hsm_state", (("state", "DELETED"),))] == 0
    assert s[("hsm_keys", ())] == 2 and s[("hsm_users", ())] == 3 and s[("hsm_sessions", ())] == 2
    assert s[("hsm_last_backup_age_seconds", ())] == 60.0


def test_no_backup_no_age_sample_and_crypto_counts():
    node, cluster = fake(latest_ms=None)
    CRYPTO_OPS[("encrypt", "OK")] += 5
    s = samples(NodeCollector(node, cluster))
    assert ("hsm_last_backup_age_seconds", ()) not in s
    assert s[("hsm_crypto_ops_total", (("code", "OK"), ("op", "encrypt")))] >= 5
