"""The control plane's records on disk: one SQLite file (``<data dir>/cloudhsm.db``), owned by this
process (with several workers, the leader's; the others read it: :meth:`ControlPlaneStore.reload_if_changed`), WAL with ``synchronous=FULL``: a change is acknowledged only once it is on disk.

Every record is also kept in memory (there are few: clusters, HSMs, tagged backups), so the
cluster view KMS reads on every key store operation costs no query. Writes go to the database
first, then to memory, on one storage thread.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .records import BackupAttributes, ClusterRecord, HsmRecord

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (cluster_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hsms (hsm_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (backup_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""


class ControlPlaneStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        path.chmod(0o600)
        self.clusters: dict[str, ClusterRecord] = {}
        self.hsms: dict[str, HsmRecord] = {}
        self.backups: dict[str, BackupAttributes] = {}
        self._version = -1
        self.reload_if_changed()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudhsm-db")

    def reload_if_changed(self) -> bool:
        """Read every record again if another process committed since the last read (several
        workers: the leader writes, the others read; ``PRAGMA data_version`` moves only then, and
        costs no disk read). The records are few (clusters, HSMs, tagged backups)."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return False
        self._version = version
        self.clusters = {cid: ClusterRecord.from_json(doc)
                         for cid, doc in self._db.execute("SELECT cluster_id, doc FROM clusters")}
        self.hsms = {hid: HsmRecord.from_json(doc) for hid, doc in self._db.execute("SELECT hsm_id, doc FROM hsms")}
        self.backups = {bid: BackupAttributes.from_json(doc)
                        for bid, doc in self._db.execute("SELECT backup_id, doc FROM backups")}
        return True

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def _tx(self, statements: list[tuple[str, tuple]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self._db.execute(sql, args)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ writes (disk, then memory)

    async def put_cluster(self, record: ClusterRecord) -> ClusterRecord:
        doc = record.to_json()
        await self._run(lambda: self._tx([("INSERT OR REPLACE INTO clusters VALUES (?, ?)", (record.cluster_id, doc))]))
        self.clusters[record.cluster_id] = ClusterRecord.from_json(doc)
        return self.clusters[record.cluster_id]

    async def put_hsm(self, record: HsmRecord) -> HsmRecord:
        doc = record.to_json()
        await self._run(lambda: self._tx([("INSERT OR REPLACE INTO hsms VALUES (?, ?, ?)",
                                           (record.hsm_id, record.cluster_id, doc))]))
        self.hsms[record.hsm_id] = HsmRecord.from_json(doc)
        return self.hsms[record.hsm_id]

    async def put_cluster_and_hsms(self, cluster: ClusterRecord, hsms: list[HsmRecord]) -> None:
        """One transaction: a cluster found by discovery arrives with its HSMs."""
        statements: list[tuple[str, tuple]] = [
            ("INSERT OR REPLACE INTO clusters VALUES (?, ?)", (cluster.cluster_id, cluster.to_json()))]
        statements += [("INSERT OR REPLACE INTO hsms VALUES (?, ?, ?)", (h.hsm_id, h.cluster_id, h.to_json()))
                       for h in hsms]
        await self._run(lambda: self._tx(statements))
        self.clusters[cluster.cluster_id] = ClusterRecord.from_json(cluster.to_json())
        for h in hsms:
            self.hsms[h.hsm_id] = HsmRecord.from_json(h.to_json())

    async def delete_hsm(self, hsm_id: str) -> None:
        await self._run(lambda: self._tx([("DELETE FROM hsms WHERE hsm_id = ?", (hsm_id,))]))
        self.hsms.pop(hsm_id, None)

    async def put_backup(self, attrs: BackupAttributes) -> BackupAttributes:
        doc = attrs.to_json()
        if not attrs.tags and not attrs.policy:
            await self._run(lambda: self._tx([("DELETE FROM backups WHERE backup_id = ?", (attrs.backup_id,))]))
            self.backups.pop(attrs.backup_id, None)
            return attrs
        await self._run(lambda: self._tx([("INSERT OR REPLACE INTO backups VALUES (?, ?)", (attrs.backup_id, doc))]))
        self.backups[attrs.backup_id] = BackupAttributes.from_json(doc)
        return self.backups[attrs.backup_id]

    # ------------------------------------------------------------ reads (memory)

    def hsms_of(self, cluster_id: str) -> list[HsmRecord]:
        return sorted((h for h in self.hsms.values() if h.cluster_id == cluster_id),
                      key=lambda h: (h.create_timestamp_ms, h.hsm_id))

    def backup(self, backup_id: str) -> BackupAttributes:
        found = self.backups.get(backup_id)
        return BackupAttributes.from_json(found.to_json()) if found else BackupAttributes(backup_id)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()
