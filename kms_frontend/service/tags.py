"""Tags on KMS keys ("Tagging keys" in the AWS KMS Developer Guide): up to 50, aws: reserved, re-tagging
overwrites, untagging a missing key is a no-op, refused while PendingDeletion."""
from __future__ import annotations

from ..store.repository import Page
from .catalog import Catalog
from .input_rules import page_limit, paginate, validate_tag_keys, validate_tags
from .keys import refuse_pending_deletion


class Tags:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def tag(self, ref: str, tags: list[tuple[str, str]]) -> None:
        key = self.catalog.resolve(ref, allow_alias=False)
        validate_tags(tags, existing=key.tags.keys())
        refuse_pending_deletion(key)
        await self.catalog.update_key(key, tags={**key.tags, **dict(tags)})

    async def untag(self, ref: str, tag_keys: list[str]) -> None:
        validate_tag_keys(tag_keys)
        key = self.catalog.resolve(ref, allow_alias=False)
        refuse_pending_deletion(key)
        await self.catalog.update_key(key, tags={k: v for k, v in key.tags.items() if k not in set(tag_keys)})

    def list(self, ref: str, limit: int | None, marker: str | None) -> Page[tuple[str, str]]:
        key = self.catalog.resolve(ref, allow_alias=False)
        items = list(key.tags.items())
        return paginate(items, page_limit(limit, default=50, maximum=50), marker)
