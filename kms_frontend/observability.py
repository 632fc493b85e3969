"""Request ids, request metrics and request logs of the frontend: the one place both
adapters (gRPC and AWS JSON) count, time and log a request, so they report alike.

* The request id lives in :data:`REQUEST_ID` (a context variable) for the length of
  the request: the HSM channels send it as ``x-request-id`` metadata on unary calls
  (:mod:`.cluster.channels`) and the crypto streams put it in ``CryptoOp.request_id``.
* :func:`finish` counts ``kms_requests_total{operation,outcome}`` (outcome ``ok`` or
  the AWS exception name), observes ``kms_request_seconds{operation}`` and logs one
  ``event: "request"`` line with the caller's principal: info for management operations,
  debug for successful crypto operations, info for failed ones. Never a request's fields.
* ``/metrics`` is served by :class:`plumbing.metrics.MetricsServer` from a thread of its own;
  :class:`FrontendCollector` computes store connection states and open HSM sessions
  on scrape.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .store.repository import ConnectionState

if TYPE_CHECKING:
    from .service.context import Context

log = logging.getLogger("kms_frontend.request")
mlog = logging.getLogger("kms_frontend.metrics")

REQUEST_ID_KEY = "x-request-id"
REQUEST_ID: ContextVar[str] = ContextVar("kms_request_id", default="")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

CRYPTO_OPERATIONS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
                               "GenerateDataKeyWithoutPlaintext", "GenerateRandom"})
OK = "ok"
UNKNOWN_OPERATION = "unknown"  # the AWS endpoint before it knows the operation (bad signature, bad target)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUESTS = Counter("kms_requests_total", "KMS API requests (gRPC and AWS JSON alike), by operation and outcome"
                   " (ok, or the AWS exception name).", ["operation", "outcome"])
REQUEST_SECONDS = Histogram("kms_request_seconds", "Time to serve a KMS API request, by operation.", ["operation"],
                            buckets=_LATENCY_BUCKETS)
HSM_OP_SECONDS = Histogram("kms_hsm_op_seconds", "Round trip of one crypto operation on an HSM node's stream,"
                           " by node endpoint.", ["node"], buckets=_LATENCY_BUCKETS)
HSM_BATCH_SIZE = Histogram("kms_hsm_batch_size", "Crypto operations per message on the streams to HSM nodes.",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

# label children resolved once: a dict lookup per request, no registry lock
_counters: dict[tuple[str, str], Any] = {}
_timers: dict[str, Any] = {}


# Request ids the frontend makes: shaped like a version-4 UUID (as AWS's are; callers parse them
# as UUIDs), from a random per-process prefix and a counter. Unique within the process by the
# counter and across processes and restarts by the 74 random bits of the prefix, without what
# uuid4() costs on every request (an os.urandom syscall, a UUID object, its formatting: ~5 us).
_ID_PREFIX = str(uuid.uuid4())[:24]  # "xxxxxxxx-xxxx-4xxx-Vxxx-": the version and variant bits
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(6), "big"))


def new_request_id(offered: str | None = None) -> str:
    """The caller's id when it offered a sane one (bounded, no spaces or control characters), else
    a new id in the form of a uuid4."""
    if offered and _SAFE_ID.fullmatch(offered):
        return offered
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF:012x}"


def grpc_request_id(context: Any) -> str:
    return request_id_of(context.invocation_metadata() or ())


def request_id_of(metadata: Any) -> str:
    """The request id of a gRPC call, from its metadata (read once per call by the adapter)."""
    for key, value in metadata:
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return new_request_id(value)
    return new_request_id()


def outcome_of(exc: BaseException | None) -> str:
    """``ok``, or the AWS exception name of a KmsError (anything else was reported as KMSInternalException)."""
    if exc is None:
        return OK
    return getattr(exc, "name", None) or "KMSInternalException"


def finish(api: str, operation: str, outcome: str, elapsed_s: float, request_id: str, principal: str = "") -> None:
    """Count, time and log one request. ``operation`` must come from a fixed set (the API's
    operation names, or UNKNOWN_OPERATION): it is a label."""
    timer = _timers.get(operation)
    if timer is None:
        timer = _timers[operation] = REQUEST_SECONDS.labels(operation)
    timer.observe(elapsed_s)
    key = (operation, outcome)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = REQUESTS.labels(operation, outcome)
    counter.inc()
    level = logging.DEBUG if operation in CRYPTO_OPERATIONS and outcome == OK else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, f"{operation} {outcome}", extra={
            "event": "request", "api": api, "operation": operation, "outcome": outcome,
            "duration_ms": round(elapsed_s * 1000, 3), "request_id": request_id, "principal": principal})


# ---------------------------------------------------------------- /metrics


class FrontendCollector(Collector):
    """Store connection states (one repository query per scrape, on the storage thread), the
    kmsuser sessions each connected store holds open, and the requests being handled now (read
    from the adapters' own counters at scrape time: nothing added per request)."""

    def __init__(self, ctx: Context, open_sessions: Callable[[], dict[str, int]],
                 in_flight: Callable[[], dict[str, int]] = lambda: {}) -> None:
        self.ctx, self.open_sessions, self.in_flight = ctx, open_sessions, in_flight

    def collect(self) -> Iterator[Metric]:
        handling = GaugeMetricFamily("kms_requests_in_flight", "Requests being handled now, by API.", labels=["api"])
        for api, count in self.in_flight().items():
            handling.add_metric([api], count)
        yield handling
        connected = GaugeMetricFamily("kms_custom_key_store_connected", "1 when the custom key store is CONNECTED.",
                                      labels=["custom_key_store_id"])
        state = GaugeMetricFamily("kms_custom_key_store_state", "Connection state of each custom key store:"
                                  " 1 for the current state.", labels=["custom_key_store_id", "state"])
        try:
            stores = self.ctx.call_blocking(self.ctx.repo.list_custom_key_stores, limit=10_000).items
        except Exception:
            mlog.warning("cannot read custom key stores for metrics", extra={"event": "metrics_error"}, exc_info=True)
            stores = []
        for s in stores:
            connected.add_metric([s.custom_key_store_id], 1 if s.connection_state == ConnectionState.CONNECTED else 0)
            for st in ConnectionState:
                state.add_metric([s.custom_key_store_id, st], 1 if s.connection_state == st else 0)
        yield connected
        yield state
        sessions = GaugeMetricFamily("kms_hsm_sessions", "Open kmsuser sessions on HSM nodes, by custom key store.",
                                     labels=["custom_key_store_id"])
        for store_id, count in self.open_sessions().items():
            sessions.add_metric([store_id], count)
        yield sessions

