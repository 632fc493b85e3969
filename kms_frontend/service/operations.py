"""Every operation the frontend serves, by its AWS name: the one table both adapters dispatch to.

Each entry declares how the evaluator authorizes the operation (:mod:`.authorization`): its IAM
action (``kms:<Name>`` unless given) and where its resources come from: the key a member names
(:class:`KeyParam`), the key inside a ciphertext (:class:`CiphertextKey`), an alias, or none
(:data:`ACCOUNT`: IAM policies alone). A handler takes the operation's parameters (AWS member
names, already checked against the model and authorized by :meth:`Services.call
<kms_frontend.service.frontend.Services.call>`) and the caller, calls the operation family that
holds its rules, and returns the result shaped as AWS shapes it (:mod:`.shapes`). Operations of
the KMS model that are not here answer ``UnsupportedOperationException`` (asymmetric keys,
multi-Region keys...).
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from . import shapes
from .authorization import (
    ACCOUNT,
    PUBLIC,
    AliasParam,
    AliasTargetKey,
    Caller,
    CiphertextKey,
    GrantToRetire,
    KeyParam,
    Resource,
    RoleParam,
)
from .grants import CreateGrantRequest
from .key_stores import UpdateRequest
from .keys import CreateKeyRequest
from .model import STS_OPERATIONS, Params
from .shapes import ALGORITHM, Shape

if TYPE_CHECKING:
    from .frontend import Services

Handler = Callable[["Services", Params, Caller], Awaitable[Shape | None]]

# Operations that change nothing: a caller hanging up may cancel them at any await.
_READS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                    "GenerateRandom", "GetCallerIdentity", "Sign", "Verify", "GenerateMac", "VerifyMac",
                    "DeriveSharedSecret", "Encapsulate", "Decapsulate", "GenerateDataKeyPair",
                    "GenerateDataKeyPairWithoutPlaintext"})
_READ_PREFIXES = ("Describe", "List", "Get")


def changes_state(operation: str) -> bool:
    return operation not in _READS and not operation.startswith(_READ_PREFIXES)


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    changes_state: bool  # runs to its end even if the caller hangs up
    action: str = ""     # the IAM action the evaluator checks
    resources: tuple[Resource, ...] = (ACCOUNT,)
    service: str = "kms"


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, *resources: Resource, action: str | None = None) -> Callable[[Handler], Handler]:
    """Register a handler; ``resources`` says what the evaluator authorizes (required: an
    operation never runs unauthorized by default)."""
    if not resources:
        raise ValueError(f"{name}: declare what authorizes it (KeyParam, CiphertextKey, ACCOUNT ...)")
    service = "sts" if name in STS_OPERATIONS else "kms"

    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = Operation(name, fn, changes_state(name), action or f"{service}:{name}", resources,
                                     service)
        return fn
    return register


KEY = KeyParam("KeyId", aliases=False)  # operations that take a key id or key ARN only

# ---------------------------------------------------------------- custom key stores


@operation("CreateCustomKeyStore", ACCOUNT)
async def create_custom_key_store(s: Services, p: Params, c: Caller) -> Shape:
    store_id = await s.key_stores.create(p["CustomKeyStoreName"], p.get("CloudHsmClusterId"),
                                         p.get("TrustAnchorCertificate"), p.get("KeyStorePassword"),
                                         p.get("CustomKeyStoreType"))
    return {"CustomKeyStoreId": store_id}


@operation("DescribeCustomKeyStores", ACCOUNT)
async def describe_custom_key_stores(s: Services, p: Params, c: Caller) -> Shape:
    page = await s.key_stores.describe(p.get("CustomKeyStoreId"), p.get("CustomKeyStoreName"), p.get("Limit"),
                                       p.get("Marker"))
    return shapes.paged(page, "CustomKeyStores", [shapes.custom_key_store(x) for x in page.items])


@operation("UpdateCustomKeyStore", ACCOUNT)
async def update_custom_key_store(s: Services, p: Params, c: Caller) -> None:
    await s.key_stores.update(UpdateRequest(p["CustomKeyStoreId"], p.get("NewCustomKeyStoreName"),
                                            p.get("KeyStorePassword"), p.get("CloudHsmClusterId")))


@operation("ConnectCustomKeyStore", ACCOUNT)
async def connect_custom_key_store(s: Services, p: Params, c: Caller) -> None:
    await s.key_stores.connect(p["CustomKeyStoreId"])


@operation("DisconnectCustomKeyStore", ACCOUNT)
async def disconnect_custom_key_store(s: Services, p: Params, c: Caller) -> None:
    await s.key_stores.disconnect(p["CustomKeyStoreId"])


@operation("DeleteCustomKeyStore", ACCOUNT)
async def delete_custom_key_store(s: Services, p: Params, c: Caller) -> None:
    await s.key_stores.delete(p["CustomKeyStoreId"])


# ---------------------------------------------------------------- keys


@operation("CreateKey", ACCOUNT)
async def create_key(s: Services, p: Params, c: Caller) -> Shape:
    key = await s.keys.create(CreateKeyRequest(
        custom_key_store_id=p.get("CustomKeyStoreId"), origin=p.get("Origin"), description=p.get("Description"),
        policy=p.get("Policy"), key_usage=p.get("KeyUsage"), key_spec=p.get("KeySpec"),
        customer_master_key_spec=p.get("CustomerMasterKeySpec"), multi_region=bool(p.get("MultiRegion")),
        tags=[(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])],
        bypass_policy_lockout_safety_check=bool(p.get("BypassPolicyLockoutSafetyCheck"))), c)
    return {"KeyMetadata": shapes.key_metadata(key, s.account_id)}


@operation("DescribeKey", KeyParam("KeyId"))
async def describe_key(s: Services, p: Params, c: Caller) -> Shape:
    return {"KeyMetadata": shapes.key_metadata(s.keys.describe(p["KeyId"]), s.account_id)}


@operation("ListKeys", ACCOUNT)
async def list_keys(s: Services, p: Params, c: Caller) -> Shape:
    page = await s.keys.list_keys(p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Keys", [shapes.key_list_entry(k) for k in page.items])


@operation("EnableKey", KEY)
async def enable_key(s: Services, p: Params, c: Caller) -> None:
    await s.keys.enable(p["KeyId"])


@operation("DisableKey", KEY)
async def disable_key(s: Services, p: Params, c: Caller) -> None:
    await s.keys.disable(p["KeyId"])


@operation("UpdateKeyDescription", KEY)
async def update_key_description(s: Services, p: Params, c: Caller) -> None:
    await s.keys.update_description(p["KeyId"], p["Description"])


@operation("ScheduleKeyDeletion", KEY)
async def schedule_key_deletion(s: Services, p: Params, c: Caller) -> Shape:
    key, window = await s.keys.schedule_deletion(p["KeyId"], p.get("PendingWindowInDays"))
    return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.key_state,
            "PendingWindowInDays": window}


@operation("CancelKeyDeletion", KEY)
async def cancel_key_deletion(s: Services, p: Params, c: Caller) -> Shape:
    key = await s.keys.cancel_deletion(p["KeyId"])
    return {"KeyId": key.arn}


async def _rotation_unsupported(s: Services, p: Params, c: Caller) -> Shape:
    await s.keys.unsupported(p["KeyId"], rotation=True)
    return {}


async def _import_unsupported(s: Services, p: Params, c: Caller) -> Shape:
    await s.keys.unsupported(p["KeyId"], rotation=False)
    return {}


for _name in ("EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand",
              "ListKeyRotations"):
    operation(_name, KEY)(_rotation_unsupported)
for _name in ("GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"):
    operation(_name, KEY)(_import_unsupported)


# What no key in a CloudHSM key store can do: each is a symmetric ENCRYPT_DECRYPT key, single-Region.
# The key is looked up and the caller authorized as for any key operation (a wrong id is
# NotFoundException, a missing permission AccessDeniedException); then the refusal, whatever the
# key's state: it is the reason that holds, and the one a caller can act on (AWS does not say
# which it checks first).

def _wrong_key_usage(name: str) -> Handler:
    async def refuse(s: Services, p: Params, c: Caller) -> Shape:
        key = s.catalog.resolve(p["KeyId"])
        raise errors.InvalidKeyUsageException(f"{key.arn} key usage is {key.key_usage} which is not valid for {name}.")
    return refuse


def _not_for_custom_key_stores(name: str, why: str, *, aliases: bool = True) -> Handler:
    async def refuse(s: Services, p: Params, c: Caller) -> Shape:
        key = s.catalog.resolve(p["KeyId"], allow_alias=aliases)
        raise errors.UnsupportedOperationException(why.format(arn=key.arn, spec=key.key_spec, op=name))
    return refuse


for _name in ("Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret", "Encapsulate", "Decapsulate"):
    operation(_name, KeyParam("KeyId"))(_wrong_key_usage(_name))
operation("GetPublicKey", KeyParam("KeyId"))(_not_for_custom_key_stores(
    "GetPublicKey", "{arn} key spec is {spec} which is not valid for {op}: it has no public key."))
for _name in ("GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"):
    operation(_name, KeyParam("KeyId", context="EncryptionContext"))(_not_for_custom_key_stores(
        _name, "{arn} is in a custom key store; {op} does not support KMS keys in custom key stores."))
for _name in ("ReplicateKey", "UpdatePrimaryRegion"):
    operation(_name, KEY)(_not_for_custom_key_stores(
        _name, "{arn} is not a multi-Region key: keys in custom key stores are single-Region.", aliases=False))


# ---------------------------------------------------------------- aliases, tags, key policies


@operation("CreateAlias", AliasParam("AliasName"), KeyParam("TargetKeyId", aliases=False))
async def create_alias(s: Services, p: Params, c: Caller) -> None:
    await s.aliases.create(p["AliasName"], p["TargetKeyId"])


@operation("UpdateAlias", AliasParam("AliasName"), AliasTargetKey("AliasName"), KeyParam("TargetKeyId", aliases=False))
async def update_alias(s: Services, p: Params, c: Caller) -> None:
    await s.aliases.update(p["AliasName"], p["TargetKeyId"])


@operation("DeleteAlias", AliasParam("AliasName"), AliasTargetKey("AliasName"))
async def delete_alias(s: Services, p: Params, c: Caller) -> None:
    await s.aliases.delete(p["AliasName"])


@operation("ListAliases", ACCOUNT)
async def list_aliases(s: Services, p: Params, c: Caller) -> Shape:
    page = await s.aliases.list(p.get("KeyId"), p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Aliases", [shapes.alias(a, s.catalog.arns) for a in page.items])


@operation("TagResource", KEY)
async def tag_resource(s: Services, p: Params, c: Caller) -> None:
    await s.tags.tag(p["KeyId"], [(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])])


@operation("UntagResource", KEY)
async def untag_resource(s: Services, p: Params, c: Caller) -> None:
    await s.tags.untag(p["KeyId"], list(p.get("TagKeys", [])))


@operation("ListResourceTags", KEY)
async def list_resource_tags(s: Services, p: Params, c: Caller) -> Shape:
    page = s.tags.list(p["KeyId"], p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Tags", [shapes.tag(k, v) for k, v in page.items])


@operation("GetKeyPolicy", KEY)
async def get_key_policy(s: Services, p: Params, c: Caller) -> Shape:
    return {"Policy": s.policies.get(p["KeyId"], p.get("PolicyName")), "PolicyName": "default"}


@operation("PutKeyPolicy", KEY)
async def put_key_policy(s: Services, p: Params, c: Caller) -> None:
    await s.policies.put(p["KeyId"], p.get("PolicyName"), p["Policy"], c,
                         bypass=bool(p.get("BypassPolicyLockoutSafetyCheck")))


@operation("ListKeyPolicies", KEY)
async def list_key_policies(s: Services, p: Params, c: Caller) -> Shape:
    page = s.policies.list(p["KeyId"], p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "PolicyNames", list(page.items))


# ---------------------------------------------------------------- cryptographic operations


@operation("Encrypt", KeyParam("KeyId", context="EncryptionContext"))
async def encrypt(s: Services, p: Params, c: Caller) -> Shape:
    blob, key = await s.crypto.encrypt(p["KeyId"], p["Plaintext"], p.get("EncryptionContext", {}),
                                       algorithm=p.get("EncryptionAlgorithm"), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": ALGORITHM}


@operation("Decrypt", CiphertextKey("CiphertextBlob", context="EncryptionContext"))
async def decrypt(s: Services, p: Params, c: Caller) -> Shape:
    out = await s.crypto.decrypt(p.get("CiphertextBlob"), p.get("EncryptionContext", {}), p.get("KeyId"),
                                 algorithm=p.get("EncryptionAlgorithm"), dry_run=bool(p.get("DryRun")))
    return {"KeyId": out.key.arn, "Plaintext": out.plaintext, "EncryptionAlgorithm": ALGORITHM}


@operation("ReEncrypt", CiphertextKey("CiphertextBlob", action="kms:ReEncryptFrom", context="SourceEncryptionContext"),
           KeyParam("DestinationKeyId", action="kms:ReEncryptTo", context="DestinationEncryptionContext"))
async def re_encrypt(s: Services, p: Params, c: Caller) -> Shape:
    blob, source, dest = await s.crypto.re_encrypt(
        p.get("CiphertextBlob"), p.get("SourceEncryptionContext", {}), p.get("SourceKeyId"),
        p["DestinationKeyId"], p.get("DestinationEncryptionContext", {}), p.get("SourceEncryptionAlgorithm"),
        p.get("DestinationEncryptionAlgorithm"), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
            "SourceEncryptionAlgorithm": ALGORITHM, "DestinationEncryptionAlgorithm": ALGORITHM}


@operation("GenerateDataKey", KeyParam("KeyId", context="EncryptionContext"))
async def generate_data_key(s: Services, p: Params, c: Caller) -> Shape:
    blob, plaintext, key = await s.crypto.generate_data_key(
        p["KeyId"], p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=True, dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": key.arn}


@operation("GenerateDataKeyWithoutPlaintext", KeyParam("KeyId", context="EncryptionContext"))
async def generate_data_key_without_plaintext(s: Services, p: Params, c: Caller) -> Shape:
    blob, _, key = await s.crypto.generate_data_key(
        p["KeyId"], p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=False, dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn}


@operation("GenerateRandom", ACCOUNT)
async def generate_random(s: Services, p: Params, c: Caller) -> Shape:
    return {"Plaintext": await s.crypto.generate_random(p.get("NumberOfBytes"), p.get("CustomKeyStoreId"))}


# ---------------------------------------------------------------- the frontend's own admin operations


@operation("ListOrphanedKeyMaterial", ACCOUNT)
async def list_orphaned_key_material(s: Services, p: Params, c: Caller) -> Shape:
    found = await s.keys.orphans(p["CustomKeyStoreId"], delete=bool(p.get("Delete")))
    return {"Orphans": [{"KeyHandle": o.key_handle, "Label": o.label, "Outcome": outcome} for o, outcome in found]}


@operation("ListAuditEvents", ACCOUNT)
async def list_audit_events(s: Services, p: Params, c: Caller) -> Shape:
    events = await s.audit.events(p.get("AfterId", 0), p.get("Limit"), p.get("Event"), p.get("KeyId"),
                                  p.get("Principal"))
    return {"Events": [{"EventId": e.event_id or 0, "Timestamp": e.timestamp, "Event": e.event,
                        "KeyId": e.key_id or "", "CustomKeyStoreId": e.custom_key_store_id or "",
                        "DetailsJson": json.dumps(e.details), "Principal": e.principal or ""} for e in events]}


# ---------------------------------------------------------------- grants


@operation("CreateGrant", KeyParam("KeyId", aliases=False))
async def create_grant(s: Services, p: Params, c: Caller) -> Shape:
    grant_id, token = await s.grants.create(CreateGrantRequest(
        key_id=p["KeyId"], grantee_principal=p.get("GranteePrincipal"), operations=tuple(p["Operations"]),
        retiring_principal=p.get("RetiringPrincipal"), constraints=p.get("Constraints"), name=p.get("Name"),
        grantee_service_principal=p.get("GranteeServicePrincipal"),
        retiring_service_principal=p.get("RetiringServicePrincipal"), dry_run=bool(p.get("DryRun"))))
    return {"GrantId": grant_id, "GrantToken": token}


@operation("ListGrants", KEY)
async def list_grants(s: Services, p: Params, c: Caller) -> Shape:
    page, key = s.grants.list_grants(p["KeyId"], p.get("Limit"), p.get("Marker"), p.get("GrantId"),
                                     p.get("GranteePrincipal"))
    return shapes.paged(page, "Grants", [shapes.grant(g, key.arn) for g in page.items])


@operation("ListRetirableGrants", ACCOUNT)
async def list_retirable_grants(s: Services, p: Params, c: Caller) -> Shape:
    page = s.grants.list_retirable(p.get("RetiringPrincipal"), p.get("RetiringServicePrincipal"), p.get("Limit"),
                                   p.get("Marker"))
    return shapes.paged(page, "Grants", [shapes.grant(g, s.grants.key_arn(g)) for g in page.items])


@operation("RetireGrant", GrantToRetire())
async def retire_grant(s: Services, p: Params, c: Caller) -> None:
    await s.grants.retire(p.get("GrantToken"), p.get("KeyId"), p.get("GrantId"), bool(p.get("DryRun")))


@operation("RevokeGrant", KEY)
async def revoke_grant(s: Services, p: Params, c: Caller) -> None:
    await s.grants.revoke(p["KeyId"], p["GrantId"], bool(p.get("DryRun")))


# ---------------------------------------------------------------- STS (the AWS endpoint only)


@operation("GetCallerIdentity", PUBLIC)
async def get_caller_identity(s: Services, p: Params, c: Caller) -> Shape:
    return s.sts.caller_identity(c)


@operation("AssumeRole", RoleParam("RoleArn"))
async def assume_role(s: Services, p: Params, c: Caller) -> Shape:
    session = s.sts.assume_role(c, p)
    out: Shape = {
        "Credentials": {"AccessKeyId": session.access_key_id, "SecretAccessKey": session.secret_access_key,
                        "SessionToken": session.session_token, "Expiration": session.expires_ms},
        "AssumedRoleUser": {"AssumedRoleId": session.principal.user_id, "Arn": session.principal.arn}}
    if p.get("Policy"):
        out["PackedPolicySize"] = max(1, len(p["Policy"]) * 100 // 2048)
    if p.get("SourceIdentity"):
        out["SourceIdentity"] = p["SourceIdentity"]
    return out
