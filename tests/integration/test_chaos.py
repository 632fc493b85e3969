"""kms-load and kms-chaos against a real local cluster (`kms-cluster up --detach`), and the
chaos checker on fabricated histories."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cluster_tools.chaos import checker, faults
from tests.harness import free_port

OPS = ("encrypt", "decrypt", "generate-data-key", "re-encrypt", "generate-random")


def run(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("chaos") / "cluster"
    up = run("cluster_tools.launcher", "--dir", str(root), "up", "--detach", "--base-port", str(free_port()),
             "--port", str(free_port()), "--aws-port", str(free_port()), timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        yield root
    finally:
        run("cluster_tools.launcher", "--dir", str(root), "down")


def test_kms_load_prints_the_table_and_writes_every_operation_to_the_json_report(cluster, tmp_path):
    report = tmp_path / "load.json"
    r = run("cluster_tools.load", "--cluster-dir", str(cluster), "--duration", "2s", "--concurrency", "4",
            "--json-report", str(report))
    assert r.returncode == 0, r.stderr
    assert "req/s" in r.stdout and "p99" in r.stdout   # progress lines, then the table
    table = r.stdout[r.stdout.index("operation"):]
    for op in (*OPS, "total"):
        assert f"\n{op} " in table
    doc = json.loads(report.read_text())
    assert list(doc["operations"]) == list(OPS)
    for op in OPS:
        entry = doc["operations"][op]
        assert entry["calls"] > 0 and entry["ok"] == entry["calls"] and entry["errors"] == {}
        assert 0 < entry["latency_ms"]["p50"] <= entry["latency_ms"]["p99"] <= entry["latency_ms"]["max"]
    assert doc["total"]["calls"] == sum(doc["operations"][op]["calls"] for op in OPS)
    assert doc["total"]["throughput_rps"] > 0 and doc["config"]["protocol"] == "grpc"
    # the same driver over the AWS JSON endpoint (boto3), endpoint and keys from state.json
    aws = run("cluster_tools.load", "--cluster-dir", str(cluster), "--protocol", "aws", "--duration", "1s",
              "--concurrency", "2", "--mix", "encrypt=1,decrypt=1", "--quiet")
    assert aws.returncode == 0, aws.stderr
    assert "\nencrypt " in aws.stdout and "errors by exception" not in aws.stdout


def test_chaos_run_with_kill_restart_and_pause_passes(cluster, tmp_path):
    out = tmp_path / "run"
    r = run("cluster_tools.chaos.cli", "--cluster-dir", str(cluster), "--duration", "9s", "--seed", "3",
            "--fault", "kill:hsm2@1s,restart:hsm2@2.5s,pause:hsm3@5.5s", "--pause-for", "1.5s",
            "--create-key-every", "2s", "--out", str(out), "--keep", "--quiet", timeout=150)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "kms-chaos verdict: PASS" in r.stdout
    for line in ("fault kill node2 -> down", "fault restart node2 -> up", "fault pause node3 -> paused",
                 "fault resume node3 -> up"):
        assert line in r.stdout
    doc = json.loads((out / "report.json").read_text())
    checks = {c["name"]: c for c in doc["checks"]}
    assert all(c["passed"] for c in checks.values()) and set(checks) == {
        "ciphertexts", "keys", "consistency", "availability", "recovery"}
    assert checks["ciphertexts"]["counts"]["acknowledged"] > 100
    assert checks["ciphertexts"]["counts"]["recovered"] == checks["ciphertexts"]["counts"]["acknowledged"]
    assert checks["keys"]["counts"]["created"] >= 4     # 2 before the run, more during it
    assert checks["recovery"]["counts"]["by_kind"] == {"kill": 1, "restart": 1, "pause": 1, "resume": 1}
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "run" and records[0]["nodes"] == {"node1": "up", "node2": "up", "node3": "up"}
    ops = [r for r in records if r["type"] == "op"]
    assert {r["op"] for r in ops} >= {*OPS, "create-key", "key-check"}
    assert all({"start", "end", "ok"} <= r.keys() and r["start"] <= r["end"] for r in ops)
    encrypt = next(r for r in ops if r["op"] == "encrypt" and r["ok"])
    assert encrypt["input"]["len"] == 64 and "b64" in encrypt["input"] and encrypt["result"]["ciphertext"]
    faults = [r for r in records if r["type"] == "fault"]
    assert [(f["kind"], f["node"], f["after"]) for f in faults] == [
        ("kill", "node2", "down"), ("restart", "node2", "up"), ("pause", "node3", "paused"), ("resume", "node3", "up")]
    # a paused node's work moves to another node after ~0.5 s (STALL_S), not when it resumes 1.5 s later
    paused, resumed = faults[2]["end"], faults[3]["start"]
    during = [r for r in ops if r["op"] in OPS and paused <= r["start"] < resumed - 1.0]
    assert during and max(r["end"] - r["start"] for r in during) < 1.2, sorted(
        round(r["end"] - r["start"], 3) for r in during)[-5:]


def test_chaos_run_with_remove_and_add_passes(cluster, tmp_path):
    out = tmp_path / "run"
    r = run("cluster_tools.chaos.cli", "--cluster-dir", str(cluster), "--duration", "7s", "--seed", "4",
            "--fault", "remove:hsm2@1s,add:hsm2@5s", "--remove-linger", "3s", "--create-key-every", "0.1s",
            "--mix", "encrypt=1,decrypt=1", "--out", str(out), "--quiet", timeout=150)
    assert "fault remove node2 -> removed" in r.stdout and "fault add node2 -> up" in r.stdout, r.stdout[-3000:]
    assert r.returncode == 0 and "kms-chaos verdict: PASS" in r.stdout, r.stdout[-3000:]


def test_chaos_node_down_across_membership_changes_catches_up(cluster, tmp_path):
    out = tmp_path / "run"
    r = run("cluster_tools.chaos.cli", "--cluster-dir", str(cluster), "--duration", "10s", "--seed", "5",
            "--fault", "kill:hsm3@0.3s,remove:hsm1@0.6s,add:hsm1@2s,remove:hsm2@4.5s,add:hsm2@6s,restart:hsm3@8.5s",
            "--rate", "20", "--mix", "encrypt=1,decrypt=1", "--create-key-every", "0", "--consistency-timeout", "5s",
            "--out", str(out), "--quiet", timeout=150)
    assert "fault restart node3 -> up" in r.stdout, r.stdout[-3000:]
    assert r.returncode == 0 and "kms-chaos verdict: PASS" in r.stdout, r.stdout[-3000:]


# ---------------------------------------------------------------- the checker on fabricated histories

T0 = 1_000_000.0


def op(id_: str, kind: str, start: float, end: float, ok: bool = True, **fields) -> dict:
    return {"type": "op", "id": id_, "op": kind, "phase": fields.pop("phase", "run"), "start": T0 + start,
            "end": T0 + end, "ok": ok, **fields}


def err(name: str, message: str = "boom") -> dict:
    return {"name": name, "message": message}


def fabricated(extra: list[dict]) -> list[dict]:
    return [
        {"type": "run", "t0": T0, "nodes": {"node1": "up", "node2": "up"}},
        {"type": "fault", "kind": "kill", "node": "node2", "start": T0 + 5, "end": T0 + 5.1, "ok": True, "after": "down"},
        {"type": "fault", "kind": "restart", "node": "node2", "start": T0 + 10, "end": T0 + 12, "ok": True, "after": "up"},
        op("w0-1", "encrypt", 1, 1.1, input={"sha256": "aa"}, result={"ciphertext": "Y3Qx", "plaintext_sha256": "aa"}),
        op("w0-2", "encrypt", 2, 2.1, input={"sha256": "bb"}, result={"ciphertext": "Y3Qy", "plaintext_sha256": "bb"}),
        op("w0-3", "re-encrypt", 3, 3.1, source="w0-1", result={"ciphertext": "Y3Qz", "plaintext_sha256": "aa"}),
        op("w0-4", "create-key", 4, 4.1, result={"key_id": "k-1"}),
        op("v-1", "decrypt", 30, 30.1, phase="verify", source="w0-1", result={"plaintext_sha256": "aa"}),
        op("v-3", "decrypt", 30, 30.1, phase="verify", source="w0-3", result={"plaintext_sha256": "aa"}),
        op("v-4", "key-check", 30, 30.1, phase="verify", source="w0-4",
           result={"key_id": "k-1", "input_sha256": "cc", "plaintext_sha256": "cc"}),
        {"type": "consistency", "at": T0 + 29, "consistent": True, "servers": [
            {"endpoint": "a", "consistency_hash": "h"}, {"endpoint": "b", "consistency_hash": "h"}]},
        *extra,
    ]


def test_checker_fails_a_lost_ciphertext_and_a_call_that_failed_while_a_node_was_up():
    records = fabricated([
        # w0-2's ciphertext no longer decrypts at the end: lost
        op("v-2", "decrypt", 30, 30.1, ok=False, phase="verify", source="w0-2",
           error=err("InvalidCiphertextException")),
        # node2 is down, node1 is up: this must not fail
        op("w0-5", "encrypt", 6, 6.2, ok=False, input={"sha256": "dd"},
           error=err("KMSInvalidStateException", "KMS cannot communicate with your CloudHSM cluster")),
        # the store's request quota: tolerated, counted apart
        op("w0-6", "encrypt", 7, 7.1, ok=False, error=err("ThrottlingException")),
        # a decrypt during the run that returned another plaintext
        op("w0-7", "decrypt", 8, 8.1, source="w0-2", result={"plaintext_sha256": "ee"}),
    ])
    v = checker.check(records, grace=5.0)
    assert not v.passed
    checks = {c.name: c for c in v.checks}
    assert checks["keys"].passed and checks["consistency"].passed and checks["recovery"].passed
    lost = checks["ciphertexts"]
    assert not lost.passed and lost.counts == {"acknowledged": 3, "recovered": 2, "decrypts_during_run": 1}
    assert [f["kind"] for f in lost.failures] == ["lost_ciphertext", "wrong_plaintext"]
    assert "w0-2 encrypt" in lost.failures[0]["evidence"] and "InvalidCiphertextException" in lost.failures[0]["evidence"]
    avail = checks["availability"]
    assert not avail.passed and [f["op"] for f in avail.failures] == ["w0-5"]
    assert avail.counts["tolerated"] == {"ThrottlingException": 1}
    assert avail.failures[0]["faults"] == ["node2 unavailable (kill@5.0s -> restart@10.0s)"]
    text = v.render()
    assert text.startswith("kms-chaos verdict: FAIL")
    assert "w0-5 encrypt 6.00s..6.20s KMSInvalidStateException" in text and "node2 unavailable" in text


def test_checker_excuses_failures_while_too_few_nodes_were_available():
    records = fabricated([
        {"type": "fault", "kind": "pause", "node": "node1", "start": T0 + 6, "end": T0 + 6.01, "ok": True,
         "after": "paused"},
        {"type": "fault", "kind": "resume", "node": "node1", "start": T0 + 8, "end": T0 + 8.01, "ok": True,
         "after": "up"},
        op("v-2", "decrypt", 30, 30.1, phase="verify", source="w0-2", result={"plaintext_sha256": "bb"}),
        op("w0-5", "encrypt", 7, 7.5, ok=False, error=err("KMSInvalidStateException")),   # no node at all
        # node1 is available again from 8.01 + 5 s grace; node2 only from 12 + 5 s
        op("w0-6", "create-key", 14, 14.5, ok=False, error=err("CloudHsmClusterInvalidConfigurationException")),
        op("w0-7", "encrypt", 14.2, 14.3, ok=False, error=err("KMSInvalidStateException")),
    ])
    v = checker.check(records, grace=5.0)
    avail = {c.name: c for c in v.checks}["availability"]
    # w0-5: no node was available; w0-6: CreateKey needs two nodes and only node1 was
    assert avail.counts["excused_too_few_nodes"] == 2
    assert [f["op"] for f in avail.failures] == ["w0-7"] and not v.passed
    assert checker.check(records[:-1], grace=5.0).passed


# ---------------------------------------------------------------- the safety rule, with a fake injector


class FakeInjector(faults.Injector):
    def __init__(self, n: int) -> None:
        self.nodes = [f"node{i}" for i in range(1, n + 1)]
        self.calls: list[tuple[str, str]] = []
        for kind in faults.KINDS:   # each fault only records that it was asked for
            setattr(self, kind, lambda node, *via, kind=kind: self.calls.append((kind, node)) or kind)

    def running(self, node: str) -> bool:
        return True


class Quiet:
    def write(self, record: dict) -> None:
        pass


async def test_faults_never_take_the_last_node_down_unless_allowed():
    inj = FakeInjector(2)
    runner = faults.FaultRunner(inj, Quiet(), 0.0, pause_for=0, say=lambda _: None)
    assert (await runner.apply("kill", inj.resolve("hsm1")))["ok"]
    refused = await runner.apply("pause", "node2")
    assert refused["skipped"].startswith("it would leave no HSM node up") and inj.calls == [("kill", "node1")]
    assert runner.pick(__import__("random").Random(1), faults.RANDOM_KINDS) == ("restart", "node1")
    await runner.heal()
    assert runner.state == {"node1": "up", "node2": "up"} and inj.calls[-1] == ("restart", "node1")
    brave = faults.FaultRunner(inj, Quiet(), 0.0, allow_total_outage=True, say=lambda _: None)
    assert (await brave.apply("kill", "node1"))["ok"] and (await brave.apply("kill", "node2"))["ok"]
    assert faults.parse_schedule(["kill:hsm2@5s,restart:hsm2@1.5m", "pause:node1@500ms"]) == [
        faults.FaultSpec("pause", "node1", 0.5), faults.FaultSpec("kill", "hsm2", 5.0),
        faults.FaultSpec("restart", "hsm2", 90.0)]
