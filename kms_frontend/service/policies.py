"""Key policies (reference 3.9): one policy named "default" per key; size quota;
JSON checked; allowed in every key state."""
from __future__ import annotations

from .. import errors
from ..store.repository import Page
from ..validation import Checks, validate_policy
from .catalog import Catalog
from .keys import Keys
from .tags import paginate

POLICY_NAME = "default"


class Policies:
    def __init__(self, keys: Keys, catalog: Catalog) -> None:
        self.keys, self.catalog = keys, catalog

    @staticmethod
    def _name(policy_name: str | None) -> None:
        Checks().policy_name(policy_name).done()
        if policy_name not in (None, POLICY_NAME):
            raise errors.NotFoundException(f"No such policy exists: {policy_name}. The only policy name is 'default'.")

    def get(self, ref: str, policy_name: str | None) -> str:
        Checks().key_id(ref).done()
        self._name(policy_name)
        return self.catalog.resolve(ref, allow_alias=False).policy

    async def put(self, ref: str, policy_name: str | None, policy: str) -> None:
        Checks().key_id(ref).done()
        self._name(policy_name)
        validate_policy(policy)
        key = self.catalog.resolve(ref, allow_alias=False)
        await self.keys._save(key, policy=policy)

    def list(self, ref: str, limit: int | None, marker: str | None) -> Page[str]:
        Checks().key_id(ref).limit(limit).marker(marker).done()
        self.catalog.resolve(ref, allow_alias=False)
        return paginate([POLICY_NAME], limit or 100, marker)
