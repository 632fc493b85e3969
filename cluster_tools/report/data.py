"""What a run recorded, as series a plot can draw.

:class:`CallSamples` keeps every call compactly (start, latency, operation, outcome) so that a
load worker can hand millions of them to its parent; ``kms-chaos`` builds the same series from
its history. Fault windows come from the history's fault records: a node is shown unavailable
from the fault that took it away until the one that brought it back (kill -> restart, pause ->
resume, remove -> add).
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

OK = "ok"
RECOVERING = ("restart", "resume", "add", "start", "create-hsm")  # fault kinds that end an outage


class CallSamples:
    """Every call: start (epoch seconds), latency (seconds), operation and outcome (``ok`` or the
    AWS exception name). Stored as arrays and small lookup tables (a few bytes a call)."""

    def __init__(self) -> None:
        self.start = array("d")
        self.latency = array("d")
        self.op = array("H")
        self.outcome = array("H")
        self.ops: list[str] = []
        self.outcomes: list[str] = []
        self._op_index: dict[str, int] = {}
        self._outcome_index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.start)

    def _index(self, table: list[str], index: dict[str, int], name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(table)
            table.append(name)
        return i

    def add(self, start: float, latency: float, op: str, outcome: str) -> None:
        self.start.append(start)
        self.latency.append(latency)
        self.op.append(self._index(self.ops, self._op_index, op))
        self.outcome.append(self._index(self.outcomes, self._outcome_index, outcome))

    def rows(self) -> list[tuple[float, float, str, str]]:
        ops, outcomes = self.ops, self.outcomes
        return [(s, lat, ops[o], outcomes[r]) for s, lat, o, r in zip(self.start, self.latency, self.op,
                                                                       self.outcome, strict=True)]

    def merge(self, other: CallSamples) -> None:
        for s, lat, op, outcome in other.rows():
            self.add(s, lat, op, outcome)

    def to_dict(self) -> dict[str, Any]:
        """A picklable, JSON-able form (for a worker's last message to its parent)."""
        return {"start": self.start.tobytes(), "latency": self.latency.tobytes(), "op": self.op.tobytes(),
                "outcome": self.outcome.tobytes(), "ops": self.ops, "outcomes": self.outcomes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CallSamples:
        s = cls()
        s.start.frombytes(d["start"])
        s.latency.frombytes(d["latency"])
        s.op.frombytes(d["op"])
        s.outcome.frombytes(d["outcome"])
        s.ops, s.outcomes = list(d["ops"]), list(d["outcomes"])
        s._op_index = {n: i for i, n in enumerate(s.ops)}
        s._outcome_index = {n: i for i, n in enumerate(s.outcomes)}
        return s

    @classmethod
    def from_history(cls, records: list[dict[str, Any]], phases: tuple[str, ...] = ("run",)) -> CallSamples:
        s = cls()
        for r in records:
            if r.get("type") == "op" and r.get("phase") in phases and "start" in r and "end" in r:
                outcome = OK if r.get("ok") else (r.get("error") or {}).get("name", "Error")
                s.add(r["start"], max(0.0, r["end"] - r["start"]), r["op"], outcome)
        return s


@dataclass(frozen=True)
class FaultWindow:
    kind: str          # the fault that opened the window (kill, pause, remove ...)
    node: str
    start: float       # epoch seconds
    end: float         # epoch seconds; math.inf when the node never came back
    label: str         # e.g. "kill hsm2"


@dataclass(frozen=True)
class NodeSample:
    at: float          # epoch seconds
    node: str
    state: str         # ACTIVE, ... or "unreachable"
    lag: int | None    # writes it misses compared with the most advanced node


@dataclass
class RunData:
    """Everything the report draws, for one run."""

    title: str
    t0: float
    end: float
    calls: CallSamples
    faults: list[FaultWindow] = field(default_factory=list)
    node_samples: list[NodeSample] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


def fault_windows(records: list[dict[str, Any]], end: float) -> list[FaultWindow]:
    """From the history's fault records: each fault that took a node away, until the fault that
    brought it back (or the end of the run, for a node never brought back)."""
    faults = sorted((r for r in records if r.get("type") == "fault" and not r.get("skipped")),
                    key=lambda r: r["start"])
    windows: list[FaultWindow] = []
    open_: dict[str, dict[str, Any]] = {}
    for f in faults:
        node, kind = f["node"], f["kind"]
        if f.get("after") == "up" or kind in RECOVERING:
            first = open_.pop(node, None)
            if first is not None:
                windows.append(FaultWindow(first["kind"], node, first["start"], f["end"], f"{first['kind']} {node}"))
            elif kind == "restart":  # a restart is a short outage of its own
                windows.append(FaultWindow(kind, node, f["start"], f["end"], f"restart {node}"))
        elif node not in open_:
            open_[node] = f
    for node, first in open_.items():
        windows.append(FaultWindow(first["kind"], node, first["start"], max(end, first["end"]) if math.isfinite(end)
                                   else math.inf, f"{first['kind']} {node}"))
    return sorted(windows, key=lambda w: w.start)
