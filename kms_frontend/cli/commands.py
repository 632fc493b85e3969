"""The ``kms`` subcommands: for each, the AWS CLI name, the RPC it calls, which request members
are required and how the response is printed; and the waiters (``kms wait ...``). Options come
from the request messages (:func:`.args.params_of`)."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.kms.v1 import kms_pb2 as pb

from . import args as ca
from .args import Param
from .output import to_aws


def audit_events(resp: Message) -> dict[str, Any]:
    """ListAuditEvents: ``details_json`` becomes a ``Details`` object."""
    data = to_aws(resp)
    for event in data.get("Events", []):
        text = event.pop("DetailsJson", "") or "{}"
        try:
            event["Details"] = json.loads(text)
        except json.JSONDecodeError:
            event["Details"] = text
    return data


@dataclass(frozen=True)
class Command:
    """One subcommand: the RPC it calls, how the request is built, how the response is printed.

    Options come from the request message: each field is ``--field-name`` (the AWS CLI option of that
    member); ``required`` lists the members the AWS API requires."""

    name: str
    rpc: str
    summary: str
    required: tuple[str, ...] = ()
    service: str = "Kms"
    result_key: str | None = None            # list commands: the member merged over pages
    format: Callable[[Message], dict[str, Any]] = to_aws
    build: Callable[[Command, argparse.Namespace, str], Message] | None = None  # None: build_request

    @property
    def request_type(self) -> type[Message]:
        return getattr(pb, f"{self.rpc}Request")

    @property
    def params(self) -> list[Param]:
        return ca.params_of(self.request_type, self.required)


KEY = ("key_id",)
STORE = ("custom_key_store_id",)

COMMANDS: list[Command] = [
    # custom key stores
    Command("create-custom-key-store", "CreateCustomKeyStore", "create a custom key store for a CloudHSM cluster",
            ("custom_key_store_name",)),
    Command("describe-custom-key-stores", "DescribeCustomKeyStores", "custom key stores and their connection state",
            result_key="CustomKeyStores"),
    Command("update-custom-key-store", "UpdateCustomKeyStore", "rename, change the kmsuser password or the cluster",
            STORE),
    Command("connect-custom-key-store", "ConnectCustomKeyStore", "start connecting (see: kms wait)", STORE),
    Command("disconnect-custom-key-store", "DisconnectCustomKeyStore", "disconnect a custom key store", STORE),
    Command("delete-custom-key-store", "DeleteCustomKeyStore", "delete a disconnected store without keys", STORE),
    # keys
    Command("create-key", "CreateKey", "create a KMS key in a custom key store (--origin AWS_CLOUDHSM)"),
    Command("describe-key", "DescribeKey", "key metadata", KEY),
    Command("list-keys", "ListKeys", "key ids and ARNs", result_key="Keys"),
    Command("enable-key", "EnableKey", "enable a key", KEY),
    Command("disable-key", "DisableKey", "disable a key", KEY),
    Command("update-key-description", "UpdateKeyDescription", "change a key's description", KEY + ("description",)),
    Command("schedule-key-deletion", "ScheduleKeyDeletion", "delete a key after 7..30 days", KEY),
    Command("cancel-key-deletion", "CancelKeyDeletion", "cancel a scheduled deletion (the key stays disabled)", KEY),
    Command("enable-key-rotation", "EnableKeyRotation", "not supported in a CloudHSM key store", KEY),
    Command("disable-key-rotation", "DisableKeyRotation", "not supported in a CloudHSM key store", KEY),
    Command("get-key-rotation-status", "GetKeyRotationStatus", "not supported in a CloudHSM key store", KEY),
    Command("get-parameters-for-import", "GetParametersForImport", "not supported in a CloudHSM key store",
            KEY + ("wrapping_algorithm", "wrapping_key_spec")),
    Command("import-key-material", "ImportKeyMaterial", "not supported in a CloudHSM key store",
            KEY + ("import_token", "encrypted_key_material")),
    # aliases
    Command("create-alias", "CreateAlias", "create alias/<name> for a key", ("alias_name", "target_key_id")),
    Command("update-alias", "UpdateAlias", "point an alias at another key", ("alias_name", "target_key_id")),
    Command("delete-alias", "DeleteAlias", "delete an alias", ("alias_name",)),
    Command("list-aliases", "ListAliases", "aliases (of one key with --key-id)", result_key="Aliases"),
    # tags
    Command("tag-resource", "TagResource", "add or replace tags", KEY + ("tags",)),
    Command("untag-resource", "UntagResource", "remove tags", KEY + ("tag_keys",)),
    Command("list-resource-tags", "ListResourceTags", "a key's tags", KEY, result_key="Tags"),
    # key policies
    Command("get-key-policy", "GetKeyPolicy", "the key policy document", KEY),
    Command("put-key-policy", "PutKeyPolicy", "replace the key policy", KEY + ("policy",)),
    Command("list-key-policies", "ListKeyPolicies", "policy names (always default)", KEY, result_key="PolicyNames"),
    # grants
    Command("create-grant", "CreateGrant", "let a principal use a key for some operations",
            KEY + ("grantee_principal", "operations")),
    Command("list-grants", "ListGrants", "a key's grants", KEY, result_key="Grants"),
    Command("list-retirable-grants", "ListRetirableGrants", "grants a principal may retire",
            ("retiring_principal",), result_key="Grants"),
    Command("retire-grant", "RetireGrant", "retire a grant (--grant-token, or --key-id and --grant-id)"),
    Command("revoke-grant", "RevokeGrant", "revoke a grant", KEY + ("grant_id",)),
    # cryptographic operations
    Command("encrypt", "Encrypt", "encrypt up to 4096 bytes", KEY + ("plaintext",)),
    Command("decrypt", "Decrypt", "decrypt a ciphertext blob", ("ciphertext_blob",)),
    Command("re-encrypt", "ReEncrypt", "decrypt and encrypt again under another key or context",
            ("ciphertext_blob", "destination_key_id")),
    Command("generate-data-key", "GenerateDataKey", "a data key, in plaintext and encrypted", KEY),
    Command("generate-data-key-without-plaintext", "GenerateDataKeyWithoutPlaintext", "an encrypted data key", KEY),
    Command("generate-random", "GenerateRandom", "random bytes (from a store's cluster with --custom-key-store-id)"),
    # operator extensions (KmsAdmin)
    Command("list-orphaned-key-material", "ListOrphanedKeyMaterial",
            "kmsuser keys in the cluster that no KMS key uses (--delete removes them)", STORE, service="KmsAdmin"),
    Command("list-audit-events", "ListAuditEvents", "the audit log: who did what (--principal ARN, --event Name)",
            service="KmsAdmin", format=audit_events),
]
COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}


def build_request(cmd: Command, args: argparse.Namespace, binary_format: str) -> Message:
    request = cmd.request_type()
    for param in cmd.params:
        raw = getattr(args, param.field, None)
        if raw is not None:
            ca.set_field(request, param, ca.convert(param, raw, binary_format))
    return request


# ---------------------------------------------------------------- waiters


@dataclass(frozen=True)
class Waiter:
    name: str                 # custom-key-store-connected
    waiter_name: str          # CustomKeyStoreConnected (as in the AWS CLI's messages)
    success: str
    failure: tuple[str, ...]
    summary: str


WAITERS = {w.name: w for w in (
    Waiter("custom-key-store-connected", "CustomKeyStoreConnected", "CONNECTED", ("FAILED",),
           "until ConnectionState is CONNECTED; fails on FAILED (prints the ConnectionErrorCode)"),
    Waiter("custom-key-store-disconnected", "CustomKeyStoreDisconnected", "DISCONNECTED", (),
           "until ConnectionState is DISCONNECTED"),
)}
