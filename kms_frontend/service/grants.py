"""Grants ("Grants in AWS KMS" in the KMS Developer Guide; API: CreateGrant, ListGrants,
ListRetirableGrants, RetireGrant, RevokeGrant).

A grant lets its grantee principal run some operations on one key, optionally only when the
request's encryption context equals or includes the grant's constraint. Grants are durable like
every record (the metadata database first, then the in-memory catalogue the evaluator reads), so
a grant is usable as soon as CreateGrant returns; its grant token is accepted wherever
``GrantTokens`` is, as AWS accepts it to use a grant before it is eventually consistent.

Rules kept here: the operations a symmetric encryption key's grant may name, at most one kind of
constraint (up to 8 pairs, values up to 384 characters), a retried CreateGrant with the same
``Name`` and properties returns the same grant id and a new token, 50,000 grants per key and 500
per grantee principal per key (``LimitExceededException``), CreateGrant refused on a Disabled
(``DisabledException``) or PendingDeletion key, allowed on an Unavailable one (a disconnected
store), List/Retire/Revoke allowed in every key state. Who may create, retire or revoke is the
evaluator's (:mod:`.authorization`).
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import errors
from ..secret_box import SealError, SecretBox
from ..store.repository import GrantRecord, KeyRecord, KeyState, Page
from .catalog import Catalog
from .context import Context
from .input_rules import page_limit, paginate, require
from .keys import refuse_pending_deletion

if TYPE_CHECKING:
    from .authorization import Authorizer

MAX_GRANTS_PER_KEY = 50_000
MAX_GRANTS_PER_GRANTEE = 500
MAX_CONSTRAINT_PAIRS = 8
MAX_CONSTRAINT_VALUE = 384
SYMMETRIC_GRANT_OPERATIONS = ("Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                              "ReEncryptFrom", "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey",
                              "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext")
CONSTRAINT_TYPES = ("EncryptionContextEquals", "EncryptionContextSubset")
GRANT_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_TOKEN_CONTEXT = b"grant-token:v1"


def invalid_grant_token() -> errors.InvalidGrantTokenException:
    return errors.InvalidGrantTokenException("The request was rejected because the specified grant token is not valid.")


class GrantTokens:
    """Grant tokens: opaque strings that name one grant, sealed under the frontend's master key
    (so a token cannot be forged or altered). Each CreateGrant returns a new one."""

    def __init__(self, box: SecretBox, cache_size: int = 4096) -> None:
        self._box = box
        self._known: OrderedDict[str, str] = OrderedDict()  # token -> grant id
        self._cache_size = cache_size

    def new(self, grant_id: str) -> str:
        sealed = self._box.seal(bytes.fromhex(grant_id), context=_TOKEN_CONTEXT)
        token = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        self._remember(token, grant_id)
        return token

    def grant_id(self, token: str) -> str:
        """The grant a token names; InvalidGrantTokenException for anything this service did not issue."""
        found = self._known.get(token)
        if found is not None:
            return found
        try:
            sealed = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            grant_id = self._box.open(sealed, context=_TOKEN_CONTEXT).hex()
        except (ValueError, binascii.Error, SealError, UnicodeError):
            raise invalid_grant_token() from None
        self._remember(token, grant_id)
        return grant_id

    def check_all(self, tokens: Sequence[str]) -> None:
        for token in tokens:
            self.grant_id(token)

    def _remember(self, token: str, grant_id: str) -> None:
        self._known[token] = grant_id
        if len(self._known) > self._cache_size:
            self._known.popitem(last=False)


@dataclass(frozen=True)
class CreateGrantRequest:
    key_id: str
    grantee_principal: str | None
    operations: tuple[str, ...]
    retiring_principal: str | None = None
    constraints: Mapping[str, Any] | None = None
    name: str | None = None
    grantee_service_principal: str | None = None
    retiring_service_principal: str | None = None
    dry_run: bool = False


class Grants:
    def __init__(self, ctx: Context, catalog: Catalog, authorizer: Authorizer, tokens: GrantTokens) -> None:
        self.ctx, self.catalog, self.authorizer, self.tokens = ctx, catalog, authorizer, tokens

    # ------------------------------------------------------------ CreateGrant

    async def create(self, req: CreateGrantRequest) -> tuple[str, str]:
        """Returns (grant id, grant token)."""
        if req.grantee_service_principal or req.retiring_service_principal:
            raise errors.UnsupportedOperationException(
                "Grants for AWS service principals (GranteeServicePrincipal, RetiringServicePrincipal) are not"
                " supported here: no AWS service calls this endpoint. Name an IAM principal in GranteePrincipal.")
        require(granteePrincipal=req.grantee_principal)
        assert req.grantee_principal is not None
        key = self.catalog.resolve(req.key_id, allow_alias=False)
        for member, principal in (("GranteePrincipal", req.grantee_principal),
                                  ("RetiringPrincipal", req.retiring_principal)):
            if principal is not None and not self.authorizer.identities.valid_principal(principal):
                raise errors.InvalidArnException(
                    f"{member} {principal} is not a valid principal: give the ARN of an IAM user, role or "
                    "assumed-role session that exists, or arn:aws:iam::ACCOUNT:root.")
        self._check_operations(key, req.operations)
        constraint_type, context = self._constraint(req.constraints)
        if key.key_state == KeyState.DISABLED:
            raise errors.key_disabled(key.arn)
        refuse_pending_deletion(key)
        if req.dry_run:
            raise errors.dry_run_succeeded()
        grant = GrantRecord(
            grant_id=secrets.token_hex(32), key_id=key.key_id, grantee_principal=req.grantee_principal,
            operations=tuple(dict.fromkeys(req.operations)), issuing_account=f"arn:aws:iam::{self.catalog.arns.account_id}:root",
            creation_date=self.ctx.now_ms(), name=req.name or "", retiring_principal=req.retiring_principal,
            constraint_type=constraint_type, constraint_context=dict(context))
        existing = self._same_grant(grant) if req.name else None
        if existing is not None:  # a retry: same grant, new token
            return existing.grant_id, self.tokens.new(existing.grant_id)
        current = self.catalog.grants.get(key.key_id, {})
        if len(current) >= MAX_GRANTS_PER_KEY:
            raise errors.LimitExceededException(
                f"Key {key.arn} already has {MAX_GRANTS_PER_KEY} grants, the most a KMS key can have. Retire or"
                " revoke grants it no longer needs.")
        if sum(1 for g in current.values() if g.grantee_principal == grant.grantee_principal) >= MAX_GRANTS_PER_GRANTEE:
            raise errors.LimitExceededException(
                f"Key {key.arn} already has {MAX_GRANTS_PER_GRANTEE} grants for {grant.grantee_principal}, the most"
                " one grantee principal can have on a KMS key. Retire or revoke some of them.")
        await self.catalog.create_grant(grant)
        return grant.grant_id, self.tokens.new(grant.grant_id)

    @staticmethod
    def _check_operations(key: KeyRecord, operations: Sequence[str]) -> None:
        if not operations:
            raise errors.validation_error([errors.validation_failure(
                "operations", "Member must have length greater than or equal to 1", "[]")])
        invalid = [op for op in operations if op not in SYMMETRIC_GRANT_OPERATIONS]
        if invalid:
            raise errors.ValidationException(
                f"Grant operations {', '.join(invalid)} are not valid for {key.arn}, a symmetric encryption key"
                f" (KeyUsage {key.key_usage}); valid operations are {', '.join(SYMMETRIC_GRANT_OPERATIONS)}.")

    @staticmethod
    def _constraint(constraints: Mapping[str, Any] | None) -> tuple[str | None, Mapping[str, str]]:
        if not constraints:
            return None, {}
        if constraints.get("SourceArn"):
            raise errors.UnsupportedOperationException(
                "The SourceArn grant constraint applies to grants for AWS service principals, which are not"
                " supported here.")
        given = [t for t in CONSTRAINT_TYPES if constraints.get(t) is not None]
        if len(given) != 1:
            raise errors.ValidationException(
                "Constraints must have exactly one of EncryptionContextEquals and EncryptionContextSubset.")
        context = constraints[given[0]]
        if len(context) > MAX_CONSTRAINT_PAIRS:
            raise errors.ValidationException(
                f"A grant constraint can have at most {MAX_CONSTRAINT_PAIRS} encryption context pairs; this one has"
                f" {len(context)}.")
        long = [k for k, v in context.items() if len(v) > MAX_CONSTRAINT_VALUE]
        if long:
            raise errors.ValidationException(
                f"The value of encryption context key {long[0]!r} in the grant constraint is longer than"
                f" {MAX_CONSTRAINT_VALUE} characters.")
        return given[0], context

    def _same_grant(self, grant: GrantRecord) -> GrantRecord | None:
        """A grant with the same name and properties (CreateGrant retried with ``Name``)."""
        def properties(g: GrantRecord) -> tuple[Any, ...]:
            return (g.name, g.grantee_principal, g.retiring_principal, frozenset(g.operations), g.constraint_type,
                    tuple(sorted(g.constraint_context.items())))
        wanted = properties(grant)
        return next((g for g in self.catalog.grants.get(grant.key_id, {}).values() if properties(g) == wanted), None)

    # ------------------------------------------------------------ lists

    def list_grants(self, key_ref: str, limit: int | None, marker: str | None, grant_id: str | None,
                    grantee: str | None) -> tuple[Page[GrantRecord], KeyRecord]:
        key = self.catalog.resolve(key_ref, allow_alias=False)
        if grant_id is not None and not GRANT_ID_RE.match(grant_id):
            raise invalid_grant_id()
        items = [g for g in self.catalog.grants.get(key.key_id, {}).values()
                 if (grant_id is None or g.grant_id == grant_id)
                 and (grantee is None or g.grantee_principal == grantee)]
        return paginate(items, page_limit(limit, default=50, maximum=100), marker), key

    def list_retirable(self, retiring_principal: str | None, retiring_service_principal: str | None,
                       limit: int | None, marker: str | None) -> Page[GrantRecord]:
        if retiring_service_principal:
            raise errors.UnsupportedOperationException(
                "RetiringServicePrincipal names an AWS service principal; no AWS service calls this endpoint.")
        require(retiringPrincipal=retiring_principal)
        items = [g for grants in self.catalog.grants.values() for g in grants.values()
                 if g.retiring_principal == retiring_principal]
        return paginate(items, page_limit(limit, default=50, maximum=100), marker)

    def key_arn(self, grant: GrantRecord) -> str:
        return self.catalog.arns.key(grant.key_id)

    # ------------------------------------------------------------ retire and revoke

    async def retire(self, token: str | None, key_ref: str | None, grant_id: str | None, dry_run: bool) -> GrantRecord:
        if token:
            grant_id = self.tokens.grant_id(token)
            grant = self.catalog.grant(grant_id)
            if grant is None:
                raise grant_not_found(grant_id)
            if key_ref and self.catalog.resolve(key_ref, allow_alias=False).key_id != grant.key_id:
                raise grant_not_found(grant_id)
        else:
            if not (key_ref and grant_id):
                raise errors.ValidationException(
                    "RetireGrant needs the grant token, or both KeyId and GrantId, to identify the grant.")
            grant = self._grant_of(key_ref, grant_id)
        if dry_run:
            raise errors.dry_run_succeeded()
        await self.catalog.delete_grant(grant)
        return grant

    async def revoke(self, key_ref: str, grant_id: str, dry_run: bool) -> GrantRecord:
        grant = self._grant_of(key_ref, grant_id)
        if dry_run:
            raise errors.dry_run_succeeded()
        await self.catalog.delete_grant(grant)
        return grant

    def _grant_of(self, key_ref: str, grant_id: str) -> GrantRecord:
        key = self.catalog.resolve(key_ref, allow_alias=False)
        if not GRANT_ID_RE.match(grant_id):
            raise invalid_grant_id()
        grant = self.catalog.grants.get(key.key_id, {}).get(grant_id)
        if grant is None:
            raise grant_not_found(grant_id)
        return grant


def invalid_grant_id() -> errors.InvalidGrantIdException:
    return errors.InvalidGrantIdException("The request was rejected because the specified GrantId is not valid.")


def grant_not_found(grant_id: str) -> errors.NotFoundException:
    return errors.NotFoundException(f"Grant ID {grant_id} not found. It may have been retired or revoked.")

