"""Key rules: generation, lookup, sharing, deletion, and the crypto that uses keys.

Keys are AES (128/256), persistent, never extractable. Only the owner (the CU
that generated the key) may share, unshare or delete it; the owner and the
users it is shared with may use it. Crypto runs from memory only.
"""
from __future__ import annotations

import asyncio
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import records as rec
from . import rules
from .errors import (
    INVALID_HANDLE,
    KEY_ACCESS_DENIED,
    InsufficientReplicas,
    InvalidArgument,
    KeyLimitExceeded,
    NotFound,
    PermissionDenied,
)
from .login_sessions import LoginSession
from .node import ACTIVE, HsmNode, WriteOutcome

DEFAULT_REPLICA_TIMEOUT_MS = 5000


class KeyRules:
    def __init__(self, node: HsmNode) -> None:
        self.node = node
        self.session_keys: dict[int, rec.KeyRecord] = {}  # non-persistent keys: this node, this run
        self._allocating: set[int] = set()  # handles given to generations whose write has not landed yet
        self._top_handle = 0  # the highest handle this node gave out (session keys, generations in flight)
        # share / delete / sync read a key record and write it back: one at a time, re-reading
        # under the lock, or concurrent shares are lost and a share can revive a deleted key
        self._mutating = asyncio.Lock()

    # ------------------------------------------------------------ management

    async def generate(self, token: str, size: int, label: str, share_with: list[int], min_replicas: int = 0,
                       timeout_ms: int = 0, session_key: bool = False) -> tuple[rec.KeyRecord, WriteOutcome]:
        node = self.node
        node.require_state(ACTIVE)
        caller = node.sessions.require(token, "CU")
        size = rules.key_size(size)
        rules.label(label)
        shared = self._check_share_targets(caller, share_with)
        self._check_key_limit()
        # Handles are never reused, neither those of deleted keys (their tombstones count in
        # top_key_handle) nor those of session keys: a stale handle must never name another key.
        handle = node.records.next_after(max(node.records.top_key_handle, self._top_handle), node.ordinal)
        self._top_handle = handle
        material = os.urandom(size)
        key = rec.KeyRecord(handle, label, caller.user_id, size, material, node.now_ms(), shared, _kcv(material))
        if session_key:
            self.session_keys[handle] = key
            return key, WriteOutcome(1, [node.node_id], max(1, len(node.records.members)))
        timeout_s = (timeout_ms or DEFAULT_REPLICA_TIMEOUT_MS) / 1000
        if min_replicas > 1 and node.replication is not None:
            live = 1 + node.replication.live_peer_count()
            if live < min_replicas:
                raise InsufficientReplicas(
                    f"key generation needs {min_replicas} nodes to hold the key but only {live} node(s) are"
                    " reachable; no key was created", confirmed=live, needed=min_replicas)
        elif min_replicas > 1:
            raise InsufficientReplicas(f"key generation needs {min_replicas} nodes but this HSM has no peers;"
                                       " no key was created", confirmed=1, needed=min_replicas)
        # Concurrent generations must not pick the same handle while this write is in flight
        # (the later write would silently replace the earlier, acknowledged key).
        self._allocating.add(handle)
        # A caller that hangs up does not abandon the key half-made: it is kept only if
        # enough nodes hold it, and taken back otherwise, whether anyone still listens or not.
        outcome = await node.uncancellable(self._store_new_key(key, min_replicas, timeout_s))
        return key, outcome

    def _check_key_limit(self) -> None:
        """CloudHSM's "Maximum keys per cluster" (3,300 on hsm1.medium): counted on the HSM taking
        the call, persistent and session keys and generations in flight together."""
        limit = self.node.config.max_keys
        if not limit:
            return
        held = len(self.node.records.keys) + len(self.session_keys) + len(self._allocating)
        if held >= limit:
            raise KeyLimitExceeded(limit, held)

    async def _store_new_key(self, key: rec.KeyRecord, min_replicas: int, timeout_s: float) -> WriteOutcome:
        node = self.node
        try:
            seq = await node.write([("key", key.entity, key)])
        finally:
            self._allocating.discard(key.handle)
        outcome = await node.confirm(seq, need=max(min_replicas, 0), timeout_s=timeout_s)
        if min_replicas > 1 and outcome.replicas < min_replicas:
            # Take it back everywhere it may have reached: nobody got the handle.
            await node.write([("key", key.entity, None)])
            raise InsufficientReplicas(
                f"key generation needs {min_replicas} nodes to confirm within {timeout_s * 1000:.0f} ms but only"
                f" {outcome.replicas} did; the key was deleted again", confirmed=outcome.replicas, needed=min_replicas)
        return outcome

    def find(self, token: str, label: str = "", owner_id: int = 0) -> list[int]:
        caller = self._cu(token)
        return [h for h, k in self._visible(caller) if (not label or k.label == label)
                and (not owner_id or k.owner_id == owner_id)]

    def find_all(self, token: str, user_id: int = 0) -> tuple[list[tuple[int, bool]], str]:
        """CO view of ownership: (handle, owned) for one user or all, plus the hash."""
        node = self.node
        node.require_state(ACTIVE)
        node.sessions.require(token, "CO")
        if user_id and node.records.user_by_id(user_id) is None:
            raise NotFound(f"0xa6 : HSM Error: no user with id {user_id}")
        out = []
        for h, k in sorted(node.records.keys.items()):
            if not user_id or k.owner_id == user_id:
                out.append((h, True))
            elif user_id in k.shared:
                out.append((h, False))
        return out, node.records.consistency_hash()

    def info(self, token: str, handle: int) -> rec.KeyRecord:
        caller = self._cu(token)
        return self._usable(caller, handle)

    async def share(self, token: str, handle: int, user_ids: list[int], unshare: bool) -> WriteOutcome:
        caller = self._cu(token)
        async with self._mutating:
            key = self._owned(caller, handle)
            targets = self._check_share_targets(caller, user_ids)
            shared = sorted(set(key.shared) - set(targets)) if unshare else sorted(set(key.shared) | set(targets))
            updated = rec.KeyRecord(**{**key.__dict__, "shared": shared})
            if handle in self.session_keys:
                self.session_keys[handle] = updated
                return WriteOutcome(1, [self.node.node_id], 1)
            seq = await self.node.write([("key", key.entity, updated)])
        return await self.node.confirm(seq)

    async def delete(self, token: str, handle: int) -> WriteOutcome:
        caller = self._cu(token)
        async with self._mutating:
            key = self._owned(caller, handle)
            if self.session_keys.pop(handle, None) is not None:
                return WriteOutcome(1, [self.node.node_id], 1)
            seq = await self.node.write([("key", key.entity, None)])
        return await self.node.confirm(seq)

    async def sync(self, token: str, handle: int) -> WriteOutcome:
        caller = self._cu(token)
        async with self._mutating:
            key = self._owned(caller, handle)
            seq = await self.node.write([("key", key.entity, key)])
        return await self.node.confirm(seq)

    # ------------------------------------------------------------ crypto (hot path: memory only)

    def encrypt(self, token: str, handle: int, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        key = self._usable(self._cu(token), handle)
        rules.max_bytes(plaintext, "plaintext", rules.MAX_PLAINTEXT)
        rules.max_bytes(aad, "aad", rules.MAX_AAD)
        iv = os.urandom(rules.IV_LEN)
        return iv, self.node.records.cipher(key).encrypt(iv, plaintext, aad)

    def decrypt(self, token: str, handle: int, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        key = self._usable(self._cu(token), handle)
        if len(iv) != rules.IV_LEN:
            raise InvalidArgument(f"iv must be {rules.IV_LEN} bytes (got {len(iv)})")
        rules.max_bytes(ciphertext, "ciphertext", rules.MAX_PLAINTEXT + rules.TAG_LEN, lo=rules.TAG_LEN)
        rules.max_bytes(aad, "aad", rules.MAX_AAD)
        try:
            return self.node.records.cipher(key).decrypt(iv, ciphertext, aad)
        except InvalidTag:
            raise InvalidArgument("0x40 : HSM Error: decryption failed: the ciphertext, tag, iv or aad"
                                  " does not match this key") from None

    def random(self, token: str, length: int) -> bytes:
        self._cu(token)
        return os.urandom(rules.length(length, "random length", 1, rules.MAX_RANDOM))

    def data_key(self, token: str, handle: int, length: int, aad: bytes) -> tuple[bytes, bytes, bytes]:
        rules.length(length, "data key length", 1, rules.MAX_RANDOM)
        plaintext = os.urandom(length)
        iv, ct = self.encrypt(token, handle, plaintext, aad)
        return plaintext, iv, ct

    # ------------------------------------------------------------ helpers

    def _cu(self, token: str) -> LoginSession:
        self.node.require_state(ACTIVE)
        return self.node.sessions.require(token, "CU")

    def _key(self, handle: int) -> rec.KeyRecord:
        key = self.node.records.keys.get(handle) or self.session_keys.get(handle)
        if key is None:
            raise NotFound(f"{INVALID_HANDLE} (handle {handle})")
        return key

    def _usable(self, caller: LoginSession, handle: int) -> rec.KeyRecord:
        key = self._key(handle)
        if key.owner_id != caller.user_id and caller.user_id not in key.shared:
            raise PermissionDenied(KEY_ACCESS_DENIED)
        return key

    def _owned(self, caller: LoginSession, handle: int) -> rec.KeyRecord:
        key = self._key(handle)
        if key.owner_id != caller.user_id:
            raise PermissionDenied(KEY_ACCESS_DENIED)
        return key

    def _visible(self, caller: LoginSession) -> list[tuple[int, rec.KeyRecord]]:
        merged = {**self.node.records.keys, **self.session_keys}
        return sorted((h, k) for h, k in merged.items() if k.owner_id == caller.user_id or caller.user_id in k.shared)

    def _check_share_targets(self, caller: LoginSession, user_ids: list[int]) -> list[int]:
        out = []
        for uid in dict.fromkeys(user_ids):
            user = self.node.records.user_by_id(uid)
            if user is None or user.user_type != "CU":
                raise InvalidArgument(f"cannot share with user id {uid}: keys can only be shared with crypto users (CU)")
            if uid == caller.user_id:
                raise InvalidArgument("cannot share a key with its owner")
            out.append(uid)
        return out


def _kcv(material: bytes) -> str:
    """Key check value: first 3 bytes of AES(key, zero block); identifies, does not reveal."""
    enc = Cipher(algorithms.AES(material), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3].hex()

