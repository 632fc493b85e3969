"""The node's in-memory view of its records, rebuilt from storage at start.

Lookups on the crypto path (sessions, keys, cipher objects) are dictionary
hits here; nothing on that path touches the disk. What every write needs
(the consistency hash, the highest id in use) is kept up to date as records
change, so a write costs the same with 100 keys as with 100,000.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import records as rec
from .rules import MAX_LOGIN_FAILURES, MAX_ORDINAL

HASH_BITS = 256
_HASH_MOD = 1 << HASH_BITS


def record_digest(kind: str, entity: str, version: rec.Version, record: rec.Record | None) -> int:
    """What one live record adds to the consistency hash (0: it adds nothing).

    Users count with their id, type, lock state and version; keys with their owner,
    the users they are shared with and their version (never material or labels)."""
    if isinstance(record, rec.UserRecord):
        line = f"u|{record.name}|{record.user_id}|{record.user_type}|{int(record.locked)}|{version}\n"
    elif isinstance(record, rec.KeyRecord):
        line = f"k|{record.handle}|{record.owner_id}|{sorted(record.shared)}|{version}\n"
    else:
        return 0
    return int.from_bytes(hashlib.sha256(line.encode()).digest(), "big")


@dataclass
class RecordState:
    users: dict[str, rec.UserRecord] = field(default_factory=dict)
    keys: dict[int, rec.KeyRecord] = field(default_factory=dict)
    members: dict[str, rec.MemberRecord] = field(default_factory=dict)
    config: rec.ConfigRecord = field(default_factory=rec.ConfigRecord)
    failures: dict[str, dict[str, rec.LoginFailuresRecord]] = field(default_factory=dict)  # user -> node -> count
    resets: set[str] = field(default_factory=set)  # users with a live LoginResetRecord
    versions: dict[tuple[str, str], rec.Version] = field(default_factory=dict)
    _ciphers: dict[int, AESGCM] = field(default_factory=dict)
    _users_by_id: dict[int, rec.UserRecord] = field(default_factory=dict)
    # The consistency hash is the sum, modulo 2**256, of one SHA-256 digest per live user and
    # key record (record_digest): a write takes out the replaced record's term and adds the
    # new one's, in O(1). (Terms are recomputed rather than stored: records are never
    # changed in place, so the term of a live record is what was added when it arrived.)
    _digest_sum: int = 0
    # The highest key handle ever used (tombstones included) and the highest user id ever
    # named by a user or a key (owner, shares): new ids go above them (next_after).
    top_key_handle: int = 0
    top_user_id: int = 0

    def version(self, kind: str, entity: str) -> rec.Version:
        return self.versions.get((kind, entity), rec.ZERO_VERSION)

    def is_newer(self, kind: str, entity: str, version: rec.Version) -> bool:
        return version > self.version(kind, entity)

    def apply(self, kind: str, entity: str, version: rec.Version, record: rec.Record | None) -> bool:
        """Last writer wins: take the record only if its version is newer."""
        if not self.is_newer(kind, entity, version):
            return False
        hashed = kind in ("user", "key")
        if hashed:
            self._digest_sum -= record_digest(kind, entity, self.version(kind, entity), self.record(kind, entity))
        self.versions[(kind, entity)] = version
        self._set(kind, entity, record)
        if hashed:
            self._digest_sum += record_digest(kind, entity, version, self.record(kind, entity))
        if kind == "key":
            self.top_key_handle = max(self.top_key_handle, int(entity))
            if isinstance(record, rec.KeyRecord):
                self.top_user_id = max(self.top_user_id, record.owner_id, *record.shared)
        elif isinstance(record, rec.UserRecord):
            self.top_user_id = max(self.top_user_id, record.user_id)
        return True

    def _set(self, kind: str, entity: str, record: rec.Record | None) -> None:
        if kind == "user":
            old = self.users.pop(entity, None)
            if old is not None:
                self._users_by_id.pop(old.user_id, None)
            if isinstance(record, rec.UserRecord):
                self.users[entity] = record
                self._users_by_id[record.user_id] = record
        elif kind == "key":
            handle = int(entity)
            self.keys.pop(handle, None)
            self._ciphers.pop(handle, None)
            if isinstance(record, rec.KeyRecord):
                self.keys[handle] = record
        elif kind == "member":
            self.members.pop(entity, None)
            if isinstance(record, rec.MemberRecord):
                self.members[entity] = record
        elif kind == "config":
            self.config = record if isinstance(record, rec.ConfigRecord) else rec.ConfigRecord()
        elif kind == "login_failures":
            name, _, node_id = entity.partition("@")
            slots = self.failures.setdefault(name, {})
            if isinstance(record, rec.LoginFailuresRecord):
                slots[node_id] = record
            else:
                slots.pop(node_id, None)
        elif kind == "login_reset":  # what counts is its version (see login_failures)
            if record is None:
                self.resets.discard(entity)
            else:
                self.resets.add(entity)
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def clear(self) -> None:
        self._digest_sum = 0
        self.top_key_handle = self.top_user_id = 0
        self.users.clear()
        self.keys.clear()
        self.members.clear()
        self.config = rec.ConfigRecord()
        self.failures.clear()
        self.resets.clear()
        self.versions.clear()
        self._ciphers.clear()
        self._users_by_id.clear()

    # ------------------------------------------------------------ lookups

    def record(self, kind: str, entity: str) -> rec.Record | None:
        """The live record of an entity (None when deleted or unknown)."""
        if kind == "user":
            return self.users.get(entity)
        if kind == "key":
            return self.keys.get(int(entity))
        if kind == "member":
            return self.members.get(entity)
        if kind == "login_failures":
            name, _, node_id = entity.partition("@")
            return self.failures.get(name, {}).get(node_id)
        if kind == "login_reset":
            return rec.LoginResetRecord(entity) if entity in self.resets else None
        return self.config

    def login_failures(self, name: str) -> int:
        """Failed logins of a user since its last reset, counted on every node (the sum
        of each node's own count)."""
        since = self.version("login_reset", name)
        return sum(r.count for r in self.failures.get(name, {}).values() if r.since == since)

    def own_failures(self, name: str, node_id: str) -> rec.LoginFailuresRecord:
        """The record of a user's failures counted by ``node_id``, from the current reset."""
        since = self.version("login_reset", name)
        mine = self.failures.get(name, {}).get(node_id)
        count = mine.count if mine is not None and mine.since == since else 0
        return rec.LoginFailuresRecord(name, node_id, count, *since)

    def is_locked(self, user: rec.UserRecord) -> bool:
        """Locked by a CO-visible flag, or by failures counted anywhere in the cluster
        (the flag may not have been written yet: full disk, or counts still arriving)."""
        return user.locked or self.login_failures(user.name) >= MAX_LOGIN_FAILURES

    def user_by_id(self, user_id: int) -> rec.UserRecord | None:
        return self._users_by_id.get(user_id)

    def cipher(self, key: rec.KeyRecord) -> AESGCM:
        c = self._ciphers.get(key.handle)
        if c is None:
            c = self._ciphers[key.handle] = AESGCM(key.material)
        return c

    def next_id(self, existing: set[int] | dict, ordinal: int) -> int:
        """Ids (key handles, user ids) unique across the cluster without coordination:
        each node takes the numbers congruent to its ordinal modulo 32."""
        return self.next_after(max(existing, default=0), ordinal)

    @staticmethod
    def next_after(top: int, ordinal: int) -> int:
        """The smallest id above ``top`` that is congruent to ``ordinal`` modulo 32."""
        stride = MAX_ORDINAL + 1
        candidate = top - (top % stride) + ordinal
        while candidate <= top:
            candidate += stride
        return candidate

    def consistency_hash(self) -> str:
        """Hash of users and key ownership/sharing (CloudHSM's findAllKeys hash): equal on
        nodes that hold the same records at the same versions, whatever order the writes
        arrived in. A sum of per-record digests rather than one digest over sorted records,
        so that each write updates it in O(1); it detects divergence between honest replicas,
        which is its only job (a sum of hashes is not meant to resist a forger)."""
        return f"{self._digest_sum % _HASH_MOD:064x}"

    def recomputed_hash(self) -> str:
        """The same hash computed from scratch over every record (a check for tests)."""
        total = sum(record_digest(kind, entity, self.version(kind, entity), self.record(kind, entity))
                    for kind, entity in self.versions if kind in ("user", "key"))
        return f"{total % _HASH_MOD:064x}"
