"""Cryptographic operations (reference 3.4-3.6, 4, 6).

Encrypt / Decrypt / ReEncrypt / GenerateDataKey[WithoutPlaintext] /
GenerateRandom. Key state rules come first, then the store's request quota,
then one HSM operation on some node of the store's cluster. The ciphertext blob
names the key, its backing key handle and its store; header and encryption
context are the AES-GCM additional data. Nothing on this path touches the
metadata database.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm

from .. import errors
from ..ciphertext import CiphertextFormatError, aad_of_encoded, header_bytes, pack_encoded, unpack
from ..cluster.calls import NoNodeAvailable
from ..cluster.connector import CONNECTED, Connector
from ..cluster.crypto_streams import HsmOpError, KeyMissing, run_op
from ..store.repository import KeyRecord
from ..validation import (
    Checks,
    encoded_encryption_context,
    validate_data_key_spec,
    validate_encryption_context,
)
from .catalog import Catalog
from .context import Context

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
    def __init__(self, ctx: Context, catalog: Catalog, connector: Connector) -> None:
        self.ctx, self.catalog, self.connector = ctx, catalog, connector
        self._limits: dict[str, RateLimiter] = {}

    # ------------------------------------------------------------ shared rules

    def usable(self, ref: str, operation: str) -> KeyRecord:
        key = self.catalog.resolve(ref)
        if key.key_state != "Enabled":
            raise errors.key_state_error(key.arn, key.key_state)
        if key.key_usage != "ENCRYPT_DECRYPT":
            raise errors.invalid_key_usage(key.arn, key.key_usage, operation)
        return key

    def _throttle(self, store_id: str) -> None:
        limiter = self._limits.get(store_id)
        if limiter is None:
            limiter = self._limits[store_id] = RateLimiter(self.ctx.settings.store_request_quota)
        if not limiter.allow():
            raise errors.throttled()

    async def _hsm(self, key: KeyRecord, make_op, throttle: bool = True) -> hsm.CryptoResult:  # type: ignore[no-untyped-def]
        if throttle:
            self._throttle(key.custom_key_store_id)
        try:
            return await run_op(self.connector.sessions.get(key.custom_key_store_id), make_op)
        except NoNodeAvailable:
            raise errors.cluster_unreachable(key.arn, key.cloud_hsm_cluster_id) from None
        except KeyMissing:
            raise errors.backing_key_missing(key.arn, key.cloud_hsm_cluster_id) from None

    @staticmethod
    def _check_algorithm(key: KeyRecord, algorithm: str | None) -> None:
        """Symmetric keys do SYMMETRIC_DEFAULT only; the RSA/SM2 algorithms are valid enum
        values but not for this key (AWS: InvalidKeyUsageException)."""
        if algorithm is not None and algorithm != ALGORITHM:
            raise errors.InvalidKeyUsageException(f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}.")

    @staticmethod
    def _check_common(grant_tokens: list[str], algorithm: str | None, field: str = "encryptionAlgorithm") -> None:
        Checks().grant_tokens(grant_tokens).encryption_algorithm(algorithm, field=field).done()

    # ------------------------------------------------------------ operations

    async def encrypt(self, ref: str, plaintext: bytes, context: Mapping[str, str], grant_tokens: list[str] = (),  # type: ignore[assignment]
                      algorithm: str | None = None, dry_run: bool = False) -> tuple[bytes, KeyRecord]:
        Checks().key_id(ref).plaintext(plaintext).done()
        self._check_common(list(grant_tokens), algorithm)
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
        # The operation is built in one go (a dict for the oneof member, no separate EncryptRequest
        # message copied into it): it is rebuilt for each node tried, with that node's session.
        result = await self._hsm(key, lambda token: hsm.CryptoOp(encrypt={
            "session_token": token, "key_handle": handle, "plaintext": plaintext, "aad": aad}), throttle)
        return pack_encoded(header, result.encrypt.iv, result.encrypt.ciphertext)

    async def decrypt(self, blob: bytes, context: Mapping[str, str], key_ref: str | None = None,
                      grant_tokens: list[str] = (), algorithm: str | None = None,  # type: ignore[assignment]
                      dry_run: bool = False) -> Decrypted:
        Checks().ciphertext_blob(blob).key_id(key_ref, required=False).done()
        self._check_common(list(grant_tokens), algorithm)
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
        if key is None or key.key_state == "Creating":
            raise errors.invalid_ciphertext()
        if key.key_state != "Enabled":
            raise errors.key_state_error(key.arn, key.key_state)
        self._check_algorithm(key, algorithm)
        if parsed.header.custom_key_store_id != key.custom_key_store_id or parsed.header.key_handle != key.backing_key_handle:
            raise errors.invalid_ciphertext()  # another store's key, or other key material
        if dry_run:
            raise errors.dry_run_succeeded()
        aad = parsed.aad(context)
        try:
            result = await self._hsm(key, lambda token: hsm.CryptoOp(decrypt=hsm.DecryptRequest(
                session_token=token, key_handle=key.backing_key_handle, iv=parsed.iv, ciphertext=parsed.ciphertext,
                aad=aad)))
        except HsmOpError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise errors.invalid_ciphertext() from None
            raise
        return Decrypted(key, result.decrypt.plaintext)

    async def re_encrypt(self, blob: bytes, source_context: Mapping[str, str], source_key_ref: str | None,
                         destination_key_ref: str, destination_context: Mapping[str, str],
                         source_algorithm: str | None = None, destination_algorithm: str | None = None,
                         grant_tokens: list[str] = (), dry_run: bool = False) -> tuple[bytes, KeyRecord, KeyRecord]:  # type: ignore[assignment]
        (Checks().ciphertext_blob(blob).key_id(source_key_ref, field="sourceKeyId", required=False)
         .key_id(destination_key_ref, field="destinationKeyId").done())
        self._check_common(list(grant_tokens), source_algorithm, "sourceEncryptionAlgorithm")
        self._check_common([], destination_algorithm, "destinationEncryptionAlgorithm")
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
                                key_spec: str | None, *, with_plaintext: bool, grant_tokens: list[str] = (),  # type: ignore[assignment]
                                dry_run: bool = False) -> tuple[bytes, bytes, KeyRecord]:
        Checks().key_id(ref).done()
        length = validate_data_key_spec(number_of_bytes, key_spec)
        self._check_common(list(grant_tokens), None)
        encoded_context = encoded_encryption_context(context)
        operation = "GenerateDataKey" if with_plaintext else "GenerateDataKeyWithoutPlaintext"
        key = self.usable(ref, operation)
        if dry_run:
            raise errors.dry_run_succeeded()
        handle = key.backing_key_handle or 0
        header = header_bytes(key.key_id, handle, key.custom_key_store_id)
        aad = aad_of_encoded(header, encoded_context)
        result = await self._hsm(key, lambda token: hsm.CryptoOp(data_key={
            "session_token": token, "key_handle": handle, "length": length, "aad": aad}))
        dk = result.data_key
        return pack_encoded(header, dk.iv, dk.ciphertext), (dk.plaintext if with_plaintext else b""), key

    async def generate_random(self, number_of_bytes: int | None, store_id: str | None) -> bytes:
        Checks().number_of_bytes(number_of_bytes, required=True).custom_key_store_id(store_id, required=False).done()
        assert number_of_bytes is not None
        if not store_id:
            return os.urandom(number_of_bytes)
        store = await self.ctx.store_or_none(store_id)
        if store is None:
            raise errors.custom_key_store_not_found(store_id)
        if store.connection_state != CONNECTED:
            raise errors.custom_key_store_invalid_state(store_id, store.connection_state, "GenerateRandom", [CONNECTED])
        self._throttle(store_id)
        try:
            result = await run_op(self.connector.sessions.get(store_id), lambda token: hsm.CryptoOp(
                random=hsm.GenerateRandomRequest(session_token=token, length=number_of_bytes)))
        except NoNodeAvailable:
            raise errors.KMSInvalidStateException(
                f"KMS cannot communicate with CloudHSM cluster {store.cloud_hsm_cluster_id} of custom key store"
                f" {store_id}. Make sure its HSMs are running and reachable.") from None
        return result.random.random
