"""Tags on KMS keys (reference 3.8): up to 50, aws: reserved, re-tagging
overwrites, untagging a missing key is a no-op, refused while PendingDeletion."""
from __future__ import annotations

from ..store.repository import Page
from ..validation import Checks, page_limit, validate_tag_keys, validate_tags
from .catalog import Catalog
from .keys import Keys


class Tags:
    def __init__(self, keys: Keys, catalog: Catalog) -> None:
        self.keys, self.catalog = keys, catalog

    async def tag(self, ref: str, tags: list[tuple[str, str]]) -> None:
        Checks().key_id(ref).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        validate_tags(tags, existing=key.tags.keys())
        self.keys.refuse_pending_deletion(key)
        await self.keys._save(key, tags={**key.tags, **dict(tags)})

    async def untag(self, ref: str, tag_keys: list[str]) -> None:
        Checks().key_id(ref).done()
        validate_tag_keys(tag_keys)
        key = self.catalog.resolve(ref, allow_alias=False)
        self.keys.refuse_pending_deletion(key)
        await self.keys._save(key, tags={k: v for k, v in key.tags.items() if k not in set(tag_keys)})

    def list(self, ref: str, limit: int | None, marker: str | None) -> Page[tuple[str, str]]:
        Checks().key_id(ref).limit(limit).marker(marker).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        items = list(key.tags.items())
        return paginate(items, page_limit(limit, default=50, maximum=50), marker)


def paginate(items: list, limit: int, marker: str | None) -> Page:
    """Offset paging over a small in-memory list; the marker is the next offset."""
    from .. import errors

    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None
    if start < 0 or start > len(items):
        raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.")
    end = start + limit
    return Page(items[start:end], str(end) if end < len(items) else None)
