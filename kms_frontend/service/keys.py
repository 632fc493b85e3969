"""KMS key operations for keys in a CloudHSM key store (AWS KMS Developer Guide, "Creating KMS
keys in an AWS CloudHSM key store" and "Key states of AWS KMS keys").

CreateKey spans the HSM and the metadata, ordered so a crash in the middle can
be finished or cleaned up: the record is written as ``Creating`` first, then the
backing key is generated in the cluster (label = key ARN, owned by kmsuser,
confirmed on two HSMs), then the record becomes ``Enabled``. ``recover()``
settles ``Creating`` records left by a crash. When a deletion window ends the
metadata and aliases go first, then a best-effort delete of the backing key,
whose outcome per key handle lands in the audit log.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from ..cluster.directory import ClusterDirectory
from ..cluster.errors import HsmClientError, HsmStorageFull, KeyLimitReached, NoHsmAvailable, TooFewReplicas
from ..cluster.hsm_client import HsmClients
from ..store.repository import (
    AuditEvent,
    ConnectionState,
    InvalidMarkerError,
    KeyRecord,
    KeyState,
    Page,
)
from .catalog import Catalog
from .context import Context
from .input_rules import page_limit, validate_pending_window, validate_tags
from .policies import default_policy

if TYPE_CHECKING:
    from .authorization import Caller
    from .policies import Policies

log = logging.getLogger("kms_frontend.keys")
DAY_MS = 86_400_000
MIN_HSMS_CREATE_KEY = 2
HSM_KEY_BYTES = 32
REPLICA_TIMEOUT_MS = 5000


@dataclass
class CreateKeyRequest:
    custom_key_store_id: str | None = None
    origin: str | None = None
    description: str | None = None
    policy: str | None = None
    key_usage: str | None = None
    key_spec: str | None = None
    customer_master_key_spec: str | None = None
    multi_region: bool = False
    tags: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    bypass_policy_lockout_safety_check: bool = False


@dataclass
class Orphan:
    key_handle: int
    label: str


def refuse_pending_deletion(key: KeyRecord) -> None:
    if key.key_state == KeyState.PENDING_DELETION:
        raise errors.key_pending_deletion(key.arn)


class KmsKeys:
    """The life of KMS keys: create, describe, list, enable/disable, schedule and cancel deletion,
    the deletion sweep, crash recovery, orphaned key material and the audit log."""

    def __init__(self, ctx: Context, catalog: Catalog, directory: ClusterDirectory, hsms: HsmClients,
                 policies: Policies) -> None:
        self.ctx, self.catalog, self.directory, self.hsms = ctx, catalog, directory, hsms
        self.policies = policies
        self._in_flight: set[str] = set()  # keys a CreateKey of this process is creating right now
        # Several workers: a key in Creating younger than this may be another worker's CreateKey.
        self.recover_after_ms = 0

    # ------------------------------------------------------------ CreateKey

    async def create(self, req: CreateKeyRequest, caller: Caller) -> KeyRecord:
        origin = req.origin or "AWS_KMS"
        if req.custom_key_store_id and origin != "AWS_CLOUDHSM":
            raise errors.UnsupportedOperationException(
                f"Origin {origin} is not valid with a CustomKeyStoreId; use Origin AWS_CLOUDHSM.")
        if origin == "AWS_CLOUDHSM" and not req.custom_key_store_id:
            raise errors.ValidationException(
                "CustomKeyStoreId is required when Origin is AWS_CLOUDHSM.")
        if origin != "AWS_CLOUDHSM":
            raise errors.UnsupportedOperationException(
                f"Origin {origin} is not supported: this service creates keys only in custom key stores"
                " (Origin AWS_CLOUDHSM with a CustomKeyStoreId).")
        spec = req.key_spec or req.customer_master_key_spec or "SYMMETRIC_DEFAULT"
        if req.key_spec and req.customer_master_key_spec and req.key_spec != req.customer_master_key_spec:
            raise errors.ValidationException("KeySpec and CustomerMasterKeySpec must not differ.")
        if spec != "SYMMETRIC_DEFAULT":
            raise errors.UnsupportedOperationException(
                f"KeySpec {spec} is not supported in a custom key store; only SYMMETRIC_DEFAULT keys can be created.")
        if (req.key_usage or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
            raise errors.UnsupportedOperationException(
                f"KeyUsage {req.key_usage} is not supported in a custom key store; use ENCRYPT_DECRYPT.")
        if req.multi_region:
            raise errors.UnsupportedOperationException("Multi-Region keys cannot be created in a custom key store.")
        compiled = self.policies.parse(req.policy) if req.policy is not None else None
        if req.tags:
            validate_tags(req.tags)
        assert req.custom_key_store_id is not None  # Origin AWS_CLOUDHSM requires it (checked above)
        store = await self.ctx.connected_store(req.custom_key_store_id, "CreateKey")
        info = await self.directory.lookup(store.cloud_hsm_cluster_id, max_age_s=2.0)
        zones = info.active_zones if info is not None else 0  # two active HSMs, in two Availability Zones
        if zones < MIN_HSMS_CREATE_KEY:
            raise errors.cloud_hsm_cluster_invalid_configuration(
                store.cloud_hsm_cluster_id, info.active_hsms if info is not None else 0, MIN_HSMS_CREATE_KEY, zones)
        key_id = str(uuid.uuid4())
        arn = self.catalog.arns.key(key_id)
        if compiled is not None:
            self.policies.check_lockout(compiled, arn, caller, bypass=req.bypass_policy_lockout_safety_check,
                                        operation="CreateKey")
        policy = req.policy if req.policy is not None else default_policy(self.ctx.settings.account_id)
        record = KeyRecord(key_id=key_id, arn=arn, custom_key_store_id=store.custom_key_store_id,
                           cloud_hsm_cluster_id=store.cloud_hsm_cluster_id, creation_date=self.ctx.now_ms(),
                           policy=policy, key_state=KeyState.CREATING, description=req.description or "",
                           tags=dict(req.tags))
        record = await self.catalog.create_key(record)
        self._in_flight.add(key_id)  # recover() must not take it for a crash leftover
        try:
            try:
                handle = await self._generate_backing_key(store.custom_key_store_id, store.cloud_hsm_cluster_id, arn)
            except BaseException:
                await self.catalog.delete_key(key_id)
                raise
            log.info("key created", extra={"event": "key_created", "key_id": key_id, "key_handle": handle,
                                           "store": store.custom_key_store_id})
            return await self.catalog.update_key(record, key_state=KeyState.ENABLED, backing_key_handle=handle)
        finally:
            self._in_flight.discard(key_id)

    async def _generate_backing_key(self, store_id: str, cluster_id: str, arn: str) -> int:
        try:
            return await self.hsms.require(store_id).generate_key(
                arn, size_bytes=HSM_KEY_BYTES, min_replicas=MIN_HSMS_CREATE_KEY, timeout_ms=REPLICA_TIMEOUT_MS)
        except HsmStorageFull:
            raise errors.hsm_storage_full(cluster_id) from None
        except KeyLimitReached as exc:  # the cluster is full: its other nodes hold the same keys
            raise errors.cloud_hsm_key_limit(cluster_id, exc.limit) from None
        except TooFewReplicas as exc:
            raise errors.cloud_hsm_cluster_invalid_configuration(cluster_id, exc.confirmed, MIN_HSMS_CREATE_KEY) \
                from None
        except NoHsmAvailable:
            # the directory still counted HSMs that no longer answer
            raise errors.cloud_hsm_cluster_invalid_configuration(cluster_id, 0, MIN_HSMS_CREATE_KEY) from None

    async def recover(self) -> None:
        """Settle keys a crash left in ``Creating``: finish them if the cluster holds a
        backing key with their label, otherwise drop the record."""
        settled_before = self.ctx.now_ms() - self.recover_after_ms if self.recover_after_ms else None
        for key in [k for k in self.catalog.in_state(KeyState.CREATING) if k.key_id not in self._in_flight
                    and (settled_before is None or k.creation_date <= settled_before)]:
            try:
                found = await self.hsms.require(key.custom_key_store_id).find_keys(label=key.arn)
            except HsmClientError:
                continue  # try again later, when the store's nodes answer
            if found:
                await self.catalog.update_key(key, key_state=KeyState.ENABLED, backing_key_handle=found[0])
            else:
                await self.catalog.delete_key(key.key_id)

    # ------------------------------------------------------------ reads

    def describe(self, ref: str) -> KeyRecord:
        return self.catalog.resolve(ref)

    async def list_keys(self, limit: int | None, marker: str | None) -> Page[KeyRecord]:
        try:
            return await self.ctx.db(self.ctx.repo.list_keys, limit=page_limit(limit, default=100, maximum=1000),
                                     marker=marker)
        except InvalidMarkerError:
            raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None

    # ------------------------------------------------------------ state changes

    async def enable(self, ref: str) -> None:
        await self._set_enabled(ref, KeyState.ENABLED)

    async def disable(self, ref: str) -> None:
        await self._set_enabled(ref, KeyState.DISABLED)

    async def _set_enabled(self, ref: str, target: str) -> None:
        key = self.catalog.resolve(ref, allow_alias=False)
        refuse_pending_deletion(key)
        if key.key_state == KeyState.UNAVAILABLE:
            # takes effect on reconnect (the key-state table of "Key states of AWS KMS keys")
            await self.catalog.update_key(key, desired_state=target)
        elif key.key_state != target:
            await self.catalog.update_key(key, key_state=target)

    async def update_description(self, ref: str, description: str) -> None:
        key = self.catalog.resolve(ref, allow_alias=False)
        refuse_pending_deletion(key)
        await self.catalog.update_key(key, description=description)

    async def schedule_deletion(self, ref: str, days: int | None) -> tuple[KeyRecord, int]:
        validate_pending_window(days)
        key = self.catalog.resolve(ref, allow_alias=False)
        refuse_pending_deletion(key)
        window = days if days is not None else 30
        previous = key.desired_state if key.key_state == KeyState.UNAVAILABLE else key.key_state
        key = await self.catalog.update_key(key, key_state=KeyState.PENDING_DELETION,
                                            deletion_date=self.ctx.now_ms() + window * DAY_MS, desired_state=previous)
        return key, window

    async def cancel_deletion(self, ref: str) -> KeyRecord:
        key = self.catalog.resolve(ref, allow_alias=False)
        if key.key_state != KeyState.PENDING_DELETION:
            raise errors.key_not_pending_deletion(key.arn)
        store = await self.ctx.store_or_none(key.custom_key_store_id)
        if store is not None and store.connection_state == ConnectionState.CONNECTED:
            return await self.catalog.update_key(key, key_state=KeyState.DISABLED, deletion_date=None,
                                                 desired_state=None)
        return await self.catalog.update_key(key, key_state=KeyState.UNAVAILABLE, deletion_date=None,
                                             desired_state=KeyState.DISABLED)

    async def unsupported(self, ref: str, *, rotation: bool) -> None:
        """Rotation and imported material do not exist for CloudHSM key store keys."""
        key = self.catalog.resolve(ref, allow_alias=False)
        if rotation:
            refuse_pending_deletion(key)
        raise errors.unsupported_origin(key.arn, key.origin)

    # ------------------------------------------------------------ deletion

    async def delete_due(self) -> int:
        """Delete every key whose waiting period has ended (metadata, aliases, then
        best-effort backing key), recording the per-handle outcome."""
        now = self.ctx.now_ms()
        due = [k for k in self.catalog.in_state(KeyState.PENDING_DELETION)
               if k.deletion_date is not None and k.deletion_date <= now]
        for key in due:
            await self.catalog.delete_key(key.key_id)
            status = await self._delete_backing_key(key)
            await self.ctx.db(self.ctx.repo.append_audit_event, AuditEvent(
                timestamp=self.ctx.now_ms(), event="DeleteKey", key_id=key.key_id,
                custom_key_store_id=key.custom_key_store_id, details={
                    "keyArn": key.arn, "clusterId": key.cloud_hsm_cluster_id,
                    "backingKeys": [{"keyHandle": key.backing_key_handle, "backingKeyId": key.key_id}],
                    "backingKeysDeletionStatus": [{"keyHandle": key.backing_key_handle, "backingKeyId": key.key_id,
                                                   "deletionStatus": status}]}))
            log.info("key deleted", extra={"event": "key_deleted", "key_id": key.key_id,
                                           "key_handle": key.backing_key_handle, "backing_key_deletion": status})
        return len(due)

    async def _delete_backing_key(self, key: KeyRecord) -> str:
        if key.backing_key_handle is None:
            return "SUCCESS"
        try:
            await self.hsms.require(key.custom_key_store_id).delete_key(key.backing_key_handle)
            return "SUCCESS"
        except HsmClientError:
            return "FAILURE"

    async def run_deletions(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.delete_due()
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("key deletion sweep failed", extra={"event": "deletion_error"})

    # ------------------------------------------------------------ orphaned key material

    async def orphans(self, store_id: str, *, delete: bool) -> list[tuple[Orphan, str]]:
        """kmsuser-owned keys whose label names no existing KMS key; with ``delete``,
        remove them. Returns (orphan, outcome) pairs."""
        store = await self.ctx.connected_store(store_id, "orphan cleanup")
        try:
            hsm = self.hsms.require(store_id)
            found = await hsm.find_keys()
            known = {k.backing_key_handle for k in self.catalog.keys.values() if k.custom_key_store_id == store_id}
            out = []
            for handle in found:
                if handle in known:
                    continue
                info = await hsm.key_info(handle)
                if info.owner != "kmsuser":
                    continue
                label_key = info.label.rsplit("/", 1)[-1]
                named = self.catalog.keys.get(label_key)
                if named is not None and named.backing_key_handle in (handle, None):  # None: still Creating
                    continue
                outcome = "FOUND"
                if delete:
                    try:
                        await hsm.delete_key(handle)
                        outcome = "DELETED"
                    except HsmClientError as exc:
                        outcome = f"FAILED: {exc}"
                out.append((Orphan(handle, info.label), outcome))
            return out
        except NoHsmAvailable:
            raise errors.KMSInvalidStateException(
                f"KMS cannot reach any HSM of cluster {store.cloud_hsm_cluster_id}; try again when its nodes are up.") \
                from None
