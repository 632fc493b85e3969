"""Latency histograms that merge across worker processes, per-operation counts, and
the results table / JSON report."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BUCKETS_PER_E = 50           # bucket width ~2 %: percentiles are exact to within that
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


class Histogram:
    """Log-bucketed latencies (microsecond resolution at the bottom); mergeable, JSON-able."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        b = int(math.log(max(seconds * 1e6, 1.0)) * BUCKETS_PER_E)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def merge(self, other: Histogram) -> None:
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        if not self.n:
            return 0.0
        rank, seen = max(1, math.ceil(q * self.n)), 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(math.exp((b + 1) / BUCKETS_PER_E) / 1e6, self.max)
        return self.max

    def to_dict(self) -> dict:
        return {"counts": {str(b): c for b, c in self.counts.items()}, "n": self.n, "total": self.total,
                "max": self.max}

    @classmethod
    def from_dict(cls, d: dict) -> Histogram:
        h = cls()
        h.counts = {int(b): c for b, c in d["counts"].items()}
        h.n, h.total, h.max = d["n"], d["total"], d["max"]
        return h


@dataclass
class OpStats:
    latency: Histogram = field(default_factory=Histogram)   # successful calls
    errors: Counter = field(default_factory=Counter)        # exception name -> calls
    first_error: dict[str, str] = field(default_factory=dict)

    def ok(self, seconds: float) -> None:
        self.latency.add(seconds)

    def failed(self, name: str, message: str) -> None:
        self.errors[name] += 1
        self.first_error.setdefault(name, message[:300])

    @property
    def calls(self) -> int:
        return self.latency.n + sum(self.errors.values())

    def merge(self, other: OpStats) -> None:
        self.latency.merge(other.latency)
        self.errors.update(other.errors)
        for k, v in other.first_error.items():
            self.first_error.setdefault(k, v)


@dataclass
class Stats:
    ops: dict[str, OpStats] = field(default_factory=dict)
    late: int = 0          # open loop: started more than LATE_S after their scheduled time
    dropped: int = 0       # open loop: not started (too far behind, or --max-in-flight reached)

    def op(self, name: str) -> OpStats:
        s = self.ops.get(name)
        if s is None:
            s = self.ops[name] = OpStats()
        return s

    def merge(self, other: Stats) -> None:
        for name, s in other.ops.items():
            self.op(name).merge(s)
        self.late += other.late
        self.dropped += other.dropped

    def total(self) -> OpStats:
        t = OpStats()
        for s in self.ops.values():
            t.merge(s)
        return t

    def to_dict(self) -> dict:
        return {"ops": {n: {"latency": s.latency.to_dict(), "errors": dict(s.errors), "first_error": s.first_error}
                        for n, s in self.ops.items()}, "late": self.late, "dropped": self.dropped}

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        st = cls(late=d.get("late", 0), dropped=d.get("dropped", 0))
        for n, s in d.get("ops", {}).items():
            st.ops[n] = OpStats(Histogram.from_dict(s["latency"]), Counter(s["errors"]), dict(s["first_error"]))
        return st


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def op_report(s: OpStats, elapsed: float) -> dict[str, Any]:
    return {"calls": s.calls, "ok": s.latency.n, "errors": dict(s.errors.most_common()),
            "error_messages": s.first_error,
            "throughput_rps": round(s.latency.n / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": {**{k: ms(s.latency.percentile(q)) for k, q in PERCENTILES},
                           "max": ms(s.latency.max),
                           "mean": ms(s.latency.total / s.latency.n) if s.latency.n else 0.0}}


def report(stats: Stats, elapsed: float, config: dict[str, Any], order: tuple[str, ...] = ()) -> dict[str, Any]:
    names = [n for n in order if n in stats.ops] + sorted(n for n in stats.ops if n not in order)
    doc: dict[str, Any] = {"config": config, "elapsed_s": round(elapsed, 3),
                           "operations": {n: op_report(stats.ops[n], elapsed) for n in names},
                           "total": op_report(stats.total(), elapsed)}
    if config.get("rate"):
        doc["open_loop"] = {"target_rps": config["rate"], "late_starts": stats.late, "dropped_starts": stats.dropped,
                            "achieved_start_rps": round((stats.total().calls) / elapsed, 1) if elapsed else 0.0}
    return doc


def table(doc: dict[str, Any]) -> str:
    head = f"{'operation':<20}{'calls':>9}{'ok':>9}{'errors':>8}{'req/s':>10}" \
           f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    lines = [head, "-" * len(head)]

    def row(name: str, r: dict) -> str:
        lat = r["latency_ms"]
        return (f"{name:<20}{r['calls']:>9}{r['ok']:>9}{sum(r['errors'].values()):>8}{r['throughput_rps']:>10.1f}"
                f"{lat['p50']:>9.2f}{lat['p90']:>9.2f}{lat['p99']:>9.2f}{lat['max']:>9.2f}")
    for name, r in doc["operations"].items():
        lines.append(row(name, r))
    lines += ["-" * len(head), row("total", doc["total"])]
    errors = [(name, exc, n, r["error_messages"].get(exc, "")) for name, r in doc["operations"].items()
              for exc, n in r["errors"].items()]
    if errors:
        lines += ["", "errors by exception:"]
        lines += [f"  {name:<20}{exc:<40}{n:>8}  {msg[:80]}" for name, exc, n, msg in errors]
    if "open_loop" in doc:
        o = doc["open_loop"]
        lines += ["", f"open loop: target {o['target_rps']} req/s, started {o['achieved_start_rps']} req/s,"
                      f" {o['late_starts']} late starts, {o['dropped_starts']} dropped starts"
                      + ("  (the target rate was NOT held)" if o["dropped_starts"] or
                         o["achieved_start_rps"] < 0.95 * o["target_rps"] else "")]
    return "\n".join(lines)
