"""The chaos checker (model of correct behaviour and verdict) on fabricated histories, and the
fault runner's safety rule with a fake injector: pure, no cluster."""
from __future__ import annotations

import time

import pytest

from cluster_tools.chaos import checker, faults

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


class SlowRemove(FakeInjector):
    """remove takes a while (as hsm-mgmt removeNode does); pause and resume are quick."""
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.remove = lambda node, via: time.sleep(0.4) or "removed"


async def test_fault_lines_are_printed_in_time_order():
    """A resume that finishes inside a long remove is printed first, and stamped earlier: each
    line carries the time it is printed at, a slow fault also says when it began."""
    lines: list[str] = []
    inj = SlowRemove(3)
    runner = faults.FaultRunner(inj, Quiet(), time.time(), pause_for=0.1, say=lines.append)
    await runner.apply("pause", "node2")
    await runner.apply("remove", "node1")
    await runner.heal()
    stamps = [float(line[1:line.index("s]")]) for line in lines]
    assert stamps == sorted(stamps), lines
    assert [line.split("] ")[1].split()[1:3] for line in lines] == [["pause", "node2"], ["resume", "node2"], ["remove", "node1"],
                                                    ["add", "node1"]], lines


def test_names_of_another_target_are_mapped_once_and_unknown_ones_refused(capsys):
    from cluster_tools.chaos import cli
    args = cli.parser().parse_args(["--fault", "kill:hsm2@1s,restart:hsm2@2s,pause:node3@3s"])
    cli.name_faults(args, FakeInjector(3))
    assert capsys.readouterr().out == ("kms-chaos: hsm2 is node2 on this target (nodes node1, node2, node3); faults"
                                       " and the report use these names\n")
    with pytest.raises(faults.FaultError, match="no node 'hsm7'"):
        cli.name_faults(cli.parser().parse_args(["--fault", "kill:hsm7@1s"]), FakeInjector(3))


def test_the_compose_project_is_derived_as_docker_compose_names_it(tmp_path):
    from cluster_tools.chaos.cli import compose_project
    d = tmp_path / "My.Repo_2"
    d.mkdir()
    assert compose_project(d / "compose.yaml", {}) == "myrepo_2"
    assert compose_project(d / "compose.yaml", {"COMPOSE_PROJECT_NAME": "kms"}) == "kms"


def test_the_keys_check_says_how_its_create_key_count_meets_the_load_table():
    ops = [{"type": "op", "op": "create-key", "id": f"s{i}", "phase": "setup", "ok": True, "start": 0.0, "end": 0.1,
            "result": {"key_id": f"k{i}"}} for i in range(2)]
    ops += [{"type": "op", "op": "create-key", "id": "r0", "phase": "run", "ok": False, "start": 1.0, "end": 1.1,
             "error": {"name": "CloudHsmClusterNotActiveException"}}]
    summary = checker._keys(ops, 0.0).summary
    assert "(3 CreateKey calls: 2 before the load, 1 during it)" in summary, summary
