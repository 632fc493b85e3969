"""Replication is idempotent and order-insensitive: in-process nodes, no network."""
from __future__ import annotations

import os
import random

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
