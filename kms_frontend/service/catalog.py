"""The in-memory catalogue of KMS keys, aliases and grants, and key-reference resolution.

The crypto path must not query the metadata database per request, so every key,
alias and grant lives here as well; mutations write the database first, then the
catalogue; with several workers, each applies the others' writes before its next call
(:mod:`.workers`). References accept what AWS accepts:
key id, key ARN, alias name, alias ARN (``allow_alias`` off for operations that
take only a key id or ARN).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..store.repository import AliasRecord, GrantRecord, KeyRecord, KeyState, NotFoundError, StaleRecordError
from .context import Context

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>key|alias)/(?P<rest>.+)$")


@dataclass(frozen=True)
class Arns:
    region: str
    account_id: str

    def key(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:key/{key_id}"

    def alias(self, alias_name: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:{alias_name}"


class Catalog:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.arns = Arns(ctx.settings.region, ctx.settings.account_id)
        self.keys: dict[str, KeyRecord] = {}
        self.aliases: dict[str, AliasRecord] = {}
        # Keys the periodic sweeps look at (Creating, PendingDeletion): a sweep a second must not
        # scan 100k settled keys to find the few it acts on.
        self._unsettled: dict[str, KeyRecord] = {}
        self.grants: dict[str, dict[str, GrantRecord]] = {}  # key id -> grant id -> grant
        self._grant_keys: dict[str, str] = {}                 # grant id -> key id

    async def load(self) -> None:
        self.keys, self._unsettled = {}, {}
        for k in await self._all_keys():
            self._put(k)
        self.aliases = {}
        marker = None
        while True:
            page = await self.ctx.db(self.ctx.repo.list_aliases, limit=1000, marker=marker)
            self.aliases.update({a.alias_name: a for a in page.items})
            if not page.next_marker:
                break
            marker = page.next_marker
        self.grants, self._grant_keys = {}, {}
        for grant in await self.ctx.db(self.ctx.repo.list_grants):
            self._put_grant(grant)

    async def _all_keys(self, store_id: str | None = None) -> list[KeyRecord]:
        out, marker = [], None
        while True:
            page = await self.ctx.db(self.ctx.repo.list_keys, custom_key_store_id=store_id, limit=1000, marker=marker)
            out += page.items
            if not page.next_marker:
                return out
            marker = page.next_marker

    async def reload_store(self, store_id: str) -> None:
        """After the connector changed many keys of a store at once (Unavailable and back)."""
        for k in await self._all_keys(store_id):
            self._put(k)

    # ------------------------------------------------------------ the one write path of keys

    async def create_key(self, record: KeyRecord) -> KeyRecord:
        """Store a new key (database first, then the catalogue)."""
        return self._put(await self.ctx.db(self.ctx.repo.create_key, record))

    async def update_key(self, key: KeyRecord, **changes: Any) -> KeyRecord:
        """Change a key (database first, then the catalogue), retrying a stale read."""
        for _ in range(3):
            try:
                return self._put(await self.ctx.db(self.ctx.repo.update_key, dataclasses.replace(key, **changes)))
            except StaleRecordError:
                key = self._put(await self.ctx.db(self.ctx.repo.get_key, key.key_id))
        raise errors.internal("The key changed concurrently. Retry the request.")

    async def delete_key(self, key_id: str) -> None:
        """Remove a key and its aliases (database first, then the catalogue)."""
        try:
            await self.ctx.db(self.ctx.repo.delete_key, key_id)
        except NotFoundError:
            pass
        self.forget_key(key_id)

    def forget_key(self, key_id: str) -> None:
        """A key is gone (deleted here, or by another worker): out of memory with its aliases and grants."""
        self.keys.pop(key_id, None)
        self._unsettled.pop(key_id, None)
        for name in [n for n, a in self.aliases.items() if a.key_id == key_id]:
            del self.aliases[name]
        for grant_id in self.grants.pop(key_id, {}):
            self._grant_keys.pop(grant_id, None)

    def apply_key(self, key: KeyRecord) -> None:
        """Another worker changed a key: take the stored record unless this one already holds a newer one."""
        held = self.keys.get(key.key_id)
        if held is None or held.version <= key.version:
            self._put(key)

    def set_grants(self, key_id: str, grants: list[GrantRecord]) -> None:
        """Another worker changed the grants of a key: these are all of them now."""
        for grant_id in self.grants.pop(key_id, {}):
            self._grant_keys.pop(grant_id, None)
        for grant in grants:
            self._put_grant(grant)

    def _put(self, key: KeyRecord) -> KeyRecord:
        self.keys[key.key_id] = key
        if key.key_state in (KeyState.CREATING, KeyState.PENDING_DELETION):
            self._unsettled[key.key_id] = key
        else:
            self._unsettled.pop(key.key_id, None)
        return key

    def in_state(self, state: KeyState) -> list[KeyRecord]:
        """Keys in Creating or PendingDeletion, without a scan of every key."""
        assert state in (KeyState.CREATING, KeyState.PENDING_DELETION)
        return [k for k in self._unsettled.values() if k.key_state == state]

    # ------------------------------------------------------------ grants (database first, then memory)

    async def create_grant(self, grant: GrantRecord) -> GrantRecord:
        return self._put_grant(await self.ctx.db(self.ctx.repo.create_grant, grant))

    async def delete_grant(self, grant: GrantRecord) -> None:
        try:
            await self.ctx.db(self.ctx.repo.delete_grant, grant.grant_id)
        except NotFoundError:
            pass
        self.grants.get(grant.key_id, {}).pop(grant.grant_id, None)
        if not self.grants.get(grant.key_id):
            self.grants.pop(grant.key_id, None)
        self._grant_keys.pop(grant.grant_id, None)

    def _put_grant(self, grant: GrantRecord) -> GrantRecord:
        self.grants.setdefault(grant.key_id, {})[grant.grant_id] = grant
        self._grant_keys[grant.grant_id] = grant.key_id
        return grant

    def grant(self, grant_id: str) -> GrantRecord | None:
        key_id = self._grant_keys.get(grant_id)
        return self.grants.get(key_id, {}).get(grant_id) if key_id is not None else None

    def keys_of_store(self, store_id: str) -> list[KeyRecord]:
        return [k for k in self.keys.values() if k.custom_key_store_id == store_id]

    # ------------------------------------------------------------ resolution

    def resolve(self, ref: str, *, allow_alias: bool = True) -> KeyRecord:
        """The key a reference names, or AWS's NotFoundException."""
        if not ref:
            raise errors.invalid_key_id(ref)
        key_id = self._key_id(ref, allow_alias)
        key = self.keys.get(key_id)
        if key is None or key.key_state == KeyState.CREATING:
            raise errors.key_not_found(self.arns.key(key_id))
        return key

    def _key_id(self, ref: str, allow_alias: bool) -> str:
        if UUID_RE.match(ref):
            return ref
        m = ARN_RE.match(ref)
        if m is not None:
            if m["region"] != self.arns.region or m["account"] != self.arns.account_id:
                raise errors.key_not_found(ref) if m["kind"] == "key" else errors.alias_not_found(ref)
            if m["kind"] == "key":
                if not UUID_RE.match(m["rest"]):
                    raise errors.invalid_key_id(ref)
                return m["rest"]
            if not allow_alias:
                raise errors.invalid_key_id(ref)
            return self._alias_target(m["rest"] if m["rest"].startswith("alias/") else "alias/" + m["rest"])
        if ref.startswith("alias/"):
            if not allow_alias:
                raise errors.invalid_key_id(ref)
            return self._alias_target(ref)
        raise errors.invalid_key_id(ref)

    def _alias_target(self, alias_name: str) -> str:
        alias = self.aliases.get(alias_name)
        if alias is None:
            raise errors.alias_not_found(self.arns.alias(alias_name))
        return alias.key_id
