"""The one authorization evaluator (DESIGN decision 9): every request of every entry point is
decided here, inside :meth:`Services.call <kms_frontend.service.frontend.Services.call>`, before
its operation runs.

How AWS decides a request on a KMS key ("Determining access to an AWS KMS key" in the KMS
Developer Guide, "Policy evaluation logic" in the IAM User Guide), and so this module:

1. An explicit ``Deny`` that applies, in the key policy or in the caller's IAM policies (or its
   session policy), denies.
2. Otherwise the key policy decides: a statement allowing the caller directly (its ARN, its role
   for a session, ``*``, or its account when the caller is that account's root) allows; a statement
   allowing only the caller's account delegates to IAM, and then an IAM policy of the caller must
   allow too. Principals of another account always need both. IAM policies alone never open a key.
3. Otherwise a grant for the caller that covers the operation (and whose constraints the request's
   encryption context meets) allows.
4. Otherwise: ``AccessDeniedException`` with AWS's wording.

Operations that name no key (CreateKey, ListKeys, ListAliases, GenerateRandom, the custom key
store operations, ListRetirableGrants, the admin operations) are decided by IAM policies alone;
the account root is allowed them. Each operation declares in the operation table
(:mod:`.operations`) its IAM action and where its resources come from (:class:`KeyParam`,
:class:`CiphertextKey`, :class:`AliasParam` ...). Decrypt and ReEncrypt's source are judged
against the key inside the ciphertext, never ``*``.

Speed: the crypto path must not pay for this per request. The verdict of the policies is cached
per (key id, key version, principal, action) whenever no statement that applied read a condition
key that varies per request (the encryption context, the source IP ...): a key's version changes
with its policy, tags or state, and principals do not change while the frontend runs. Grants are
checked per request only when the policies do not allow, and live in memory like keys.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import errors
from ..ciphertext import key_id_of
from ..store.repository import GrantRecord, KeyRecord, KeyState
from .catalog import Catalog
from .input_rules import validate_alias_name
from .model import Params
from .policies import stored_key_policy
from .policy_language import ACCOUNT_RE, IAM_ARN_RE, CompiledPolicy, Findings, evaluate
from .principals import Identities, Principal

if TYPE_CHECKING:
    from .grants import GrantTokens
    from .operations import Operation

MAX_CACHED_DECISIONS = 100_000


class Caller(NamedTuple):
    """Who sent a request, and from where: every call of :meth:`Services.call` has one."""

    principal: Principal
    source_ip: str | None = None
    api: str = ""                 # "grpc" or "aws": where the request came in (for the audit trail)
    secure_transport: bool = False


# ---------------------------------------------------------------- resources an operation declares


@dataclass(frozen=True)
class KeyParam:
    """The KMS key a request member names (key id or ARN; alias name or ARN where ``aliases``)."""

    member: str
    aliases: bool = True
    action: str | None = None     # instead of the operation's action (ReEncrypt's destination)
    context: str | None = None    # the member holding the encryption context this check reads


@dataclass(frozen=True)
class CiphertextKey:
    """The KMS key inside a ciphertext blob (Decrypt, ReEncrypt's source)."""

    member: str
    action: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class AliasParam:
    """The alias a request member names (alias ARN; IAM policies only)."""

    member: str


@dataclass(frozen=True)
class AliasTargetKey:
    """The key the alias in a request member points to now (UpdateAlias, DeleteAlias)."""

    member: str


@dataclass(frozen=True)
class Account:
    """No resource: IAM policies alone decide, on resource ``*``."""


@dataclass(frozen=True)
class Public:
    """Needs no permission (GetCallerIdentity)."""


@dataclass(frozen=True)
class GrantToRetire:
    """RetireGrant: the grant decides who may retire it."""


@dataclass(frozen=True)
class RoleParam:
    """AssumeRole: the role's trust, and the caller's IAM policies, on the role ARN."""

    member: str


Resource = KeyParam | CiphertextKey | AliasParam | AliasTargetKey | Account | Public | GrantToRetire | RoleParam
ACCOUNT = Account()
PUBLIC = Public()

# Grant operations that carry an encryption context (grant constraints apply only to them).
CONTEXT_OPERATIONS = frozenset({"Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                                "ReEncryptFrom", "ReEncryptTo", "GenerateDataKeyPair",
                                "GenerateDataKeyPairWithoutPlaintext"})


# ---------------------------------------------------------------- the request as conditions see it


class RequestValues:
    """Condition key values of one check, computed only when a condition asks.

    Supported keys (any other key is absent from every request, so a condition on it does not
    match, as AWS treats a missing key): ``kms:EncryptionContext:<key>``,
    ``kms:EncryptionContextKeys``, ``kms:CallerAccount``, ``kms:ViaService`` (never present: no AWS
    service calls here), ``kms:GrantIsForAWSResource`` (false), ``kms:GrantOperations``,
    ``kms:GranteePrincipal``, ``kms:RetiringPrincipal``, ``kms:GrantConstraintType``,
    ``kms:KeyOrigin``, ``kms:KeySpec``, ``kms:KeyUsage``, ``kms:CustomerMasterKeySpec``,
    ``kms:CustomerMasterKeyUsage``, ``kms:MultiRegion``, ``kms:RequestAlias``,
    ``kms:ResourceAliases``, ``kms:EncryptionAlgorithm``, ``kms:ReEncryptOnSameKey``,
    ``kms:BypassPolicyLockoutSafetyCheck``, ``aws:PrincipalArn``, ``aws:PrincipalAccount``,
    ``aws:PrincipalType``, ``aws:userid``, ``aws:username``, ``aws:SourceIp``,
    ``aws:SecureTransport``, ``aws:CurrentTime``, ``aws:EpochTime``, ``aws:RequestTag/<tag>``,
    ``aws:TagKeys``, ``aws:ResourceTag/<tag>``."""

    __slots__ = ("caller", "operation", "params", "key", "context_member", "catalog", "now_s")

    def __init__(self, caller: Caller, operation: str, params: Params, key: KeyRecord | None,
                 context_member: str | None, catalog: Catalog, now_s: float) -> None:
        self.caller, self.operation, self.params, self.key = caller, operation, params, key
        self.context_member, self.catalog, self.now_s = context_member, catalog, now_s

    def get(self, key: str) -> Any:
        if key.startswith("kms:encryptioncontext:"):
            wanted = key[len("kms:encryptioncontext:"):]
            for k, v in self._encryption_context().items():
                if k.lower() == wanted:
                    return v
            return None
        if key.startswith("aws:resourcetag/"):
            return _folded(self.key.tags if self.key is not None else {}, key[len("aws:resourcetag/"):])
        if key.startswith("aws:requesttag/"):
            return _folded(self._request_tags(), key[len("aws:requesttag/"):])
        getter = _GETTERS.get(key)
        return getter(self) if getter is not None else None

    def _encryption_context(self) -> Mapping[str, str]:
        if self.operation == "CreateGrant":
            constraints = self.params.get("Constraints") or {}
            return constraints.get("EncryptionContextEquals") or constraints.get("EncryptionContextSubset") or {}
        if self.context_member is None:
            return {}
        return self.params.get(self.context_member) or {}

    def _request_tags(self) -> dict[str, str]:
        return {t["TagKey"]: t["TagValue"] for t in self.params.get("Tags", [])}

    def _key_property(self, member: str, attribute: str, default: str) -> str | None:
        if self.operation == "CreateKey":
            return self.params.get(member) or default
        return getattr(self.key, attribute) if self.key is not None else None

    def _request_alias(self) -> str | None:
        ref = self.params.get("KeyId") or ""
        if ref.startswith("alias/"):
            return ref
        if ref.startswith("arn:") and ":alias/" in ref:
            return "alias/" + ref.split(":alias/", 1)[1]
        return None

    def _resource_aliases(self) -> list[str] | None:
        if self.key is None:
            return None
        return sorted(a.alias_name for a in self.catalog.aliases.values() if a.key_id == self.key.key_id) or None

    def _reencrypt_on_same_key(self) -> bool | None:
        if self.operation != "ReEncrypt":
            return None
        try:
            source = key_id_of(self.params.get("CiphertextBlob") or b"")
            return self.catalog.resolve(self.params["DestinationKeyId"]).key_id == source
        except (errors.KmsError, ValueError):
            return False


def _folded(tags: Mapping[str, str], name: str) -> str | None:
    for k, v in tags.items():
        if k.lower() == name:
            return v
    return None


def _grant_value(member: str) -> Any:
    def get(r: RequestValues) -> Any:
        return r.params.get(member) if r.operation == "CreateGrant" else None
    return get


_GETTERS: dict[str, Any] = {
    "kms:encryptioncontextkeys": lambda r: sorted(r._encryption_context()) or None,
    "kms:calleraccount": lambda r: r.caller.principal.account,
    "kms:viaservice": lambda r: None,
    "kms:grantisforawsresource": lambda r: False if r.operation in ("CreateGrant", "ListGrants", "RevokeGrant")
    else None,
    "kms:grantoperations": lambda r: list(r.params.get("Operations", [])) or None
    if r.operation == "CreateGrant" else None,
    "kms:granteeprincipal": _grant_value("GranteePrincipal"),
    "kms:retiringprincipal": _grant_value("RetiringPrincipal"),
    "kms:grantconstrainttype": lambda r: next(iter(sorted(
        k for k in (r.params.get("Constraints") or {}) if k.startswith("EncryptionContext"))), None)
    if r.operation == "CreateGrant" else None,
    "kms:keyorigin": lambda r: r._key_property("Origin", "origin", "AWS_KMS"),
    "kms:keyspec": lambda r: r._key_property("KeySpec", "key_spec", "SYMMETRIC_DEFAULT"),
    "kms:customermasterkeyspec": lambda r: r._key_property("CustomerMasterKeySpec", "key_spec", "SYMMETRIC_DEFAULT"),
    "kms:keyusage": lambda r: r._key_property("KeyUsage", "key_usage", "ENCRYPT_DECRYPT"),
    "kms:customermasterkeyusage": lambda r: r._key_property("KeyUsage", "key_usage", "ENCRYPT_DECRYPT"),
    "kms:multiregion": lambda r: bool(r.params.get("MultiRegion")) if r.operation == "CreateKey"
    else (False if r.key is not None else None),
    "kms:requestalias": lambda r: r._request_alias(),
    "kms:resourcealiases": lambda r: r._resource_aliases(),
    "kms:encryptionalgorithm": lambda r: (r.params.get("EncryptionAlgorithm")
                                          or r.params.get("SourceEncryptionAlgorithm") or "SYMMETRIC_DEFAULT")
    if r.operation in ("Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext")
    else None,
    "kms:reencryptonsamekey": lambda r: r._reencrypt_on_same_key(),
    "kms:bypasspolicylockoutsafetycheck": lambda r: bool(r.params.get("BypassPolicyLockoutSafetyCheck"))
    if r.operation in ("CreateKey", "PutKeyPolicy") else None,
    "aws:principalarn": lambda r: r.caller.principal.principal_arn,
    "aws:principalaccount": lambda r: r.caller.principal.account,
    "aws:principaltype": lambda r: r.caller.principal.principal_type,
    "aws:userid": lambda r: r.caller.principal.user_id,
    "aws:username": lambda r: r.caller.principal.username,
    "aws:sourceip": lambda r: r.caller.source_ip,
    "aws:securetransport": lambda r: r.caller.secure_transport,
    "aws:currenttime": lambda r: dt.datetime.fromtimestamp(r.now_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "aws:epochtime": lambda r: int(r.now_s),
    "aws:tagkeys": lambda r: sorted(r._request_tags()) or None,
}

SUPPORTED_CONDITION_KEYS = tuple(sorted(_GETTERS)) + ("kms:encryptioncontext:<key>", "aws:resourcetag/<tag>",
                                                      "aws:requesttag/<tag>")


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What the policies (not grants) say: ``allowed``, or why not (AWS's words after the resource)."""

    allowed: bool
    why: str = ""
    explicit: bool = False  # an explicit deny: grants cannot help


ALLOWED = Verdict(True)


def _no_resource_allow(action: str) -> Verdict:
    return Verdict(False, f"because no resource-based policy allows the {action} action")


def _no_identity_allow(action: str) -> Verdict:
    return Verdict(False, f"because no identity-based policy allows the {action} action")


_RESOURCE_DENY = Verdict(False, "with an explicit deny in a resource-based policy", explicit=True)
_IDENTITY_DENY = Verdict(False, "with an explicit deny in an identity-based policy", explicit=True)
_SESSION_DENY = Verdict(False, "with an explicit deny in a session policy", explicit=True)


class Authorizer:
    def __init__(self, catalog: Catalog, identities: Identities, tokens: GrantTokens, account_id: str,
                 clock: Callable[[], float]) -> None:
        self.catalog, self.identities, self.tokens = catalog, identities, tokens
        self.account_id, self.clock = account_id, clock
        self._compiled: dict[tuple[str, int], CompiledPolicy] = {}
        self._cache: dict[tuple[str, int, str, str], Verdict] = {}

    # ------------------------------------------------------------ the entry point

    def authorize(self, op: Operation, params: Params, caller: Caller) -> list[KeyRecord]:
        """Raise AccessDeniedException (or the error resolving a resource gives) unless ``caller``
        may run ``op`` with ``params``; return the keys it was authorized on (for the audit trail)."""
        if "GrantTokens" in params:
            self.tokens.check_all(params["GrantTokens"])
        keys: list[KeyRecord] = []
        for resource in op.resources:
            action = getattr(resource, "action", None) or op.action
            if isinstance(resource, KeyParam):
                ref = params.get(resource.member)
                if ref:
                    key = self._resolve(ref, resource.aliases, caller.principal)
                    self._check_key(op, action, key, params, caller, resource.context)
                    keys.append(key)
            elif isinstance(resource, CiphertextKey):
                sealed_by = self._ciphertext_key(params.get(resource.member))
                if sealed_by is not None:  # else the operation itself fails (InvalidCiphertext ...)
                    self._check_key(op, action, sealed_by, params, caller, resource.context)
                    keys.append(sealed_by)
            elif isinstance(resource, AliasParam):
                alias_name = validate_alias_name(params[resource.member])
                self._check_identity(op, action, self.catalog.arns.alias(alias_name), params, caller)
            elif isinstance(resource, AliasTargetKey):
                alias = self.catalog.aliases.get(params[resource.member])
                target = self.catalog.keys.get(alias.key_id) if alias is not None else None
                if target is not None:
                    self._check_key(op, action, target, params, caller, None)
                    keys.append(target)
            elif isinstance(resource, Account):
                self._check_account(op, action, params, caller)
            elif isinstance(resource, GrantToRetire):
                granted = self._check_retire(params, caller)
                if granted is not None:
                    keys.append(granted)
            elif isinstance(resource, RoleParam):
                self._check_assume_role(params[resource.member], params, caller)
        return keys

    # ------------------------------------------------------------ resolving resources

    def _resolve(self, ref: str, aliases: bool, principal: Principal) -> KeyRecord:
        if principal.account != self.account_id and not ref.startswith("arn:"):
            # A key id or alias name means a key of the caller's own account; this endpoint
            # holds one account's keys, so another account's principal must use the key ARN.
            region = self.catalog.arns.region
            if ref.startswith("alias/"):
                raise errors.alias_not_found(f"arn:aws:kms:{region}:{principal.account}:{ref}")
            raise errors.key_not_found(f"arn:aws:kms:{region}:{principal.account}:key/{ref}")
        return self.catalog.resolve(ref, allow_alias=aliases)

    def _ciphertext_key(self, blob: bytes | None) -> KeyRecord | None:
        if not blob:
            return None
        try:
            key_id = key_id_of(blob)
        except ValueError:
            return None
        key = self.catalog.keys.get(key_id)
        if key is None or key.key_state == KeyState.CREATING:
            return None
        return key

    # ------------------------------------------------------------ checks

    def _check_key(self, op: Operation, action: str, key: KeyRecord, params: Params, caller: Caller,
                   context_member: str | None) -> None:
        principal = caller.principal
        cache_key = (key.key_id, key.version, principal.arn, action)
        verdict = self._cache.get(cache_key)
        if verdict is None:
            values = RequestValues(caller, op.name, params, key, context_member, self.catalog, self.clock())
            verdict, dynamic = self._key_verdict(action, key, principal, values)
            if not dynamic:
                if len(self._cache) >= MAX_CACHED_DECISIONS:
                    self._cache.clear()
                self._cache[cache_key] = verdict
        if verdict.allowed:
            return
        if not verdict.explicit and self._grant_allows(op, action, key, params, caller, context_member):
            return
        raise errors.access_denied(principal.arn, action, key.arn, verdict.why)

    def _key_verdict(self, action: str, key: KeyRecord, principal: Principal,
                     values: RequestValues) -> tuple[Verdict, bool]:
        """The policies' verdict on ``action`` on ``key``, and whether it read per-request values."""
        key_policy = evaluate((self.key_policy(key),), action, key.arn, principal, values)
        if key_policy.deny:
            return _RESOURCE_DENY, key_policy.dynamic
        identity, session, dynamic = self._identity(action, key.arn, principal, values)
        dynamic = dynamic or key_policy.dynamic
        if identity.deny:
            return _IDENTITY_DENY, dynamic
        if session is not None and session.deny:
            return _SESSION_DENY, dynamic
        if not (key_policy.direct or key_policy.account):
            return _no_resource_allow(action), dynamic
        identity_allows = principal.is_root or identity.direct
        same_account = principal.account == self.account_id
        allowed = (key_policy.direct and same_account) or identity_allows
        if not allowed:
            return _no_identity_allow(action), dynamic
        if session is not None and not session.direct:
            return Verdict(False, f"because no session policy allows the {action} action"), dynamic
        return ALLOWED, dynamic

    def _identity(self, action: str, resource: str, principal: Principal,
                  values: RequestValues) -> tuple[Findings, Findings | None, bool]:
        identity = evaluate(principal.policies, action, resource, principal, values)
        session = None
        if principal.session_policy is not None:
            session = evaluate((principal.session_policy,), action, resource, principal, values)
        return identity, session, identity.dynamic or (session is not None and session.dynamic)

    def _identity_verdict(self, action: str, resource: str, principal: Principal,
                          values: RequestValues) -> Verdict:
        """IAM policies alone (account-level actions, aliases): the root is allowed."""
        if principal.is_root:
            return ALLOWED
        identity, session, _ = self._identity(action, resource, principal, values)
        if identity.deny:
            return _IDENTITY_DENY
        if session is not None and session.deny:
            return _SESSION_DENY
        if not identity.direct:
            return _no_identity_allow(action)
        if session is not None and not session.direct:
            return Verdict(False, f"because no session policy allows the {action} action")
        return ALLOWED

    def _check_identity(self, op: Operation, action: str, resource: str, params: Params, caller: Caller,
                        shown: str | None = None) -> None:
        values = RequestValues(caller, op.name, params, None, None, self.catalog, self.clock())
        verdict = self._identity_verdict(action, resource, caller.principal, values)
        if not verdict.allowed:
            raise errors.access_denied(caller.principal.arn, action, shown if shown is not None else resource,
                                       verdict.why)

    def authorize_identity(self, caller: Caller, operation: str, action: str, resources: list[str],
                           params: Params) -> None:
        """IAM policies alone for another AWS service on this endpoint (the CloudHSM v2 control
        plane, ``cloudhsm:<Operation>``), exactly as account-level KMS actions are judged: an
        explicit deny wins, the account root may, anyone else needs an identity-based allow for
        every resource the request names."""
        principal = caller.principal
        if principal.account != self.account_id:
            raise errors.access_denied(principal.arn, action, "*", f"because this endpoint holds the resources of "
                                       f"account {self.account_id} only")
        values = RequestValues(caller, operation, params, None, None, self.catalog, self.clock())
        for resource in resources:
            verdict = self._identity_verdict(action, resource, principal, values)
            if not verdict.allowed:
                raise errors.access_denied(principal.arn, action, resource, verdict.why)

    def _check_account(self, op: Operation, action: str, params: Params, caller: Caller) -> None:
        principal = caller.principal
        if principal.account != self.account_id:
            raise errors.access_denied(
                principal.arn, action, "*", f"because this endpoint holds the KMS resources of account "
                f"{self.account_id} only; a principal of account {principal.account} can use its keys by key ARN "
                "where their key policies allow it")
        self._check_identity(op, action, "*", params, caller)
        if op.name == "CreateKey" and params.get("Tags"):
            # Tagging a key as it is created needs kms:TagResource too (IAM; the key does not exist yet).
            values = RequestValues(caller, op.name, params, None, None, self.catalog, self.clock())
            verdict = self._identity_verdict("kms:TagResource", "*", principal, values)
            if not verdict.allowed:
                raise errors.access_denied(principal.arn, "kms:TagResource", None, verdict.why)

    # ------------------------------------------------------------ grants

    def _grant_allows(self, op: Operation, action: str, key: KeyRecord, params: Params, caller: Caller,
                      context_member: str | None) -> bool:
        grants = self.catalog.grants.get(key.key_id)
        if not grants:
            return False
        grant_op = action.partition(":")[2]
        principal = caller.principal
        context = (params.get(context_member) or {}) if context_member else {}
        for grant in grants.values():
            if grant_op not in grant.operations or not self.grantee_matches(grant.grantee_principal, principal,
                                                                            action, key.arn):
                continue
            if grant_op in CONTEXT_OPERATIONS and not constraints_met(grant, context):
                continue
            if grant_op == "CreateGrant" and not child_within_parent(params, grant):
                continue
            return True
        return False

    def grantee_matches(self, grantee: str, principal: Principal, action: str, key_arn: str) -> bool:
        """A grant's grantee (or retiring) principal covers the caller: the same user, the role of a
        session, the session itself, or the caller's account (its root directly; its other
        principals where their IAM policies allow ``action`` on the key)."""
        if grantee in (principal.arn, principal.role_arn):
            return True
        m = IAM_ARN_RE.match(grantee)
        account = m["account"] if m is not None and m["kind"] == "root" else (
            grantee if ACCOUNT_RE.match(grantee) else None)
        if account is None or account != principal.account:
            return False
        if principal.is_root:
            return True
        values = RequestValues(Caller(principal), "", {}, None, None, self.catalog, self.clock())
        return self._identity_verdict(action, key_arn, principal, values).allowed

    def _check_retire(self, params: Params, caller: Caller) -> KeyRecord | None:
        """RetireGrant: the retiring principal, the grantee when the grant allows RetireGrant, or the
        account the grant was created in (its root, and its principals whose IAM policies allow
        kms:RetireGrant). An explicit Deny of kms:RetireGrant in an IAM policy wins; kms:RetireGrant
        in a key policy has no effect ("Retiring and revoking grants", KMS Developer Guide)."""
        grant = self.grant_to_retire(params)
        if grant is None:
            return None
        key = self.catalog.keys.get(grant.key_id)
        if key is None:
            return None
        principal, action = caller.principal, "kms:RetireGrant"
        values = RequestValues(caller, "RetireGrant", params, key, None, self.catalog, self.clock())
        identity, session, _ = self._identity(action, key.arn, principal, values)
        if identity.deny or (session is not None and session.deny):
            raise errors.access_denied(principal.arn, action, key.arn,
                                       (_IDENTITY_DENY if identity.deny else _SESSION_DENY).why)
        if grant.retiring_principal and self.grantee_matches(grant.retiring_principal, principal, action, key.arn):
            return key
        if "RetireGrant" in grant.operations and self.grantee_matches(grant.grantee_principal, principal, action,
                                                                       key.arn):
            return key
        issuing = IAM_ARN_RE.match(grant.issuing_account)
        if issuing is not None and self.grantee_matches(f"arn:aws:iam::{issuing['account']}:root", principal,
                                                        action, key.arn):
            return key
        raise errors.access_denied(principal.arn, action, key.arn, _no_identity_allow(action).why)

    def grant_to_retire(self, params: Params) -> GrantRecord | None:
        """The grant a RetireGrant names (by token, or by key and grant id); None when it names
        none that exists (the operation then reports it)."""
        token, key_ref, grant_id = params.get("GrantToken"), params.get("KeyId"), params.get("GrantId")
        if token:
            grant_id = self.tokens.grant_id(token)
        elif not (key_ref and grant_id):
            return None
        grant = self.catalog.grant(grant_id) if grant_id else None
        if grant is None:
            return None
        if key_ref:
            key = self.catalog.resolve(key_ref, allow_alias=False)
            if key.key_id != grant.key_id:
                return None
        return grant

    # ------------------------------------------------------------ STS

    def _check_assume_role(self, role_arn: str, params: Params, caller: Caller) -> None:
        principal, action = caller.principal, "sts:AssumeRole"
        if principal.is_root:
            raise errors.AccessDenied("Roles may not be assumed by root accounts.")
        role = self.identities.role(role_arn)
        values = RequestValues(caller, "AssumeRole", params, None, None, self.catalog, self.clock())
        verdict = self._identity_verdict(action, role_arn, principal, values)
        if not verdict.allowed:
            raise errors.sts_access_denied(principal.arn, action, role_arn, verdict.why)
        if role is None or not role.trust.match(principal):
            raise errors.sts_access_denied(principal.arn, action, role_arn,
                                           "because no resource-based policy allows the sts:AssumeRole action")

    # ------------------------------------------------------------ key policies

    def key_policy(self, key: KeyRecord) -> CompiledPolicy:
        """The key's policy, compiled once per key version (policies were checked when stored)."""
        found = self._compiled.get((key.key_id, key.version))
        if found is None:
            found = stored_key_policy(key)
            if len(self._compiled) >= MAX_CACHED_DECISIONS:
                self._compiled.clear()
            self._compiled[(key.key_id, key.version)] = found
        return found

    def allows_put_key_policy(self, policy: CompiledPolicy, key_arn: str, caller: Caller, params: Params,
                              operation: str) -> bool:
        """The policy lockout safety check: would ``policy`` let ``caller`` call PutKeyPolicy on the
        key afterwards (directly, or through its account)?"""
        values = RequestValues(caller, operation, params, None, None, self.catalog, self.clock())
        found = evaluate((policy,), "kms:PutKeyPolicy", key_arn, caller.principal, values)
        return not found.deny and (found.direct or found.account)


def constraints_met(grant: GrantRecord, context: Mapping[str, str]) -> bool:
    """Grant constraints: the request's encryption context equals (EncryptionContextEquals) or
    includes (EncryptionContextSubset) the constraint's pairs; keys compare case-insensitively,
    values exactly ("GrantConstraints", KMS API Reference)."""
    if grant.constraint_type is None:
        return True
    wanted = {k.lower(): v for k, v in grant.constraint_context.items()}
    got = {k.lower(): v for k, v in context.items()}
    if grant.constraint_type == "EncryptionContextEquals":
        return got == wanted
    return all(got.get(k) == v for k, v in wanted.items())


def child_within_parent(params: Params, parent: GrantRecord) -> bool:
    """A grantee whose CreateGrant permission comes from a grant may create only grants with some
    or all of its operations and constraints at least as strict ("Granting CreateGrant permission")."""
    if not set(params.get("Operations", [])) <= set(parent.operations):
        return False
    if parent.constraint_type is None:
        return True
    constraints = params.get("Constraints") or {}
    parent_pairs = set(parent.constraint_context.items())
    if parent.constraint_type == "EncryptionContextEquals":
        return dict(constraints.get("EncryptionContextEquals") or {}) == dict(parent.constraint_context)
    for kind in ("EncryptionContextEquals", "EncryptionContextSubset"):
        pairs = constraints.get(kind)
        if pairs is not None and parent_pairs <= set(pairs.items()):
            return True
    return False

