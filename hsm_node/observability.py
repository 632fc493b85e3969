"""Metrics and request ids of an HSM node.

``/metrics`` (Prometheus text format) is served by :class:`plumbing.metrics.MetricsServer`
on ``--metrics-listen`` from a thread of its own, so a scrape never runs on the event
loop. Two kinds of metric:

* counted as requests happen: ``hsm_requests_total{method,code}`` and
  ``hsm_request_seconds{method}`` (every unary RPC of the client port, see the
  servicer's ``rpc`` decorator), ``hsm_crypto_ops_total{op,code}`` (operations
  carried in ``CryptoStream`` batches: plain integers bumped on the event loop,
  no lock and no label lookup per operation);
* computed on scrape from the node's state (:class:`NodeCollector`): state, keys,
  users, sessions, replication lag and health per peer, age of the cluster's
  latest READY backup.

The collector runs in the scrape thread and only reads: it copies the dicts the
event loop mutates (a C-level copy, atomic under the GIL) before iterating them.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

if TYPE_CHECKING:
    from .membership import Membership
    from .node import HsmNode

log = logging.getLogger("hsm_node.metrics")

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID = 128
NODE_STATES = ("UNINITIALIZED", "INITIALIZED", "ACTIVE", "DELETED")

# Unary RPCs of the client port. ``method`` is the RPC name (a fixed set), ``code`` a gRPC status name.
REQUESTS = Counter("hsm_requests_total", "Unary RPCs served by the client port, by method and gRPC status code.",
                   ["method", "code"])
REQUEST_SECONDS = Histogram(
    "hsm_request_seconds", "Time to serve a unary RPC of the client port, by method.", ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

# Operations inside CryptoStream batches, by (op, code): bumped on the event loop, read on scrape.
CRYPTO_OPS: defaultdict[tuple[str, str], int] = defaultdict(int)


def request_id(context: Any) -> str:
    """The caller's ``x-request-id`` metadata, bounded in length ("" when absent)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return value[:MAX_REQUEST_ID]
    return ""


class NodeCollector(Collector):
    def __init__(self, node: HsmNode, membership: Membership | None = None) -> None:
        self.node, self.membership = node, membership

    def collect(self) -> Iterator[Metric]:
        n = self.node
        ops = CounterMetricFamily("hsm_crypto_ops", "Crypto operations carried in CryptoStream batches, by"
                                  " operation and gRPC status code.", labels=["op", "code"])
        for (op, code), value in dict(CRYPTO_OPS).items():
            ops.add_metric([op, code], value)
        yield ops

        info = GaugeMetricFamily("hsm_node_info", "Identity of this node (always 1).",
                                 labels=["node_id", "cluster_id", "version"])
        info.add_metric([n.node_id, n.cluster_id, __version__], 1)
        yield info
        state = GaugeMetricFamily("hsm_state", "Lifecycle state of this node: 1 for the current state.",
                                  labels=["state"])
        current = n.state
        for s in NODE_STATES:
            state.add_metric([s], 1 if s == current else 0)
        yield state
        yield GaugeMetricFamily("hsm_keys", "Keys this node holds.", value=len(n.records.keys))
        yield GaugeMetricFamily("hsm_users", "Users this node holds.", value=len(n.records.users))
        yield GaugeMetricFamily("hsm_sessions", "Open login sessions on this node.", value=n.sessions.count())

        lag = GaugeMetricFamily("hsm_replication_lag", "Writes this node holds that a peer is known to miss"
                                " (from the peer's last reported positions).", labels=["peer"])
        healthy = GaugeMetricFamily("hsm_peer_healthy", "1 when the peer answered replication recently.",
                                    labels=["peer"])
        replicator = getattr(self.membership, "replicator", None)
        if replicator is not None:
            local = dict(n.positions)
            for link in list(replicator.peers.values()):
                peer = link.member.node_id
                healthy.add_metric([peer], 1 if link.healthy else 0)
                known = link.positions  # replaced whole by the loop, never mutated in place
                if known is not None:
                    lag.add_metric([peer], sum(max(0, seq - known.get(origin, 0)) for origin, seq in local.items()))
        yield lag
        yield healthy

        age = GaugeMetricFamily("hsm_last_backup_age_seconds",
                                "Seconds since the cluster's latest READY backup (absent: none).")
        store = getattr(self.membership, "store", None)
        if store is not None and n.cluster_id:
            try:
                latest = store.latest(n.cluster_id)
            except Exception:
                log.warning("cannot read the backup store for metrics", extra={"event": "metrics_error"}, exc_info=True)
                latest = None
            if latest is not None:
                age.add_metric([], max(0.0, (n.now_ms() - latest.create_timestamp_ms) / 1000))
        yield age

