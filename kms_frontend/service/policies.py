"""Key policies ("Key policies in AWS KMS" in the AWS KMS Developer Guide): one policy named "default" per key; size quota;
JSON checked; allowed in every key state."""
from __future__ import annotations

from .. import errors
from ..store.repository import Page
from .catalog import Catalog
from .input_rules import validate_policy
from .tags import paginate

POLICY_NAME = "default"


class Policies:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @staticmethod
    def _name(policy_name: str | None) -> None:
        if policy_name not in (None, POLICY_NAME):
            raise errors.NotFoundException(f"No such policy exists: {policy_name}. The only policy name is 'default'.")

    def get(self, ref: str, policy_name: str | None) -> str:
        self._name(policy_name)
        return self.catalog.resolve(ref, allow_alias=False).policy

    async def put(self, ref: str, policy_name: str | None, policy: str) -> None:
        self._name(policy_name)
        validate_policy(policy)
        key = self.catalog.resolve(ref, allow_alias=False)
        await self.catalog.update_key(key, policy=policy)

    def list(self, ref: str, limit: int | None, marker: str | None) -> Page[str]:
        self.catalog.resolve(ref, allow_alias=False)
        return paginate([POLICY_NAME], limit or 100, marker)
