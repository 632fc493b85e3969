"""The run reports: fault windows from a history, every call kept compactly, and a page that
opens offline (PNGs embedded, nothing fetched)."""
from __future__ import annotations

import io
import math
import re

from cluster_tools.progress import Progress
from cluster_tools.report.data import OK, CallSamples, FaultWindow, NodeSample, RunData, fault_windows
from cluster_tools.report.html import write_report

T0 = 1_700_000_000.0


def fault(kind: str, node: str, at: float, took: float, after: str) -> dict:
    return {"type": "fault", "kind": kind, "node": node, "start": T0 + at, "end": T0 + at + took, "ok": True,
            "after": after}


def test_fault_windows_run_from_the_fault_to_the_recovery():
    records = [fault("kill", "node2", 5, 0.1, "down"), fault("restart", "node2", 12, 2.0, "up"),
               fault("pause", "node3", 20, 0.1, "paused"), fault("resume", "node3", 22, 0.1, "up"),
               fault("restart", "node1", 30, 1.5, "up"),             # a restart of a running node
               fault("remove", "node3", 40, 1.0, "removed"),         # never added back
               {"type": "fault", "kind": "kill", "node": "node1", "start": T0 + 45, "end": T0 + 45, "ok": False,
                "skipped": "would leave no node up", "after": "up"}]
    windows = fault_windows(records, end=T0 + 60)
    assert [(w.label, w.start - T0, round(w.end - T0, 1)) for w in windows] == [
        ("kill node2", 5, 14.0), ("pause node3", 20, 22.1), ("restart node1", 30, 31.5), ("remove node3", 40, 60.0)]


def test_call_samples_survive_the_trip_from_a_worker():
    s = CallSamples()
    s.add(T0 + 1, 0.002, "encrypt", OK)
    s.add(T0 + 2, 0.5, "decrypt", "KMSInvalidStateException")
    back = CallSamples.from_dict(s.to_dict())
    assert back.rows() == s.rows() and len(back) == 2
    history = [{"type": "op", "op": "encrypt", "phase": "run", "start": T0, "end": T0 + 0.01, "ok": True},
               {"type": "op", "op": "decrypt", "phase": "verify", "start": T0, "end": T0 + 0.01, "ok": True},
               {"type": "op", "op": "decrypt", "phase": "run", "start": T0, "end": T0 + 0.2, "ok": False,
                "error": {"name": "DependencyTimeoutException", "message": "x"}}]
    assert [(op, outcome) for _, _, op, outcome in CallSamples.from_history(history).rows()] == [
        ("encrypt", OK), ("decrypt", "DependencyTimeoutException")]


def test_the_page_is_self_contained_and_shows_verdict_faults_and_results(tmp_path):
    calls = CallSamples()
    for i in range(2000):
        calls.add(T0 + i * 0.01, 0.001 + (i % 7) * 0.0005, ("encrypt", "decrypt")[i % 2], OK)
    calls.add(T0 + 6.0, 0.6, "encrypt", "KMSInvalidStateException")
    run = RunData("kms-chaos run (seed 7)", T0, T0 + 20, calls,
                  [FaultWindow("kill", "node2", T0 + 5, T0 + 9, "kill node2"),
                   FaultWindow("remove", "node3", T0 + 15, math.inf, "remove node3")],
                  [NodeSample(T0 + s, n, "ACTIVE" if not (n == "node2" and 5 <= s < 9) else "unreachable",
                              None if n == "node2" and 5 <= s < 9 else s % 3) for s in range(20)
                   for n in ("node1", "node2", "node3")], ["node1", "node2", "node3"])
    verdict = {"verdict": "FAIL", "checks": [
        {"name": "ciphertexts", "passed": True, "summary": "all 2000 decrypt", "failures": []},
        {"name": "availability", "passed": False, "summary": "1 call failed",
         "failures": [{"evidence": "encrypt <failed> at 6.00s"}], "failures_total": 1}]}
    traffic = {"operations": {"encrypt": {"calls": 1001, "ok": 1000, "errors": {"KMSInvalidStateException": 1},
                                          "error_messages": {"KMSInvalidStateException": "cluster <down>"},
                                          "throughput_rps": 50.0, "latency_ms": {
                                              "p50": 2.0, "p90": 3.0, "p99": 4.0, "max": 600.0}}}}
    page = write_report(tmp_path, run, verdict=verdict, traffic=traffic, config={"seed": 7})
    assert page == tmp_path / "report.html"
    for name in ("latency.png", "throughput.png", "nodes.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched: opens offline
    assert "verdict: FAIL" in html and "encrypt &lt;failed&gt; at 6.00s" in html  # escaped evidence
    assert "kill" in html and "node2" in html and "KMSInvalidStateException" in html


def test_a_load_report_is_named_after_its_json(tmp_path):
    calls = CallSamples()
    calls.add(T0, 0.001, "encrypt", OK)
    page = write_report(tmp_path, RunData("kms-load", T0, T0 + 1, calls), name="load")
    assert page.name == "load.html" and (tmp_path / "load-latency.png").exists()
    assert not (tmp_path / "load-nodes.png").exists()  # no faults, no node samples: no node plot


def test_progress_is_plain_lines_off_a_terminal():
    out = io.StringIO()
    p = Progress(10, "re-read", stream=out, every_s=0.0)
    for _ in range(10):
        p.update()
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  re-read: 1/10 (10%)") and lines[-1].startswith("  re-read: 10/10 in ")
