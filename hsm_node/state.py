"""The node's in-memory view of its records, rebuilt from storage at start.

Lookups on the crypto path (sessions, keys, cipher objects) are dictionary
hits here; nothing on that path touches the disk.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import records as rec
from .rules import MAX_LOGIN_FAILURES, MAX_ORDINAL


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
    _hash: str | None = None  # consistency_hash(), until the next change

    def version(self, kind: str, entity: str) -> rec.Version:
        return self.versions.get((kind, entity), rec.ZERO_VERSION)

    def is_newer(self, kind: str, entity: str, version: rec.Version) -> bool:
        return version > self.version(kind, entity)

    def apply(self, kind: str, entity: str, version: rec.Version, record: rec.Record | None) -> bool:
        """Last writer wins: take the record only if its version is newer."""
        if not self.is_newer(kind, entity, version):
            return False
        self._hash = None
        self.versions[(kind, entity)] = version
        self._set(kind, entity, record)
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
        self._hash = None
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

    def entities(self, kind: str) -> set[int]:
        """Numeric ids ever used by records of a kind, deleted ones (tombstones) included."""
        return {int(entity) for k, entity in self.versions if k == kind}

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
        stride = MAX_ORDINAL + 1
        top = max(existing, default=0)
        candidate = top - (top % stride) + ordinal
        while candidate <= top:
            candidate += stride
        return candidate

    def consistency_hash(self) -> str:
        """Hash of users and key ownership/sharing (CloudHSM's findAllKeys hash);
        equal on nodes that agree."""
        if self._hash is not None:
            return self._hash
        h = hashlib.sha256()
        for name in sorted(self.users):
            u = self.users[name]
            h.update(f"u|{u.name}|{u.user_id}|{u.user_type}|{int(u.locked)}|{self.version('user', name)}\n".encode())
        for handle in sorted(self.keys):
            k = self.keys[handle]
            h.update(f"k|{handle}|{k.owner_id}|{sorted(k.shared)}|{self.version('key', str(handle))}\n".encode())
        self._hash = h.hexdigest()
        return self._hash
