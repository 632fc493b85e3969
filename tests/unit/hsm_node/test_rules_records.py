"""Replicated records (hsm_node/records.py, hsm_node/state.py): last-writer-wins
versions, tombstones, cluster-unique ids and the consistency hash."""
from __future__ import annotations

import itertools
import os
import random

import pytest

from hsm_node import records as rec
from hsm_node.rules import MAX_ORDINAL
from hsm_node.state import RecordState

STRIDE = MAX_ORDINAL + 1


def user(name: str = "alice", uid: int = 33, utype: str = "CU", locked: bool = False) -> rec.UserRecord:
    return rec.UserRecord(name, uid, utype, "argon2id$m=1,t=1,p=1$AA$AA", locked)


def key(handle: int = 34, owner: int = 33, shared: list[int] | None = None, material: bytes | None = None,
        label: str = "k") -> rec.KeyRecord:
    return rec.KeyRecord(handle, label, owner, 32, material or bytes(32), 1, list(shared or []), "")


# ------------------------------------------------------------------ encoding


def test_records_round_trip_through_their_encoding() -> None:
    material = os.urandom(32)
    for r in (user(), key(material=material, shared=[65, 97]),
              rec.MemberRecord("node-a", "hsm-abc", 2, "h:1", "h:2"), rec.ConfigRecord(30)):
        assert rec.decode(r.KIND, rec.encode(r)) == r
    assert material not in rec.encode(key(material=material))  # bytes travel as base64 inside the record


def test_record_aad_names_kind_entity_and_version() -> None:
    base = rec.record_aad("key", "34", (5, "node-a"))
    others = {rec.record_aad("user", "34", (5, "node-a")), rec.record_aad("key", "35", (5, "node-a")),
              rec.record_aad("key", "34", (6, "node-a")), rec.record_aad("key", "34", (5, "node-b"))}
    assert base not in others and len(others) == 4


def test_entities() -> None:
    assert user("bob").entity == "bob"
    assert key(99).entity == "99"
    assert rec.MemberRecord("node-x", "h", 1, "", "").entity == "node-x"
    assert rec.ConfigRecord().entity == "cluster"


# ------------------------------------------------------------------ last writer wins


def test_a_newer_version_replaces_an_older_one_and_not_the_reverse() -> None:
    s = RecordState()
    assert s.apply("user", "alice", (10, "node-a"), user(uid=33))
    assert not s.apply("user", "alice", (9, "node-z"), user(uid=99))   # older hlc loses
    assert s.users["alice"].user_id == 33
    assert s.apply("user", "alice", (11, "node-a"), user(uid=33, locked=True))
    assert s.users["alice"].locked
    assert s.version("user", "alice") == (11, "node-a")


def test_equal_hlc_is_broken_by_origin_and_replays_are_no_ops() -> None:
    s = RecordState()
    assert s.apply("key", "34", (10, "node-a"), key(label="a"))
    assert s.apply("key", "34", (10, "node-b"), key(label="b"))
    assert not s.apply("key", "34", (10, "node-a"), key(label="a"))
    assert not s.apply("key", "34", (10, "node-b"), key(label="b"))  # duplicate delivery
    assert s.keys[34].label == "b"


def test_the_result_does_not_depend_on_delivery_order() -> None:
    writes = [
        ("user", "alice", (1, "n1"), user(uid=33)),
        ("user", "alice", (4, "n2"), user(uid=33, locked=True)),
        ("user", "bob", (2, "n1"), user("bob", 65)),
        ("user", "bob", (5, "n2"), None),
        ("key", "34", (3, "n1"), key(34, shared=[65])),
        ("key", "34", (6, "n1"), key(34, shared=[])),
        ("key", "66", (7, "n2"), key(66)),
    ]
    finals = set()
    for perm in itertools.permutations(writes):
        s = RecordState()
        for w in perm + perm:  # and every write delivered twice
            s.apply(*w)
        finals.add((tuple(sorted(s.users)), tuple(sorted(s.keys)), s.consistency_hash()))
    assert len(finals) == 1
    (users, keys, _), = finals
    assert users == ("alice",) and keys == (34, 66)


# ------------------------------------------------------------------ tombstones


def test_a_tombstone_deletes_and_older_writes_cannot_resurrect() -> None:
    s = RecordState()
    s.apply("user", "alice", (1, "n1"), user(uid=33))
    s.apply("key", "34", (1, "n1"), key(34))
    assert s.apply("user", "alice", (2, "n1"), None)
    assert s.apply("key", "34", (2, "n1"), None)
    assert "alice" not in s.users and s.user_by_id(33) is None
    assert 34 not in s.keys
    # a late, older write (e.g. a replayed replication message) stays dead
    assert not s.apply("user", "alice", (1, "n1"), user(uid=33))
    assert not s.apply("key", "34", (1, "n9"), key(34))
    assert "alice" not in s.users and 34 not in s.keys
    # a newer write after the tombstone is a genuine re-creation
    assert s.apply("user", "alice", (3, "n2"), user(uid=97))
    assert s.user_by_id(97) is not None and s.user_by_id(33) is None


def test_a_tombstone_arriving_first_still_wins_over_the_older_create() -> None:
    s = RecordState()
    assert s.apply("key", "34", (5, "n2"), None)
    assert not s.apply("key", "34", (4, "n1"), key(34))
    assert 34 not in s.keys


def test_replacing_a_key_drops_its_cached_cipher() -> None:
    s = RecordState()
    k1, k2 = key(34, material=os.urandom(32)), key(34, material=os.urandom(32))
    s.apply("key", "34", (1, "n1"), k1)
    ct = s.cipher(k1).encrypt(bytes(12), b"data", b"")
    s.apply("key", "34", (2, "n1"), k2)
    assert s.cipher(s.keys[34]).encrypt(bytes(12), b"data", b"") != ct


def test_user_id_index_follows_replacement() -> None:
    s = RecordState()
    s.apply("user", "alice", (1, "n1"), user(uid=33))
    s.apply("user", "alice", (2, "n1"), user(uid=65))
    assert s.user_by_id(33) is None and s.user_by_id(65).name == "alice"


def test_clear_forgets_everything() -> None:
    s = RecordState()
    s.apply("user", "alice", (1, "n1"), user())
    s.apply("config", "cluster", (1, "n1"), rec.ConfigRecord(30))
    s.clear()
    assert not s.users and not s.versions and s.config.backup_retention_days == 90
    assert s.apply("user", "alice", (1, "n1"), user())


# ------------------------------------------------------------------ ids


def test_next_id_lands_on_the_ordinal_residue_above_everything_existing() -> None:
    s = RecordState()
    assert s.next_id(set(), 1) == 1
    assert s.next_id({1}, 1) == 33
    assert s.next_id({1}, 2) == 2
    assert s.next_id({40}, 3) == 67
    assert s.next_id({40}, 9) == 41
    assert s.next_id({31}, 31) == 63
    rng = random.Random(7)
    for _ in range(2000):
        existing = set(rng.sample(range(1, 5000), rng.randint(0, 20)))
        ordinal = rng.randint(1, MAX_ORDINAL)
        nid = s.next_id(existing, ordinal)
        top = max(existing, default=0)
        assert nid > top and nid % STRIDE == ordinal and nid - top <= STRIDE
        assert nid not in existing


def test_ids_are_unique_across_ordinals_without_coordination() -> None:
    """Every node allocates from the same (possibly stale) view; no two ordinals ever collide."""
    s = RecordState()
    rng = random.Random(11)
    allocated: dict[int, int] = {}
    views = {o: {1} for o in range(1, MAX_ORDINAL + 1)}   # each node's local view of existing ids
    for _ in range(3000):
        o = rng.randint(1, MAX_ORDINAL)
        nid = s.next_id(views[o], o)
        assert nid not in allocated, f"ordinal {o} reused id {nid} of ordinal {allocated.get(nid)}"
        allocated[nid] = o
        views[o].add(nid)
        if rng.random() < 0.3:  # sometimes a node learns of the others' ids (replication)
            other = rng.randint(1, MAX_ORDINAL)
            views[other] |= views[o]
    assert all(i % STRIDE == o for i, o in allocated.items())


# ------------------------------------------------------------------ consistency hash


def _state(*writes) -> RecordState:
    s = RecordState()
    for w in writes:
        s.apply(*w)
    return s


BASE = [
    ("user", "admin", (1, "n1"), user("admin", 1, "CO")),
    ("user", "alice", (2, "n1"), user("alice", 33)),
    ("user", "bob", (3, "n1"), user("bob", 65)),
    ("key", "34", (4, "n1"), key(34, owner=33)),
]


def test_equal_states_hash_equal_whatever_the_order() -> None:
    assert _state(*BASE).consistency_hash() == _state(*reversed(BASE)).consistency_hash()
    assert len(_state(*BASE).consistency_hash()) == 64


@pytest.mark.parametrize("change", [
    ("key", "34", (5, "n1"), key(34, owner=33, shared=[65])),   # shared
    ("key", "34", (5, "n1"), key(34, owner=65)),                # owner changed
    ("key", "34", (5, "n1"), None),                             # deleted
    ("key", "66", (5, "n1"), key(66, owner=65)),                # new key
    ("user", "bob", (5, "n1"), user("bob", 65, locked=True)),   # locked
    ("user", "carol", (5, "n1"), user("carol", 97)),            # new user
    ("user", "bob", (5, "n1"), None),                           # user deleted
])
def test_hash_changes_with_users_and_ownership(change) -> None:
    assert _state(*BASE).consistency_hash() != _state(*BASE, change).consistency_hash()


def test_hash_ignores_key_material_and_labels_but_not_versions() -> None:
    a = _state(*BASE, ("key", "66", (5, "n1"), key(66, material=os.urandom(32), label="x")))
    b = _state(*BASE, ("key", "66", (5, "n1"), key(66, material=os.urandom(32), label="y")))
    assert a.consistency_hash() == b.consistency_hash()
    c = _state(*BASE, ("key", "66", (6, "n1"), key(66)))
    assert a.consistency_hash() != c.consistency_hash()  # same content, different write: nodes disagree
