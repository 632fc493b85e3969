"""Durable node state: one SQLite file in the node's data directory.

Every mutation is one transaction committed with ``synchronous=FULL`` in WAL
mode before the call that caused it is acknowledged, so ``kill -9`` at any
moment loses nothing that was acknowledged. Secret-bearing values are sealed
under the node storage key (see ``storage_sealing``); the storage key itself is only
stored wrapped under the deployment secret, which never lives in this
directory. Every row, and the set of rows, is authenticated (``storage_integrity``):
at start the node checks them all and refuses a directory that was altered or
corrupted, with one message that says to restore the node from a backup. The
methods here are blocking: the node runs them on one worker thread.
"""
from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plumbing.files import fsync_dir

from . import records as rec
from . import storage_integrity as integrity
from .storage_integrity import RowAuthenticator, Value
from .storage_sealing import SealError, open_sealed, seal, unwrap_storage_key, wrap_storage_key

FORMAT = "hsm-node/2"
FORMAT_V1 = "hsm-node/1"  # before rows were authenticated: upgraded in place at start
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS records (
  kind TEXT NOT NULL, entity TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL,
  sealed BLOB, mac BLOB, PRIMARY KEY (kind, entity));
CREATE TABLE IF NOT EXISTS oplog (
  origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL, kind TEXT NOT NULL,
  entity TEXT NOT NULL, sealed BLOB NOT NULL, mac BLOB, PRIMARY KEY (origin, seq));
CREATE TABLE IF NOT EXISTS positions (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS integrity (id INTEGER PRIMARY KEY CHECK (id = 1), digest BLOB NOT NULL);
"""
RESTORE = "restore the node from a backup"
# What reading damaged bytes raises: SQLite's own errors, and text that is no longer UTF-8.
DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)


class StorageError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


class StorageCorrupted(StorageError):
    """What the node keeps was altered or damaged (found at start or by a read)."""


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
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = self._lock_dir()
        self.db: sqlite3.Connection | None = None
        try:
            self._open(master_key)
        except BaseException as exc:
            self.close()
            if isinstance(exc, DAMAGE):
                raise self.corrupted(exc) from None
            raise

    def corrupted(self, detail: object) -> StorageCorrupted:
        if isinstance(detail, OSError):
            detail = detail.strerror or detail
        return StorageCorrupted(f"data directory {self.dir} is corrupted or was altered ({detail}); {RESTORE}")

    def _open(self, master_key: bytes) -> None:
        path = self.dir / "node.db"
        fresh = not path.exists() or path.stat().st_size == 0
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if not fresh:
                # integrity_check, not quick_check: it also proves that the indexes the reads go
                # through agree with the tables the start-up check reads.
                problems = [row[0] for row in self.db.execute("PRAGMA integrity_check(20)")]
                if problems != ["ok"]:
                    raise self.corrupted("; ".join(problems)[:500])
                tables = self._tables()
                if not tables <= set(integrity.TABLES) | {"integrity", "login_failures"}:
                    raise StorageError(f"{path} is not an hsm-node database; it is not ours, or it is corrupted:"
                                       f" move it away and {RESTORE}")
                # a first start that died before its first transaction: nothing was ever written
                fresh = all(self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0  # noqa: S608
                            for t in tables)
        except DAMAGE as exc:
            raise StorageError(f"{path} is not a usable hsm-node database ({exc}); it is corrupted or not ours."
                               f" Move it away and {RESTORE}") from None
        if fresh:
            self.db.executescript(SCHEMA)
            self._create(master_key)
        fmt = self._raw_meta("format")
        if fmt not in (FORMAT.encode(), FORMAT_V1.encode()):
            shown = "none" if fmt is None else repr(fmt.decode(errors="replace"))
            raise StorageError(f"{path} has format {shown}; this hsm-node reads {FORMAT!r}: it was written by another"
                               f" program or version, or it is corrupted; {RESTORE}")
        node_id, wrapped = self._raw_meta("node_id"), self._raw_meta("storage_key")
        if node_id is None or wrapped is None:
            raise self.corrupted("no node id or storage key")
        try:
            self.node_id = node_id.decode()
            self._key = unwrap_storage_key(master_key, self.node_id, wrapped)
        except (SealError, UnicodeDecodeError) as exc:
            raise StorageError(f"cannot open {self.dir}: {exc}; or its header was altered or corrupted (then"
                               f" {RESTORE})") from None
        self._auth = RowAuthenticator(self._key)
        if fmt == FORMAT_V1.encode():
            self._upgrade_v1()
        self._digest = self._verify()

    def _tables(self) -> set[str]:
        assert self.db is not None
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _raw_meta(self, name: str) -> bytes | None:
        """A meta value read before the key that authenticates it is known."""
        assert self.db is not None
        row = self.db.execute("SELECT name, value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None or row[0] != name or not isinstance(row[1], bytes) else row[1]

    def _verify(self) -> int:
        """Check the MAC of every row and their sum; the sum, for the changes to come."""
        assert self.db is not None
        if self._tables() != set(integrity.TABLES) | {"integrity"}:
            raise self.corrupted("unexpected tables")
        digest = 0
        for table in integrity.TABLES:
            cols = integrity.columns(table)
            for *row, mac in self.db.execute(f"SELECT {', '.join(cols)}, mac FROM {table}"):  # noqa: S608
                if not self._auth.check(table, tuple(row), mac):
                    raise self.corrupted(f"a row of {table} failed authentication")
                digest = integrity.add(digest, mac)
        stored = self.db.execute("SELECT id, digest FROM integrity").fetchall()
        if stored != [(1, integrity.to_bytes(digest))]:
            raise self.corrupted("rows are missing, added or from another time")
        return digest

    def _upgrade_v1(self) -> None:
        """Authenticate the rows of a directory written before rows carried a MAC (trusting
        them as they are, as that version did), in one transaction."""
        assert self.db is not None
        with self.transaction():
            for table in integrity.TABLES:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN mac BLOB")
            self.db.execute("DROP TABLE IF EXISTS login_failures")  # per-node counts, now replicated records
            self.db.execute("CREATE TABLE integrity (id INTEGER PRIMARY KEY CHECK (id = 1), digest BLOB NOT NULL)")
            self.db.execute("UPDATE meta SET value=? WHERE name='format'", (FORMAT.encode(),))
            self._digest = 0
            for table in integrity.TABLES:
                cols = integrity.columns(table)
                for rowid, *row in self.db.execute(
                        f"SELECT rowid, {', '.join(cols)} FROM {table}").fetchall():  # noqa: S608
                    mac = self._auth.mac(table, tuple(row))
                    self.db.execute(f"UPDATE {table} SET mac=? WHERE rowid=?", (mac, rowid))  # noqa: S608
                    self._digest = integrity.add(self._digest, mac)

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
        self._auth = RowAuthenticator(storage_key)
        self._digest = 0
        with self.transaction():
            self._put("meta", ("format", FORMAT.encode()))
            self._put("meta", ("node_id", node_id.encode()))
            self._put("meta", ("storage_key", wrap_storage_key(master_key, node_id, storage_key)))
        fsync_dir(self.dir)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ------------------------------------------------------------ authenticated rows

    def transaction(self) -> _Tx:
        assert self.db is not None
        return _Tx(self)

    def _put(self, table: str, row: tuple[Value, ...]) -> None:
        """Insert or replace a row (by its key columns), keeping the sum of MACs."""
        assert self.db is not None
        old = self._get(table, row[:len(integrity.TABLES[table][0])])
        if old is not None:
            self._digest = integrity.remove(self._digest, self._auth.mac(table, old))
        self._insert(table, row, replace=True)

    def _insert(self, table: str, row: tuple[Value, ...], *, replace: bool = False) -> None:
        assert self.db is not None
        mac = self._auth.mac(table, row)
        cols = integrity.columns(table)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.db.execute(f"{verb} INTO {table} ({', '.join(cols)}, mac) VALUES ({', '.join('?' * (len(cols) + 1))})",
                        (*row, mac))
        self._digest = integrity.add(self._digest, mac)

    def _clear(self, table: str) -> None:
        assert self.db is not None
        for (mac,) in self.db.execute(f"SELECT mac FROM {table}").fetchall():  # noqa: S608
            self._digest = integrity.remove(self._digest, mac)
        self.db.execute(f"DELETE FROM {table}")  # noqa: S608

    def _get(self, table: str, key: tuple[Value, ...]) -> tuple[Value, ...] | None:
        """The row with this key, checked: the row the index led to must be that key's, intact."""
        assert self.db is not None
        keys = integrity.TABLES[table][0]
        cols = integrity.columns(table)
        found = self.db.execute(f"SELECT {', '.join(cols)}, mac FROM {table} WHERE "  # noqa: S608
                                + " AND ".join(f"{k}=?" for k in keys), key).fetchone()
        if found is None:
            return None
        *row, mac = found
        if tuple(row[:len(keys)]) != tuple(key) or not self._auth.check(table, tuple(row), mac):
            raise self.corrupted(f"a row of {table} failed authentication")
        return tuple(row)

    def _rows(self, query: str, table: str, args: tuple[Value, ...] = ()) -> Iterator[tuple[Value, ...]]:
        """Rows of ``table`` (``query`` selects its columns then mac), each checked."""
        assert self.db is not None
        for *row, mac in self.db.execute(query, args).fetchall():
            if not self._auth.check(table, tuple(row), mac):
                raise self.corrupted(f"a row of {table} failed authentication")
            yield tuple(row)

    def _write_digest(self) -> None:
        assert self.db is not None
        self.db.execute("INSERT OR REPLACE INTO integrity (id, digest) VALUES (1, ?)", (integrity.to_bytes(self._digest),))

    # ------------------------------------------------------------ meta

    def get_meta(self, name: str) -> bytes | None:
        row = self._get("meta", (name,))
        return None if row is None else bytes(row[1])  # type: ignore[arg-type]

    def _put_meta(self, name: str, value: bytes) -> None:
        self._put("meta", (name, value))

    def get_secret(self, name: str) -> bytes | None:
        raw = self.get_meta("sealed:" + name)
        if raw is None:
            return None
        try:
            return open_sealed(self._key, raw, b"meta\x00" + name.encode())
        except SealError as exc:
            raise StorageCorrupted(f"secret {name!r} in {self.dir} failed authentication ({exc}): the data was altered"
                                   f" or corrupted; {RESTORE}") from None

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
        for kind, entity, hlc, origin, sealed in self._rows(
                "SELECT kind, entity, hlc, origin, sealed, mac FROM records", "records"):
            version = (hlc, origin)
            record = None
            if sealed is not None:
                try:
                    raw = open_sealed(self._key, bytes(sealed), rec.record_aad(kind, entity, version))  # type: ignore
                except SealError as exc:
                    raise StorageCorrupted(f"record {kind}/{entity} in {self.dir} failed authentication ({exc}): the"
                                           f" data was altered or corrupted; {RESTORE}") from None
                record = rec.decode(kind, raw)  # type: ignore[arg-type]
            out.append(StoredRecord(kind, entity, version, record))  # type: ignore[arg-type]
        return out

    def _stage_record(self, change: RecordChange) -> None:
        sealed = None
        if change.record is not None:
            aad = rec.record_aad(change.kind, change.entity, change.version)
            sealed = seal(self._key, rec.encode(change.record), aad)
        self._put("records", (change.kind, change.entity, change.version[0], change.version[1], sealed))

    def _advance(self, origin: str, seq: int) -> None:
        old = self._get("positions", (origin,))
        if old is None or seq > old[1]:  # type: ignore[operator]
            self._put("positions", (origin, seq))

    def commit(
        self, changes: list[RecordChange], entries: list[OplogEntry] = (),  # type: ignore[assignment]
        plain_meta: dict[str, bytes] | None = None, secret_meta: dict[str, bytes] | None = None,
        positions: dict[str, int] | None = None,
    ) -> None:
        """Apply record changes, append oplog entries and advance positions, atomically."""
        with self.transaction():
            for origin, seq in (positions or {}).items():
                self._advance(origin, seq)
            for change in changes:
                self._stage_record(change)
            for e in entries:
                # A plain INSERT: an (origin, seq) is written once; reusing one must fail
                # loudly, never drop the later entry (it would never replicate).
                self._insert("oplog", (e.origin, e.seq, e.hlc, e.kind, e.entity, e.sealed))
                self._advance(e.origin, e.seq)
            self._stage_meta(plain_meta, secret_meta)

    def replace_all(self, changes: list[RecordChange], positions: dict[str, int],
                    plain_meta: dict[str, bytes], secret_meta: dict[str, bytes]) -> None:
        """Seed this node from a backup: its records and positions replace ours."""
        with self.transaction():
            for table in ("records", "oplog", "positions"):
                self._clear(table)
            for change in changes:
                self._stage_record(change)
            for origin, seq in positions.items():
                self._put("positions", (origin, seq))
            self._stage_meta(plain_meta, secret_meta)

    # ------------------------------------------------------------ oplog

    def positions(self) -> dict[str, int]:
        return {o: s for o, s in self._rows("SELECT origin, seq, mac FROM positions", "positions")}  # type: ignore

    def read_oplog(self, origin: str, after_seq: int, limit: int) -> list[OplogEntry]:
        rows = self._rows(
            "SELECT origin, seq, hlc, kind, entity, sealed, mac FROM oplog WHERE origin=? AND seq>? ORDER BY seq"
            " LIMIT ?", "oplog", (origin, after_seq, limit))
        out = [OplogEntry(o, s, h, k, e, bytes(b)) for o, s, h, k, e, b in rows]  # type: ignore[arg-type]
        if any(e.origin != origin or e.seq <= after_seq for e in out):
            raise self.corrupted("the oplog index does not match the oplog")
        return out

    def max_hlc(self) -> int:
        rows = self._rows("SELECT kind, entity, hlc, origin, sealed, mac FROM records", "records")
        return max((int(row[2]) for row in rows), default=0)  # type: ignore[arg-type]


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, with the sum of row MACs written last; a transaction that
    fails (a full disk) leaves the sum in memory as it was."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        assert storage.db is not None
        self.db = storage.db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        self.digest = getattr(self.storage, "_digest", 0)
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.storage._write_digest()
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # a COMMIT that failed (disk full) may leave the transaction open
                raise
        self._rollback()

    def _rollback(self) -> None:
        self.storage._digest = self.digest
        # SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR): then there is
        # nothing to do, and a ROLLBACK would fail and hide the original error.
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def is_storage_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", or ENOSPC/EDQUOT from the file system."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

