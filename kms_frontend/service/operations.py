"""Every operation the frontend serves, by its AWS name: the one table both adapters dispatch to.

A handler takes the operation's parameters (AWS member names, already checked against the model
by :meth:`Services.call <kms_frontend.service.frontend.Services.call>`), calls the operation
family that holds its rules, and returns the result shaped as AWS shapes it
(:mod:`.shapes`). Operations of the KMS model that are not here answer
``UnsupportedOperationException`` (grants, asymmetric keys, multi-Region keys...).
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import shapes
from .key_stores import UpdateRequest
from .keys import CreateKeyRequest
from .model import Params
from .shapes import ALGORITHM, Shape

if TYPE_CHECKING:
    from .frontend import Services

Handler = Callable[["Services", Params], Awaitable[Shape | None]]

# Operations that change nothing: a caller hanging up may cancel them at any await.
_READS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                    "GenerateRandom"})
_READ_PREFIXES = ("Describe", "List", "Get")


def changes_state(operation: str) -> bool:
    return operation not in _READS and not operation.startswith(_READ_PREFIXES)


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    changes_state: bool  # runs to its end even if the caller hangs up


OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = Operation(name, fn, changes_state(name))
        return fn
    return register


def _grant_tokens(p: Params) -> list[str]:
    return list(p.get("GrantTokens", []))


# ---------------------------------------------------------------- custom key stores


@operation("CreateCustomKeyStore")
async def create_custom_key_store(s: Services, p: Params) -> Shape:
    store_id = await s.key_stores.create(p["CustomKeyStoreName"], p.get("CloudHsmClusterId"),
                                         p.get("TrustAnchorCertificate"), p.get("KeyStorePassword"),
                                         p.get("CustomKeyStoreType"))
    return {"CustomKeyStoreId": store_id}


@operation("DescribeCustomKeyStores")
async def describe_custom_key_stores(s: Services, p: Params) -> Shape:
    page = await s.key_stores.describe(p.get("CustomKeyStoreId"), p.get("CustomKeyStoreName"), p.get("Limit"),
                                       p.get("Marker"))
    return shapes.paged(page, "CustomKeyStores", [shapes.custom_key_store(x) for x in page.items])


@operation("UpdateCustomKeyStore")
async def update_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.update(UpdateRequest(p["CustomKeyStoreId"], p.get("NewCustomKeyStoreName"),
                                            p.get("KeyStorePassword"), p.get("CloudHsmClusterId")))


@operation("ConnectCustomKeyStore")
async def connect_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.connect(p["CustomKeyStoreId"])


@operation("DisconnectCustomKeyStore")
async def disconnect_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.disconnect(p["CustomKeyStoreId"])


@operation("DeleteCustomKeyStore")
async def delete_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.delete(p["CustomKeyStoreId"])


# ---------------------------------------------------------------- keys


@operation("CreateKey")
async def create_key(s: Services, p: Params) -> Shape:
    key = await s.keys.create(CreateKeyRequest(
        custom_key_store_id=p.get("CustomKeyStoreId"), origin=p.get("Origin"), description=p.get("Description"),
        policy=p.get("Policy"), key_usage=p.get("KeyUsage"), key_spec=p.get("KeySpec"),
        customer_master_key_spec=p.get("CustomerMasterKeySpec"), multi_region=bool(p.get("MultiRegion")),
        tags=[(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])],
        bypass_policy_lockout_safety_check=bool(p.get("BypassPolicyLockoutSafetyCheck"))))
    return {"KeyMetadata": shapes.key_metadata(key, s.account_id)}


@operation("DescribeKey")
async def describe_key(s: Services, p: Params) -> Shape:
    return {"KeyMetadata": shapes.key_metadata(s.keys.describe(p["KeyId"]), s.account_id)}


@operation("ListKeys")
async def list_keys(s: Services, p: Params) -> Shape:
    page = await s.keys.list_keys(p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Keys", [shapes.key_list_entry(k) for k in page.items])


@operation("EnableKey")
async def enable_key(s: Services, p: Params) -> None:
    await s.keys.enable(p["KeyId"])


@operation("DisableKey")
async def disable_key(s: Services, p: Params) -> None:
    await s.keys.disable(p["KeyId"])


@operation("UpdateKeyDescription")
async def update_key_description(s: Services, p: Params) -> None:
    await s.keys.update_description(p["KeyId"], p["Description"])


@operation("ScheduleKeyDeletion")
async def schedule_key_deletion(s: Services, p: Params) -> Shape:
    key, window = await s.keys.schedule_deletion(p["KeyId"], p.get("PendingWindowInDays"))
    return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.key_state,
            "PendingWindowInDays": window}


@operation("CancelKeyDeletion")
async def cancel_key_deletion(s: Services, p: Params) -> Shape:
    key = await s.keys.cancel_deletion(p["KeyId"])
    return {"KeyId": key.arn}


async def _rotation_unsupported(s: Services, p: Params) -> Shape:
    await s.keys.unsupported(p["KeyId"], rotation=True)
    return {}


async def _import_unsupported(s: Services, p: Params) -> Shape:
    await s.keys.unsupported(p["KeyId"], rotation=False)
    return {}


for _name in ("EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus"):
    operation(_name)(_rotation_unsupported)
for _name in ("GetParametersForImport", "ImportKeyMaterial"):
    operation(_name)(_import_unsupported)


# ---------------------------------------------------------------- aliases, tags, key policies


@operation("CreateAlias")
async def create_alias(s: Services, p: Params) -> None:
    await s.aliases.create(p["AliasName"], p["TargetKeyId"])


@operation("UpdateAlias")
async def update_alias(s: Services, p: Params) -> None:
    await s.aliases.update(p["AliasName"], p["TargetKeyId"])


@operation("DeleteAlias")
async def delete_alias(s: Services, p: Params) -> None:
    await s.aliases.delete(p["AliasName"])


@operation("ListAliases")
async def list_aliases(s: Services, p: Params) -> Shape:
    page = await s.aliases.list(p.get("KeyId"), p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Aliases", [shapes.alias(a, s.catalog.arns) for a in page.items])


@operation("TagResource")
async def tag_resource(s: Services, p: Params) -> None:
    await s.tags.tag(p["KeyId"], [(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])])


@operation("UntagResource")
async def untag_resource(s: Services, p: Params) -> None:
    await s.tags.untag(p["KeyId"], list(p.get("TagKeys", [])))


@operation("ListResourceTags")
async def list_resource_tags(s: Services, p: Params) -> Shape:
    page = s.tags.list(p["KeyId"], p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "Tags", [shapes.tag(k, v) for k, v in page.items])


@operation("GetKeyPolicy")
async def get_key_policy(s: Services, p: Params) -> Shape:
    return {"Policy": s.policies.get(p["KeyId"], p.get("PolicyName")), "PolicyName": "default"}


@operation("PutKeyPolicy")
async def put_key_policy(s: Services, p: Params) -> None:
    await s.policies.put(p["KeyId"], p.get("PolicyName"), p["Policy"])


@operation("ListKeyPolicies")
async def list_key_policies(s: Services, p: Params) -> Shape:
    page = s.policies.list(p["KeyId"], p.get("Limit"), p.get("Marker"))
    return shapes.paged(page, "PolicyNames", list(page.items))


# ---------------------------------------------------------------- cryptographic operations


@operation("Encrypt")
async def encrypt(s: Services, p: Params) -> Shape:
    blob, key = await s.crypto.encrypt(p["KeyId"], p["Plaintext"], p.get("EncryptionContext", {}),
                                       _grant_tokens(p), p.get("EncryptionAlgorithm"), bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": ALGORITHM}


@operation("Decrypt")
async def decrypt(s: Services, p: Params) -> Shape:
    out = await s.crypto.decrypt(p.get("CiphertextBlob"), p.get("EncryptionContext", {}), p.get("KeyId"),
                                 _grant_tokens(p), p.get("EncryptionAlgorithm"), bool(p.get("DryRun")))
    return {"KeyId": out.key.arn, "Plaintext": out.plaintext, "EncryptionAlgorithm": ALGORITHM}


@operation("ReEncrypt")
async def re_encrypt(s: Services, p: Params) -> Shape:
    blob, source, dest = await s.crypto.re_encrypt(
        p.get("CiphertextBlob"), p.get("SourceEncryptionContext", {}), p.get("SourceKeyId"),
        p["DestinationKeyId"], p.get("DestinationEncryptionContext", {}), p.get("SourceEncryptionAlgorithm"),
        p.get("DestinationEncryptionAlgorithm"), _grant_tokens(p), bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
            "SourceEncryptionAlgorithm": ALGORITHM, "DestinationEncryptionAlgorithm": ALGORITHM}


@operation("GenerateDataKey")
async def generate_data_key(s: Services, p: Params) -> Shape:
    blob, plaintext, key = await s.crypto.generate_data_key(
        p["KeyId"], p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=True, grant_tokens=_grant_tokens(p), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": key.arn}


@operation("GenerateDataKeyWithoutPlaintext")
async def generate_data_key_without_plaintext(s: Services, p: Params) -> Shape:
    blob, _, key = await s.crypto.generate_data_key(
        p["KeyId"], p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=False, grant_tokens=_grant_tokens(p), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn}


@operation("GenerateRandom")
async def generate_random(s: Services, p: Params) -> Shape:
    return {"Plaintext": await s.crypto.generate_random(p.get("NumberOfBytes"), p.get("CustomKeyStoreId"))}


# ---------------------------------------------------------------- the frontend's own admin operations


@operation("ListOrphanedKeyMaterial")
async def list_orphaned_key_material(s: Services, p: Params) -> Shape:
    found = await s.keys.orphans(p["CustomKeyStoreId"], delete=bool(p.get("Delete")))
    return {"Orphans": [{"KeyHandle": o.key_handle, "Label": o.label, "Outcome": outcome} for o, outcome in found]}


@operation("ListAuditEvents")
async def list_audit_events(s: Services, p: Params) -> Shape:
    events = await s.keys.audit_events(p.get("AfterId", 0), p.get("Limit"), p.get("Event"), p.get("KeyId"))
    return {"Events": [{"EventId": e.event_id or 0, "Timestamp": e.timestamp, "Event": e.event,
                        "KeyId": e.key_id or "", "CustomKeyStoreId": e.custom_key_store_id or "",
                        "DetailsJson": json.dumps(e.details)} for e in events]}
