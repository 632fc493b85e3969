"""Key policies ("Key policies in AWS KMS" in the AWS KMS Developer Guide): one policy named
"default" per key, allowed in every key state; checked when set (size quota, JSON, the policy
grammar, principals that exist) and compiled once per key version for the evaluator.

CreateKey and PutKeyPolicy run the policy lockout safety check: a policy that would not let the
calling principal call PutKeyPolicy on the key afterwards is refused with
``MalformedPolicyDocumentException`` unless ``BypassPolicyLockoutSafetyCheck`` is true."""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from .. import errors
from ..store.repository import KeyRecord, Page
from .catalog import Catalog
from .input_rules import paginate, validate_policy
from .policy_language import CompiledPolicy, PolicyError, PrincipalCheck, compile_policy

if TYPE_CHECKING:
    from .authorization import Authorizer, Caller

log = logging.getLogger("kms_frontend.policies")
POLICY_NAME = "default"
LOCKOUT = "The new key policy will not allow you to update the key policy in the future."


def default_policy(account_id: str) -> str:
    """The key policy CreateKey gives when ``Policy`` is omitted: the account (its root) may do
    everything, which lets the account's IAM policies decide ("Default key policy")."""
    return json.dumps({
        "Version": "2012-10-17", "Id": "key-default-1",
        "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}],
    }, separators=(",", ":"))


def parse_key_policy(policy: str, known: PrincipalCheck) -> CompiledPolicy:
    """A key policy as CreateKey/PutKeyPolicy receive it: the 32 KB quota, JSON, then the grammar
    and its principals. Raises LimitExceededException / MalformedPolicyDocumentException."""
    document = validate_policy(policy)
    try:
        return compile_policy(document, key_policy=True, known=known)
    except PolicyError as exc:
        raise errors.MalformedPolicyDocumentException(exc.reason) from None


def stored_key_policy(key: KeyRecord) -> CompiledPolicy:
    """A key's stored policy, compiled. It was checked when set; a principal named in it that no
    longer exists (the principals file changed) simply matches no caller. A policy that does not
    compile at all (written before policies were checked) allows nobody, and says so in the log."""
    try:
        return compile_policy(json.loads(key.policy), key_policy=True)
    except (PolicyError, ValueError) as exc:
        log.warning("key policy not usable", extra={"event": "key_policy_unusable", "key_id": key.key_id,
                                                    "reason": str(exc)})
        return CompiledPolicy(())


class Policies:
    def __init__(self, catalog: Catalog, authorizer: Authorizer) -> None:
        self.catalog, self.authorizer = catalog, authorizer

    @staticmethod
    def _name(policy_name: str | None) -> None:
        if policy_name not in (None, POLICY_NAME):
            raise errors.NotFoundException(f"No such policy exists: {policy_name}. The only policy name is 'default'.")

    def parse(self, policy: str) -> CompiledPolicy:
        return parse_key_policy(policy, self.authorizer.identities.known)

    def check_lockout(self, compiled: CompiledPolicy, key_arn: str, caller: Caller, *, bypass: bool,
                      operation: str) -> None:
        """The policy lockout safety check (skipped with BypassPolicyLockoutSafetyCheck)."""
        params = {"BypassPolicyLockoutSafetyCheck": bypass}
        if not bypass and not self.authorizer.allows_put_key_policy(compiled, key_arn, caller, params, operation):
            raise errors.MalformedPolicyDocumentException(LOCKOUT)

    def get(self, ref: str, policy_name: str | None) -> str:
        self._name(policy_name)
        return self.catalog.resolve(ref, allow_alias=False).policy

    async def put(self, ref: str, policy_name: str | None, policy: str, caller: Caller, *, bypass: bool) -> None:
        self._name(policy_name)
        compiled = self.parse(policy)
        key = self.catalog.resolve(ref, allow_alias=False)
        self.check_lockout(compiled, key.arn, caller, bypass=bypass, operation="PutKeyPolicy")
        await self.catalog.update_key(key, policy=policy)

    def list(self, ref: str, limit: int | None, marker: str | None) -> Page[str]:
        self.catalog.resolve(ref, allow_alias=False)
        return paginate([POLICY_NAME], limit or 100, marker)
