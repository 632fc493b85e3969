"""Durable node state: one SQLite file in the node's data directory.

Every mutation is one transaction committed with ``synchronous=FULL`` in WAL
mode before the call that caused it is acknowledged, so ``kill -9`` at any
moment loses nothing that was acknowledged. Secret-bearing values are sealed
under the node storage key (see ``storage_sealing``); the storage key itself is only
stored wrapped under the deployment secret, which never lives in this
directory. The methods here are blocking: the node runs them on one worker
thread.
"""
from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from plumbing.files import fsync_dir

from . import records as rec
from .storage_sealing import SealError, open_sealed, seal, unwrap_storage_key, wrap_storage_key

FORMAT = "hsm-node/1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  kind TEXT NOT NULL, entity TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL,
  sealed BLOB, PRIMARY KEY (kind, entity));
CREATE TABLE IF NOT EXISTS oplog (
  origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL, kind TEXT NOT NULL,
  entity TEXT NOT NULL, sealed BLOB NOT NULL, PRIMARY KEY (origin, seq));
CREATE TABLE IF NOT EXISTS positions (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


class StorageError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class OplogEntry:
    origin: str
    seq: int
    hlc: int
    kind: str
    entity: str
    sealed: bytes  # the record sealed under the cluster domain key; b"" = tombstone


@dataclass
class RecordChange:
    kind: str
    entity: str
    version: rec.Version
    record: rec.Record | None  # None = tombstone


@dataclass
class StoredRecord:
    kind: str
    entity: str
    version: rec.Version
    record: rec.Record | None


class Storage:
    def __init__(self, data_dir: str | Path, master_key: bytes) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._lock_dir()
        path = self.dir / "node.db"
        fresh = not path.exists()
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if not fresh:
                ok = self.db.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise StorageError(f"data directory {self.dir} is corrupted ({ok}); restore the node from a backup")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"{path} is not a usable hsm-node database ({exc}); it is corrupted or not ours."
                " Move it away and restore the node from a backup"
            ) from exc
        fmt = self.get_meta("format")
        if fmt is None:
            if not fresh and self.db.execute("SELECT count(*) FROM records").fetchone()[0]:
                raise StorageError(f"{path} holds records but no format marker; refusing to touch it")
            self._create(master_key)
        elif fmt.decode() != FORMAT:
            raise StorageError(f"{path} has format {fmt.decode()!r}; this hsm-node reads {FORMAT!r}")
        node_id = self.get_meta("node_id")
        wrapped = self.get_meta("storage_key")
        if node_id is None or wrapped is None:
            raise StorageError(f"{path} is incomplete (no node id or storage key); restore the node from a backup")
        self.node_id = node_id.decode()
        try:
            self._key = unwrap_storage_key(master_key, self.node_id, wrapped)
        except SealError as exc:
            raise StorageError(f"cannot open {self.dir}: {exc}") from exc

    def _lock_dir(self) -> int:
        fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StorageError(f"data directory {self.dir} is in use by another hsm-node process") from exc
        return fd

    def _create(self, master_key: bytes) -> None:
        node_id = "node-" + uuid.uuid4().hex[:16]
        storage_key = os.urandom(32)
        with self.transaction():
            self._put_meta("format", FORMAT.encode())
            self._put_meta("node_id", node_id.encode())
            self._put_meta("storage_key", wrap_storage_key(master_key, node_id, storage_key))
        fsync_dir(self.dir)

    def close(self) -> None:
        self.db.close()
        os.close(self._lock_fd)

    # ------------------------------------------------------------ transactions

    def transaction(self) -> _Tx:
        return _Tx(self.db)

    # ------------------------------------------------------------ meta

    def get_meta(self, name: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put_meta(self, name: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))

    def get_secret(self, name: str) -> bytes | None:
        raw = self.get_meta("sealed:" + name)
        if raw is None:
            return None
        try:
            return open_sealed(self._key, raw, b"meta\x00" + name.encode())
        except SealError as exc:
            raise StorageError(f"secret {name!r} in {self.dir} failed authentication ({exc}): the data was altered or"
                               " corrupted; restore the node from a backup") from None

    def put_meta(self, plain: dict[str, bytes] | None = None, secret: dict[str, bytes] | None = None) -> None:
        """Write several meta values in one durable transaction."""
        with self.transaction():
            self._stage_meta(plain, secret)

    def _stage_meta(self, plain: dict[str, bytes] | None, secret: dict[str, bytes] | None) -> None:
        for name, value in (plain or {}).items():
            self._put_meta(name, value)
        for name, value in (secret or {}).items():
            self._put_meta("sealed:" + name, seal(self._key, value, b"meta\x00" + name.encode()))

    # ------------------------------------------------------------ records

    def load_records(self) -> list[StoredRecord]:
        out = []
        for kind, entity, hlc, origin, sealed in self.db.execute("SELECT kind, entity, hlc, origin, sealed FROM records"):
            version = (hlc, origin)
            record = None
            if sealed is not None:
                try:
                    raw = open_sealed(self._key, bytes(sealed), rec.record_aad(kind, entity, version))
                except SealError as exc:
                    raise StorageError(f"record {kind}/{entity} in {self.dir} failed authentication ({exc}): the data"
                                       " was altered or corrupted; restore the node from a backup") from None
                record = rec.decode(kind, raw)
            out.append(StoredRecord(kind, entity, version, record))
        return out

    def _stage_record(self, change: RecordChange) -> None:
        sealed = None
        if change.record is not None:
            aad = rec.record_aad(change.kind, change.entity, change.version)
            sealed = seal(self._key, rec.encode(change.record), aad)
        self.db.execute(
            "INSERT OR REPLACE INTO records(kind, entity, hlc, origin, sealed) VALUES (?, ?, ?, ?, ?)",
            (change.kind, change.entity, change.version[0], change.version[1], sealed),
        )

    def commit(
        self, changes: list[RecordChange], entries: list[OplogEntry] = (),  # type: ignore[assignment]
        plain_meta: dict[str, bytes] | None = None, secret_meta: dict[str, bytes] | None = None,
        positions: dict[str, int] | None = None,
    ) -> None:
        """Apply record changes, append oplog entries and advance positions, atomically."""
        with self.transaction():
            for origin, seq in (positions or {}).items():
                self.db.execute(
                    "INSERT INTO positions(origin, seq) VALUES (?, ?)"
                    " ON CONFLICT(origin) DO UPDATE SET seq=max(seq, excluded.seq)", (origin, seq))
            for change in changes:
                self._stage_record(change)
            for e in entries:
                # A plain INSERT: an (origin, seq) is written once; reusing one must fail
                # loudly, never drop the later entry (it would never replicate).
                self.db.execute(
                    "INSERT INTO oplog(origin, seq, hlc, kind, entity, sealed) VALUES (?, ?, ?, ?, ?, ?)",
                    (e.origin, e.seq, e.hlc, e.kind, e.entity, e.sealed),
                )
                self.db.execute(
                    "INSERT INTO positions(origin, seq) VALUES (?, ?)"
                    " ON CONFLICT(origin) DO UPDATE SET seq=max(seq, excluded.seq)",
                    (e.origin, e.seq),
                )
            self._stage_meta(plain_meta, secret_meta)

    def replace_all(self, changes: list[RecordChange], positions: dict[str, int],
                    plain_meta: dict[str, bytes], secret_meta: dict[str, bytes]) -> None:
        """Seed this node from a backup: its records and positions replace ours."""
        with self.transaction():
            self.db.execute("DELETE FROM records")
            self.db.execute("DELETE FROM oplog")
            self.db.execute("DELETE FROM positions")
            for change in changes:
                self._stage_record(change)
            for origin, seq in positions.items():
                self.db.execute("INSERT INTO positions(origin, seq) VALUES (?, ?)", (origin, seq))
            self._stage_meta(plain_meta, secret_meta)

    # ------------------------------------------------------------ oplog

    def positions(self) -> dict[str, int]:
        return {o: s for o, s in self.db.execute("SELECT origin, seq FROM positions")}

    def read_oplog(self, origin: str, after_seq: int, limit: int) -> list[OplogEntry]:
        rows = self.db.execute(
            "SELECT origin, seq, hlc, kind, entity, sealed FROM oplog WHERE origin=? AND seq>? ORDER BY seq LIMIT ?",
            (origin, after_seq, limit),
        )
        return [OplogEntry(o, s, h, k, e, bytes(b)) for o, s, h, k, e, b in rows]

    def max_hlc(self) -> int:
        row = self.db.execute("SELECT max(hlc) FROM records").fetchone()
        return int(row[0] or 0)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # a COMMIT that failed (disk full) may leave the transaction open
                raise
        self._rollback()

    def _rollback(self) -> None:
        # SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR): then there is
        # nothing to do, and a ROLLBACK would fail and hide the original error.
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def is_storage_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", or ENOSPC/EDQUOT from the file system."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

