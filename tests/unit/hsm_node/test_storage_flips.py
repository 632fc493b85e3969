"""Single-byte flips across a node's node.db: every flip is either refused at start with the
message that says to restore the node from a backup, or leaves everything the node loads
exactly as it was (the byte was in free space, an unused header field or slack).

The database is a real node's (two in-process nodes: one replicated into the other, so its
oplog has two origins and its positions two rows), with every table, a tombstone, sealed
secrets, an overflow chain and free pages. A full sweep of every byte takes too long, so the
positions are sampled deterministically on every page: the whole 100-byte file header, the
first 16 bytes of each page (page header and cell pointers), then every 89th byte and the last
8 bytes of the page. The test asserts that every kind of page the file holds (table and index,
leaf and interior, overflow, free list) was sampled.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

from hsm_node import records as rec
from hsm_node.node import HsmNode, NodeConfig
from hsm_node.replication import Replicator
from hsm_node.storage import StorageError
from tests.unit.hsm_node.test_replication_apply import make_pair, oplog, user

PAGE_KINDS = {0x02: "index interior", 0x05: "table interior", 0x0A: "index leaf", 0x0D: "table leaf"}


async def pristine_node_db(tmp_path: Path) -> tuple[Path, bytes]:
    a, b = await make_pair(tmp_path)
    await a.write([("member", b.node_id, b.self_member())])
    for i in range(200):  # enough rows for interior pages of tables and indexes
        await a.write([("user", f"user_{i:03}", user(f"user_{i:03}", 100 + i, "argon2id$" + "x" * 40))])
    await a.write([("user", "user_007", None)])  # a tombstone
    await Replicator(b).apply(oplog(a))
    await b.write([("user", "on_b", user("on_b", 302)),
                   ("login_failures", rec.failures_entity("on_b", b.node_id),
                    rec.LoginFailuresRecord("on_b", b.node_id, 2))])
    await b.write([("user", "big", user("big", 303, "h" * 9000))])   # an overflow chain...
    await b.write([("user", "big", user("big", 303, "small"))])      # ...freed: free-list pages
    a.close()
    b.close()
    path = tmp_path / "b" / "node.db"
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path, b.config.master_key


def view(node: HsmNode) -> dict:
    """Everything a node loads from its data directory."""
    r = node.records
    s = node.storage
    return {
        "identity": (node.node_id, node.state, node.hsm_id, node.cluster_id, node.ordinal, node.cluster_cert_pem,
                     node.trust_anchor_pem, node.node_cert_pem, node.bootstrap_cert_pem, node.source_backup_id),
        "secrets": (node.node_key_pem, node.cluster_key_pem, node.domain_key),
        "records": {k: (v, r.record(*k)) for k, v in r.versions.items()},
        "positions": dict(node.positions),
        "oplog": {o: s.read_oplog(o, 0, 100_000) for o in node.positions},
        "hlc": node._hlc,
    }


def page_kinds(db: bytes, page_size: int) -> dict[int, str]:
    """The kind of every page, from its header byte and the file's free list and overflow chains."""
    kinds = {p: PAGE_KINDS.get(db[(p - 1) * page_size + (100 if p == 1 else 0)], "overflow")
             for p in range(1, len(db) // page_size + 1)}
    trunk = int.from_bytes(db[32:36], "big")
    while trunk:
        kinds[trunk] = "free-list trunk"
        base = (trunk - 1) * page_size
        for i in range(int.from_bytes(db[base + 4:base + 8], "big")):
            kinds[int.from_bytes(db[base + 8 + 4 * i:base + 12 + 4 * i], "big")] = "free-list leaf"
        trunk = int.from_bytes(db[base:base + 4], "big")
    return kinds


def sampled_offsets(size: int, page_size: int) -> list[int]:
    out = set(range(100))
    for base in range(0, size, page_size):
        out.update(range(base, base + 16))
        out.update(range(base, base + page_size, 89))
        out.update(range(base + page_size - 8, base + page_size))
    return sorted(o for o in out if o < size)


async def test_every_byte_flip_is_refused_clearly_or_changes_nothing(tmp_path):
    path, master = await pristine_node_db(tmp_path)
    original = path.read_bytes()
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    expected = view(node := HsmNode(NodeConfig(data_dir=str(path.parent), master_key=master)))
    node.close()
    kinds = page_kinds(original, page_size)
    assert {"table leaf", "table interior", "index leaf", "index interior", "overflow", "free-list trunk"} <= \
        set(kinds.values()), Counter(kinds.values())

    offsets = sampled_offsets(len(original), page_size)
    outcome: Counter[str] = Counter()
    sampled: Counter[str] = Counter()
    changed: list[str] = []
    raw: list[str] = []
    work = tmp_path / "flip"
    for offset in offsets:
        sampled[kinds[offset // page_size + 1]] += 1
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        flipped = bytearray(original)
        flipped[offset] ^= 0xFF
        (work / "node.db").write_bytes(bytes(flipped))
        where = f"offset {offset} (page {offset // page_size + 1}, {kinds[offset // page_size + 1]})"
        try:
            node = HsmNode(NodeConfig(data_dir=str(work), master_key=master))
        except StorageError as exc:
            if "restore the node from a backup" in str(exc):
                outcome["refused"] += 1
            else:
                outcome["refused unclearly"] += 1
                raw.append(f"{where}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - what the sweep is looking for
            outcome["raw error"] += 1
            raw.append(f"{where}: {type(exc).__name__}: {exc}")
            continue
        try:
            if view(node) == expected:
                outcome["accepted, unchanged"] += 1
            else:
                outcome["accepted, CHANGED"] += 1
                changed.append(where)
        except Exception as exc:  # noqa: BLE001
            outcome["raw error"] += 1
            raw.append(f"{where}: {type(exc).__name__}: {exc}")
        finally:
            node.close()
    print(f"\n{len(offsets)} flips of {len(original)} bytes ({len(original) // page_size} pages): {dict(outcome)};"
          f" sampled per page kind: {dict(sampled)}")
    assert not changed, f"{len(changed)} flips were accepted with changed content: {changed[:20]}"
    assert not raw, f"{len(raw)} flips were not refused with the clear message: {raw[:10]}"
    assert outcome["refused"] > len(offsets) // 4  # the sampling does reach live data
    assert set(sampled) == set(kinds.values())


async def test_a_v1_data_dir_is_upgraded_in_place_and_keeps_its_content(tmp_path):
    path, master = await pristine_node_db(tmp_path)
    expected = view(node := HsmNode(NodeConfig(data_dir=str(path.parent), master_key=master)))
    node.close()
    with sqlite3.connect(path) as db:  # what hsm-node/1 wrote: no MAC columns, no digest
        for table in ("meta", "records", "oplog", "positions"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN mac")
        db.execute("DROP TABLE integrity")
        db.execute("CREATE TABLE login_failures (name TEXT PRIMARY KEY, count INTEGER NOT NULL)")
        db.execute("UPDATE meta SET value=? WHERE name='format'", (b"hsm-node/1",))
    db.close()
    node = HsmNode(NodeConfig(data_dir=str(path.parent), master_key=master))
    try:
        assert view(node) == expected
        assert node.storage.get_meta("format") == b"hsm-node/2"
    finally:
        node.close()
    again = HsmNode(NodeConfig(data_dir=str(path.parent), master_key=master))  # and it checks out next time
    assert view(again) == expected
    again.close()
    assert os.path.exists(path)
