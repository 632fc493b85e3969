"""A full disk refuses a change cleanly and loses nothing acknowledged: SQLite's own SQLITE_FULL
(``PRAGMA max_page_count`` caps the database file), in-process nodes."""
from __future__ import annotations

import pytest

from hsm_node.errors import StorageFull
from hsm_node.node import HsmNode, NodeConfig
from hsm_node.replication import Replicator
from tests.unit.hsm_node.test_replication_apply import make_pair, oplog, user


def cap_storage(node: HsmNode, extra_pages: int) -> None:
    pages = node.storage.db.execute("PRAGMA page_count").fetchone()[0]
    node.storage.db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


async def test_a_full_disk_refuses_the_write_and_keeps_everything_acknowledged(tmp_path):
    a, b = await make_pair(tmp_path)
    acknowledged = []
    for i in range(3):
        await a.write([("user", f"u{i}", user(f"u{i}", 100 + i))])
        acknowledged.append(f"u{i}")
    cap_storage(a, 4)
    seq_at_cap = a.positions[a.node_id]
    with pytest.raises(StorageFull) as refused:
        for i in range(3, 200):  # big records until the capped file refuses one
            await a.write([("user", f"u{i}", user(f"u{i}", 100 + i, "h" * 4000))])
            acknowledged.append(f"u{i}")
    assert "storage is full" in refused.value.message and "nothing was changed" in refused.value.message
    refused_name = f"u{len(acknowledged)}"
    assert refused_name not in a.records.users           # memory agrees with the disk
    assert a.positions == a.storage.positions()
    assert set(acknowledged) <= set(a.records.users)

    a.storage.db.execute("PRAGMA max_page_count = 1073741823")  # space is back: writes work again
    seq = await a.write([("user", "after", user("after", 999))])
    assert seq == a.storage.positions()[a.node_id] == seq_at_cap + (len(acknowledged) - 3) + 1  # no gap, no reuse
    await Replicator(b).apply(oplog(a))
    assert b.records.consistency_hash() == a.records.consistency_hash()

    digest = a.records.consistency_hash()
    a.close()
    reopened = HsmNode(NodeConfig(data_dir=str(tmp_path / "a"), master_key=a.config.master_key))
    assert set(acknowledged) | {"after"} <= set(reopened.records.users)
    assert reopened.records.consistency_hash() == digest
    reopened.close()
    b.close()
