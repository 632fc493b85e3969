"""Cryptographic operations (AWS KMS API Reference: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
GenerateRandom; "Request quotas" in the AWS KMS Developer Guide).

Encrypt / Decrypt / ReEncrypt / GenerateDataKey[WithoutPlaintext] /
GenerateRandom. Key state rules come first, then the store's request quota,
then one HSM operation on some node of the store's cluster. The ciphertext blob
names the key, its backing key handle and its store; header and encryption
context are the AES-GCM additional data. Nothing on this path touches the
metadata database. Who may call (key policies, IAM policies, grants and their tokens) was
decided before the operation runs (:mod:`.authorization`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import errors
from ..ciphertext import CiphertextFormatError, aad_of_encoded, header_bytes, pack_encoded, unpack
from ..cluster.errors import BackingKeyMissing, BadCiphertext, NoHsmAvailable
from ..cluster.hsm_client import HsmClients, StoreHsmClient
from ..store.changes import SharedRateLimiter
from ..store.repository import KeyRecord, KeyState
from .catalog import Catalog
from .context import Context
from .input_rules import (
    encoded_encryption_context,
    require,
    require_number_of_bytes,
    validate_data_key_spec,
    validate_encryption_context,
)

ALGORITHM = "SYMMETRIC_DEFAULT"


class RateLimiter:
    """Token bucket: ``rate`` requests per second, bursts up to one second's worth."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Decrypted:
    key: KeyRecord
    plaintext: bytes


class Crypto:
    def __init__(self, ctx: Context, catalog: Catalog, hsms: HsmClients) -> None:
        self.ctx, self.catalog, self.hsms = ctx, catalog, hsms
        self._limits: dict[str, RateLimiter | SharedRateLimiter] = {}

    # ------------------------------------------------------------ shared rules

    def usable(self, ref: str, operation: str) -> KeyRecord:
        key = self.catalog.resolve(ref)
        if key.key_state != KeyState.ENABLED:
            raise errors.key_state_error(key.arn, key.key_state)
        if key.key_usage != "ENCRYPT_DECRYPT":
            raise errors.invalid_key_usage(key.arn, key.key_usage, operation)
        return key

    def _throttle(self, store_id: str) -> None:
        limiter = self._limits.get(store_id)
        if limiter is None:
            limiter = self._limits[store_id] = self._limiter(store_id)
        if not limiter.allow():
            raise errors.throttled()

    def _limiter(self, store_id: str) -> RateLimiter | SharedRateLimiter:
        """The store's quota: in this process, or shared by every worker (``--workers``)."""
        settings = self.ctx.settings
        if settings.shared_quota_dir is None:
            return RateLimiter(settings.store_request_quota)
        folder = Path(settings.shared_quota_dir)
        folder.mkdir(mode=0o700, exist_ok=True)  # only this user's processes share (or drain) a bucket
        return SharedRateLimiter(folder / store_id, settings.store_request_quota)

    def _hsm(self, key: KeyRecord, throttle: bool = True) -> StoreHsmClient:
        """The HSMs that hold ``key``, after the store's request quota."""
        if throttle:
            self._throttle(key.custom_key_store_id)
        hsm = self.hsms.get(key.custom_key_store_id)
        if hsm is None:
            raise errors.cluster_unreachable(key.arn, key.cloud_hsm_cluster_id)
        return hsm

    @staticmethod
    def _hsm_error(key: KeyRecord, exc: Exception) -> errors.KmsError:
        if isinstance(exc, BackingKeyMissing):
            return errors.backing_key_missing(key.arn, key.cloud_hsm_cluster_id)
        if isinstance(exc, BadCiphertext):
            return errors.invalid_ciphertext()
        return errors.cluster_unreachable(key.arn, key.cloud_hsm_cluster_id)

    @staticmethod
    def _check_algorithm(key: KeyRecord, algorithm: str | None) -> None:
        """Symmetric keys do SYMMETRIC_DEFAULT only; the RSA/SM2 algorithms are valid enum
        values but not for this key (AWS: InvalidKeyUsageException)."""
        if algorithm is not None and algorithm != ALGORITHM:
            raise errors.InvalidKeyUsageException(f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}.")

    # ------------------------------------------------------------ operations

    async def encrypt(self, ref: str, plaintext: bytes, context: Mapping[str, str], *,
                      algorithm: str | None = None, dry_run: bool = False) -> tuple[bytes, KeyRecord]:
        encoded_context = encoded_encryption_context(context)
        key = self.usable(ref, "Encrypt")
        self._check_algorithm(key, algorithm)
        if dry_run:
            raise errors.dry_run_succeeded()
        return await self._seal(key, plaintext, encoded_context), key

    async def _seal(self, key: KeyRecord, plaintext: bytes, encoded_context: bytes, throttle: bool = True) -> bytes:
        handle = key.backing_key_handle or 0
        header = header_bytes(key.key_id, handle, key.custom_key_store_id)  # built once per key, then cached
        aad = aad_of_encoded(header, encoded_context)
        try:
            iv, ciphertext = await self._hsm(key, throttle).encrypt(handle, plaintext, aad)
        except (NoHsmAvailable, BackingKeyMissing) as exc:
            raise self._hsm_error(key, exc) from None
        return pack_encoded(header, iv, ciphertext)

    async def decrypt(self, blob: bytes | None, context: Mapping[str, str], key_ref: str | None = None, *,
                      algorithm: str | None = None, dry_run: bool = False) -> Decrypted:
        require(ciphertextBlob=blob)  # optional in the model only for the Recipient form (Nitro enclaves)
        assert blob is not None
        validate_encryption_context(context)
        return await self._open(blob, context, key_ref, "Decrypt", dry_run, algorithm)

    async def _open(self, blob: bytes, context: Mapping[str, str], key_ref: str | None, operation: str,
                    dry_run: bool = False, algorithm: str | None = None) -> Decrypted:
        try:
            parsed = unpack(blob)
        except CiphertextFormatError:
            raise errors.invalid_ciphertext() from None
        key = self.catalog.keys.get(parsed.header.key_id)
        if key_ref is not None:
            wanted = self.catalog.resolve(key_ref)
            if key is None or wanted.key_id != key.key_id:
                raise errors.incorrect_key()
        if key is None or key.key_state == KeyState.CREATING:
            raise errors.invalid_ciphertext()
        if key.key_state != KeyState.ENABLED:
            raise errors.key_state_error(key.arn, key.key_state)
        self._check_algorithm(key, algorithm)
        if parsed.header.custom_key_store_id != key.custom_key_store_id or parsed.header.key_handle != key.backing_key_handle:
            raise errors.invalid_ciphertext()  # another store's key, or other key material
        if dry_run:
            raise errors.dry_run_succeeded()
        aad = parsed.aad(context)
        try:
            plaintext = await self._hsm(key).decrypt(key.backing_key_handle or 0, parsed.iv, parsed.ciphertext, aad)
        except (NoHsmAvailable, BackingKeyMissing, BadCiphertext) as exc:
            raise self._hsm_error(key, exc) from None
        return Decrypted(key, plaintext)

    async def re_encrypt(self, blob: bytes | None, source_context: Mapping[str, str], source_key_ref: str | None,
                         destination_key_ref: str, destination_context: Mapping[str, str],
                         source_algorithm: str | None = None, destination_algorithm: str | None = None, *,
                         dry_run: bool = False) -> tuple[bytes, KeyRecord, KeyRecord]:
        require(ciphertextBlob=blob)
        assert blob is not None
        validate_encryption_context(source_context, field="sourceEncryptionContext")
        destination_encoded = encoded_encryption_context(destination_context, field="destinationEncryptionContext")
        destination = self.usable(destination_key_ref, "ReEncrypt")
        self._check_algorithm(destination, destination_algorithm)
        opened = await self._open(blob, source_context, source_key_ref, "ReEncrypt", dry_run, source_algorithm)
        # One ReEncrypt is one request against a store's quota, though it runs two HSM operations.
        same_store = destination.custom_key_store_id == opened.key.custom_key_store_id
        blob = await self._seal(destination, opened.plaintext, destination_encoded, throttle=not same_store)
        return blob, opened.key, destination

    async def generate_data_key(self, ref: str, context: Mapping[str, str], number_of_bytes: int | None,
                                key_spec: str | None, *, with_plaintext: bool,
                                dry_run: bool = False) -> tuple[bytes, bytes, KeyRecord]:
        length = validate_data_key_spec(number_of_bytes, key_spec)
        encoded_context = encoded_encryption_context(context)
        operation = "GenerateDataKey" if with_plaintext else "GenerateDataKeyWithoutPlaintext"
        key = self.usable(ref, operation)
        if dry_run:
            raise errors.dry_run_succeeded()
        handle = key.backing_key_handle or 0
        header = header_bytes(key.key_id, handle, key.custom_key_store_id)
        aad = aad_of_encoded(header, encoded_context)
        try:
            iv, ciphertext, plaintext = await self._hsm(key).data_key(handle, length, aad)
        except (NoHsmAvailable, BackingKeyMissing) as exc:
            raise self._hsm_error(key, exc) from None
        return pack_encoded(header, iv, ciphertext), (plaintext if with_plaintext else b""), key

    async def generate_random(self, number_of_bytes: int | None, store_id: str | None) -> bytes:
        number_of_bytes = require_number_of_bytes(number_of_bytes)
        if not store_id:
            return os.urandom(number_of_bytes)
        store = await self.ctx.connected_store(store_id, "GenerateRandom")
        self._throttle(store_id)
        try:
            return await self.hsms.require(store_id).random(number_of_bytes)
        except NoHsmAvailable:
            raise errors.KMSInvalidStateException(
                f"KMS cannot communicate with CloudHSM cluster {store.cloud_hsm_cluster_id} of custom key store"
                f" {store_id}. Make sure its HSMs are running and reachable.") from None
