"""Fault injection: when faults happen (a schedule, or a seeded random plan) and what
state each node is in, with one safety rule: never leave no node alive, unless
allowed. What a fault does to a node is in ``injectors`` (local processes, compose).

Faults: ``kill`` (SIGKILL / docker kill), ``pause`` (SIGSTOP / docker pause; undone
after ``pause_for``), ``resume``, ``restart`` (stop if running, start again on the
same data), ``remove`` (hsm-mgmt removeNode, then the node is stopped and its data
set aside) and ``add`` (a fresh, empty node in its place, joined with hsm-mgmt
addNode); through the CloudHSM control plane's API (``kms-cluster up`` clusters):
``delete-hsm`` (DeleteHsm: the control plane removes the HSM and stops its node) and
``create-hsm`` (CreateHsm in the deleted HSM's Availability Zone: a new HSM, seeded from
a fresh backup, takes the node's name). Each is written to the history with its start
and end time and the node's state after it.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..history import History
from .injectors import ComposeInjector, FaultError, Injector, LocalInjector

__all__ = ["KINDS", "RANDOM_KINDS", "ComposeInjector", "FaultError", "FaultRunner", "FaultSpec", "Injector",
           "LocalInjector", "parse_schedule"]

KINDS = ("kill", "pause", "resume", "restart", "remove", "add", "delete-hsm", "create-hsm")
RANDOM_KINDS = ("kill", "pause", "restart", "remove")
RANDOM_CHOICES = ("kill", "pause", "restart", "remove", "delete-hsm")  # what --kinds may name
UP, DOWN, PAUSED, REMOVED = "up", "down", "paused", "removed"
_SPEC = re.compile(r"^(?P<kind>[a-z-]+):(?P<node>[\w.-]+)@(?P<at>[\d.]+(?:ms|s|m)?)$")
# what brings a node back after each way of taking it out of the cluster
READD = {"remove": "add", "delete-hsm": "create-hsm"}
# the injector's method for each kind
METHOD = {"delete-hsm": "delete_hsm", "create-hsm": "create_hsm"}


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    node: str
    at: float          # seconds after the traffic clock started


def parse_schedule(texts: list[str]) -> list[FaultSpec]:
    """``kill:hsm2@5s,restart:hsm2@10s`` (repeatable, comma-separated) -> specs ordered by time."""
    from ..traffic.target import parse_duration
    specs = []
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            m = _SPEC.match(part)
            if not m or m["kind"] not in KINDS:
                raise ValueError(f"--fault expects KIND:NODE@TIME with KIND among {', '.join(KINDS)}; got {part!r}")
            specs.append(FaultSpec(m["kind"], m["node"], parse_duration(m["at"])))
    return sorted(specs, key=lambda s: s.at)


# ------------------------------------------------------------------ when faults happen


class FaultRunner:
    """Applies faults one at a time, keeps each node's state, refuses faults that would
    leave no node up (unless ``allow_total_outage``), and heals everything at the end."""

    def __init__(self, injector: Injector, history: History, t0: float, *, pause_for: float = 2.0,
                 allow_total_outage: bool = False, say: Callable[[str], None] = print) -> None:
        self.inj, self.history, self.t0 = injector, history, t0
        self.pause_for, self.allow_total_outage, self.say = pause_for, allow_total_outage, say
        self.state = {n: UP if injector.running(n) else DOWN for n in injector.nodes}
        self.removed_by: dict[str, str] = {}   # node -> the kind that took it out (remove, delete-hsm)
        self._lock = asyncio.Lock()
        self._resumes: set[asyncio.Task] = set()
        self.failures: list[dict] = []

    def up(self, exclude: str | None = None) -> list[str]:
        return [n for n, s in self.state.items() if s == UP and n != exclude]

    def refusal(self, kind: str, node: str) -> str | None:
        st = self.state[node]
        valid = {"kill": (UP, PAUSED), "pause": (UP,), "resume": (PAUSED,), "restart": (UP, DOWN, PAUSED),
                 "remove": (UP,), "add": (REMOVED,), "delete-hsm": (UP, DOWN), "create-hsm": (REMOVED,)}[kind]
        if st not in valid:
            return f"{node} is {st}"
        if kind in READD.values() and READD[self.removed_by.get(node, "remove")] != kind:
            return f"{node} was taken out by {self.removed_by.get(node, 'remove')}; {READD[self.removed_by.get(node, 'remove')]} brings it back"
        takes_down = kind in ("kill", "pause", "remove", "delete-hsm") or (kind == "restart" and st == UP)
        if takes_down and st == UP and not self.up(exclude=node) and not self.allow_total_outage:
            return "it would leave no HSM node up (--allow-total-outage permits that)"
        if kind in ("remove", "add", "delete-hsm", "create-hsm") and not self.up(exclude=node):
            return f"no other node is up to run {kind}"
        return None

    async def apply(self, kind: str, node: str, why: str = "") -> dict:
        async with self._lock:
            return await self._apply(kind, node, why)

    async def _apply(self, kind: str, node: str, why: str) -> dict:
        start = time.time()
        rec: dict[str, Any] = {"type": "fault", "kind": kind, "node": node, "start": start, "before": self.state[node]}
        if why:
            rec["why"] = why
        reason = self.refusal(kind, node)
        if reason:
            rec.update(end=start, ok=False, skipped=reason, after=self.state[node])
            self.history.write(rec)
            self.say(f"[{start - self.t0:6.1f}s] fault {kind} {node} skipped: {reason}")
            return rec
        via = self.up(exclude=node)
        try:
            method = getattr(self.inj, METHOD.get(kind, kind))
            if kind in ("remove", "add", "delete-hsm", "create-hsm"):
                detail = await asyncio.to_thread(method, node, via)
            else:
                detail = await asyncio.to_thread(method, node)
            rec.update(ok=True, detail=detail)
            self.state[node] = {"kill": DOWN, "pause": PAUSED, "resume": UP, "restart": UP, "remove": REMOVED,
                                "add": UP, "delete-hsm": REMOVED, "create-hsm": UP}[kind]
            if kind in READD:
                self.removed_by[node] = kind
        except Exception as exc:   # the fault (or the recovery) did not happen as asked: evidence
            rec.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
            running = await asyncio.to_thread(self.inj.running, node)
            if kind == "add":
                await asyncio.to_thread(self.inj.stop, node)
                self.state[node] = REMOVED
            elif kind in ("delete-hsm", "create-hsm"):
                self.state[node] = await asyncio.to_thread(self.inj.hsm_state, node)
                if self.state[node] == REMOVED:
                    self.removed_by[node] = "delete-hsm"
            elif kind != "remove":
                self.state[node] = (PAUSED if self.state[node] == PAUSED else UP) if running else DOWN
            self.failures.append(rec)
        rec.update(end=time.time(), after=self.state[node])
        self.history.write(rec)
        took = rec["end"] - start
        outcome = f"-> {rec['after']} ({rec.get('detail', '')}) in {took:.2f}s" if rec["ok"] else \
            f"FAILED after {took:.2f}s: {rec['error']}"
        # stamped when it ended, so the lines stay in time order while a resume finishes inside a
        # long remove; a fault that took a while also says when it began
        began = f" (began at {start - self.t0:.1f}s)" if took >= 1.0 else ""
        self.say(f"[{rec['end'] - self.t0:6.1f}s] fault {kind} {node} {outcome}{began}")
        if rec["ok"] and kind == "pause" and self.pause_for > 0:
            task = asyncio.create_task(self._resume_later(node))
            self._resumes.add(task)
            task.add_done_callback(self._resumes.discard)
        return rec

    async def _resume_later(self, node: str) -> None:
        await asyncio.sleep(self.pause_for)
        if self.state[node] == PAUSED:
            # not behind the lock: continuing a node is always safe, and must not wait for a long
            # fault elsewhere (a remove can take many seconds)
            await asyncio.shield(self._apply("resume", node, why=f"--pause-for {self.pause_for:g}s"))

    async def run_schedule(self, specs: list[FaultSpec], until: float) -> None:
        """``until``: epoch seconds; faults due later are not applied."""
        for spec in specs:
            due = self.t0 + spec.at
            if due >= until:
                self.say(f"fault {spec.kind}:{spec.node}@{spec.at:g}s is after the end of the run: not applied")
                continue
            await asyncio.sleep(max(0.0, due - time.time()))
            # shielded: stopping the schedule never abandons a fault half-done (heal waits for it)
            await asyncio.shield(self.apply(spec.kind, self.inj.resolve(spec.node)))

    def pick(self, rng: Any, kinds: tuple[str, ...]) -> tuple[str, str] | None:
        options: dict[str, list[str]] = {}
        for n, st in self.state.items():
            if st == DOWN:
                options.setdefault("restart", []).append(n)
            elif st == REMOVED:
                options.setdefault(READD[self.removed_by.get(n, "remove")], []).append(n)
        for kind in kinds:
            for n in self.state:
                if self.refusal(kind, n) is None and self.state[n] == UP:
                    options.setdefault(kind, []).append(n)
        if not options:
            return None
        kind = rng.choice(sorted(options))
        return kind, rng.choice(sorted(options[kind]))

    async def run_random(self, rng: Any, interval: float, kinds: tuple[str, ...], until: float) -> None:
        while True:
            wait = interval * rng.uniform(0.5, 1.5)
            if time.time() + wait >= until:
                return
            await asyncio.sleep(wait)
            await asyncio.shield(self._random_one(rng, kinds))

    async def _random_one(self, rng: Any, kinds: tuple[str, ...]) -> None:
        async with self._lock:
            choice = self.pick(rng, kinds)
            if choice is not None:
                await self._apply(*choice, why="random")

    async def heal(self) -> None:
        """Every node up again: resume paused ones, restart stopped ones, add removed ones
        (after any fault still in progress)."""
        for task in list(self._resumes):
            task.cancel()
        async with self._lock:
            pass
        for wanted in (PAUSED, DOWN, REMOVED):
            for node, st in list(self.state.items()):
                if st == wanted:
                    kind = {PAUSED: "resume", DOWN: "restart",
                            REMOVED: READD[self.removed_by.get(node, "remove")]}[st]
                    await self.apply(kind, node, why="heal")

    def down_now(self) -> list[str]:
        return [f"{n} {s}" for n, s in self.state.items() if s != UP]
