"""kms-load and kms-chaos against a real local cluster (`kms-cluster up --detach`). The checker
on fabricated histories and the fault runner's safety rule: tests/unit/cluster_tools/chaos/."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.harness import free_port

OPS = ("encrypt", "decrypt", "generate-data-key", "re-encrypt", "generate-random")


def run(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("chaos") / "cluster"
    up = run("cluster_tools.launcher", "--dir", str(root), "up", "--detach", "--address-prefix",
             f"127.{150 + os.getpid() % 50}", "--port", str(free_port()), "--aws-port", str(free_port()),
             "--metrics-port", str(free_port()), timeout=180)
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
    page = (tmp_path / "load.html").read_text()  # beside the JSON: the page and its plots
    assert page.count("data:image/png;base64,") == 2 and f"{doc['total']['calls']}" in page
    assert (tmp_path / "load-latency.png").exists() and (tmp_path / "load-throughput.png").exists()
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
    page = (out / "report.html").read_text()
    assert "verdict: PASS" in page and page.count("data:image/png;base64,") == 3  # latency, throughput, nodes
    assert all((out / f"{name}.png").stat().st_size > 10_000 for name in ("latency", "throughput", "nodes"))
    assert any(r["type"] == "node" and r["state"] == "unreachable" and r["node"] == "node2"
               for r in map(json.loads, (out / "history.jsonl").read_text().splitlines()))  # sampled while down
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
    # a paused node's work moves to another node after ~0.5 s (STALL_S), not when it resumes 1.5 s
    # later. Every call in flight in the pause's first half second counts, those sent just before
    # the SIGSTOP's record was written included: on a busy machine every caller can be waiting on
    # the paused node by then, so no call *starts* in that half second (a CI run saw none)
    pausing, resumed = faults[2]["start"], faults[3]["start"]
    during = [r for r in ops if r["op"] in OPS and r["end"] > pausing and r["start"] < resumed - 1.0]
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


def test_chaos_run_with_delete_hsm_and_create_hsm_through_the_api_passes(cluster, tmp_path):
    """The CloudHSM control plane's DeleteHsm and CreateHsm as faults: the HSM's node is stopped and its
    data removed, then a new HSM (new id, seeded from a fresh backup) takes its place under load."""
    out = tmp_path / "run"
    before = json.loads(run("cluster_tools.launcher", "--dir", str(cluster), "status", "--json").stdout)
    r = run("cluster_tools.chaos.cli", "--cluster-dir", str(cluster), "--duration", "10s", "--seed", "5",
            "--fault", "delete-hsm:node3@1s,create-hsm:node3@4s", "--create-key-every", "2s", "--out", str(out),
            "--keep", "--quiet", timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "kms-chaos verdict: PASS" in r.stdout
    assert "fault delete-hsm node3 -> removed" in r.stdout and "fault create-hsm node3 -> up" in r.stdout
    doc = json.loads((out / "report.json").read_text())
    assert {c["name"]: c for c in doc["checks"]}["recovery"]["counts"]["by_kind"] == {"delete-hsm": 1,
                                                                                       "create-hsm": 1}
    after = json.loads(run("cluster_tools.launcher", "--dir", str(cluster), "status", "--json").stdout)
    old, new = before["nodes"][2]["hsm_id"], after["nodes"][2]["hsm_id"]
    assert old != new and new in {h["hsm_id"] for h in after["cluster"]["hsms"]}
    assert old not in {h["hsm_id"] for h in after["cluster"]["hsms"]}
    assert [n["health"] for n in after["nodes"]] == ["ACTIVE"] * 3
    # kms-chaos turned the control plane's replacement off for its raw faults, and back afterwards
    tags = subprocess.run([sys.executable, "-c", "import json,sys; from cluster_tools.launcher import Cluster; "
                           "c = Cluster(__import__('pathlib').Path(sys.argv[1])); "
                           "print(json.dumps(c.api().tags(c.state.cluster_id)))", str(cluster)],
                          capture_output=True, text=True, timeout=60)
    assert "replace-failed-hsm-after" not in tags.stdout, tags.stdout + tags.stderr
