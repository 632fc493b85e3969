"""Aliases ("Using aliases" in the AWS KMS Developer Guide): alias/<name>, unique per account and Region, one key
each, up to 50 per key, alias/aws/ reserved; deleting a key deletes its aliases."""
from __future__ import annotations

from .. import errors
from ..store.repository import (
    AliasRecord,
    DuplicateAliasError,
    InvalidMarkerError,
    KeyRecord,
    NotFoundError,
    Page,
)
from .catalog import Catalog
from .context import Context
from .input_rules import page_limit, validate_alias_name
from .keys import refuse_pending_deletion

MAX_ALIASES_PER_KEY = 50


class Aliases:
    def __init__(self, ctx: Context, catalog: Catalog) -> None:
        self.ctx, self.catalog = ctx, catalog

    async def create(self, alias_name: str, target_key_id: str) -> None:
        validate_alias_name(alias_name)
        key = self.catalog.resolve(target_key_id, allow_alias=False)
        refuse_pending_deletion(key)
        if alias_name in self.catalog.aliases:
            raise errors.alias_already_exists(self.catalog.arns.alias(alias_name))
        self._check_alias_quota(key)
        now = self.ctx.now_ms()
        try:
            record = await self.ctx.db(self.ctx.repo.create_alias, AliasRecord(alias_name, key.key_id, now, now))
        except DuplicateAliasError:
            raise errors.alias_already_exists(self.catalog.arns.alias(alias_name)) from None
        self.catalog.aliases[alias_name] = record

    def _check_alias_quota(self, key: KeyRecord) -> None:
        if sum(1 for a in self.catalog.aliases.values() if a.key_id == key.key_id) >= MAX_ALIASES_PER_KEY:
            raise errors.LimitExceededException(
                f"Key {key.arn} already has {MAX_ALIASES_PER_KEY} aliases, the maximum. Delete one first.")

    async def update(self, alias_name: str, target_key_id: str) -> None:
        validate_alias_name(alias_name)
        if alias_name not in self.catalog.aliases:
            raise errors.alias_not_found(self.catalog.arns.alias(alias_name))
        key = self.catalog.resolve(target_key_id, allow_alias=False)
        refuse_pending_deletion(key)
        if self.catalog.aliases[alias_name].key_id != key.key_id:
            self._check_alias_quota(key)
        record = await self.ctx.db(self.ctx.repo.update_alias, alias_name, key.key_id, self.ctx.now_ms())
        self.catalog.aliases[alias_name] = record

    async def delete(self, alias_name: str) -> None:
        validate_alias_name(alias_name)
        if alias_name not in self.catalog.aliases:
            raise errors.alias_not_found(self.catalog.arns.alias(alias_name))
        try:
            await self.ctx.db(self.ctx.repo.delete_alias, alias_name)
        except NotFoundError:
            pass
        self.catalog.aliases.pop(alias_name, None)

    async def list(self, key_ref: str | None, limit: int | None, marker: str | None) -> Page[AliasRecord]:
        key_id = self.catalog.resolve(key_ref, allow_alias=False).key_id if key_ref else None
        try:
            return await self.ctx.db(self.ctx.repo.list_aliases, key_id=key_id,
                                     limit=page_limit(limit, default=50, maximum=100), marker=marker)
        except InvalidMarkerError:
            raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None
