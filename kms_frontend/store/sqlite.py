"""SQLite implementation of the metadata repository: one file, WAL, synchronous=FULL.

Every public method runs one ``BEGIN IMMEDIATE`` transaction and returns after COMMIT, which
with ``synchronous=FULL`` has fsynced the WAL: an acknowledged write survives a crash.
The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files
and a newer file is refused (:class:`SchemaVersionError`). The audit log is append-only
(triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from kms_frontend.store.repository import (
    AliasRecord,
    AlreadyExistsError,
    AuditEvent,
    CustomKeyStoreRecord,
    DuplicateAliasError,
    DuplicateStoreNameError,
    GrantRecord,
    InvalidMarkerError,
    KeyRecord,
    NotFoundError,
    Page,
    PendingRotationError,
    SchemaVersionError,
    StaleRecordError,
    StoreHasKeysError,
)
from plumbing.files import fsync_dir

from .changes import ChangeCounter

_V1 = [
    """CREATE TABLE custom_key_stores (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        cluster_id TEXT NOT NULL,
        trust_anchor_pem TEXT NOT NULL,
        store_type TEXT NOT NULL,
        connection_state TEXT NOT NULL,
        connection_error_code TEXT,
        creation_date INTEGER NOT NULL,
        sealed_password BLOB NOT NULL,
        pending_sealed_password BLOB,
        cluster_cert_fingerprint TEXT,
        version INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE keys (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        arn TEXT NOT NULL UNIQUE,
        store_id TEXT NOT NULL REFERENCES custom_key_stores(id) ON DELETE RESTRICT,
        cluster_id TEXT NOT NULL,
        description TEXT NOT NULL,
        key_state TEXT NOT NULL,
        desired_state TEXT,
        creation_date INTEGER NOT NULL,
        deletion_date INTEGER,
        backing_key_handle INTEGER,
        policy TEXT NOT NULL,
        tags_json TEXT NOT NULL,
        key_usage TEXT NOT NULL,
        key_spec TEXT NOT NULL,
        origin TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX keys_by_store ON keys(store_id)",
    "CREATE INDEX keys_by_deletion ON keys(deletion_date) WHERE key_state = 'PendingDeletion'",
    """CREATE TABLE aliases (
        name TEXT PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
        creation_date INTEGER NOT NULL,
        last_updated_date INTEGER NOT NULL
    )""",
    "CREATE INDEX aliases_by_key ON aliases(key_id)",
    """CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        event TEXT NOT NULL,
        key_id TEXT,
        store_id TEXT,
        details_json TEXT NOT NULL
    )""",
    "CREATE INDEX audit_by_key ON audit_log(key_id)",
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]

# Authorization (issue 13): grants, durable like every record and loaded into memory at start, and
# the principal of every audited operation.
_V2 = [
    """CREATE TABLE grants (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        grantee TEXT NOT NULL,
        retiring TEXT,
        operations_json TEXT NOT NULL,
        constraint_type TEXT,
        constraint_json TEXT NOT NULL,
        issuing_account TEXT NOT NULL,
        creation_date INTEGER NOT NULL
    )""",
    "CREATE INDEX grants_by_key ON grants(key_id)",
    "ALTER TABLE audit_log ADD COLUMN principal TEXT",
    "CREATE INDEX audit_by_principal ON audit_log(principal)",
]

# Several worker processes (issue 16): each write that changes what a worker holds in memory logs
# (kind, id) here in its own transaction, so the other workers reload only what changed
# (kms_frontend/store/changes.py).
_V3 = [
    """CREATE TABLE change_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        ident TEXT NOT NULL
    )""",
]

T = TypeVar("T")

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3]
"""MIGRATIONS[n] takes a database from user_version n to n+1."""
SCHEMA_VERSION = len(MIGRATIONS)

_STORE_COLS = (
    "id, name, cluster_id, trust_anchor_pem, store_type, connection_state, connection_error_code, "
    "creation_date, sealed_password, pending_sealed_password, cluster_cert_fingerprint, version"
)
_KEY_COLS = (
    "id, arn, store_id, cluster_id, description, key_state, desired_state, creation_date, deletion_date, "
    "backing_key_handle, policy, tags_json, key_usage, key_spec, origin, version"
)
_ALIAS_COLS = "name, key_id, creation_date, last_updated_date"
_GRANT_COLS = ("id, key_id, name, grantee, retiring, operations_json, constraint_type, constraint_json, "
               "issuing_account, creation_date")


def _to_i64(handle: int | None) -> int | None:
    """uint64 key handle -> signed 64-bit SQLite integer (two's complement)."""
    if handle is None:
        return None
    return handle if handle < 2**63 else handle - 2**64


def _from_i64(value: int | None) -> int | None:
    if value is None:
        return None
    return value if value >= 0 else value + 2**64


def _store(row: Sequence[Any]) -> CustomKeyStoreRecord:
    return CustomKeyStoreRecord(
        custom_key_store_id=row[0],
        custom_key_store_name=row[1],
        cloud_hsm_cluster_id=row[2],
        trust_anchor_certificate=row[3],
        custom_key_store_type=row[4],
        connection_state=row[5],
        connection_error_code=row[6],
        creation_date=row[7],
        sealed_password=bytes(row[8]),
        pending_sealed_password=None if row[9] is None else bytes(row[9]),
        cluster_certificate_fingerprint=row[10],
        version=row[11],
    )


def _shared(value: str | None) -> str | None:
    """One string object for values many keys repeat (store and cluster ids, states, specs, and
    above all the key policy, usually the same default): SQLite returns a new copy per row, which
    at 100k keys cost the frontend's in-memory catalogue ~60 MB."""
    return None if value is None else sys.intern(value)


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        key_id=row[0],
        arn=row[1],
        custom_key_store_id=_shared(row[2]),  # type: ignore[arg-type]
        cloud_hsm_cluster_id=_shared(row[3]),  # type: ignore[arg-type]
        description=row[4],
        key_state=_shared(row[5]),  # type: ignore[arg-type]
        desired_state=_shared(row[6]),
        creation_date=row[7],
        deletion_date=row[8],
        backing_key_handle=_from_i64(row[9]),
        policy=_shared(row[10]),  # type: ignore[arg-type]
        tags=json.loads(row[11]),
        key_usage=_shared(row[12]),  # type: ignore[arg-type]
        key_spec=_shared(row[13]),  # type: ignore[arg-type]
        origin=_shared(row[14]),  # type: ignore[arg-type]
        version=row[15],
    )


def _alias(row: Sequence[Any]) -> AliasRecord:
    return AliasRecord(alias_name=row[0], key_id=row[1], creation_date=row[2], last_updated_date=row[3])


def _grant(row: Sequence[Any]) -> GrantRecord:
    return GrantRecord(grant_id=row[0], key_id=row[1], name=row[2], grantee_principal=row[3],
                       retiring_principal=row[4], operations=tuple(json.loads(row[5])), constraint_type=row[6],
                       constraint_context=json.loads(row[7]), issuing_account=row[8], creation_date=row[9])


def _marker(kind: str, position: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}\n{position}".encode()).decode().rstrip("=")


def _position(kind: str, marker: str | None) -> str | None:
    if marker is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidMarkerError(f"invalid marker {marker!r}") from exc
    found, _, position = decoded.partition("\n")
    if found != kind or not position:
        raise InvalidMarkerError(f"marker {marker!r} does not belong to this listing")
    return position


def _seq_position(kind: str, marker: str | None) -> int:
    position = _position(kind, marker)
    if position is None:
        return 0
    if not position.isdigit():
        raise InvalidMarkerError(f"invalid marker {marker!r}")
    return int(position)


class SqliteRepository:
    """The metadata repository in one SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000,
                 changes: ChangeCounter | None = None) -> None:
        self.path = str(path)
        self.changes = changes  # raised after each commit that logged a change (several workers)
        self._logged = 0  # the newest change_log row of the transaction in progress
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self.path != ":memory:" and mode.lower() != "wal":
                raise RuntimeError(f"could not switch {self.path} to WAL (journal_mode={mode})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            if self.path != ":memory:":
                fsync_dir(Path(self.path).resolve().parent)
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------ plumbing

    def _migrate(self) -> None:
        with self._tx() as db:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} has schema version {current}; this frontend knows up to {SCHEMA_VERSION}. "
                    "Run a newer frontend, or restore a backup of the metadata database."
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a write transaction takes the write lock up front (BEGIN IMMEDIATE)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            self._logged = 0
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if self._logged and self.changes is not None:
                self.changes.advance(self._logged)

    def _changed(self, db: sqlite3.Connection, kind: str, ident: str) -> None:
        """Log a change other workers must see (in the caller's transaction): ``store``, ``store_keys``
        (every key of a store), ``key``, ``alias``, ``grants`` (of the key ``ident``)."""
        if self.changes is None:
            return  # one process: nobody to tell (the log stays empty)
        cursor = db.execute("INSERT INTO change_log (kind, ident) VALUES (?, ?)", (kind, ident))
        self._logged = int(cursor.lastrowid or 0)

    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[tuple[int, str, str]], bool]:
        """The changes after ``seq``, oldest first, and whether some are missing (pruned, or more
        than ``limit``: the caller then reloads everything)."""
        with self._tx(write=False) as db:
            rows = db.execute("SELECT seq, kind, ident FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?",
                              (seq, limit + 1)).fetchall()
            oldest = db.execute("SELECT MIN(seq) FROM change_log").fetchone()[0]
        gap = len(rows) > limit or (seq > 0 and oldest is not None and oldest > seq + 1)
        return [(int(r[0]), r[1], r[2]) for r in rows[:limit]], gap

    def last_change(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM change_log").fetchone()[0])

    def prune_changes(self, keep: int = 10_000) -> int:
        """Drop all but the newest ``keep`` changes (a worker further behind reloads everything)."""
        with self._tx() as db:
            return db.execute("DELETE FROM change_log WHERE seq <= (SELECT MAX(seq) FROM change_log) - ?",
                              (keep,)).rowcount

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ custom key stores

    def create_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        r = replace(record, version=0)
        try:
            with self._tx() as db:
                db.execute(
                    f"INSERT INTO custom_key_stores ({_STORE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        r.custom_key_store_id,
                        r.custom_key_store_name,
                        r.cloud_hsm_cluster_id,
                        r.trust_anchor_certificate,
                        r.custom_key_store_type,
                        r.connection_state,
                        r.connection_error_code,
                        r.creation_date,
                        r.sealed_password,
                        r.pending_sealed_password,
                        r.cluster_certificate_fingerprint,
                        r.version,
                    ),
                )
                self._changed(db, "store", r.custom_key_store_id)
        except sqlite3.IntegrityError as exc:
            if "custom_key_stores.name" in str(exc):
                raise DuplicateStoreNameError(r.custom_key_store_name) from exc
            if "custom_key_stores.id" in str(exc):
                raise AlreadyExistsError("custom key store id", r.custom_key_store_id) from exc
            raise
        return r

    def _get_store(self, db: sqlite3.Connection, custom_key_store_id: str) -> CustomKeyStoreRecord:
        row = db.execute(
            f"SELECT {_STORE_COLS} FROM custom_key_stores WHERE id = ?", (custom_key_store_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError("custom key store", custom_key_store_id)
        return _store(row)

    def get_custom_key_store(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        with self._tx(write=False) as db:
            return self._get_store(db, custom_key_store_id)

    def find_custom_key_store_by_name(self, name: str) -> CustomKeyStoreRecord | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {_STORE_COLS} FROM custom_key_stores WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else _store(row)

    def list_custom_key_stores(
        self, *, limit: int = 1000, marker: str | None = None
    ) -> Page[CustomKeyStoreRecord]:
        after = _seq_position("stores", marker)
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT {_STORE_COLS}, seq FROM custom_key_stores WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        return _page(rows, limit, _store, lambda row: _marker("stores", str(row[-1])))

    def count_custom_key_stores(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM custom_key_stores").fetchone()[0])

    def update_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        r = record
        try:
            with self._tx() as db:
                current = self._get_store(db, r.custom_key_store_id)
                if current.version != r.version:
                    raise StaleRecordError(
                        f"custom key store {r.custom_key_store_id} changed (version {current.version}, "
                        f"caller had {r.version})"
                    )
                db.execute(
                    "UPDATE custom_key_stores SET name = ?, cluster_id = ?, trust_anchor_pem = ?, "
                    "connection_state = ?, connection_error_code = ?, sealed_password = ?, "
                    "pending_sealed_password = ?, cluster_cert_fingerprint = ?, version = version + 1 "
                    "WHERE id = ?",
                    (
                        r.custom_key_store_name,
                        r.cloud_hsm_cluster_id,
                        r.trust_anchor_certificate,
                        r.connection_state,
                        r.connection_error_code,
                        r.sealed_password,
                        r.pending_sealed_password,
                        r.cluster_certificate_fingerprint,
                        r.custom_key_store_id,
                    ),
                )
                if current.cloud_hsm_cluster_id != r.cloud_hsm_cluster_id:
                    db.execute(
                        "UPDATE keys SET cluster_id = ?, version = version + 1 WHERE store_id = ?",
                        (r.cloud_hsm_cluster_id, r.custom_key_store_id),
                    )
                    self._changed(db, "store_keys", r.custom_key_store_id)
                self._changed(db, "store", r.custom_key_store_id)
                return self._get_store(db, r.custom_key_store_id)
        except sqlite3.IntegrityError as exc:
            if "custom_key_stores.name" in str(exc):
                raise DuplicateStoreNameError(r.custom_key_store_name) from exc
            raise

    def delete_custom_key_store(self, custom_key_store_id: str) -> None:
        with self._tx() as db:
            self._get_store(db, custom_key_store_id)
            count = db.execute(
                "SELECT COUNT(*) FROM keys WHERE store_id = ?", (custom_key_store_id,)
            ).fetchone()[0]
            if count:
                raise StoreHasKeysError(custom_key_store_id, int(count))
            db.execute("DELETE FROM custom_key_stores WHERE id = ?", (custom_key_store_id,))
            self._changed(db, "store", custom_key_store_id)

    def begin_password_rotation(
        self, custom_key_store_id: str, pending_sealed: bytes
    ) -> CustomKeyStoreRecord:
        with self._tx() as db:
            if self._get_store(db, custom_key_store_id).pending_sealed_password is not None:
                raise PendingRotationError(
                    f"custom key store {custom_key_store_id} already has a pending kmsuser password; "
                    "commit or abort it first"
                )
            db.execute(
                "UPDATE custom_key_stores SET pending_sealed_password = ?, version = version + 1 "
                "WHERE id = ?",
                (pending_sealed, custom_key_store_id),
            )
            self._changed(db, "store", custom_key_store_id)
            return self._get_store(db, custom_key_store_id)

    def commit_password_rotation(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        with self._tx() as db:
            if self._get_store(db, custom_key_store_id).pending_sealed_password is None:
                raise PendingRotationError(f"custom key store {custom_key_store_id} has no pending password")
            db.execute(
                "UPDATE custom_key_stores SET sealed_password = pending_sealed_password, "
                "pending_sealed_password = NULL, version = version + 1 WHERE id = ?",
                (custom_key_store_id,),
            )
            self._changed(db, "store", custom_key_store_id)
            return self._get_store(db, custom_key_store_id)

    def abort_password_rotation(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        with self._tx() as db:
            if self._get_store(db, custom_key_store_id).pending_sealed_password is not None:
                db.execute(
                    "UPDATE custom_key_stores SET pending_sealed_password = NULL, version = version + 1 "
                    "WHERE id = ?",
                    (custom_key_store_id,),
                )
                self._changed(db, "store", custom_key_store_id)
            return self._get_store(db, custom_key_store_id)

    # ------------------------------------------------------------ keys

    def create_key(self, record: KeyRecord) -> KeyRecord:
        r = replace(record, version=0)
        try:
            with self._tx() as db:
                self._get_store(db, r.custom_key_store_id)
                db.execute(
                    f"INSERT INTO keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        r.key_id,
                        r.arn,
                        r.custom_key_store_id,
                        r.cloud_hsm_cluster_id,
                        r.description,
                        r.key_state,
                        r.desired_state,
                        r.creation_date,
                        r.deletion_date,
                        _to_i64(r.backing_key_handle),
                        r.policy,
                        json.dumps(r.tags),
                        r.key_usage,
                        r.key_spec,
                        r.origin,
                        r.version,
                    ),
                )
                self._changed(db, "key", r.key_id)
        except sqlite3.IntegrityError as exc:
            if "keys.id" in str(exc):
                raise AlreadyExistsError("key id", r.key_id) from exc
            if "keys.arn" in str(exc):
                raise AlreadyExistsError("key ARN", r.arn) from exc
            raise
        return r

    def _get_key(self, db: sqlite3.Connection, key_id: str) -> KeyRecord:
        row = db.execute(f"SELECT {_KEY_COLS} FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFoundError("key", key_id)
        return _key(row)

    def get_key(self, key_id: str) -> KeyRecord:
        with self._tx(write=False) as db:
            return self._get_key(db, key_id)

    def list_keys(
        self, *, custom_key_store_id: str | None = None, limit: int = 1000, marker: str | None = None
    ) -> Page[KeyRecord]:
        after = _seq_position("keys", marker)
        where = "seq > ?"
        args: list[object] = [after]
        if custom_key_store_id is not None:
            where += " AND store_id = ?"
            args.append(custom_key_store_id)
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT {_KEY_COLS}, seq FROM keys WHERE {where} ORDER BY seq LIMIT ?", (*args, limit + 1)
            ).fetchall()
        return _page(rows, limit, _key, lambda row: _marker("keys", str(row[-1])))

    def count_keys(self, custom_key_store_id: str) -> int:
        with self._tx(write=False) as db:
            return int(
                db.execute("SELECT COUNT(*) FROM keys WHERE store_id = ?", (custom_key_store_id,)).fetchone()[
                    0
                ]
            )

    def keys_due_for_deletion(self, now: int) -> list[KeyRecord]:
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT {_KEY_COLS} FROM keys WHERE key_state = 'PendingDeletion' AND deletion_date <= ? "
                "ORDER BY deletion_date, seq",
                (now,),
            ).fetchall()
        return [_key(row) for row in rows]

    def update_key(self, record: KeyRecord) -> KeyRecord:
        r = record
        with self._tx() as db:
            current = self._get_key(db, r.key_id)
            if current.version != r.version:
                raise StaleRecordError(
                    f"key {r.key_id} changed (version {current.version}, caller had {r.version})"
                )
            db.execute(
                "UPDATE keys SET cluster_id = ?, description = ?, key_state = ?, desired_state = ?, "
                "deletion_date = ?, backing_key_handle = ?, policy = ?, tags_json = ?, version = version + 1 "
                "WHERE id = ?",
                (
                    r.cloud_hsm_cluster_id,
                    r.description,
                    r.key_state,
                    r.desired_state,
                    r.deletion_date,
                    _to_i64(r.backing_key_handle),
                    r.policy,
                    json.dumps(r.tags),
                    r.key_id,
                ),
            )
            self._changed(db, "key", r.key_id)
            return self._get_key(db, r.key_id)

    def delete_key(self, key_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM keys WHERE id = ?", (key_id,)).rowcount == 0:
                raise NotFoundError("key", key_id)
            self._changed(db, "key", key_id)  # its aliases and grants went with it

    def mark_store_keys_unavailable(self, custom_key_store_id: str) -> int:
        with self._tx() as db:
            self._changed(db, "store_keys", custom_key_store_id)
            return db.execute(
                "UPDATE keys SET desired_state = key_state, key_state = 'Unavailable', version = version + 1 "
                "WHERE store_id = ? AND key_state IN ('Enabled', 'Disabled')",
                (custom_key_store_id,),
            ).rowcount

    def restore_store_keys(self, custom_key_store_id: str) -> int:
        with self._tx() as db:
            self._changed(db, "store_keys", custom_key_store_id)
            return db.execute(
                "UPDATE keys SET key_state = COALESCE(desired_state, 'Enabled'), desired_state = NULL, "
                "version = version + 1 WHERE store_id = ? AND key_state = 'Unavailable'",
                (custom_key_store_id,),
            ).rowcount

    # ------------------------------------------------------------ aliases

    def create_alias(self, record: AliasRecord) -> AliasRecord:
        r = record
        try:
            with self._tx() as db:
                self._get_key(db, r.key_id)
                db.execute(
                    f"INSERT INTO aliases ({_ALIAS_COLS}) VALUES (?,?,?,?)",
                    (r.alias_name, r.key_id, r.creation_date, r.last_updated_date),
                )
                self._changed(db, "alias", r.alias_name)
        except sqlite3.IntegrityError as exc:
            if "aliases.name" in str(exc):
                raise DuplicateAliasError(r.alias_name) from exc
            raise
        return r

    def _get_alias(self, db: sqlite3.Connection, alias_name: str) -> AliasRecord:
        row = db.execute(f"SELECT {_ALIAS_COLS} FROM aliases WHERE name = ?", (alias_name,)).fetchone()
        if row is None:
            raise NotFoundError("alias", alias_name)
        return _alias(row)

    def get_alias(self, alias_name: str) -> AliasRecord:
        with self._tx(write=False) as db:
            return self._get_alias(db, alias_name)

    def list_aliases(
        self, *, key_id: str | None = None, limit: int = 100, marker: str | None = None
    ) -> Page[AliasRecord]:
        after = _position("aliases", marker) or ""
        where, args = "name > ?", [after]
        if key_id is not None:
            where += " AND key_id = ?"
            args.append(key_id)
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT {_ALIAS_COLS} FROM aliases WHERE {where} ORDER BY name LIMIT ?", (*args, limit + 1)
            ).fetchall()
        return _page(rows, limit, _alias, lambda row: _marker("aliases", row[0]))

    def count_aliases(self, key_id: str) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM aliases WHERE key_id = ?", (key_id,)).fetchone()[0])

    def update_alias(self, alias_name: str, key_id: str, last_updated_date: int) -> AliasRecord:
        with self._tx() as db:
            self._get_alias(db, alias_name)
            self._get_key(db, key_id)
            db.execute(
                "UPDATE aliases SET key_id = ?, last_updated_date = ? WHERE name = ?",
                (key_id, last_updated_date, alias_name),
            )
            self._changed(db, "alias", alias_name)
            return self._get_alias(db, alias_name)

    def delete_alias(self, alias_name: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM aliases WHERE name = ?", (alias_name,)).rowcount == 0:
                raise NotFoundError("alias", alias_name)
            self._changed(db, "alias", alias_name)

    # ------------------------------------------------------------ grants

    def create_grant(self, record: GrantRecord) -> GrantRecord:
        r = record
        try:
            with self._tx() as db:
                self._get_key(db, r.key_id)
                db.execute(
                    f"INSERT INTO grants ({_GRANT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (r.grant_id, r.key_id, r.name, r.grantee_principal, r.retiring_principal,
                     json.dumps(list(r.operations)), r.constraint_type, json.dumps(r.constraint_context),
                     r.issuing_account, r.creation_date),
                )
                self._changed(db, "grants", r.key_id)
        except sqlite3.IntegrityError as exc:
            if "grants.id" in str(exc):
                raise AlreadyExistsError("grant id", r.grant_id) from exc
            raise
        return r

    def list_grants(self, *, key_id: str | None = None) -> list[GrantRecord]:
        where, args = ("WHERE key_id = ?", (key_id,)) if key_id is not None else ("", ())
        with self._tx(write=False) as db:
            rows = db.execute(f"SELECT {_GRANT_COLS} FROM grants {where} ORDER BY seq", args).fetchall()
        return [_grant(row) for row in rows]

    def delete_grant(self, grant_id: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT key_id FROM grants WHERE id = ?", (grant_id,)).fetchone()
            if row is None or db.execute("DELETE FROM grants WHERE id = ?", (grant_id,)).rowcount == 0:
                raise NotFoundError("grant", grant_id)
            self._changed(db, "grants", row[0])

    # ------------------------------------------------------------ audit log

    @staticmethod
    def _audit_row(event: AuditEvent) -> tuple[Any, ...]:
        return (event.timestamp, event.event, event.key_id, event.custom_key_store_id,
                json.dumps(event.details, sort_keys=True), event.principal)

    def append_audit_event(self, event: AuditEvent) -> AuditEvent:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO audit_log (ts, event, key_id, store_id, details_json, principal) VALUES (?,?,?,?,?,?)",
                self._audit_row(event),
            )
        return replace(event, event_id=cursor.lastrowid)

    def append_audit_events(self, events: list[AuditEvent]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO audit_log (ts, event, key_id, store_id, details_json, principal) VALUES (?,?,?,?,?,?)",
                [self._audit_row(e) for e in events],
            )

    def list_audit_events(
        self, *, after_id: int = 0, limit: int = 100, event: str | None = None, key_id: str | None = None,
        principal: str | None = None,
    ) -> list[AuditEvent]:
        where = "id > ?"
        args: list[object] = [after_id]
        for column, value in (("event", event), ("key_id", key_id), ("principal", principal)):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT id, ts, event, key_id, store_id, details_json, principal FROM audit_log WHERE {where} "
                "ORDER BY id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [
            AuditEvent(
                event_id=row[0],
                timestamp=row[1],
                event=row[2],
                key_id=row[3],
                custom_key_store_id=row[4],
                details=json.loads(row[5]),
                principal=row[6],
            )
            for row in rows
        ]


def _page(
    rows: list[Any], limit: int, convert: Callable[[Any], T], marker_of: Callable[[Any], str]
) -> Page[T]:
    """``rows`` were fetched with LIMIT limit+1: one extra row means there is a next page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(rows) > limit:
        rows = rows[:limit]
        return Page([convert(row) for row in rows], marker_of(rows[-1]))
    return Page([convert(row) for row in rows])

