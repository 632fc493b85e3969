"""Requests per second and errors per second by AWS exception name, for the console's live chart.

Once a second the sampler reads the frontend's own request counter (``kms_requests_total``, the one
``/metrics`` serves: every request of both APIs, by operation and outcome) and keeps the increase
per outcome for the last ``WINDOW_S`` seconds. Nothing is added to a request's path."""
from __future__ import annotations

import asyncio
import time
from collections import deque
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


class Activity:
    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.points: deque[tuple[float, dict[str, float]]] = deque(maxlen=window_s)
        self._last = _totals()

    def sample(self, now: float | None = None) -> None:
        totals = _totals()
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
