"""Records as the AWS KMS API shapes them, written once for every adapter.

Results use AWS's member names (``KeyMetadata``, ``CustomKeyStoresListEntry``...) with Python
values: blobs as bytes, timestamps as milliseconds since the epoch. The AWS JSON adapter turns
timestamps into epoch seconds and blobs into base64; the gRPC adapter copies them into the
``kms.v1`` messages of the same names. The rules of what appears when (``Enabled`` from the key
state, ``DeletionDate`` only while PendingDeletion, ``ConnectionErrorCode`` only while FAILED)
live here and nowhere else.
"""
from __future__ import annotations

from typing import Any

from ..store.repository import (
    AliasRecord,
    ConnectionState,
    CustomKeyStoreRecord,
    GrantRecord,
    KeyRecord,
    KeyState,
    Page,
)
from .catalog import Arns

Shape = dict[str, Any]
ALGORITHM = "SYMMETRIC_DEFAULT"


def key_metadata(k: KeyRecord, account_id: str) -> Shape:
    md: Shape = {
        "AWSAccountId": account_id, "KeyId": k.key_id, "Arn": k.arn, "CreationDate": k.creation_date,
        "Enabled": k.key_state == KeyState.ENABLED, "Description": k.description, "KeyUsage": k.key_usage,
        "KeyState": k.key_state, "Origin": k.origin, "CustomKeyStoreId": k.custom_key_store_id,
        "CloudHsmClusterId": k.cloud_hsm_cluster_id, "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": k.key_spec, "KeySpec": k.key_spec, "EncryptionAlgorithms": [ALGORITHM],
        "MultiRegion": False}
    if k.key_state == KeyState.PENDING_DELETION and k.deletion_date is not None:
        md["DeletionDate"] = k.deletion_date
    return md


def custom_key_store(s: CustomKeyStoreRecord) -> Shape:
    entry: Shape = {
        "CustomKeyStoreId": s.custom_key_store_id, "CustomKeyStoreName": s.custom_key_store_name,
        "CloudHsmClusterId": s.cloud_hsm_cluster_id, "TrustAnchorCertificate": s.trust_anchor_certificate,
        "ConnectionState": s.connection_state, "CreationDate": s.creation_date,
        "CustomKeyStoreType": s.custom_key_store_type}
    if s.connection_state == ConnectionState.FAILED and s.connection_error_code:
        entry["ConnectionErrorCode"] = s.connection_error_code
    return entry


def alias(a: AliasRecord, arns: Arns) -> Shape:
    return {"AliasName": a.alias_name, "AliasArn": arns.alias(a.alias_name), "TargetKeyId": a.key_id,
            "CreationDate": a.creation_date, "LastUpdatedDate": a.last_updated_date}


def key_list_entry(k: KeyRecord) -> Shape:
    return {"KeyId": k.key_id, "KeyArn": k.arn}


def grant(g: GrantRecord, key_arn: str) -> Shape:
    """A GrantListEntry: ``Name`` is "" when the grant has none, as AWS lists it."""
    entry: Shape = {"KeyId": key_arn, "GrantId": g.grant_id, "Name": g.name, "CreationDate": g.creation_date,
                    "GranteePrincipal": g.grantee_principal, "IssuingAccount": g.issuing_account,
                    "Operations": list(g.operations)}
    if g.retiring_principal:
        entry["RetiringPrincipal"] = g.retiring_principal
    if g.constraint_type:
        entry["Constraints"] = {g.constraint_type: dict(g.constraint_context)}
    return entry


def tag(key: str, value: str) -> Shape:
    return {"TagKey": key, "TagValue": value}


def paged(page: Page[Any], field: str, items: list[Any]) -> Shape:
    """A page of a List/Describe operation: the items, ``Truncated``, and ``NextMarker`` when truncated."""
    out: Shape = {field: items, "Truncated": page.next_marker is not None}
    if page.next_marker:
        out["NextMarker"] = page.next_marker
    return out
