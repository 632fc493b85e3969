"""Replication is idempotent and order-insensitive: in-process nodes, no network."""
from __future__ import annotations

import asyncio
import os
import random
import threading

import pytest

from hsm_node import certs
from hsm_node import records as rec
from hsm_node.node import ACTIVE, HsmNode, NodeConfig
from hsm_node.replication import Replicator, _entry_pb


async def make_pair(tmp_path):
    master = os.urandom(32)
    a = HsmNode(NodeConfig(data_dir=str(tmp_path / "a"), master_key=master))
    ca_key, ca = certs.make_trust_anchor()
    signed = certs.sign_cluster_csr(ca_key, ca, a.cluster_csr())
    await a.initialize(certs.cert_pem(signed), certs.cert_pem(ca))
    b = HsmNode(NodeConfig(data_dir=str(tmp_path / "b"), master_key=master))
    await b.adopt_identity(a.cluster_id, 2, a.cluster_cert_pem, a.trust_anchor_pem, a.cluster_key_pem,
                           a.domain_key, ACTIVE)
    return a, b


def user(name: str, uid: int, pw: str = "h") -> rec.UserRecord:
    return rec.UserRecord(name, uid, "CU", pw)


def oplog(node: HsmNode) -> list:
    return [_entry_pb(e) for e in node.storage.read_oplog(node.node_id, 0, 10_000)]


async def test_duplicated_and_reordered_entries_converge_to_the_same_state(tmp_path):
    a, b = await make_pair(tmp_path)
    for i in range(30):
        await a.write([("user", f"u{i}", user(f"u{i}", 100 + i))])
    for i in range(0, 30, 3):
        await a.write([("user", f"u{i}", None)])
    await a.write([("user", "u1", user("u1", 101, "changed"))])
    entries = oplog(a)
    rb = Replicator(b)
    rng = random.Random(7)
    rounds = 0
    while b.positions.get(a.node_id, 0) < len(entries):
        batch = rng.sample(entries, k=len(entries) // 3) * 2  # shuffled, with every entry twice
        await rb.apply(batch)
        rounds += 1
        assert rounds < 500
    assert b.records.consistency_hash() == a.records.consistency_hash()
    assert b.records.users["u1"].password_hash == "changed"
    before = b.records.consistency_hash()
    await rb.apply(entries)  # a full replay changes nothing
    await rb.apply(list(reversed(entries)))
    assert b.records.consistency_hash() == before
    a.close()
    b.close()


async def test_concurrent_conflicting_writes_resolve_deterministically(tmp_path):
    a, b = await make_pair(tmp_path)
    await a.write([("user", "carol", user("carol", 7, "from-a"))])
    await b.write([("user", "carol", user("carol", 7, "from-b"))])
    ea, eb = oplog(a), oplog(b)
    await Replicator(a).apply(eb)
    await Replicator(b).apply(ea)
    assert a.records.users["carol"].password_hash == b.records.users["carol"].password_hash
    assert a.records.version("user", "carol") == b.records.version("user", "carol")
    a.close()
    b.close()


async def test_state_survives_reopen_after_apply(tmp_path):
    a, b = await make_pair(tmp_path)
    await a.write([("user", "dave", user("dave", 9))])
    await Replicator(b).apply(oplog(a))
    positions, digest = dict(b.positions), b.records.consistency_hash()
    b.close()
    b2 = HsmNode(NodeConfig(data_dir=str(tmp_path / "b"), master_key=a.config.master_key))
    assert b2.positions == positions and b2.records.consistency_hash() == digest
    a.close()
    b2.close()


class GatedCommits:
    """Holds the storage thread inside commit() until released, as a slow disk would."""

    def __init__(self, node: HsmNode) -> None:
        self.inside, self.release = threading.Event(), threading.Event()
        self.commit = node.storage.commit
        node.storage.commit = self.gated  # type: ignore[method-assign]

    def gated(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.inside.set()
        assert self.release.wait(10), "the test never released the commit"
        return self.commit(*args, **kwargs)


async def wait_for(condition, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_write_whose_caller_is_cancelled_mid_commit_still_lands_in_memory(tmp_path):
    # Found by kms-chaos: a GenerateKey cancelled by its caller while the commit ran left the key
    # on disk but not in memory; the next write reused its oplog sequence number, was dropped
    # from the oplog and never replicated, and the nodes' consistency hashes diverged for good.
    a, b = await make_pair(tmp_path)
    await a.write([("user", "erin", user("erin", 11))])
    gate = GatedCommits(a)
    caller = asyncio.create_task(a.write([("user", "frank", user("frank", 12))]))
    await wait_for(gate.inside.is_set)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.release.set()
    await wait_for(lambda: "frank" in a.records.users)
    await wait_for(lambda: not a._finishing)
    assert a.positions == a.storage.positions()
    seq = await a.write([("user", "gina", user("gina", 13))])
    assert [(e.seq, e.entity) for e in a.storage.read_oplog(a.node_id, 0, 100)][-3:] == [
        (seq - 2, "erin"), (seq - 1, "frank"), (seq, "gina")]
    await Replicator(b).apply(oplog(a))
    assert b.records.consistency_hash() == a.records.consistency_hash()
    assert {"erin", "frank", "gina"} <= set(b.records.users)
    a.close()
    b.close()


async def test_an_apply_whose_stream_is_cancelled_mid_commit_still_advances_positions(tmp_path):
    a, b = await make_pair(tmp_path)
    for i in range(3):
        await a.write([("user", f"h{i}", user(f"h{i}", 20 + i))])
    gate = GatedCommits(b)
    applying = asyncio.create_task(Replicator(b).apply(oplog(a)))
    await wait_for(gate.inside.is_set)
    applying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await applying
    gate.release.set()
    await wait_for(lambda: b.positions.get(a.node_id) == a.positions[a.node_id])
    await wait_for(lambda: not b._finishing)
    assert b.positions == b.storage.positions()
    assert b.records.consistency_hash() == a.records.consistency_hash()
    a.close()
    b.close()
