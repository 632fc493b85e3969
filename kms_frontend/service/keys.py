"""KMS key operations for keys in a CloudHSM key store (reference section 3).

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
import json
import logging
import uuid
from dataclasses import dataclass

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm

from .. import errors
from ..cluster.calls import NoNodeAvailable, on_any_node
from ..cluster.connector import CONNECTED, Connector
from ..cluster.directory import ClusterDirectory
from ..cluster.refusals import key_limit
from ..store.repository import (
    AuditEvent,
    InvalidMarkerError,
    KeyRecord,
    NotFoundError,
    Page,
    StaleRecordError,
)
from ..validation import Checks, page_limit, validate_policy, validate_tags
from .catalog import Catalog
from .context import Context

log = logging.getLogger("kms_frontend.keys")
DAY_MS = 86_400_000
MIN_HSMS_CREATE_KEY = 2
HSM_KEY_BYTES = 32
REPLICA_TIMEOUT_MS = 5000


def default_policy(account_id: str) -> str:
    return json.dumps({
        "Version": "2012-10-17", "Id": "key-default-1",
        "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}],
    }, separators=(",", ":"))


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


class Keys:
    def __init__(self, ctx: Context, catalog: Catalog, directory: ClusterDirectory, connector: Connector) -> None:
        self.ctx, self.catalog, self.directory, self.connector = ctx, catalog, directory, connector
        self._in_flight: set[str] = set()  # keys a CreateKey of this process is creating right now

    # ------------------------------------------------------------ helpers

    async def _save(self, key: KeyRecord, **changes: object) -> KeyRecord:
        """Update a key in the database, then the catalogue (retrying a stale read once)."""
        for _ in range(3):
            try:
                saved = await self.ctx.db(self.ctx.repo.update_key, dataclasses.replace(key, **changes))
                return self.catalog.put(saved)
            except StaleRecordError:
                key = self.catalog.put(await self.ctx.db(self.ctx.repo.get_key, key.key_id))
        raise errors.internal("The key changed concurrently. Retry the request.")

    @staticmethod
    def refuse_pending_deletion(key: KeyRecord) -> None:
        if key.key_state == "PendingDeletion":
            raise errors.key_pending_deletion(key.arn)

    # ------------------------------------------------------------ CreateKey

    async def create(self, req: CreateKeyRequest) -> KeyRecord:
        (Checks().description(req.description).key_usage(req.key_usage).key_spec(req.key_spec)
         .customer_master_key_spec(req.customer_master_key_spec).origin(req.origin)
         .custom_key_store_id(req.custom_key_store_id, required=False).policy(req.policy).done())
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
        policy = req.policy if req.policy is not None else default_policy(self.ctx.settings.account_id)
        validate_policy(policy)
        if req.tags:
            validate_tags(req.tags)
        store = await self.ctx.store_or_none(req.custom_key_store_id)  # type: ignore[arg-type]
        if store is None:
            raise errors.custom_key_store_not_found(req.custom_key_store_id)
        if store.connection_state != CONNECTED:
            raise errors.custom_key_store_invalid_state(store.custom_key_store_id, store.connection_state, "CreateKey",
                                                        [CONNECTED])
        info = await self.directory.lookup(store.cloud_hsm_cluster_id, max_age_s=2.0)
        active = info.active_hsms if info is not None else 0
        if active < MIN_HSMS_CREATE_KEY:
            raise errors.cloud_hsm_cluster_invalid_configuration(store.cloud_hsm_cluster_id, active, MIN_HSMS_CREATE_KEY)
        key_id = str(uuid.uuid4())
        arn = self.catalog.arns.key(key_id)
        record = KeyRecord(key_id=key_id, arn=arn, custom_key_store_id=store.custom_key_store_id,
                           cloud_hsm_cluster_id=store.cloud_hsm_cluster_id, creation_date=self.ctx.now_ms(),
                           policy=policy, key_state="Creating", description=req.description or "",
                           tags=dict(req.tags))
        record = self.catalog.put(await self.ctx.db(self.ctx.repo.create_key, record))
        self._in_flight.add(key_id)  # recover() must not take it for a crash leftover
        try:
            try:
                handle = await self._generate_backing_key(store.custom_key_store_id, store.cloud_hsm_cluster_id, arn)
            except BaseException:
                await self.ctx.db(self.ctx.repo.delete_key, key_id)
                self.catalog.forget(key_id)
                raise
            log.info("key created", extra={"event": "key_created", "key_id": key_id, "key_handle": handle,
                                           "store": store.custom_key_store_id})
            return await self._save(record, key_state="Enabled", backing_key_handle=handle)
        finally:
            self._in_flight.discard(key_id)

    async def _generate_backing_key(self, store_id: str, cluster_id: str, arn: str) -> int:
        sessions = self.connector.sessions.get(store_id)

        async def generate(node):  # type: ignore[no-untyped-def]
            try:
                r = await node.stub.GenerateKey(hsm.GenerateKeyRequest(
                    session_token=node.token, key_size_bytes=HSM_KEY_BYTES, label=arn,
                    min_replicas=MIN_HSMS_CREATE_KEY, timeout_ms=REPLICA_TIMEOUT_MS), timeout=REPLICA_TIMEOUT_MS / 1000 + 5)
            except grpc.aio.AioRpcError as exc:
                limit = key_limit(exc)
                if limit is not None:  # the cluster is full: its other nodes hold the same keys, do not ask them
                    raise errors.cloud_hsm_key_limit(cluster_id, limit) from None
                raise
            return r.key_handle
        try:
            return await on_any_node(sessions, generate)
        except NoNodeAvailable as exc:
            if exc.last_code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise errors.hsm_storage_full(cluster_id) from None
            # the directory still counted HSMs that no longer answer
            raise errors.cloud_hsm_cluster_invalid_configuration(cluster_id, 0, MIN_HSMS_CREATE_KEY) from None
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:  # fewer than two HSMs confirmed the key
                raise errors.cloud_hsm_cluster_invalid_configuration(cluster_id, 1, MIN_HSMS_CREATE_KEY) from None
            raise

    async def recover(self) -> None:
        """Settle keys a crash left in ``Creating``: finish them if the cluster holds a
        backing key with their label, otherwise drop the record."""
        for key in [k for k in self.catalog.keys.values()
                    if k.key_state == "Creating" and k.key_id not in self._in_flight]:
            sessions = self.connector.sessions.get(key.custom_key_store_id)
            try:
                found = await on_any_node(sessions, lambda n, key=key: n.stub.FindKeys(
                    hsm.FindKeysRequest(session_token=n.token, label=key.arn), timeout=5))
            except (NoNodeAvailable, grpc.aio.AioRpcError):
                continue  # try again later, when the store's nodes answer
            if found.key_handles:
                await self._save(key, key_state="Enabled", backing_key_handle=found.key_handles[0])
            else:
                await self.ctx.db(self.ctx.repo.delete_key, key.key_id)
                self.catalog.forget(key.key_id)

    # ------------------------------------------------------------ reads

    def describe(self, ref: str) -> KeyRecord:
        Checks().key_id(ref).done()
        return self.catalog.resolve(ref)

    async def list(self, limit: int | None, marker: str | None) -> Page[KeyRecord]:
        Checks().limit(limit).marker(marker).done()
        try:
            return await self.ctx.db(self.ctx.repo.list_keys, limit=page_limit(limit, default=100, maximum=1000),
                                     marker=marker)
        except InvalidMarkerError:
            raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None

    # ------------------------------------------------------------ state changes

    async def enable(self, ref: str) -> None:
        await self._set_enabled(ref, "Enabled")

    async def disable(self, ref: str) -> None:
        await self._set_enabled(ref, "Disabled")

    async def _set_enabled(self, ref: str, target: str) -> None:
        Checks().key_id(ref).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        self.refuse_pending_deletion(key)
        if key.key_state == "Unavailable":
            await self._save(key, desired_state=target)  # takes effect on reconnect (AWS footnote 12)
        elif key.key_state != target:
            await self._save(key, key_state=target)

    async def update_description(self, ref: str, description: str) -> None:
        Checks().key_id(ref).description(description).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        self.refuse_pending_deletion(key)
        await self._save(key, description=description)

    async def schedule_deletion(self, ref: str, days: int | None) -> tuple[KeyRecord, int]:
        Checks().key_id(ref).pending_window_in_days(days).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        self.refuse_pending_deletion(key)
        window = days if days is not None else 30
        previous = key.desired_state if key.key_state == "Unavailable" else key.key_state
        key = await self._save(key, key_state="PendingDeletion", deletion_date=self.ctx.now_ms() + window * DAY_MS,
                               desired_state=previous)
        return key, window

    async def cancel_deletion(self, ref: str) -> KeyRecord:
        Checks().key_id(ref).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        if key.key_state != "PendingDeletion":
            raise errors.key_not_pending_deletion(key.arn)
        store = await self.ctx.store_or_none(key.custom_key_store_id)
        if store is not None and store.connection_state == CONNECTED:
            return await self._save(key, key_state="Disabled", deletion_date=None, desired_state=None)
        return await self._save(key, key_state="Unavailable", deletion_date=None, desired_state="Disabled")

    async def unsupported(self, ref: str, *, rotation: bool) -> None:
        """Rotation and imported material do not exist for CloudHSM key store keys."""
        Checks().key_id(ref).done()
        key = self.catalog.resolve(ref, allow_alias=False)
        if rotation:
            self.refuse_pending_deletion(key)
        raise errors.unsupported_origin(key.arn, key.origin)

    # ------------------------------------------------------------ deletion

    async def delete_due(self) -> int:
        """Delete every key whose waiting period has ended (metadata, aliases, then
        best-effort backing key), recording the per-handle outcome."""
        due = [k for k in self.catalog.keys.values()
               if k.key_state == "PendingDeletion" and k.deletion_date is not None and k.deletion_date <= self.ctx.now_ms()]
        for key in due:
            try:
                await self.ctx.db(self.ctx.repo.delete_key, key.key_id)
            except NotFoundError:
                pass
            self.catalog.forget(key.key_id)
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
            await on_any_node(self.connector.sessions.get(key.custom_key_store_id), lambda n: n.stub.DeleteKey(
                hsm.KeyRequest(session_token=n.token, key_handle=key.backing_key_handle), timeout=10))
            return "SUCCESS"
        except (NoNodeAvailable, grpc.aio.AioRpcError):
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
        store = await self.ctx.store_or_none(store_id)
        if store is None:
            raise errors.custom_key_store_not_found(store_id)
        if store.connection_state != CONNECTED:
            raise errors.custom_key_store_invalid_state(store_id, store.connection_state, "orphan cleanup", [CONNECTED])
        sessions = self.connector.sessions.get(store_id)
        try:
            found = await on_any_node(sessions, lambda n: n.stub.FindKeys(hsm.FindKeysRequest(session_token=n.token),
                                                                          timeout=10))
            known = {k.backing_key_handle for k in self.catalog.keys.values() if k.custom_key_store_id == store_id}
            out = []
            for handle in found.key_handles:
                if handle in known:
                    continue
                info = await on_any_node(sessions, lambda n, h=handle: n.stub.GetKeyInfo(
                    hsm.KeyRequest(session_token=n.token, key_handle=h), timeout=10))
                if info.owner_username != "kmsuser":
                    continue
                label_key = info.label.rsplit("/", 1)[-1]
                named = self.catalog.keys.get(label_key)
                if named is not None and named.backing_key_handle in (handle, None):  # None: still Creating
                    continue
                outcome = "FOUND"
                if delete:
                    try:
                        await on_any_node(sessions, lambda n, h=handle: n.stub.DeleteKey(
                            hsm.KeyRequest(session_token=n.token, key_handle=h), timeout=10))
                        outcome = "DELETED"
                    except grpc.aio.AioRpcError as exc:
                        outcome = f"FAILED: {exc.details()}"
                out.append((Orphan(handle, info.label), outcome))
            return out
        except NoNodeAvailable:
            raise errors.KMSInvalidStateException(
                f"KMS cannot reach any HSM of cluster {store.cloud_hsm_cluster_id}; try again when its nodes are up.") \
                from None

    # ------------------------------------------------------------ audit log

    async def audit_events(self, after_id: int, limit: int, event: str, key_ref: str) -> list[AuditEvent]:
        """The audit log (backing key deletions ...), oldest first; a key by id or ARN."""
        if after_id < 0:
            raise errors.ValidationException(errors.validation_error([errors.validation_failure(
                "afterId", "Member must have value greater than or equal to 0", after_id)]).message)
        Checks().limit(limit or None).done()
        key_id = key_ref.rsplit("/", 1)[-1] if key_ref.startswith("arn:") else key_ref
        return await self.ctx.db(self.ctx.repo.list_audit_events, after_id=after_id, limit=limit or 100,
                                 event=event or None, key_id=key_id or None)

