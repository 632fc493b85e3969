"""Requests per second and errors per second by AWS exception name, for the console's live chart.

Once a second the sampler reads the frontend's own request counter (``kms_requests_total``, the one
``/metrics`` serves: every request of both APIs, by operation and outcome) and keeps the increase
per outcome for the last ``WINDOW_S`` seconds. Nothing is added to a request's path."""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import observability

WINDOW_S = 300


def _totals() -> dict[str, float]:
    """Requests so far by outcome (``ok`` or the exception name), over every operation."""
    out: dict[str, float] = {}
    for metric in observability.REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels.get("outcome", "")
                out[outcome] = out.get(outcome, 0.0) + sample.value
    return out


def shared_totals(folder: Path) -> Callable[[], dict[str, float]]:
    """Several frontend workers (the console runs in the leader): the totals of every worker, as each
    last published them (:func:`publish_totals`), so the chart shows the whole frontend's traffic."""
    def read() -> dict[str, float]:
        out: dict[str, float] = {}
        for path in folder.glob("w*.json"):
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker that never published yet
            for outcome, value in doc.items():
                out[outcome] = out.get(outcome, 0.0) + float(value)
        return out
    return read


async def publish_totals(path: Path) -> None:
    """Several frontend workers: this worker's totals once a second, for the leader's console. Written
    whole (a rename) but not fsynced: counters of a running process, worthless after a crash."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    while True:
        tmp.write_text(json.dumps(_totals()))
        os.replace(tmp, path)
        await asyncio.sleep(1.0)


class Activity:
    def __init__(self, window_s: int = WINDOW_S, totals: Callable[[], dict[str, float]] = _totals) -> None:
        self.points: deque[tuple[float, dict[str, float]]] = deque(maxlen=window_s)
        self._totals = totals
        self._last = totals()

    def sample(self, now: float | None = None) -> None:
        totals = self._totals()
        delta = {k: v - self._last.get(k, 0.0) for k, v in totals.items() if v - self._last.get(k, 0.0) > 0}
        self._last = totals
        self.points.append((time.time() if now is None else now, delta))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sample()

    def series(self) -> dict[str, Any]:
        """Columns for the chart: time, successful requests/s, and errors/s per exception name."""
        names = sorted({k for _, d in self.points for k in d if k != observability.OK})
        return {"t": [round(t, 3) for t, _ in self.points],
                "ok": [d.get(observability.OK, 0.0) for _, d in self.points],
                "errors": {n: [d.get(n, 0.0) for _, d in self.points] for n in names}}
