"""The model of correct behaviour and the verdict: a pure function of the history.

Checks:

* ``ciphertexts``  every acknowledged ciphertext (Encrypt, GenerateDataKey, ReEncrypt) decrypts
  to its plaintext when re-read at the end, and every Decrypt during the run returned the
  plaintext of the ciphertext it opened (ReEncrypt keeps the plaintext of its source).
* ``keys``         every key whose CreateKey was acknowledged encrypts and decrypts at the end.
* ``consistency``  the last poll found every node with the same consistency hash and the same
  replication positions (every origin's writes).
* ``availability`` no call failed while the nodes it needs were available throughout it: one
  for the crypto calls, two for CreateKey (AWS: CreateKey in a CloudHSM key store needs two
  active HSMs). A node is unavailable from the start of a fault on it until the end of the
  fault that brings it back (restart, resume, add) plus ``grace`` seconds for the frontend to
  find it and log in again. Calls that overlap a moment with too few nodes are excused (and
  counted); exception names in ``tolerated`` (default ThrottlingException: the store's request
  quota, not a fault) are counted apart.
* ``recovery``     every fault and every recovery did what it was asked (a node that does not
  come back is a failure), and every node is up at the end.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOLERATED = ("ThrottlingException",)
INTEGRITY_ERRORS = ("WrongPlaintext", "WrongLength")   # raised by the driver itself: wrong answers
NODES_NEEDED = {"create-key": 2}   # active HSMs an operation needs (AWS: CreateKey 2, crypto calls 1)


@dataclass
class Check:
    name: str
    passed: bool
    summary: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    passed: bool
    checks: list[Check]
    t0: float = 0.0

    def to_dict(self, limit: int = 200) -> dict[str, Any]:
        return {"verdict": "PASS" if self.passed else "FAIL", "t0": self.t0, "checks": [
            {"name": c.name, "passed": c.passed, "summary": c.summary, "counts": c.counts,
             "failures": c.failures[:limit], "failures_total": len(c.failures)} for c in self.checks]}

    def render(self, limit: int = 10) -> str:
        lines = [f"kms-chaos verdict: {'PASS' if self.passed else 'FAIL'}"]
        for c in self.checks:
            lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<13}{c.summary}")
            for f in c.failures[:limit]:
                lines.append(f"        - {f['evidence']}")
            if len(c.failures) > limit:
                lines.append(f"        ... and {len(c.failures) - limit} more (report.json, history.jsonl)")
        return "\n".join(lines)


@dataclass
class Outage:
    node: str
    start: float
    end: float
    label: str


class Timeline:
    """When each node was unavailable, from the fault records."""

    def __init__(self, records: list[dict], nodes: dict[str, str], grace: float, t0: float) -> None:
        self.t0 = t0
        self.outages: list[Outage] = []
        faults = sorted((r for r in records if r.get("type") == "fault" and not r.get("skipped")),
                        key=lambda r: r["start"])
        names = list(nodes) + [n for n in dict.fromkeys(r["node"] for r in faults) if n not in nodes]
        for node in names:
            since: float | None = None if nodes.get(node, "up") == "up" else -math.inf
            label: list[str] = [] if since is None else ["down at start"]
            for f in (r for r in faults if r["node"] == node):
                if since is None:
                    since, label = f["start"], []
                label.append(f"{f['kind']}@{f['start'] - t0:.1f}s" + ("" if f.get("ok") else "(failed)"))
                if f.get("after") == "up":
                    self.outages.append(Outage(node, since, f["end"] + grace, " -> ".join(label)))
                    since = None
            if since is not None:
                self.outages.append(Outage(node, since, math.inf, " -> ".join(label) + " -> never back"))
        self.nodes = names

    def min_available(self, start: float, end: float) -> int:
        """The fewest nodes available at any moment of [start, end]."""
        cuts = sorted({start} | {t for o in self.outages for t in (o.start, o.end) if start < t <= end})
        fewest = len(self.nodes)
        for t in cuts:
            down = {o.node for o in self.outages if o.start <= t < o.end}
            fewest = min(fewest, len(self.nodes) - len(down))
        return fewest

    def active(self, start: float, end: float) -> list[str]:
        return [f"{o.node} unavailable ({o.label})" for o in self.outages if o.start <= end and start < o.end]


def _rel(t: float, t0: float) -> str:
    return f"{t - t0:.2f}s"


def check(records: list[dict], grace: float = 5.0, tolerated: tuple[str, ...] = DEFAULT_TOLERATED) -> Verdict:
    header = next((r for r in records if r.get("type") == "run"), {})
    t0 = float(header.get("t0", min((r.get("start", math.inf) for r in records), default=0.0)))
    ops = [r for r in records if r.get("type") == "op"]
    by_id = {r["id"]: r for r in ops if r.get("phase") != "verify"}
    timeline = Timeline(records, header.get("nodes", {}), grace, t0)
    checks = [_ciphertexts(ops, by_id, t0), _keys(ops, t0), _consistency(records),
              _availability(ops, timeline, tolerated, t0, grace), _recovery(records, header, t0)]
    return Verdict(all(c.passed for c in checks), checks, t0)


def _expected(by_id: dict[str, dict], op_id: str | None) -> str | None:
    for _ in range(10_000):   # ReEncrypt chains back to an Encrypt or a GenerateDataKey
        r = by_id.get(op_id or "")
        if r is None:
            return None
        if r["op"] == "encrypt":
            return r.get("input", {}).get("sha256")
        if r["op"] == "generate-data-key":
            return r.get("result", {}).get("plaintext_sha256")
        op_id = r.get("source")
    return None


def _ciphertexts(ops: list[dict], by_id: dict[str, dict], t0: float) -> Check:
    acked = [r for r in by_id.values() if r.get("ok") and "ciphertext" in r.get("result", {})]
    rereads: dict[str, list[dict]] = {}
    for r in ops:
        if r.get("phase") == "verify" and r["op"] == "decrypt":
            rereads.setdefault(r.get("source", ""), []).append(r)
    failures = []
    for r in acked:
        want = _expected(by_id, r["id"])
        tries = rereads.get(r["id"], [])
        if any(v.get("ok") and v.get("result", {}).get("plaintext_sha256") == want for v in tries):
            continue
        seen = [v["error"]["name"] if not v.get("ok") else "wrong plaintext" for v in tries] or ["never re-read"]
        failures.append({"kind": "lost_ciphertext", "op": r["id"], "evidence":
                         f"{r['id']} {r['op']} acknowledged at {_rel(r['end'], t0)} (key {r.get('key_id', '?')}):"
                         f" does not decrypt to its plaintext at the end: {', '.join(seen)}"
                         + (f" ({tries[-1]['error']['message'][:120]})" if tries and not tries[-1].get("ok") else "")})
    during = [r for r in ops if r.get("phase") != "verify" and r["op"] == "decrypt" and "plaintext_sha256" in
              r.get("result", {})]
    for r in during:
        want = _expected(by_id, r.get("source"))
        if r["result"]["plaintext_sha256"] != want:
            failures.append({"kind": "wrong_plaintext", "op": r["id"], "evidence":
                             f"{r['id']} decrypt at {_rel(r['start'], t0)} of {r.get('source')} returned a plaintext"
                             f" with SHA-256 {r['result']['plaintext_sha256'][:16]}..., expected {str(want)[:16]}..."})
    judged = {r["id"] for r in during}
    for r in ops:
        name = r.get("error", {}).get("name")
        if name in INTEGRITY_ERRORS and r["id"] not in judged:
            failures.append({"kind": name, "op": r["id"], "evidence": f"{r['id']} {r['op']}: {r['error']['message']}"})
    ok = len(acked) - sum(1 for f in failures if f["kind"] == "lost_ciphertext")
    summary = (f"{ok}/{len(acked)} acknowledged ciphertexts decrypt to their plaintext at the end;"
               f" {len(during)} decrypts during the run, "
               f"{sum(1 for f in failures if f['kind'] == 'wrong_plaintext')} with a wrong plaintext")
    return Check("ciphertexts", not failures, summary, failures,
                 {"acknowledged": len(acked), "recovered": ok, "decrypts_during_run": len(during)})


def _keys(ops: list[dict], t0: float) -> Check:
    created = [r for r in ops if r["op"] == "create-key" and r.get("ok") and r.get("phase") != "verify"]
    checks: dict[str, list[dict]] = {}
    for r in ops:
        if r["op"] == "key-check":
            checks.setdefault(r.get("source", ""), []).append(r)
    failures = []
    for r in created:
        tries = checks.get(r["id"], [])
        if any(v.get("ok") and v["result"].get("plaintext_sha256") == v["result"].get("input_sha256") for v in tries):
            continue
        seen = [v["error"]["name"] if not v.get("ok") else "wrong plaintext" for v in tries] or ["never checked"]
        failures.append({"kind": "key_unusable", "op": r["id"], "evidence":
                         f"key {r['result'].get('key_id')} (CreateKey {r['id']} acknowledged at {_rel(r['end'], t0)})"
                         f" does not encrypt and decrypt at the end: {', '.join(seen)}"})
    attempted = sum(1 for r in ops if r["op"] == "create-key" and r.get("phase") != "verify")
    # the load table counts the CreateKey calls of the run only; say how the two counts meet
    before = sum(1 for r in ops if r["op"] == "create-key" and r.get("phase") == "setup")
    calls = f"{attempted} CreateKey calls: {before} before the load, {attempted - before} during it" if before \
        else f"{attempted} CreateKey calls"
    return Check("keys", not failures, f"{len(created) - len(failures)}/{len(created)} acknowledged keys work at the"
                 f" end ({calls})", failures, {"created": len(created), "attempted": attempted,
                                                 "before_load": before})


def _consistency(records: list[dict]) -> Check:
    polls = [r for r in records if r.get("type") == "consistency"]
    if not polls:
        return Check("consistency", False, "never checked",
                     [{"kind": "not_checked", "evidence": "no checkConsistency result in the history"}])
    last = polls[-1]
    hashes = Counter(s.get("consistency_hash") or f"error: {s.get('error', '?')}" for s in last.get("servers", []))
    if last.get("consistent"):
        h = next(iter(hashes), "")
        return Check("consistency", True, f"{sum(hashes.values())} nodes agree on {h[:16]}... after {len(polls)} poll(s)",
                     counts={"polls": len(polls), "nodes": sum(hashes.values())})
    evidence = [{"kind": "diverged", "evidence": f"{s.get('endpoint')} {s.get('node_id', '')}: "
                 f"{s.get('consistency_hash') or s.get('error', 'no answer')} ({s.get('users', '?')} users,"
                 f" {s.get('keys', '?')} keys)" + (f"; replication positions {_positions(s, last)}"
                                                  if last.get("positions_agree") is False else "")}
                for s in last.get("servers", [])]
    if last.get("error"):
        evidence.append({"kind": "error", "evidence": str(last["error"])[:300]})
    what = "hashes" if not last.get("hashes_agree", False) else "replication positions"
    return Check("consistency", False, f"nodes still differ ({what}) after {len(polls)} polls", evidence,
                 {"polls": len(polls), "distinct_hashes": len(hashes)})


def _positions(server: dict, poll: dict) -> str:
    """What this node lacks against the furthest position of every origin."""
    best: dict[str, int] = {}
    for s in poll.get("servers", []):
        for origin, seq in (s.get("positions") or {}).items():
            best[origin] = max(best.get(origin, 0), seq)
    mine = server.get("positions") or {}
    behind = [f"{o[:13]} {mine.get(o, 0)}/{seq}" for o, seq in sorted(best.items()) if mine.get(o, 0) < seq]
    return "behind on " + ", ".join(behind) if behind else "complete"


def _availability(ops: list[dict], tl: Timeline, tolerated: tuple[str, ...], t0: float, grace: float) -> Check:
    run_ops = [r for r in ops if r.get("phase") != "verify"]
    failed = [r for r in run_ops if not r.get("ok") and r["error"]["name"] not in INTEGRITY_ERRORS]
    excused, tolerated_n, failures = 0, Counter(), []
    for r in failed:
        name = r["error"]["name"]
        if name in tolerated:
            tolerated_n[name] += 1
        elif tl.min_available(r["start"], r["end"]) < NODES_NEEDED.get(r["op"], 1):
            excused += 1
        else:
            active = tl.active(r["start"], r["end"])
            failures.append({"kind": "failed_while_available", "op": r["id"], "name": name, "faults": active,
                             "evidence": f"{r['id']} {r['op']} {_rel(r['start'], t0)}..{_rel(r['end'], t0)}"
                             f" {name}: {r['error']['message'][:160]} | faults: {'; '.join(active) or 'none'}"})
    by_name = Counter(f["name"] for f in failures)
    summary = (f"{len(failures)} of {len(run_ops)} calls failed while the HSM nodes they need were available"
               + (f" ({', '.join(f'{n} x{c}' for n, c in by_name.most_common())})" if by_name else "")
               + f"; {excused} failed while too few were; tolerated: {dict(tolerated_n) or 0};"
               f" grace {grace:g}s after a node returns")
    return Check("availability", not failures, summary, failures,
                 {"calls": len(run_ops), "failed": len(failed), "failed_while_available": len(failures),
                  "excused_too_few_nodes": excused, "tolerated": dict(tolerated_n), "by_exception": dict(by_name)})


def _recovery(records: list[dict], header: dict, t0: float) -> Check:
    faults = [r for r in records if r.get("type") == "fault"]
    failed = [r for r in faults if not r.get("ok") and not r.get("skipped")]
    failures = [{"kind": "fault_failed", "evidence": f"{r['kind']} {r['node']} at {_rel(r['start'], t0)}: "
                 f"{r.get('error', '')[:300]}"} for r in failed]
    final = {}
    for r in sorted(faults, key=lambda r: r["start"]):
        final[r["node"]] = r.get("after", "up")
    not_up = {n: s for n, s in {**header.get("nodes", {}), **final}.items() if s != "up"}
    failures += [{"kind": "not_back", "evidence": f"{n} is {s} at the end"} for n, s in not_up.items()]
    applied = sum(1 for r in faults if r.get("ok"))
    skipped = sum(1 for r in faults if r.get("skipped"))
    kinds = Counter(r["kind"] for r in faults if r.get("ok"))
    return Check("recovery", not failures, f"{applied} faults and recoveries applied"
                 f" ({', '.join(f'{k} x{c}' for k, c in sorted(kinds.items())) or 'none'}), {skipped} skipped by the"
                 f" safety rule, {len(failed)} failed; {'every node up at the end' if not not_up else 'NOT all nodes up'}",
                 failures, {"applied": applied, "skipped": skipped, "failed": len(failed), "by_kind": dict(kinds)})
