"""``/metrics`` (Prometheus text format) over HTTP on a thread of its own, so a scrape never
runs on the event loop. It serves the process-wide default registry (counters and
histograms made at import time, process metrics) plus the collectors it is given, which
compute their metrics on scrape."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .addresses import split_listen


class _Global(Collector):
    """Everything in the process-wide default registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class MetricsServer:
    """``MetricsServer("0.0.0.0:9100", collector, ..., log=...)``: ``start()`` serves, ``stop()`` ends it.
    ``listen`` is HOST:PORT as given to ``--metrics-listen`` (an empty host: every interface)."""

    def __init__(self, listen: str, *collectors: Collector, log: logging.Logger | None = None) -> None:
        self.listen = listen
        self.host, self.port = split_listen(listen, "--metrics-listen")
        self.log = log or logging.getLogger("plumbing.metrics")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Global())
        for c in collectors:
            self.registry.register(c)
        self._server: Any = None

    def start(self) -> None:
        self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
        self.log.info("metrics listening", extra={"event": "metrics_listening", "listen": self.listen})

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
