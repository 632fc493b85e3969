"""The backup store: a directory of sealed backups, shared by the HSM nodes (which write sealed
backups into it and restore from them) and the CloudHSM control plane (which owns the catalogue:
lists, deletes, restores, copies to another Region's store, marks never-expiring). Neither can open
a blob without the deployment secret only nodes hold; this package holds no key and imports no
server package. One store per Region.

Layout of the directory::

    <backup_id>.backup    the sealed blob (see backup_crypto)
    <backup_id>.json      its metadata (BackupMeta as JSON)
    .lock                 fcntl lock file serialising every mutation
    .<name>.<random>.tmp  a write in progress (or left by a crash)

Rules:

* Every file is written atomically and durably: temp file in the same directory,
  flush + fsync, ``os.replace``, fsync of the directory.
* A blob is written before its metadata, so a metadata file always points at a complete
  blob. Readers only look at ``*.json``; temp files and blobs without metadata are
  invisible (and are removed by :meth:`BackupStore.cleanup_stale_files`).
* Mutations (write, delete, restore, purge) hold an exclusive ``flock`` on ``.lock`` (and
  a per-directory thread lock, so threads of one process exclude each other too). Reads
  take no lock: they see either the old or the new version of a file.
* Lifecycle (AWS CloudHSM User Guide, "Backups" and "Managing backups"): a written backup is READY;
  ``delete`` makes it PENDING_DELETION for 7 days; ``restore`` brings it back to READY;
  after the window ``purge`` turns it into a DELETED tombstone (metadata kept, blob
  removed). ``purge`` also applies each cluster's retention (7..379 days, default 90):
  expired READY backups become PENDING_DELETION, except ``never_expires`` ones and the
  cluster's newest READY backup. Backups without a cluster id (copies) have no retention.
* Time is never read from the wall clock except through the store's ``clock`` (default
  :func:`wall_clock_ms`); every time-dependent method also takes an explicit ``now_ms``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from plumbing.files import TMP_SUFFIX, fsync_dir, write_private

__all__ = [
    "BACKUP_ID_RE",
    "DAY_MS",
    "DEFAULT_RETENTION_DAYS",
    "MAX_RETENTION_DAYS",
    "MIN_RETENTION_DAYS",
    "PENDING_DELETION_DAYS",
    "BackupExistsError",
    "BackupInvalidStateError",
    "BackupMeta",
    "BackupNotFoundError",
    "BackupState",
    "BackupStore",
    "BackupStoreCorruptError",
    "BackupStoreError",
    "BackupStoreLockTimeout",
    "BackupTrigger",
    "new_backup_id",
    "validate_backup_id",
    "validate_retention_days",
    "wall_clock_ms",
]

log = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
PENDING_DELETION_DAYS = 7
MIN_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 379
DEFAULT_RETENTION_DAYS = 90

# AWS accepts backup-[2-7a-zA-Z]{11,16}; we generate 11 lowercase base32 characters.
BACKUP_ID_RE = re.compile(r"backup-[2-7a-zA-Z]{11,16}")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_ID_LEN = 11

BLOB_SUFFIX = ".backup"
META_SUFFIX = ".json"
LOCK_NAME = ".lock"
META_SCHEMA = 1


class BackupState(StrEnum):
    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    READY = "READY"
    PENDING_DELETION = "PENDING_DELETION"
    DELETED = "DELETED"


class BackupTrigger(StrEnum):
    ACTIVATION = "ACTIVATION"
    ADD_NODE = "ADD_NODE"
    REMOVE_NODE = "REMOVE_NODE"
    PERIODIC = "PERIODIC"
    ON_DEMAND = "ON_DEMAND"


class BackupStoreError(Exception):
    """Base class of the store's errors."""


class BackupNotFoundError(BackupStoreError, KeyError):
    """No backup with that id (or its blob is gone)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackupExistsError(BackupStoreError):
    """A backup with that id already exists."""


class BackupInvalidStateError(BackupStoreError):
    """The operation is not allowed in the backup's current state."""


class BackupStoreCorruptError(BackupStoreError):
    """A metadata file or blob on disk is damaged (not something the store writes)."""


class BackupStoreLockTimeout(BackupStoreError):
    """The store's lock could not be taken in time."""


def wall_clock_ms() -> int:
    """The wall clock in epoch milliseconds: the only place the store reads real time."""
    return time.time_ns() // 1_000_000


def new_backup_id() -> str:
    """A fresh CloudHSM-style backup id: ``backup-`` + 11 random characters of ``[2-7a-z]``."""
    return "backup-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))


def validate_backup_id(backup_id: str) -> str:
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.fullmatch(backup_id):
        raise ValueError(
            f"invalid backup id {backup_id!r}: expected 'backup-' followed by 11-16 of [2-7a-zA-Z]"
        )
    return backup_id


def validate_retention_days(days: int) -> int:
    """Check a backup retention period (CloudHSM BackupRetentionPolicy, Type DAYS)."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"backup retention must be a whole number of days, got {days!r}")
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"backup retention of {days} days is out of range: "
            f"it must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days"
        )
    return days


@dataclass(frozen=True, slots=True)
class BackupMeta:
    backup_id: str
    cluster_id: str
    state: BackupState = BackupState.CREATE_IN_PROGRESS
    create_timestamp_ms: int = 0
    delete_timestamp_ms: int = 0
    source_backup_id: str = ""
    source_cluster_id: str = ""
    user_count: int = 0
    key_count: int = 0
    trigger: BackupTrigger = BackupTrigger.ON_DEMAND
    never_expires: bool = False
    cluster_certificate_sha256: str = ""
    size_bytes: int = 0
    # Store-wide write order, assigned by the store under its lock: breaks ties between
    # backups created in the same millisecond so "newest" is always well defined.
    sequence: int = field(default=0)
    # A copy from another Region's store (CopyBackupToRegion): where it came from and when.
    source_region: str = ""
    copy_timestamp_ms: int = 0
    # The ids the blob was sealed under (its authenticated data) when they differ from this
    # backup's own: a copy keeps the original's sealed blob byte for byte.
    sealed_backup_id: str = ""
    sealed_cluster_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", BackupState(self.state))
        object.__setattr__(self, "trigger", BackupTrigger(self.trigger))

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"schema": META_SCHEMA, **asdict(self)}
        doc["state"] = str(self.state)
        doc["trigger"] = str(self.trigger)
        return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> BackupMeta:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("backup metadata is not a JSON object")
        schema = doc.get("schema", META_SCHEMA)
        if schema != META_SCHEMA:
            raise ValueError(f"unsupported backup metadata schema {schema!r}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def sort_key(self) -> tuple[int, int, str]:
        return (self.create_timestamp_ms, self.sequence, self.backup_id)

    @property
    def sealed_as(self) -> tuple[str, str]:
        """(backup id, cluster id) the blob's authenticated data names."""
        return (self.sealed_backup_id or self.backup_id,
                self.sealed_cluster_id if self.sealed_backup_id else self.cluster_id)


# One thread lock per store directory: flock already excludes other open file
# descriptions, this also keeps threads of one process from interleaving.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock_for(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


class BackupStore:
    """Backups in one directory. Safe for concurrent use by several processes and threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], int] = wall_clock_ms,
        lock_timeout_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._lock_timeout_s = lock_timeout_s
        self._thread_lock = _thread_lock_for(self.path)

    def __repr__(self) -> str:
        return f"BackupStore({str(self.path)!r})"

    # ------------------------------------------------------------------ helpers

    def _now(self, now_ms: int | None) -> int:
        return self._clock() if now_ms is None else int(now_ms)

    def _blob_path(self, backup_id: str) -> Path:
        return self.path / f"{backup_id}{BLOB_SUFFIX}"

    def _meta_path(self, backup_id: str) -> Path:
        return self.path / f"{backup_id}{META_SUFFIX}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        deadline = time.monotonic() + self._lock_timeout_s
        if not self._thread_lock.acquire(timeout=self._lock_timeout_s):
            raise BackupStoreLockTimeout(f"timed out waiting for the lock of backup store {self.path}")
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise
                        if time.monotonic() >= deadline:
                            raise BackupStoreLockTimeout(
                                f"timed out after {self._lock_timeout_s:.0f}s waiting for the lock of "
                                f"backup store {self.path} (another process holds it)"
                            ) from None
                        time.sleep(0.005)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            self._thread_lock.release()

    def _write_file(self, target: Path, data: bytes) -> None:
        """Atomically and durably replace ``target`` with ``data``."""
        write_private(target, data)

    def _put_meta(self, meta: BackupMeta) -> None:
        self._write_file(self._meta_path(meta.backup_id), meta.to_json())

    def _load_meta(self, backup_id: str) -> BackupMeta:
        path = self._meta_path(backup_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BackupNotFoundError(f"backup {backup_id} not found in {self.path}") from None
        try:
            meta = BackupMeta.from_json(data)
        except (ValueError, TypeError) as exc:
            raise BackupStoreCorruptError(f"metadata of backup {backup_id} is unreadable: {exc}") from None
        if meta.backup_id != backup_id:
            raise BackupStoreCorruptError(
                f"metadata file {path.name} names a different backup ({meta.backup_id})"
            )
        return meta

    def _all_meta(self) -> list[BackupMeta]:
        out: list[BackupMeta] = []
        for entry in os.scandir(self.path):
            name = entry.name
            if name.startswith(".") or not name.endswith(META_SUFFIX):
                continue
            backup_id = name[: -len(META_SUFFIX)]
            if not BACKUP_ID_RE.fullmatch(backup_id):
                continue
            try:
                out.append(self._load_meta(backup_id))
            except BackupNotFoundError:
                continue  # removed meanwhile
            except BackupStoreCorruptError as exc:
                log.warning("backup_store.skip_corrupt_metadata path=%s error=%s", entry.path, exc)
        return out

    # ------------------------------------------------------------------ API

    def new_backup_id(self) -> str:
        """A backup id not yet used in this store."""
        while True:
            backup_id = new_backup_id()
            if not self._meta_path(backup_id).exists() and not self._blob_path(backup_id).exists():
                return backup_id

    def write(self, meta: BackupMeta, blob: bytes, *, now_ms: int | None = None,
              state: BackupState = BackupState.READY) -> BackupMeta:
        """Store a new backup (blob, then metadata) and return its metadata, in ``state`` (READY;
        CREATE_IN_PROGRESS for a copy, which :meth:`finish_create` makes READY).

        ``size_bytes`` and ``sequence`` are set by the store; a zero ``create_timestamp_ms``
        is filled in from ``now_ms`` / the clock. Raises :class:`BackupExistsError` if the id is taken.
        """
        validate_backup_id(meta.backup_id)
        blob = bytes(blob)
        with self._locked():
            if self._meta_path(meta.backup_id).exists():
                raise BackupExistsError(f"backup {meta.backup_id} already exists")
            sequence = max((m.sequence for m in self._all_meta()), default=0) + 1
            created = meta.create_timestamp_ms or self._now(now_ms)
            stored = replace(
                meta,
                state=state,
                create_timestamp_ms=created,
                delete_timestamp_ms=0,
                size_bytes=len(blob),
                sequence=sequence,
            )
            self._write_file(self._blob_path(meta.backup_id), blob)
            self._put_meta(stored)
        return stored

    def list(self, cluster_id: str | None = None, include_deleted: bool = False) -> list[BackupMeta]:
        """Backups (optionally of one cluster), newest first; DELETED tombstones only on request."""
        metas = [
            m
            for m in self._all_meta()
            if (cluster_id is None or m.cluster_id == cluster_id)
            and (include_deleted or m.state != BackupState.DELETED)
        ]
        metas.sort(key=BackupMeta.sort_key, reverse=True)
        return metas

    def describe(self, backup_id: str) -> BackupMeta:
        validate_backup_id(backup_id)
        return self._load_meta(backup_id)

    def read_blob(self, backup_id: str) -> bytes:
        """The sealed blob of a backup that is not DELETED."""
        meta = self.describe(backup_id)
        if meta.state == BackupState.DELETED:
            raise BackupInvalidStateError(f"backup {backup_id} is DELETED; its contents are gone")
        if meta.state == BackupState.CREATE_IN_PROGRESS:
            raise BackupInvalidStateError(f"backup {backup_id} is still CREATE_IN_PROGRESS")
        try:
            blob = self._blob_path(backup_id).read_bytes()
        except FileNotFoundError:
            # Purged between our two reads, or the directory was tampered with.
            current = self.describe(backup_id)
            if current.state == BackupState.DELETED:
                raise BackupInvalidStateError(
                    f"backup {backup_id} is DELETED; its contents are gone"
                ) from None
            raise BackupStoreCorruptError(
                f"backup {backup_id} has metadata but its blob is missing"
            ) from None
        if len(blob) != meta.size_bytes:
            raise BackupStoreCorruptError(
                f"blob of backup {backup_id} has {len(blob)} bytes, its metadata says {meta.size_bytes}"
            )
        return blob

    def latest(self, cluster_id: str) -> BackupMeta | None:
        """The cluster's newest READY backup, or None."""
        for meta in self.list(cluster_id):
            if meta.state == BackupState.READY:
                return meta
        return None

    def delete(self, backup_id: str, now_ms: int | None = None) -> BackupMeta:
        """DeleteBackup: READY -> PENDING_DELETION, purged 7 days after ``now_ms``."""
        validate_backup_id(backup_id)
        now = self._now(now_ms)
        with self._locked():
            meta = self._load_meta(backup_id)
            if meta.state != BackupState.READY:
                raise BackupInvalidStateError(
                    f"backup {backup_id} is {meta.state}; only a READY backup can be deleted"
                )
            updated = self._mark_pending_deletion(meta, now)
        return updated

    def restore(self, backup_id: str, now_ms: int | None = None) -> BackupMeta:
        """RestoreBackup: PENDING_DELETION -> READY, while the 7-day window is still open."""
        validate_backup_id(backup_id)
        now = self._now(now_ms)
        with self._locked():
            meta = self._load_meta(backup_id)
            if meta.state != BackupState.PENDING_DELETION:
                raise BackupInvalidStateError(
                    f"backup {backup_id} is {meta.state}; only a PENDING_DELETION backup can be restored"
                )
            if now >= meta.delete_timestamp_ms:
                raise BackupInvalidStateError(
                    f"backup {backup_id} can no longer be restored: its deletion window ended at "
                    f"{meta.delete_timestamp_ms} ms (now {now} ms)"
                )
            updated = replace(meta, state=BackupState.READY, delete_timestamp_ms=0)
            self._put_meta(updated)
        return updated

    def set_never_expires(self, backup_id: str, never_expires: bool) -> BackupMeta:
        """ModifyBackupAttributes: exempt a backup from its cluster's retention (or not)."""
        validate_backup_id(backup_id)
        with self._locked():
            meta = self._load_meta(backup_id)
            if meta.state == BackupState.DELETED:
                raise BackupInvalidStateError(f"backup {backup_id} is DELETED; its attributes cannot change")
            updated = replace(meta, never_expires=bool(never_expires))
            self._put_meta(updated)
        return updated

    def copy_to(self, backup_id: str, destination: BackupStore, source_region: str,
                now_ms: int | None = None) -> BackupMeta:
        """CopyBackupToRegion: the same sealed blob, under a new id in ``destination`` (another
        Region's store). The copy belongs to no cluster (no retention applies to it) and records
        where it came from; it keeps the cluster certificate, so a cluster created from it shares
        the original's backup history. As on AWS it starts CREATE_IN_PROGRESS (it cannot be read,
        copied or deleted yet) until :meth:`finish_create`; its blob is whole from the start."""
        meta = self.describe(backup_id)
        if meta.state != BackupState.READY:
            raise BackupInvalidStateError(f"backup {backup_id} is {meta.state}; only a READY backup can be copied")
        blob = self.read_blob(backup_id)
        sealed_id, sealed_cluster = meta.sealed_as
        now = self._now(now_ms)
        copy = BackupMeta(
            backup_id=destination.new_backup_id(), cluster_id="", create_timestamp_ms=now,
            source_backup_id=backup_id, source_cluster_id=meta.cluster_id, user_count=meta.user_count,
            key_count=meta.key_count, trigger=meta.trigger,
            cluster_certificate_sha256=meta.cluster_certificate_sha256, source_region=source_region,
            copy_timestamp_ms=now, sealed_backup_id=sealed_id, sealed_cluster_id=sealed_cluster)
        return destination.write(copy, blob, now_ms=now, state=BackupState.CREATE_IN_PROGRESS)

    def finish_create(self, backup_id: str) -> BackupMeta:
        """CREATE_IN_PROGRESS -> READY; a backup in any other state is left as it is."""
        validate_backup_id(backup_id)
        with self._locked():
            meta = self._load_meta(backup_id)
            if meta.state != BackupState.CREATE_IN_PROGRESS:
                return meta
            updated = replace(meta, state=BackupState.READY)
            self._put_meta(updated)
        return updated

    def _mark_pending_deletion(self, meta: BackupMeta, now: int) -> BackupMeta:
        updated = replace(
            meta,
            state=BackupState.PENDING_DELETION,
            delete_timestamp_ms=now + PENDING_DELETION_DAYS * DAY_MS,
        )
        self._put_meta(updated)
        return updated

    def purge(
        self,
        now_ms: int | None = None,
        retention_days_by_cluster: dict[str, int] | None = None,
        default_retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> builtins.list[str]:
        """Apply the deletion window and retention; return the ids whose state changed, sorted.

        (a) PENDING_DELETION backups whose window has ended become DELETED tombstones (the
            metadata is rewritten first, then the blob removed, so a crash in between leaves
            a tombstone whose leftover blob ``cleanup_stale_files`` removes).
        (b) READY backups older than their cluster's retention become PENDING_DELETION,
            except ``never_expires`` ones and the cluster's newest READY backup.
        """
        retention = dict(retention_days_by_cluster or {})
        validate_retention_days(default_retention_days)
        for cluster_id, days in retention.items():
            try:
                validate_retention_days(days)
            except ValueError as exc:
                raise ValueError(f"cluster {cluster_id}: {exc}") from None
        now = self._now(now_ms)
        changed: builtins.list[str] = []
        with self._locked():
            metas = self._all_meta()
            # (a) end of the pending-deletion window.
            remaining: builtins.list[BackupMeta] = []
            for meta in metas:
                if meta.state == BackupState.PENDING_DELETION and meta.delete_timestamp_ms <= now:
                    self._put_meta(replace(meta, state=BackupState.DELETED))
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._blob_path(meta.backup_id))
                    changed.append(meta.backup_id)
                    log.info(
                        "backup_store.purged backup_id=%s cluster_id=%s", meta.backup_id, meta.cluster_id
                    )
                else:
                    remaining.append(meta)
            if changed:
                fsync_dir(self.path)
            # (b) retention, per cluster; backups without a cluster (copies) have none.
            by_cluster: dict[str, builtins.list[BackupMeta]] = {}
            for meta in remaining:
                if meta.state == BackupState.READY and meta.cluster_id:
                    by_cluster.setdefault(meta.cluster_id, []).append(meta)
            for cluster_id, ready in by_cluster.items():
                days = retention.get(cluster_id, default_retention_days)
                ready.sort(key=BackupMeta.sort_key, reverse=True)
                for meta in ready[1:]:  # never the newest READY backup
                    if meta.never_expires:
                        continue
                    if meta.create_timestamp_ms + days * DAY_MS <= now:
                        self._mark_pending_deletion(meta, now)
                        changed.append(meta.backup_id)
                        log.info(
                            "backup_store.expired backup_id=%s cluster_id=%s retention_days=%d",
                            meta.backup_id,
                            cluster_id,
                            days,
                        )
            self._cleanup_locked()
        return sorted(changed)

    def cleanup_stale_files(self) -> builtins.list[str]:
        """Remove leftovers of crashed writers; return the removed file names.

        Under the lock no write is in flight, so every temp file is stale, every blob
        without metadata is an interrupted write, and a blob beside a DELETED tombstone is
        an interrupted purge.
        """
        with self._locked():
            return self._cleanup_locked()

    def _cleanup_locked(self) -> builtins.list[str]:
        removed: builtins.list[str] = []
        for entry in os.scandir(self.path):
            name = entry.name
            stale = False
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                stale = True
            elif name.endswith(BLOB_SUFFIX) and not name.startswith("."):
                backup_id = name[: -len(BLOB_SUFFIX)]
                if BACKUP_ID_RE.fullmatch(backup_id):
                    try:
                        stale = self._load_meta(backup_id).state == BackupState.DELETED
                    except BackupNotFoundError:
                        stale = True
                    except BackupStoreCorruptError:
                        stale = False  # keep the data; an operator must look at it
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(name)
                log.info("backup_store.removed_stale_file name=%s", name)
        if removed:
            fsync_dir(self.path)
        return sorted(removed)
