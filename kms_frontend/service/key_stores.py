"""Custom key store operations: the AWS rules (AWS KMS API Reference: CreateCustomKeyStore,
DescribeCustomKeyStores, UpdateCustomKeyStore, ConnectCustomKeyStore, DisconnectCustomKeyStore,
DeleteCustomKeyStore).

Create / Describe / Update / Connect / Disconnect / Delete, with the
operation x ConnectionState matrix, the cluster preconditions (exists, ACTIVE,
trust anchor, not in use by a store sharing its backup history, two active
HSMs) and AWS's idempotent create. Connecting itself runs in the background
(:mod:`.connections`); this module only validates and moves the state.
"""
from __future__ import annotations

import dataclasses
import hmac
import secrets
from dataclasses import dataclass

from .. import errors
from ..cluster.directory import ClusterDirectory, ClusterInfo, trust_anchor_verifies
from ..store.repository import (
    ConnectionState,
    CustomKeyStoreRecord,
    DuplicateStoreNameError,
    InvalidMarkerError,
    NotFoundError,
    Page,
)
from .connections import Connections, open_password, seal_password
from .context import Context
from .input_rules import require

MAX_STORES = 10
MIN_HSMS_CREATE = 2


@dataclass
class UpdateRequest:
    custom_key_store_id: str
    new_custom_key_store_name: str | None = None
    key_store_password: str | None = None
    cloud_hsm_cluster_id: str | None = None


def new_store_id() -> str:
    return "cks-" + secrets.token_hex(9)[:17]


class KeyStores:
    def __init__(self, ctx: Context, directory: ClusterDirectory, connections: Connections) -> None:
        self.ctx, self.directory, self.connections = ctx, directory, connections

    # ------------------------------------------------------------ helpers

    async def get(self, store_id: str) -> CustomKeyStoreRecord:
        store = await self.ctx.store_or_none(store_id)
        if store is None:
            raise errors.custom_key_store_not_found(store_id)
        return store

    @staticmethod
    def require_state(store: CustomKeyStoreRecord, operation: str, *allowed: str) -> None:
        if store.connection_state not in allowed:
            raise errors.custom_key_store_invalid_state(store.custom_key_store_id, store.connection_state, operation,
                                                        allowed)

    async def _cluster(self, cluster_id: str) -> ClusterInfo:
        # A fresh look: right after an HSM is added (or lost), a view even half a second old
        # would count the wrong number of active HSMs.
        info = await self.directory.lookup(cluster_id, max_age_s=0.0)
        if info is None:
            raise errors.cloud_hsm_cluster_not_found(cluster_id)
        if not info.usable:
            raise errors.cloud_hsm_cluster_not_active(cluster_id, info.state)
        return info

    @staticmethod
    def _require_two_zones(info: ClusterInfo) -> None:
        """Two active HSMs, each in a different Availability Zone, in a cluster whose subnets span two."""
        if (0 < info.subnet_zones < 2) or info.active_zones < MIN_HSMS_CREATE:
            raise errors.cloud_hsm_cluster_invalid_configuration(
                info.cluster_id, info.active_hsms, MIN_HSMS_CREATE, info.active_zones, info.subnet_zones)

    def _password_matches(self, store: CustomKeyStoreRecord, password: str) -> bool:
        current = open_password(self.ctx, store.custom_key_store_id, store.sealed_password)["password"]
        return hmac.compare_digest(current.encode(), password.encode())

    # ------------------------------------------------------------ operations

    async def create(self, name: str, cluster_id: str | None, trust_anchor: str | None, password: str | None,
                     store_type: str | None = None) -> str:
        # The model leaves these optional (an external key store has none of them); a CloudHSM
        # key store needs all three.
        require(cloudHsmClusterId=cluster_id, trustAnchorCertificate=trust_anchor, keyStorePassword=password)
        assert cluster_id is not None and trust_anchor is not None and password is not None
        if store_type == "EXTERNAL_KEY_STORE":
            raise errors.UnsupportedOperationException(
                "External key stores (XKS) are not supported here; create an AWS_CLOUDHSM custom key store.")
        existing = await self.ctx.db(self.ctx.repo.find_custom_key_store_by_name, name)
        if existing is not None:
            # AWS: a retry with identical properties returns the disconnected store it made.
            if (existing.connection_state == ConnectionState.DISCONNECTED and existing.cloud_hsm_cluster_id == cluster_id
                    and existing.trust_anchor_certificate.strip() == trust_anchor.strip()
                    and self._password_matches(existing, password)):
                return existing.custom_key_store_id
            raise errors.custom_key_store_name_in_use(name)
        if await self.ctx.db(self.ctx.repo.count_custom_key_stores) >= MAX_STORES:
            raise errors.custom_key_store_limit_exceeded(MAX_STORES)
        info = await self._cluster(cluster_id)
        if not trust_anchor_verifies(info, trust_anchor):
            raise errors.incorrect_trust_anchor(cluster_id)
        user = await self._store_using_certificate(info.certificate_sha256)
        if user is not None:
            raise errors.cloud_hsm_cluster_in_use(cluster_id, user.custom_key_store_id)
        self._require_two_zones(info)
        store_id = new_store_id()
        record = CustomKeyStoreRecord(
            custom_key_store_id=store_id, custom_key_store_name=name, cloud_hsm_cluster_id=cluster_id,
            trust_anchor_certificate=trust_anchor, creation_date=self.ctx.now_ms(),
            sealed_password=seal_password(self.ctx, store_id, password), connection_state=ConnectionState.DISCONNECTED,
            cluster_certificate_fingerprint=info.certificate_sha256)
        try:
            await self.ctx.db(self.ctx.repo.create_custom_key_store, record)
        except DuplicateStoreNameError:
            raise errors.custom_key_store_name_in_use(name) from None
        return store_id

    async def _store_using_certificate(self, sha256: str) -> CustomKeyStoreRecord | None:
        page = await self.ctx.db(self.ctx.repo.list_custom_key_stores, limit=1000)
        return next((s for s in page.items if s.cluster_certificate_fingerprint == sha256), None)

    async def describe(self, store_id: str | None = None, name: str | None = None, limit: int | None = None,
                       marker: str | None = None) -> Page[CustomKeyStoreRecord]:
        if store_id is not None and name is not None:
            raise errors.ValidationException("Specify either CustomKeyStoreId or CustomKeyStoreName, not both.")
        if store_id is not None:
            return Page([await self.get(store_id)])
        if name is not None:
            found = await self.ctx.db(self.ctx.repo.find_custom_key_store_by_name, name)
            if found is None:
                raise errors.custom_key_store_not_found(custom_key_store_name=name)
            return Page([found])
        try:
            return await self.ctx.db(self.ctx.repo.list_custom_key_stores, limit=limit or 1000, marker=marker)
        except InvalidMarkerError:
            raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None

    async def update(self, req: UpdateRequest) -> None:
        store = await self.get(req.custom_key_store_id)
        changes: dict = {}
        if req.key_store_password is not None or req.cloud_hsm_cluster_id is not None:
            self.require_state(store, "UpdateCustomKeyStore (KeyStorePassword or CloudHsmClusterId)", ConnectionState.DISCONNECTED)
        elif req.new_custom_key_store_name is not None:
            self.require_state(store, "UpdateCustomKeyStore", ConnectionState.CONNECTED, ConnectionState.DISCONNECTED)
        if req.new_custom_key_store_name is not None and req.new_custom_key_store_name != store.custom_key_store_name:
            other = await self.ctx.db(self.ctx.repo.find_custom_key_store_by_name, req.new_custom_key_store_name)
            if other is not None:
                raise errors.custom_key_store_name_in_use(req.new_custom_key_store_name)
            changes["custom_key_store_name"] = req.new_custom_key_store_name
        if req.cloud_hsm_cluster_id is not None and req.cloud_hsm_cluster_id != store.cloud_hsm_cluster_id:
            info = await self._cluster(req.cloud_hsm_cluster_id)
            if info.certificate_sha256 != store.cluster_certificate_fingerprint:
                raise errors.cloud_hsm_cluster_not_related(req.cloud_hsm_cluster_id, store.cloud_hsm_cluster_id)
            self._require_two_zones(info)
            changes["cloud_hsm_cluster_id"] = req.cloud_hsm_cluster_id
        if req.key_store_password is not None:
            # The customer tells KMS the current password; nothing changes in the cluster.
            changes["sealed_password"] = seal_password(self.ctx, store.custom_key_store_id, req.key_store_password)
            changes["pending_sealed_password"] = None
        if changes:
            try:
                await self.ctx.db(self.ctx.repo.update_custom_key_store, dataclasses.replace(store, **changes))
            except DuplicateStoreNameError:
                raise errors.custom_key_store_name_in_use(req.new_custom_key_store_name or "") from None

    async def connect(self, store_id: str) -> None:
        store = await self.get(store_id)
        self.require_state(store, "ConnectCustomKeyStore", ConnectionState.DISCONNECTED, ConnectionState.CONNECTING, ConnectionState.CONNECTED)
        if store.connection_state != ConnectionState.DISCONNECTED:
            return  # already connecting or connected: nothing to do
        info = await self.directory.lookup(store.cloud_hsm_cluster_id)
        if info is not None and not info.usable:
            raise errors.cloud_hsm_cluster_not_active(store.cloud_hsm_cluster_id, info.state)
        await self.ctx.update_store(store_id, connection_state=ConnectionState.CONNECTING, connection_error_code=None)
        self.connections.start_connect(store_id)

    async def disconnect(self, store_id: str) -> None:
        store = await self.get(store_id)
        self.require_state(store, "DisconnectCustomKeyStore", ConnectionState.CONNECTED, ConnectionState.CONNECTING, ConnectionState.FAILED)
        await self.ctx.update_store(store_id, connection_state=ConnectionState.DISCONNECTING)
        await self.connections.disconnect(store_id)

    async def delete(self, store_id: str) -> None:
        store = await self.get(store_id)
        self.require_state(store, "DeleteCustomKeyStore", ConnectionState.DISCONNECTED)
        count = await self.ctx.db(self.ctx.repo.count_keys, store_id)
        if count:
            raise errors.custom_key_store_has_cmks(store_id, count)
        try:
            await self.ctx.db(self.ctx.repo.delete_custom_key_store, store_id)
        except NotFoundError:
            raise errors.custom_key_store_not_found(store_id) from None
