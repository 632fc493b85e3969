"""The incremental consistency hash and id allocation of hsm_node/state.py.

A write updates the hash in O(1) (a sum of per-record digests); these properties check
that it always equals the hash computed from scratch over the records that win, whatever
the order writes arrive in, however often they are replayed, and across deletions.
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsm_node import records as rec
from hsm_node.rules import MAX_ORDINAL
from hsm_node.state import RecordState, record_digest

STRIDE = MAX_ORDINAL + 1
USERS = ["admin", "alice", "bob", "carol"]
HANDLES = [str(h) for h in (2, 34, 66, 98, 130)]
ORIGINS = ["node-a", "node-b", "node-c"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

versions = st.tuples(st.integers(1, 40), st.sampled_from(ORIGINS))
user_records = st.builds(
    lambda name, uid, utype, locked: rec.UserRecord(name, uid, utype, "argon2id$x", locked),
    st.sampled_from(USERS), st.integers(1, 200), st.sampled_from(["CO", "CU"]), st.booleans())
key_records = st.builds(
    lambda owner, shared, label: rec.KeyRecord(0, label, owner, 32, bytes(32), 1, shared, ""),
    st.integers(1, 200), st.lists(st.integers(1, 200), max_size=3, unique=True), st.text(max_size=3))


@st.composite
def writes(draw) -> tuple[str, str, rec.Version, rec.Record | None]:
    """One replicated write: a user or key record, or a tombstone (deletion)."""
    version = draw(versions)
    if draw(st.booleans()):
        name = draw(st.sampled_from(USERS))
        record = draw(st.one_of(st.none(), user_records))
        if record is not None:
            record = rec.UserRecord(name, record.user_id, record.user_type, record.password_hash, record.locked)
        return "user", name, version, record
    handle = draw(st.sampled_from(HANDLES))
    record = draw(st.one_of(st.none(), key_records))
    if record is not None:
        record = rec.KeyRecord(int(handle), record.label, record.owner_id, 32, bytes(32), 1, record.shared, "")
    return "key", handle, version, record


def reference_hash(history: list[tuple[str, str, rec.Version, rec.Record | None]]) -> str:
    """From scratch, independently of RecordState: for each entity the write with the highest
    version wins; the hash is the sum of the digests of the live winners."""
    winners: dict[tuple[str, str], tuple[rec.Version, rec.Record | None]] = {}
    for kind, entity, version, record in history:
        best = winners.get((kind, entity))
        if best is None or version > best[0]:
            winners[(kind, entity)] = (version, record)
    total = sum(record_digest(kind, entity, version, record) for (kind, entity), (version, record) in winners.items())
    return f"{total % (1 << 256):064x}"


def distinct_versions(history):
    """Real writes never share a version ((hlc, origin) is unique per write): keep the first."""
    seen: set[tuple[str, str, rec.Version]] = set()
    out = []
    for w in history:
        if (w[0], w[1], w[2]) not in seen:
            seen.add((w[0], w[1], w[2]))
            out.append(w)
    return out


@SETTINGS
@given(st.lists(writes(), max_size=60).map(distinct_versions), st.randoms(use_true_random=False))
def test_the_incremental_hash_equals_a_recomputation_whatever_the_order_and_replays(history, rnd) -> None:
    in_order = RecordState()
    for w in history:
        in_order.apply(*w)
    # Another node: the same writes out of order, some delivered two or three times (replays).
    delivered = history + [rnd.choice(history) for _ in range(len(history) // 2)] if history else []
    rnd.shuffle(delivered)
    shuffled = RecordState()
    for w in delivered:
        shuffled.apply(*w)
        assert shuffled.consistency_hash() == shuffled.recomputed_hash()  # after every single apply
    expected = reference_hash(history)
    assert in_order.consistency_hash() == in_order.recomputed_hash() == expected
    assert shuffled.consistency_hash() == expected
    assert (shuffled.users, shuffled.keys) == (in_order.users, in_order.keys)


@SETTINGS
@given(st.lists(writes(), min_size=1, max_size=40).map(distinct_versions), st.randoms(use_true_random=False))
def test_a_node_rebuilt_from_its_records_has_the_same_hash(history, rnd) -> None:
    """As at a restart or a restore: clear() and apply the surviving records (tombstones too)."""
    s = RecordState()
    for w in history:
        s.apply(*w)
    stored = [(kind, entity, version, s.record(kind, entity)) for (kind, entity), version in s.versions.items()]
    rnd.shuffle(stored)
    digest = s.consistency_hash()
    s.clear()
    assert s.consistency_hash() == f"{0:064x}"
    for w in stored:
        s.apply(*w)
    assert s.consistency_hash() == digest == s.recomputed_hash()


def test_nodes_that_differ_in_one_record_disagree() -> None:
    a, b = RecordState(), RecordState()
    for s in (a, b):
        s.apply("user", "alice", (1, "node-a"), rec.UserRecord("alice", 33, "CU", "h"))
        s.apply("key", "34", (2, "node-a"), rec.KeyRecord(34, "k", 33, 32, bytes(32), 1, [], ""))
    assert a.consistency_hash() == b.consistency_hash()
    b.apply("key", "34", (3, "node-b"), rec.KeyRecord(34, "k", 33, 32, bytes(32), 1, [65], ""))
    assert a.consistency_hash() != b.consistency_hash()
    a.apply("key", "34", (3, "node-b"), rec.KeyRecord(34, "k", 33, 32, bytes(32), 1, [65], ""))
    assert a.consistency_hash() == b.consistency_hash()
    b.apply("key", "34", (4, "node-a"), None)  # deleted on one node only
    assert a.consistency_hash() != b.consistency_hash()


# ------------------------------------------------------------------ ids without a scan


def test_the_top_key_handle_counts_deleted_keys_so_handles_are_never_reused() -> None:
    s = RecordState()
    s.apply("key", "66", (1, "node-a"), rec.KeyRecord(66, "k", 33, 32, bytes(32), 1, [97], ""))
    s.apply("key", "66", (2, "node-a"), None)
    assert not s.keys and s.top_key_handle == 66
    assert s.next_after(s.top_key_handle, 2) == 98
    assert s.top_user_id == 97  # a user id a key named (a share) is never given to a new user


def test_next_after_agrees_with_next_id() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        existing = set(rng.sample(range(1, 5000), rng.randint(0, 20)))
        ordinal = rng.randint(1, MAX_ORDINAL)
        nid = RecordState.next_after(max(existing, default=0), ordinal)
        assert nid == RecordState().next_id(existing, ordinal)
        assert nid > max(existing, default=0) and nid % STRIDE == ordinal
