from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import threading
from pathlib import Path

import pytest

from backup_store import (
    DAY_MS,
    BackupExistsError,
    BackupInvalidStateError,
    BackupMeta,
    BackupNotFoundError,
    BackupState,
    BackupStore,
    BackupStoreCorruptError,
    BackupTrigger,
    new_backup_id,
    validate_retention_days,
)
from hsm_node.backup_crypto import backup_aad, open_backup, seal_backup

T0 = 1_700_000_000_000
CLUSTER = "cluster-abcdefghijk"
OTHER = "cluster-zzzzzzzzzzz"


def make(
    store: BackupStore,
    *,
    cluster: str = CLUSTER,
    at: int = T0,
    blob: bytes | None = None,
    never_expires: bool = False,
) -> BackupMeta:
    backup_id = store.new_backup_id()
    meta = BackupMeta(
        backup_id=backup_id,
        cluster_id=cluster,
        create_timestamp_ms=at,
        trigger=BackupTrigger.PERIODIC,
        never_expires=never_expires,
        user_count=3,
        key_count=7,
        cluster_certificate_sha256="ab" * 32,
    )
    return store.write(meta, blob if blob is not None else b"blob of " + backup_id.encode())


def visible_files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.name != ".lock"}


# ---------------------------------------------------------------- ids, validation


def test_new_backup_id_format() -> None:
    ids = {new_backup_id() for _ in range(200)}
    assert len(ids) == 200
    for backup_id in ids:
        assert re.fullmatch(r"backup-[2-7a-z]{11}", backup_id)


@pytest.mark.parametrize("days", [7, 30, 90, 379])
def test_retention_days_in_range(days: int) -> None:
    assert validate_retention_days(days) == days


@pytest.mark.parametrize("days", [0, 6, 380, -1, 7.5, "30", True, None])
def test_retention_days_out_of_range(days: object) -> None:
    with pytest.raises(ValueError, match="retention"):
        validate_retention_days(days)  # type: ignore[arg-type]


def test_invalid_backup_ids_are_refused(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    for bad in ["../etc/passwd", "backup-short", "backup-abcdefghij1", "x" * 18, ""]:
        with pytest.raises(ValueError, match="invalid backup id"):
            store.describe(bad)
        with pytest.raises(ValueError):
            store.write(BackupMeta(backup_id=bad, cluster_id=CLUSTER), b"x")


# ---------------------------------------------------------------- write / read


def test_write_describe_read_round_trip(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    backup_id = store.new_backup_id()
    given = BackupMeta(
        backup_id=backup_id,
        cluster_id=CLUSTER,
        state=BackupState.CREATE_IN_PROGRESS,
        create_timestamp_ms=T0,
        source_backup_id="backup-sourcesourc",
        source_cluster_id=OTHER,
        user_count=4,
        key_count=12,
        trigger=BackupTrigger.ADD_NODE,
        never_expires=True,
        cluster_certificate_sha256="cd" * 32,
    )
    stored = store.write(given, b"\x00sealed\xff")
    assert stored.state is BackupState.READY
    assert stored.size_bytes == 8
    assert stored.delete_timestamp_ms == 0
    assert stored.sequence == 1
    assert store.describe(backup_id) == stored
    assert store.read_blob(backup_id) == b"\x00sealed\xff"
    assert store.list() == [stored]
    assert visible_files(tmp_path) == {f"{backup_id}.backup", f"{backup_id}.json"}
    with pytest.raises(BackupExistsError):
        store.write(given, b"other")
    assert store.read_blob(backup_id) == b"\x00sealed\xff"


def test_metadata_json_round_trip() -> None:
    meta = BackupMeta(backup_id="backup-abcdefghijk", cluster_id=CLUSTER, state=BackupState.READY)
    again = BackupMeta.from_json(meta.to_json())
    assert again == meta
    assert isinstance(again.state, BackupState)
    assert isinstance(again.trigger, BackupTrigger)


def test_create_timestamp_defaults_to_the_clock(tmp_path: Path) -> None:
    store = BackupStore(tmp_path, clock=lambda: 42)
    meta = store.write(BackupMeta(backup_id=store.new_backup_id(), cluster_id=CLUSTER), b"x")
    assert meta.create_timestamp_ms == 42


def test_unknown_backup(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    with pytest.raises(BackupNotFoundError, match="not found"):
        store.describe("backup-abcdefghijk")
    with pytest.raises(BackupNotFoundError):
        store.read_blob("backup-abcdefghijk")
    with pytest.raises(BackupNotFoundError):
        store.delete("backup-abcdefghijk", T0)
    with pytest.raises(BackupNotFoundError):
        store.restore("backup-abcdefghijk", T0)


def test_list_filters_and_sorts_newest_first(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    a = make(store, at=T0)
    b = make(store, at=T0 + 2 * DAY_MS)
    c = make(store, at=T0 + DAY_MS)
    d = make(store, cluster=OTHER, at=T0 + 3 * DAY_MS)
    assert [m.backup_id for m in store.list()] == [d.backup_id, b.backup_id, c.backup_id, a.backup_id]
    assert [m.backup_id for m in store.list(CLUSTER)] == [b.backup_id, c.backup_id, a.backup_id]
    assert store.list("cluster-nonexistent") == []


def test_latest_is_newest_ready(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    assert store.latest(CLUSTER) is None
    old = make(store, at=T0)
    new = make(store, at=T0 + DAY_MS)
    make(store, cluster=OTHER, at=T0 + 5 * DAY_MS)
    latest = store.latest(CLUSTER)
    assert latest is not None and latest.backup_id == new.backup_id
    store.delete(new.backup_id, T0 + 2 * DAY_MS)
    latest = store.latest(CLUSTER)
    assert latest is not None and latest.backup_id == old.backup_id


def test_latest_breaks_same_millisecond_ties_by_write_order(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    written = [make(store, at=T0) for _ in range(5)]
    latest = store.latest(CLUSTER)
    assert latest is not None and latest.backup_id == written[-1].backup_id
    assert [m.sequence for m in written] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- atomicity and crashes


def test_crash_leftovers_are_invisible_and_cleaned_up(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    good = make(store)
    orphan_id = store.new_backup_id()
    # A crash after the blob was renamed into place but before the metadata was written,
    (tmp_path / f"{orphan_id}.backup").write_bytes(b"complete blob, no metadata")
    # ... a crash half way through writing a metadata temp file,
    (tmp_path / f".{orphan_id}.json.k3j4h5.tmp").write_bytes(b'{"backup_id": "backup-')
    # ... and half way through a blob temp file.
    (tmp_path / f".{orphan_id}.backup.x8s7d6.tmp").write_bytes(b"partial")

    assert store.list(include_deleted=True) == [good]
    assert store.latest(CLUSTER) == good
    with pytest.raises(BackupNotFoundError):
        store.describe(orphan_id)
    with pytest.raises(BackupNotFoundError):
        store.read_blob(orphan_id)

    removed = store.cleanup_stale_files()
    assert set(removed) == {
        f"{orphan_id}.backup",
        f".{orphan_id}.json.k3j4h5.tmp",
        f".{orphan_id}.backup.x8s7d6.tmp",
    }
    assert visible_files(tmp_path) == {f"{good.backup_id}.backup", f"{good.backup_id}.json"}
    assert store.read_blob(good.backup_id) == b"blob of " + good.backup_id.encode()


def test_failed_metadata_write_leaves_no_visible_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BackupStore(tmp_path)
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    backup_id = store.new_backup_id()
    with pytest.raises(OSError):
        store.write(BackupMeta(backup_id=backup_id, cluster_id=CLUSTER, create_timestamp_ms=T0), b"blob")
    monkeypatch.undo()
    assert store.list() == []
    # The blob is on disk, but nothing points at it; no temp file was left behind.
    assert visible_files(tmp_path) == {f"{backup_id}.backup"}
    assert store.cleanup_stale_files() == [f"{backup_id}.backup"]
    assert visible_files(tmp_path) == set()


def test_write_order_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync(file) -> replace -> fsync(dir), blob before metadata."""
    store = BackupStore(tmp_path)
    events: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def spy_replace(src: str, dst: str) -> None:
        events.append("replace " + Path(dst).suffix)
        real_replace(src, dst)

    def spy_fsync(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append("fsync " + kind)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    make(store)
    monkeypatch.undo()
    assert events == [
        "fsync file",
        "replace .backup",
        "fsync dir",
        "fsync file",
        "replace .json",
        "fsync dir",
    ]


def test_corrupt_metadata_is_skipped_by_list(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = BackupStore(tmp_path)
    good = make(store)
    bad = make(store)
    (tmp_path / f"{bad.backup_id}.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert store.list() == [good]
    assert "skip_corrupt_metadata" in caplog.text
    with pytest.raises(BackupStoreCorruptError):
        store.describe(bad.backup_id)
    # Data is never removed just because its metadata is unreadable.
    store.cleanup_stale_files()
    assert (tmp_path / f"{bad.backup_id}.backup").exists()


def test_truncated_blob_is_reported(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    meta = make(store, blob=b"0123456789")
    (tmp_path / f"{meta.backup_id}.backup").write_bytes(b"01234")
    with pytest.raises(BackupStoreCorruptError, match="5 bytes"):
        store.read_blob(meta.backup_id)


def test_sealed_contents_do_not_appear_in_store_files(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    manufacturer_key = os.urandom(32)
    contents = b"kmsuser password hash + AES key material: " + b"S3CR3T" * 50
    backup_id = store.new_backup_id()
    aad = backup_aad(backup_id, CLUSTER)
    blob = seal_backup(contents, manufacturer_key, aad=aad)
    store.write(BackupMeta(backup_id=backup_id, cluster_id=CLUSTER, create_timestamp_ms=T0), blob)
    for name in visible_files(tmp_path):
        data = (tmp_path / name).read_bytes()
        assert b"S3CR3T" not in data
        assert b"kmsuser" not in data
        assert manufacturer_key not in data
    assert open_backup(store.read_blob(backup_id), manufacturer_key, aad=aad) == contents


# ---------------------------------------------------------------- delete / restore / purge


def test_delete_and_restore(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    meta = make(store)
    deleted = store.delete(meta.backup_id, T0 + 100)
    assert deleted.state is BackupState.PENDING_DELETION
    assert deleted.delete_timestamp_ms == T0 + 100 + 7 * DAY_MS
    assert store.describe(meta.backup_id) == deleted
    assert store.read_blob(meta.backup_id)  # still there during the window
    with pytest.raises(BackupInvalidStateError, match="only a READY backup"):
        store.delete(meta.backup_id, T0 + 200)

    restored = store.restore(meta.backup_id, T0 + 7 * DAY_MS)
    assert restored.state is BackupState.READY
    assert restored.delete_timestamp_ms == 0
    assert store.describe(meta.backup_id) == restored
    with pytest.raises(BackupInvalidStateError, match="only a PENDING_DELETION backup"):
        store.restore(meta.backup_id, T0 + 7 * DAY_MS)


def test_restore_is_refused_once_the_window_has_ended(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    meta = make(store)
    deleted = store.delete(meta.backup_id, T0)
    with pytest.raises(BackupInvalidStateError, match="deletion window ended"):
        store.restore(meta.backup_id, deleted.delete_timestamp_ms)


def test_injected_clock_is_used_when_no_time_is_given(tmp_path: Path) -> None:
    now = [T0]
    store = BackupStore(tmp_path, clock=lambda: now[0])
    meta = make(store)
    assert store.delete(meta.backup_id).delete_timestamp_ms == T0 + 7 * DAY_MS
    now[0] = T0 + 7 * DAY_MS
    with pytest.raises(BackupInvalidStateError):
        store.restore(meta.backup_id)
    assert store.purge() == [meta.backup_id]


def test_purge_ends_the_seven_day_window(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    keep = make(store, at=T0 + DAY_MS)
    meta = make(store, at=T0)
    store.delete(meta.backup_id, T0 + DAY_MS)
    end = T0 + DAY_MS + 7 * DAY_MS

    assert store.purge(end - 1, {}) == []
    assert store.describe(meta.backup_id).state is BackupState.PENDING_DELETION

    assert store.purge(end, {}) == [meta.backup_id]
    tomb = store.describe(meta.backup_id)
    assert tomb.state is BackupState.DELETED
    assert not (tmp_path / f"{meta.backup_id}.backup").exists()
    assert (tmp_path / f"{meta.backup_id}.json").stat().st_size < 1024
    assert [m.backup_id for m in store.list()] == [keep.backup_id]
    assert {m.backup_id for m in store.list(include_deleted=True)} == {keep.backup_id, meta.backup_id}
    with pytest.raises(BackupInvalidStateError, match="DELETED"):
        store.read_blob(meta.backup_id)
    with pytest.raises(BackupInvalidStateError):
        store.restore(meta.backup_id, end)
    with pytest.raises(BackupInvalidStateError):
        store.delete(meta.backup_id, end)
    assert store.purge(end + 30 * DAY_MS, {}) == []  # idempotent


def test_interrupted_purge_is_finished_by_cleanup(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    meta = make(store)
    store.delete(meta.backup_id, T0)
    store.purge(T0 + 7 * DAY_MS, {})
    # Simulate a crash after the tombstone was written, before the blob was unlinked.
    (tmp_path / f"{meta.backup_id}.backup").write_bytes(b"leftover")
    with pytest.raises(BackupInvalidStateError):
        store.read_blob(meta.backup_id)
    assert store.cleanup_stale_files() == [f"{meta.backup_id}.backup"]


def test_retention_moves_old_backups_to_pending_deletion(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    oldest = make(store, at=T0)
    pinned = make(store, at=T0 + DAY_MS, never_expires=True)
    middle = make(store, at=T0 + 10 * DAY_MS)
    newest = make(store, at=T0 + 20 * DAY_MS)
    other_old = make(store, cluster=OTHER, at=T0)
    other_new = make(store, cluster=OTHER, at=T0 + 20 * DAY_MS)
    copy = make(store, cluster="", at=T0)  # copied backups belong to no cluster: no retention

    now = T0 + 30 * DAY_MS
    changed = store.purge(now, {CLUSTER: 7})
    assert sorted(changed) == sorted([oldest.backup_id, middle.backup_id])
    for m in (oldest, middle):
        got = store.describe(m.backup_id)
        assert got.state is BackupState.PENDING_DELETION
        assert got.delete_timestamp_ms == now + 7 * DAY_MS
    # The newest is kept although it is past retention, never_expires is kept, and OTHER
    # (default 90 days) and the copy are untouched.
    for m in (pinned, newest, other_old, other_new, copy):
        assert store.describe(m.backup_id).state is BackupState.READY

    # Retention-deleted backups can be restored like manual deletions...
    store.restore(oldest.backup_id, now + DAY_MS)
    # ... and a week later the rest are gone.
    later = now + 7 * DAY_MS
    assert store.purge(later, {CLUSTER: 7}) == sorted([middle.backup_id, oldest.backup_id])
    assert store.describe(oldest.backup_id).state is BackupState.PENDING_DELETION  # expired again
    assert store.describe(middle.backup_id).state is BackupState.DELETED


def test_default_retention_is_ninety_days(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    old = make(store, at=T0)
    make(store, at=T0 + 80 * DAY_MS)
    assert store.purge(T0 + 90 * DAY_MS - 1, {}) == []
    assert store.purge(T0 + 90 * DAY_MS, {}) == [old.backup_id]


def test_never_delete_the_newest_backup(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    only = make(store, at=T0)
    assert store.purge(T0 + 1000 * DAY_MS, {CLUSTER: 7}) == []
    assert store.describe(only.backup_id).state is BackupState.READY
    latest = store.latest(CLUSTER)
    assert latest is not None and latest.backup_id == only.backup_id


def test_newest_protection_counts_only_ready_backups(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    older = make(store, at=T0)
    newer = make(store, at=T0 + DAY_MS)
    store.delete(newer.backup_id, T0 + 2 * DAY_MS)  # operator deletes the newest by hand
    assert store.purge(T0 + 100 * DAY_MS, {CLUSTER: 7}) == [newer.backup_id]
    # older is now the cluster's newest READY backup, so retention leaves it alone.
    assert store.describe(older.backup_id).state is BackupState.READY


def test_purge_validates_retention(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    with pytest.raises(ValueError, match=f"cluster {CLUSTER}.*between 7 and 379"):
        store.purge(T0, {CLUSTER: 3})
    with pytest.raises(ValueError, match="between 7 and 379"):
        store.purge(T0, {}, default_retention_days=400)


# ---------------------------------------------------------------- concurrency


def _blob_for(backup_id: str) -> bytes:
    return hashlib.sha256(backup_id.encode()).digest() * 64


def _writer_process(path: str, count: int, worker: int) -> list[str]:
    store = BackupStore(path)
    written = []
    for i in range(count):
        backup_id = store.new_backup_id()
        meta = BackupMeta(
            backup_id=backup_id,
            cluster_id=CLUSTER,
            create_timestamp_ms=T0 + i,  # many equal timestamps across workers
            trigger=BackupTrigger.PERIODIC,
            key_count=worker,
        )
        store.write(meta, _blob_for(backup_id))
        written.append(backup_id)
    return written


def _deleter_process(path: str, ids: list[str]) -> list[str]:
    store = BackupStore(path)
    won = []
    for backup_id in ids:
        try:
            store.delete(backup_id, T0)
            won.append(backup_id)
        except BackupInvalidStateError:
            pass
    store.purge(T0, {})
    return won


def test_concurrent_writers_in_separate_processes(tmp_path: Path) -> None:
    workers, per_worker = 4, 25
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.starmap(_writer_process, [(str(tmp_path), per_worker, w) for w in range(workers)])
    all_ids = [bid for ids in results for bid in ids]
    assert len(set(all_ids)) == workers * per_worker

    store = BackupStore(tmp_path)
    metas = store.list()
    assert {m.backup_id for m in metas} == set(all_ids)
    assert sorted(m.sequence for m in metas) == list(range(1, workers * per_worker + 1))
    for m in metas:
        assert m.state is BackupState.READY
        assert store.read_blob(m.backup_id) == _blob_for(m.backup_id)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # Every process tries to delete every backup: each deletion succeeds exactly once.
    with ctx.Pool(workers) as pool:
        won = pool.starmap(_deleter_process, [(str(tmp_path), all_ids)] * workers)
    assert sorted(bid for ids in won for bid in ids) == sorted(all_ids)
    assert all(m.state is BackupState.PENDING_DELETION for m in store.list())


def test_concurrent_writers_in_threads(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(20):
                make(store)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(m.sequence for m in store.list()) == list(range(1, 81))
