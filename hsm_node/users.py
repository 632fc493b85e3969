"""User rules: login and lockout, create/delete, password changes, activation.

CloudHSM semantics: names are case-insensitive (stored lower case); a CO
manages users but cannot use keys; any user may change its own password; a CO
may reset anyone's without the old one, which also unlocks; nobody can change
the password of a user who is logged in elsewhere; five consecutive failed
logins lock a user.

Failed logins are counted per user across the cluster, not per node: each node
counts its own in a replicated record and the user's count is their sum, so
five wrong passwords anywhere lock the user everywhere (README, "Failed logins
across nodes", says how this differs from CloudHSM and why).
"""
from __future__ import annotations

import asyncio
import logging

from . import records as rec
from . import rules
from .errors import (
    LOGIN_FAILED,
    USER_LOCKED,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageFull,
    Unauthenticated,
    WrongState,
)
from .login_sessions import LoginSession
from .node import ACTIVE, INITIALIZED, HsmNode, WriteOutcome
from .storage_sealing import hash_password, verify_password

log = logging.getLogger("hsm_node.users")
MAX_USERS = 1024
_DUMMY_HASH = hash_password("not-a-real-password")  # equalises timing for unknown users
MANAGEABLE_TYPES = ("CO", "CU")


class UserRules:
    def __init__(self, node: HsmNode) -> None:
        self.node = node
        # names and ids given to creations whose write has not landed yet (hashing the
        # password yields to other calls: concurrent creations must not share either)
        self._creating: dict[str, int] = {}
        # read-modify-write of an existing user record (delete, password change, lockout):
        # re-read and write under this lock, or a concurrent change is lost or a deleted user revived
        self._mutating = asyncio.Lock()
        self._login_locks: dict[str, asyncio.Lock] = {}   # per existing user (at most MAX_USERS)
        self._unrecorded: dict[str, int] = {}            # failed logins a full disk kept us from writing

    # ------------------------------------------------------------ sessions

    async def login(self, user_type: str, username: str, password: str, client_id: str = "") -> LoginSession:
        node = self.node
        node.require_state(INITIALIZED, ACTIVE)
        name = rules.username(username)
        user = node.records.users.get(name)
        if user is None or not _type_matches(user.user_type, user_type):
            await asyncio.to_thread(verify_password, password, _DUMMY_HASH)
            raise Unauthenticated(LOGIN_FAILED)
        # One attempt at a time per user: concurrent guesses would all pass the lock check
        # before the first failure was counted.
        async with self._login_lock(name):
            if self._unrecorded.get(name):
                await self._record_unrecorded(name)  # before the password is looked at
            user = node.records.users.get(name)
            if user is None or not _type_matches(user.user_type, user_type):
                raise Unauthenticated(LOGIN_FAILED)
            if node.records.is_locked(user):
                raise PermissionDenied(USER_LOCKED)
            if not await asyncio.to_thread(verify_password, password, user.password_hash):
                await self._login_failed(user)
                raise Unauthenticated(LOGIN_FAILED)
            if node.records.login_failures(name):
                await self._reset_failures(name)
            return node.sessions.open(user.name, user.user_id, user.user_type, client_id)

    def _login_lock(self, name: str) -> asyncio.Lock:
        lock = self._login_locks.get(name)
        if lock is None:
            lock = self._login_locks[name] = asyncio.Lock()
        return lock

    async def _login_failed(self, user: rec.UserRecord) -> None:
        """Count a failed login, durably and in the replicated count, before answering. If the
        count cannot be written (full disk), the failure is kept in memory and every login of
        that user is refused, whatever the password, until it can be: never unlimited guesses,
        and no answer that tells a right password from a wrong one."""
        node = self.node
        try:
            await self._count_failures(user.name, 1)
        except StorageFull:
            self._unrecorded[user.name] = self._unrecorded.get(user.name, 0) + 1
            log.warning("login failure not recorded", extra={"event": "login_failure_unrecorded", "user": user.name})
            raise self._cannot_record(user.name) from None
        if node.records.is_locked(user) and not user.locked:
            await self._lock(user)

    async def _record_unrecorded(self, name: str) -> None:
        try:
            await self._count_failures(name, self._unrecorded[name])
        except StorageFull:
            raise self._cannot_record(name) from None
        del self._unrecorded[name]
        log.info("login failures recorded", extra={"event": "login_failures_recorded", "user": name})
        user = self.node.records.users.get(name)
        if user is not None and self.node.records.is_locked(user) and not user.locked:
            await self._lock(user)

    def _cannot_record(self, name: str) -> StorageFull:
        return StorageFull(f"logins of user {name} are refused while the HSM cannot record failed logins: its storage"
                           f" is full ({self.node.config.data_dir}); free space on that file system and retry")

    async def _count_failures(self, name: str, n: int) -> None:
        """Add ``n`` to this node's count of the user's failures (only this node writes that
        record: concurrent failures elsewhere are in their own records, never lost), and wait
        until the live peers hold it, so the next attempt anywhere sees it."""
        node = self.node
        mine = node.records.own_failures(name, node.node_id)
        mine.count += n
        seq = await node.write([(mine.KIND, mine.entity, mine)], replicate=bool(node.domain_key))
        await node.confirm(seq)

    async def _reset_failures(self, name: str) -> None:
        """A successful login ends the run of consecutive failures, on every node. If that
        cannot be written (full disk) the login still succeeds and the count stays: it can
        only lock the user sooner, never later."""
        node = self.node
        try:
            await node.write([("login_reset", name, rec.LoginResetRecord(name))], replicate=bool(node.domain_key))
        except StorageFull:
            log.warning("login failures not reset", extra={"event": "login_reset_unrecorded", "user": name})

    async def _lock(self, user: rec.UserRecord) -> None:
        """Write the lock into the user record (the count already locks it everywhere it has
        arrived; the flag says so in the record, as CloudHSM's listUsers shows it)."""
        node = self.node
        async with self._mutating:
            current = node.records.users.get(user.name)
            if current is None or current.user_id != user.user_id or current.locked:
                return  # deleted or replaced meanwhile, or locked already
            locked = rec.UserRecord(current.name, current.user_id, current.user_type, current.password_hash,
                                    locked=True)
            try:
                seq = await node.write([("user", user.name, locked)])
            except StorageFull:
                seq = 0  # the recorded count locks it all the same
        await node.confirm(seq)
        node.sessions.drop_user(user.name)
        log.warning("user locked", extra={"event": "user_locked", "user": user.name})

    def logout(self, token: str) -> None:
        self.node.sessions.get(token)
        self.node.sessions.close(token)

    # ------------------------------------------------------------ management

    def list(self) -> list[tuple[rec.UserRecord, int, bool]]:
        """(user, failed logins counted in the cluster, locked) in user id order."""
        records = self.node.records
        users = sorted(records.users.values(), key=lambda u: u.user_id)
        return [(u, records.login_failures(u.name) + self._unrecorded.get(u.name, 0), records.is_locked(u))
                for u in users]

    async def create(self, token: str, user_type: str, username: str, password: str,
                     this_node_only: bool = False) -> tuple[rec.UserRecord, WriteOutcome]:
        node = self.node
        node.require_state(ACTIVE)
        node.sessions.require(token, "CO")
        if user_type not in MANAGEABLE_TYPES:
            raise InvalidArgument(f"cannot create a user of type {user_type}: choose CO or CU")
        name = rules.username(username)
        rules.password(password)
        if name in node.records.users or name in self._creating:
            raise AlreadyExists(f"0xa1 : HSM Error: user {name} already exists")
        if len(node.records.users) + len(self._creating) >= MAX_USERS:
            raise WrongState(f"the cluster already has {MAX_USERS} users, the CloudHSM maximum")
        # Ids that keys still name (owners, shares of deleted users) are taken too: a new
        # user must never inherit a deleted user's access to keys shared with it. New ids go
        # above every id a user or a key ever named (top_user_id), so none is reused.
        user_id = node.records.next_after(max(node.records.top_user_id, *self._creating.values(), 0),
                                          node.ordinal)
        self._creating[name] = user_id
        try:
            user = rec.UserRecord(name, user_id, user_type, await asyncio.to_thread(hash_password, password))
            # a fresh count: failures of an earlier user of that name do not carry over
            seq = await node.write([("user", name, user), ("login_reset", name, rec.LoginResetRecord(name))],
                                   replicate=not this_node_only)
        finally:
            del self._creating[name]
        return user, await node.confirm(seq)

    async def delete(self, token: str, username: str, this_node_only: bool = False) -> WriteOutcome:
        node = self.node
        node.require_state(ACTIVE)
        caller = node.sessions.require(token, "CO")
        name = rules.username(username)
        self._refuse_if_owns_keys(self._get(name))
        if name == caller.username:
            raise PermissionDenied("0xc6 : HSM Error: a crypto officer cannot delete itself")
        await self._refuse_if_logged_in(name, caller)
        async with self._mutating:
            self._refuse_if_owns_keys(self._get(name))  # again: it may have changed meanwhile
            seq = await node.write([("user", name, None)], replicate=not this_node_only)
        node.sessions.drop_user(name)
        self._unrecorded.pop(name, None)
        return await node.confirm(seq)

    async def change_password(self, token: str, user_type: str, username: str, new_password: str,
                              this_node_only: bool = False) -> WriteOutcome:
        node = self.node
        node.require_state(INITIALIZED, ACTIVE)
        caller = node.sessions.get(token)
        name = rules.username(username)
        rules.password(new_password)
        user = self._get(name)
        if user_type and not _type_matches(user.user_type, user_type):
            raise InvalidArgument(f"user {name} is a {user.user_type}, not a {user_type}")
        self_change = caller.username == name
        if not self_change and caller.user_type != "CO":
            raise PermissionDenied("0xc6 : HSM Error: only a crypto officer may change another user's password")
        if node.state == INITIALIZED and not (self_change and user.user_type == "PRECO"):
            node.require_state(ACTIVE)
        await self._refuse_if_logged_in(name, caller)
        password_hash = await asyncio.to_thread(hash_password, new_password)
        async with self._mutating:
            current = self._get(name)  # deleted or replaced while hashing: do not revive it
            if current.user_id != user.user_id:
                raise NotFound(f"0xa6 : HSM Error: user {name} does not exist")
            activating = current.user_type == "PRECO"
            updated = rec.UserRecord(name, current.user_id, "CO" if activating else current.user_type,
                                     password_hash, locked=False)
            # a new password unlocks: the failure count starts again from zero on every node
            seq = await node.write([("user", name, updated), ("login_reset", name, rec.LoginResetRecord(name))],
                                   replicate=not this_node_only)
        self._unrecorded.pop(name, None)
        if activating:
            await node.set_state(ACTIVE)
            node.sessions.drop_user(name)
            log.info("activated", extra={"event": "activated", "cluster_id": node.cluster_id})
            if node.replication is not None:
                node.replication.cluster_event("ACTIVATION")
        return await node.confirm(seq)

    async def sync(self, token: str, username: str) -> WriteOutcome:
        """Push this node's record of a user (or its deletion) to every member."""
        node = self.node
        node.require_state(ACTIVE)
        node.sessions.require(token, "CO")
        name = rules.username(username)
        seq = await node.write([("user", name, node.records.users.get(name))])
        return await node.confirm(seq)

    # ------------------------------------------------------------ helpers

    def _get(self, name: str) -> rec.UserRecord:
        user = self.node.records.users.get(name)
        if user is None:
            raise NotFound(f"0xa6 : HSM Error: user {name} does not exist")
        return user

    def _refuse_if_owns_keys(self, user: rec.UserRecord) -> None:
        owned = [h for h, k in self.node.records.keys.items() if k.owner_id == user.user_id]
        if owned:
            raise WrongState(f"user {user.name} owns {len(owned)} key(s) (e.g. handle {owned[0]}); delete them first")

    async def _refuse_if_logged_in(self, name: str, caller: LoginSession) -> None:
        """Nobody may change a user who is logged in, except the user itself
        from the same client (its own sessions)."""
        node = self.node
        local = [s for s in node.sessions.of_user(name)
                 if s.token != caller.token and not (caller.client_id and s.client_id == caller.client_id)]
        remote = 0
        if node.replication is not None:
            remote = await node.replication.sessions_elsewhere(name, caller.client_id)
        if local or remote:
            raise WrongState(
                f"0xb5 : HSM Error: user {name} is logged in ({len(local) + remote} session(s));"
                " it must log out before its password can change or it can be deleted")


def _type_matches(actual: str, requested: str) -> bool:
    # CloudHSM lists an activated PRECO as PCO; CO logins accept both.
    return requested == actual or (requested in ("CO", "PCO") and actual in ("CO", "PCO"))
