"""How soon a returning HSM is used: discovery polls faster while an HSM is missing, and the
kmsuser session upkeep runs right after each discovery round (in-process, no nodes)."""
from __future__ import annotations

import asyncio

from kms_frontend.cluster.directory import ClusterDirectory, ClusterInfo
from kms_frontend.cluster.kmsuser_sessions import Credential, KmsuserSessions
from tests.harness import wait_until

MEMBERS = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


def directory_with(active: list[str]) -> ClusterDirectory:
    d = ClusterDirectory(MEMBERS)
    d.clusters = {"cluster-a": ClusterInfo("cluster-a", "ACTIVE", "", "", "", list(MEMBERS), active)} if active else {}
    d.last_members = {"cluster-a": list(MEMBERS)}
    return d


def test_degraded_while_a_known_member_is_not_active():
    assert not directory_with(MEMBERS).degraded
    assert directory_with(MEMBERS[:2]).degraded
    assert directory_with([]).degraded  # the whole cluster down: it did not vanish


async def count_refreshes(d: ClusterDirectory, seconds: float) -> int:
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        for notify in d.on_refresh:
            notify()
    d.refresh = refresh  # type: ignore[method-assign]
    task = asyncio.ensure_future(d.run(interval_s=5.0, degraded_interval_s=0.05))
    await asyncio.sleep(seconds)
    task.cancel()
    return calls


async def test_discovery_polls_fast_only_while_degraded():
    assert await count_refreshes(directory_with(MEMBERS), 0.5) == 1
    assert await count_refreshes(directory_with(MEMBERS[:1]), 0.5) >= 4


async def test_session_upkeep_runs_right_after_a_discovery_round():
    d = directory_with(MEMBERS)
    sessions = KmsuserSessions("cks-1", "cluster-a", "", d, "client", Credential("pw"))
    rounds = 0

    async def maintain_once() -> None:
        nonlocal rounds
        rounds += 1
    sessions.maintain_once = maintain_once  # type: ignore[method-assign]
    sessions.start()
    try:
        for expected in (1, 2, 3):
            loop = asyncio.get_running_loop()
            started = loop.time()
            for notify in d.on_refresh:
                notify()
            await wait_until(lambda expected=expected: rounds >= expected, timeout=5, interval=0.005,
                             what="the upkeep after a discovery round")
            assert loop.time() - started < 0.5  # not the 1 s upkeep period
    finally:
        await sessions.close()
    assert d.on_refresh == []


def probes(*, reachable: bool, timed_out: bool = False) -> dict:
    from kms_frontend.cluster.directory import Probe
    return {e: (Probe(e, reachable, timed_out=timed_out), None) for e in MEMBERS}


async def test_a_round_where_every_answering_hsm_timed_out_is_asked_once_more():
    """A starved frontend (a loaded machine) saw every probe time out at once and dropped every
    HSM: crypto calls failed until the next round. It now asks once more before believing it."""
    d = directory_with(MEMBERS)
    d.probes = {e: p for e, (p, _) in probes(reachable=True).items()}
    rounds = [probes(reachable=False, timed_out=True), probes(reachable=True)]
    calls = 0

    async def probe_round(managed: list[str]) -> dict:
        nonlocal calls
        calls += 1
        return rounds.pop(0)
    d._probe_round = probe_round  # type: ignore[method-assign]
    await d.refresh()
    assert calls == 2
    assert all(p.reachable for p in d.probes.values())


async def test_refused_probes_or_one_timed_out_hsm_are_believed_at_once():
    for first in (probes(reachable=False), {**probes(reachable=True), MEMBERS[0]: probes(reachable=False, timed_out=True)[MEMBERS[0]]}):
        d = directory_with(MEMBERS)
        d.probes = {e: p for e, (p, _) in probes(reachable=True).items()}
        calls = 0

        async def probe_round(managed: list[str], first: dict = first) -> dict:
            nonlocal calls
            calls += 1
            return first
        d._probe_round = probe_round  # type: ignore[method-assign]
        await d.refresh()
        assert calls == 1


async def test_a_deleted_cluster_is_forgotten_not_shown_as_one_without_active_hsms():
    """DeleteHsm of every HSM, then DeleteCluster before a discovery round saw the cluster empty:
    its last members (down) made Connect report INSUFFICIENT_CLOUDHSM_HSMS instead of
    CLUSTER_NOT_FOUND (found by a CI run of test_key_stores_errors.py::test_cluster_not_found)."""
    class Catalog:
        gone: set[str] = set()

        def endpoints(self) -> list[str]:
            return []

        def overlay(self, clusters: dict, probes: dict) -> dict:
            return {cid: info for cid, info in clusters.items() if cid not in self.gone}

        def deleted(self, cluster_id: str) -> bool:
            return cluster_id in self.gone

    d = directory_with(MEMBERS)
    d.last_members["cluster-b"] = ["127.0.0.1:9"]
    d.catalog = catalog = Catalog()

    async def probe_round(managed: list[str]) -> dict:
        return probes(reachable=False)
    d._probe_round = probe_round  # type: ignore[method-assign]
    await d.refresh()
    assert set(d.last_members) == {"cluster-a", "cluster-b"}  # down is not deleted: still known
    catalog.gone = {"cluster-a"}
    await d.refresh()
    assert set(d.last_members) == {"cluster-b"}
