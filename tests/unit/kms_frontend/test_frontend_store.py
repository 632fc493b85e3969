import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from kms_frontend.store import (
    AliasRecord,
    AlreadyExistsError,
    AuditEvent,
    CustomKeyStoreRecord,
    DuplicateAliasError,
    DuplicateStoreNameError,
    GrantRecord,
    InvalidMarkerError,
    KeyRecord,
    MetadataRepository,
    NotFoundError,
    PendingRotationError,
    SchemaVersionError,
    SqliteRepository,
    StaleRecordError,
    StoreHasKeysError,
)
from kms_frontend.store.sqlite import MIGRATIONS, SCHEMA_VERSION

ARN = "arn:aws:kms:us-east-1:111122223333:key/"


@pytest.fixture
def repo(tmp_path):
    r = SqliteRepository(tmp_path / "meta.db")
    yield r
    r.close()


def store(n: int = 1, **kw) -> CustomKeyStoreRecord:
    base = dict(
        custom_key_store_id=f"cks-{n:017x}",
        custom_key_store_name=f"store-{n}",
        cloud_hsm_cluster_id="cluster-234567abcdef",
        trust_anchor_certificate="-----BEGIN CERTIFICATE-----",
        creation_date=1_700_000_000_000 + n,
        sealed_password=b"sealed-" + bytes([n]),
    )
    base.update(kw)
    return CustomKeyStoreRecord(**base)


def key(n: int = 1, store_id: str = "cks-00000000000000001", **kw) -> KeyRecord:
    key_id = f"00000000-0000-4000-8000-{n:012x}"
    base = dict(
        key_id=key_id,
        arn=ARN + key_id,
        custom_key_store_id=store_id,
        cloud_hsm_cluster_id="cluster-234567abcdef",
        creation_date=1_700_000_000_000 + n,
        policy="{}",
        backing_key_handle=100 + n,
    )
    base.update(kw)
    return KeyRecord(**base)


def test_satisfies_protocol(repo):
    def use(r: MetadataRepository) -> int:
        return r.count_custom_key_stores()

    assert use(repo) == 0


def test_pragmas_and_schema_version(tmp_path, repo):
    assert repo.schema_version() == SCHEMA_VERSION == 3
    raw = sqlite3.connect(tmp_path / "meta.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
    assert repo._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert repo._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw.close()


def test_a_version_1_file_is_migrated_keeping_its_records(tmp_path):
    """metadata.db files written before grants existed gain the grants table and the audit
    principal, and keep every key and audit event."""
    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 1")
    raw.execute("INSERT INTO audit_log (ts, event, key_id, store_id, details_json) VALUES (1, 'DeleteKey', 'k', 's', '{}')")
    raw.close()
    with SqliteRepository(path) as r:
        assert r.schema_version() == 3
        r.create_custom_key_store(store())
        r.create_key(key(1))
        grant = GrantRecord(grant_id="a" * 64, key_id=key(1).key_id, grantee_principal="arn:aws:iam::111122223333:root",
                            operations=("Encrypt", "Decrypt"), issuing_account="arn:aws:iam::111122223333:root",
                            creation_date=5, constraint_type="EncryptionContextSubset",
                            constraint_context={"app": "x"})
        assert r.create_grant(grant) == grant
        assert r.list_grants(key_id=key(1).key_id) == [grant]
        old = r.list_audit_events()
        assert [(e.event, e.principal) for e in old] == [("DeleteKey", None)]
        r.append_audit_events([AuditEvent(timestamp=2, event="Encrypt", principal="arn:aws:iam::111122223333:root")])
        assert r.list_audit_events(principal="arn:aws:iam::111122223333:root")[0].event == "Encrypt"
        r.delete_key(key(1).key_id)  # a key's grants go with it
        assert r.list_grants() == []
        with pytest.raises(NotFoundError):
            r.delete_grant(grant.grant_id)


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "future.db"
    SqliteRepository(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        SqliteRepository(path)


def test_reopen_keeps_data(tmp_path):
    path = tmp_path / "meta.db"
    with SqliteRepository(path) as r:
        r.create_custom_key_store(store())
    with SqliteRepository(path) as r:
        assert r.get_custom_key_store(store().custom_key_store_id) == store()


def test_acknowledged_write_survives_process_kill(tmp_path):
    """A child writes, prints 'ok', and is killed without closing: the write must be there."""
    path = tmp_path / "meta.db"
    code = textwrap.dedent(f"""
        import os, sys
        from kms_frontend.store import SqliteRepository, CustomKeyStoreRecord
        r = SqliteRepository({str(path)!r})
        r.create_custom_key_store(CustomKeyStoreRecord(
            custom_key_store_id="cks-x", custom_key_store_name="n", cloud_hsm_cluster_id="c",
            trust_anchor_certificate="t", creation_date=1, sealed_password=b"s"))
        print("ok", flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    with SqliteRepository(path) as r:
        assert r.get_custom_key_store("cks-x").custom_key_store_name == "n"


# ---------------------------------------------------------------- custom key stores


def test_store_crud(repo):
    s = repo.create_custom_key_store(store())
    assert s.version == 0 and s.connection_state == "DISCONNECTED"
    assert repo.get_custom_key_store(s.custom_key_store_id) == s
    assert repo.find_custom_key_store_by_name("store-1") == s
    assert repo.find_custom_key_store_by_name("nope") is None
    assert repo.count_custom_key_stores() == 1
    s2 = repo.update_custom_key_store(
        replace(s, connection_state="FAILED", connection_error_code="USER_NOT_FOUND")
    )
    assert s2.version == 1 and s2.connection_error_code == "USER_NOT_FOUND"
    repo.delete_custom_key_store(s.custom_key_store_id)
    with pytest.raises(NotFoundError):
        repo.get_custom_key_store(s.custom_key_store_id)
    with pytest.raises(NotFoundError):
        repo.delete_custom_key_store(s.custom_key_store_id)


def test_sealed_password_not_in_repr():
    assert "sealed-" not in repr(store())


def test_store_name_and_id_unique(repo):
    repo.create_custom_key_store(store(1))
    with pytest.raises(DuplicateStoreNameError) as info:
        repo.create_custom_key_store(store(2, custom_key_store_name="store-1"))
    assert info.value.value == "store-1"
    with pytest.raises(AlreadyExistsError):
        repo.create_custom_key_store(store(1, custom_key_store_name="other"))
    s2 = repo.create_custom_key_store(store(2))
    with pytest.raises(DuplicateStoreNameError):
        repo.update_custom_key_store(replace(s2, custom_key_store_name="store-1"))
    assert repo.get_custom_key_store(s2.custom_key_store_id).custom_key_store_name == "store-2"


def test_optimistic_update(repo):
    s = repo.create_custom_key_store(store())
    repo.update_custom_key_store(replace(s, connection_state="CONNECTING"))
    with pytest.raises(StaleRecordError):
        repo.update_custom_key_store(replace(s, connection_state="DISCONNECTING"))
    with pytest.raises(NotFoundError):
        repo.update_custom_key_store(store(9))


def test_store_paging(repo):
    for n in range(1, 6):
        repo.create_custom_key_store(store(n))
    page = repo.list_custom_key_stores(limit=2)
    names = [s.custom_key_store_name for s in page.items]
    assert names == ["store-1", "store-2"] and page.truncated
    while page.next_marker:
        page = repo.list_custom_key_stores(limit=2, marker=page.next_marker)
        names += [s.custom_key_store_name for s in page.items]
    assert names == [f"store-{n}" for n in range(1, 6)]
    assert not page.truncated
    assert repo.list_custom_key_stores(limit=5).next_marker is None


def test_invalid_markers(repo):
    repo.create_custom_key_store(store())
    repo.create_key(key(1, store().custom_key_store_id))
    repo.create_key(key(2, store().custom_key_store_id))
    key_marker = repo.list_keys(limit=1).next_marker
    assert key_marker
    for bad in ["!!!", "bm9wZQ", key_marker]:
        with pytest.raises(InvalidMarkerError):
            repo.list_custom_key_stores(marker=bad)
    with pytest.raises(InvalidMarkerError):
        repo.list_aliases(marker=key_marker)


def test_cluster_change_propagates_to_keys(repo):
    s = repo.create_custom_key_store(store())
    repo.create_key(key(1, s.custom_key_store_id))
    repo.update_custom_key_store(replace(s, cloud_hsm_cluster_id="cluster-newnewnewnew"))
    assert repo.get_key(key(1).key_id).cloud_hsm_cluster_id == "cluster-newnewnewnew"


def test_password_rotation_is_crash_safe(repo):
    s = repo.create_custom_key_store(store())
    with pytest.raises(PendingRotationError):
        repo.commit_password_rotation(s.custom_key_store_id)
    pending = repo.begin_password_rotation(s.custom_key_store_id, b"next")
    assert pending.pending_sealed_password == b"next" and pending.sealed_password == s.sealed_password
    with pytest.raises(PendingRotationError):
        repo.begin_password_rotation(s.custom_key_store_id, b"another")  # never loses a pending secret
    done = repo.commit_password_rotation(s.custom_key_store_id)
    assert done.sealed_password == b"next" and done.pending_sealed_password is None
    repo.begin_password_rotation(s.custom_key_store_id, b"third")
    aborted = repo.abort_password_rotation(s.custom_key_store_id)
    assert aborted.sealed_password == b"next" and aborted.pending_sealed_password is None
    assert repo.abort_password_rotation(s.custom_key_store_id).pending_sealed_password is None


def test_store_with_keys_cannot_be_deleted(repo):
    s = repo.create_custom_key_store(store())
    repo.create_key(key(1, s.custom_key_store_id, key_state="PendingDeletion", deletion_date=5))
    with pytest.raises(StoreHasKeysError) as info:
        repo.delete_custom_key_store(s.custom_key_store_id)
    assert info.value.key_count == 1
    repo.delete_key(key(1).key_id)
    repo.delete_custom_key_store(s.custom_key_store_id)


# ---------------------------------------------------------------- keys


def test_key_crud(repo):
    s = repo.create_custom_key_store(store())
    k = repo.create_key(
        key(1, s.custom_key_store_id, tags={"b": "2", "a": "1"}, backing_key_handle=2**64 - 1)
    )
    got = repo.get_key(k.key_id)
    assert got == k
    assert list(got.tags) == ["b", "a"]  # insertion order kept
    assert got.backing_key_handle == 2**64 - 1
    for n, handle in enumerate((0, 1, 2**63 - 1, 2**63), start=10):
        k_h = repo.create_key(key(n, s.custom_key_store_id, backing_key_handle=handle))
        assert repo.get_key(k_h.key_id).backing_key_handle == handle
    k2 = repo.update_key(replace(got, description="d", key_state="Disabled"))
    assert (k2.description, k2.key_state, k2.version) == ("d", "Disabled", 1)
    with pytest.raises(StaleRecordError):
        repo.update_key(replace(got, description="lost update"))
    assert repo.count_keys(s.custom_key_store_id) == 5
    with pytest.raises(AlreadyExistsError):
        repo.create_key(key(1, s.custom_key_store_id))
    with pytest.raises(NotFoundError, match="custom key store"):
        repo.create_key(key(2, "cks-missing"))
    repo.delete_key(k.key_id)
    with pytest.raises(NotFoundError):
        repo.get_key(k.key_id)
    with pytest.raises(NotFoundError):
        repo.delete_key(k.key_id)


def test_creating_key_without_handle(repo):
    s = repo.create_custom_key_store(store())
    k = repo.create_key(key(1, s.custom_key_store_id, key_state="Creating", backing_key_handle=None))
    assert repo.get_key(k.key_id).backing_key_handle is None
    done = repo.update_key(replace(k, key_state="Enabled", backing_key_handle=42))
    assert done.backing_key_handle == 42


def test_list_keys_paging_and_filter(repo):
    a = repo.create_custom_key_store(store(1))
    b = repo.create_custom_key_store(store(2))
    for n in range(1, 8):
        repo.create_key(key(n, a.custom_key_store_id if n % 2 else b.custom_key_store_id))
    seen, marker = [], None
    while True:
        page = repo.list_keys(limit=3, marker=marker)
        seen += [k.key_id for k in page.items]
        marker = page.next_marker
        if not marker:
            break
    assert seen == [key(n).key_id for n in range(1, 8)]
    only_a = repo.list_keys(custom_key_store_id=a.custom_key_store_id).items
    assert [k.key_id for k in only_a] == [key(n).key_id for n in (1, 3, 5, 7)]


def test_deleted_marker_row_does_not_break_paging(repo):
    s = repo.create_custom_key_store(store())
    for n in range(1, 5):
        repo.create_key(key(n, s.custom_key_store_id))
    page = repo.list_keys(limit=2)
    repo.delete_key(page.items[-1].key_id)
    rest = repo.list_keys(limit=10, marker=page.next_marker)
    assert [k.key_id for k in rest.items] == [key(3).key_id, key(4).key_id]


def test_keys_due_for_deletion(repo):
    s = repo.create_custom_key_store(store())
    repo.create_key(key(1, s.custom_key_store_id, key_state="PendingDeletion", deletion_date=100))
    repo.create_key(key(2, s.custom_key_store_id, key_state="PendingDeletion", deletion_date=300))
    repo.create_key(key(3, s.custom_key_store_id))
    assert [k.key_id for k in repo.keys_due_for_deletion(200)] == [key(1).key_id]
    assert len(repo.keys_due_for_deletion(300)) == 2


def test_disconnect_and_reconnect_key_states(repo):
    s = repo.create_custom_key_store(store())
    repo.create_key(key(1, s.custom_key_store_id, key_state="Enabled"))
    repo.create_key(key(2, s.custom_key_store_id, key_state="Disabled"))
    repo.create_key(key(3, s.custom_key_store_id, key_state="PendingDeletion", deletion_date=9))
    assert repo.mark_store_keys_unavailable(s.custom_key_store_id) == 2
    states = {k.key_id: (k.key_state, k.desired_state) for k in repo.list_keys().items}
    assert states[key(1).key_id] == ("Unavailable", "Enabled")
    assert states[key(2).key_id] == ("Unavailable", "Disabled")
    assert states[key(3).key_id] == ("PendingDeletion", None)
    # EnableKey while Unavailable only changes the desired state
    k2 = repo.get_key(key(2).key_id)
    repo.update_key(replace(k2, desired_state="Enabled"))
    assert repo.restore_store_keys(s.custom_key_store_id) == 2
    states = {k.key_id: (k.key_state, k.desired_state) for k in repo.list_keys().items}
    assert states[key(1).key_id] == ("Enabled", None)
    assert states[key(2).key_id] == ("Enabled", None)
    assert states[key(3).key_id] == ("PendingDeletion", None)


# ---------------------------------------------------------------- aliases


def test_alias_crud_and_cascade(repo):
    s = repo.create_custom_key_store(store())
    k1 = repo.create_key(key(1, s.custom_key_store_id))
    k2 = repo.create_key(key(2, s.custom_key_store_id))
    a = repo.create_alias(AliasRecord("alias/one", k1.key_id, 10, 10))
    assert repo.get_alias("alias/one") == a
    with pytest.raises(DuplicateAliasError):
        repo.create_alias(AliasRecord("alias/one", k2.key_id, 11, 11))
    with pytest.raises(NotFoundError, match="key"):
        repo.create_alias(AliasRecord("alias/x", "missing", 11, 11))
    moved = repo.update_alias("alias/one", k2.key_id, 20)
    assert (moved.key_id, moved.creation_date, moved.last_updated_date) == (k2.key_id, 10, 20)
    with pytest.raises(NotFoundError):
        repo.update_alias("alias/none", k2.key_id, 21)
    with pytest.raises(NotFoundError):
        repo.update_alias("alias/one", "missing", 21)
    repo.create_alias(AliasRecord("alias/two", k2.key_id, 12, 12))
    assert repo.count_aliases(k2.key_id) == 2
    repo.delete_key(k2.key_id)
    assert repo.list_aliases().items == []
    with pytest.raises(NotFoundError):
        repo.delete_alias("alias/one")


def test_alias_paging(repo):
    s = repo.create_custom_key_store(store())
    k1 = repo.create_key(key(1, s.custom_key_store_id))
    k2 = repo.create_key(key(2, s.custom_key_store_id))
    for name in ["alias/c", "alias/a", "alias/e", "alias/b", "alias/d"]:
        repo.create_alias(AliasRecord(name, k1.key_id if name < "alias/d" else k2.key_id, 1, 1))
    page = repo.list_aliases(limit=2)
    names = [a.alias_name for a in page.items]
    while page.next_marker:
        page = repo.list_aliases(limit=2, marker=page.next_marker)
        names += [a.alias_name for a in page.items]
    assert names == ["alias/a", "alias/b", "alias/c", "alias/d", "alias/e"]
    assert [a.alias_name for a in repo.list_aliases(key_id=k2.key_id).items] == ["alias/d", "alias/e"]


# ---------------------------------------------------------------- audit log


def test_audit_log_append_only(repo, tmp_path):
    e1 = repo.append_audit_event(
        AuditEvent(
            timestamp=1,
            event="DeleteBackingKey",
            key_id="k1",
            custom_key_store_id="cks-1",
            details={"keyHandle": 7, "deletionStatus": "SUCCESS"},
        )
    )
    e2 = repo.append_audit_event(
        AuditEvent(
            timestamp=2,
            event="DeleteBackingKey",
            key_id="k2",
            details={"keyHandle": 8, "deletionStatus": "FAILURE"},
        )
    )
    repo.append_audit_event(AuditEvent(timestamp=3, event="Other"))
    assert e1.event_id is not None and e2.event_id == e1.event_id + 1
    assert repo.list_audit_events(event="DeleteBackingKey") == [e1, e2]
    assert repo.list_audit_events(key_id="k2") == [e2]
    assert [e.event for e in repo.list_audit_events(after_id=e2.event_id)] == ["Other"]
    raw = sqlite3.connect(tmp_path / "meta.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit_log")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit_log SET event = 'x'")
    raw.close()


def test_limit_must_be_positive(repo):
    with pytest.raises(ValueError):
        repo.list_keys(limit=0)


def test_memory_database():
    with SqliteRepository(":memory:") as r:
        r.create_custom_key_store(store())
        assert r.count_custom_key_stores() == 1
