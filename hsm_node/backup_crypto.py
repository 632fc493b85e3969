"""Encryption of backup contents, modelled on CloudHSM backups.

CloudHSM encrypts a backup inside the HSM under a fresh ephemeral backup key (EBK)
and wraps the EBK (NIST SP 800-38F key wrap) under a persistent backup key (PBK)
derived from a manufacturer key, so a backup can only be restored onto HSMs that hold
that manufacturer key. Here:

* the contents (opaque bytes from the caller) are optionally zlib-compressed, then
  encrypted with AES-256-GCM under a random 256-bit EBK and a random 96-bit nonce;
* the EBK is wrapped with AES key wrap (SP 800-38F / RFC 3394) under the PBK, which is
  HKDF-SHA256(manufacturer key, info=PBK_INFO);
* a short PBK identifier (HKDF-SHA256 with a different info string: it reveals nothing
  about the PBK) lets ``open_backup`` tell "sealed under another manufacturer key"
  apart from "corrupted";
* the GCM additional data is the whole header followed by the caller's ``aad``
  (length-prefixed), so no header byte can be altered and a blob cannot be moved to
  another backup id or cluster (use :func:`backup_aad` to build it).

Blob format, version 1 (all fields fixed-size except the last)::

    offset  size  field
    0       4     magic  b"HBK\\x00"
    4       1     version (1)
    5       8     PBK id = HKDF-SHA256(manufacturer_key, info=PBK_ID_INFO, length=8)
    13      40    EBK wrapped under the PBK (AES key wrap of a 32-byte key)
    53      12    GCM nonce
    65      n+16  AES-256-GCM(EBK, nonce, payload, aad=blob[0:65] || u32be(len(aad)) || aad)
                  ciphertext || 16-byte tag

    payload = codec byte (0 = stored, 1 = zlib) || body

The codec byte sits inside the ciphertext, so it is both secret and authenticated.
Nothing here logs, and no error message contains key bytes.
"""

from __future__ import annotations

import hmac
import os
import struct
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

__all__ = [
    "BackupCorruptError",
    "BackupCryptoError",
    "BackupKeyMismatchError",
    "HEADER_LEN",
    "MAGIC",
    "MIN_BLOB_LEN",
    "VERSION",
    "backup_aad",
    "open_backup",
    "pbk_id",
    "seal_backup",
]

MAGIC = b"HBK\x00"
VERSION = 1

PBK_INFO = b"kms-cloudhsm-cluster/backup/persistent-backup-key/v1"
PBK_ID_INFO = b"kms-cloudhsm-cluster/backup/persistent-backup-key-id/v1"

EBK_LEN = 32
WRAPPED_EBK_LEN = EBK_LEN + 8
PBK_ID_LEN = 8
NONCE_LEN = 12
TAG_LEN = 16

_OFF_VERSION = len(MAGIC)
_OFF_PBK_ID = _OFF_VERSION + 1
_OFF_WRAPPED = _OFF_PBK_ID + PBK_ID_LEN
_OFF_NONCE = _OFF_WRAPPED + WRAPPED_EBK_LEN
HEADER_LEN = _OFF_NONCE + NONCE_LEN
# The payload always carries at least its codec byte.
MIN_BLOB_LEN = HEADER_LEN + 1 + TAG_LEN

CODEC_STORED = 0
CODEC_ZLIB = 1

MIN_MANUFACTURER_KEY_LEN = 16


class BackupCryptoError(Exception):
    """A backup blob could not be opened."""


class BackupCorruptError(BackupCryptoError):
    """The blob is malformed, truncated, tampered with, or belongs to another backup (aad mismatch)."""


class BackupKeyMismatchError(BackupCryptoError):
    """The blob was sealed under a different manufacturer key (another deployment)."""


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _check_manufacturer_key(manufacturer_key: bytes) -> None:
    if not isinstance(manufacturer_key, bytes | bytearray | memoryview):
        raise TypeError("manufacturer_key must be bytes")
    if len(manufacturer_key) < MIN_MANUFACTURER_KEY_LEN:
        raise ValueError(
            f"manufacturer_key is too short ({len(manufacturer_key)} bytes); "
            f"at least {MIN_MANUFACTURER_KEY_LEN} bytes are required"
        )


def _pbk(manufacturer_key: bytes) -> bytes:
    return _hkdf(manufacturer_key, PBK_INFO, 32)


def pbk_id(manufacturer_key: bytes) -> bytes:
    """The 8-byte public identifier of the PBK derived from ``manufacturer_key``."""
    _check_manufacturer_key(manufacturer_key)
    return _hkdf(manufacturer_key, PBK_ID_INFO, PBK_ID_LEN)


def backup_aad(backup_id: str, cluster_id: str) -> bytes:
    """Unambiguous additional data naming a backup: length-prefixed backup id and cluster id."""
    parts = [b"backup", backup_id.encode("utf-8"), cluster_id.encode("utf-8")]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _gcm_aad(header: bytes, aad: bytes) -> bytes:
    return header + struct.pack(">I", len(aad)) + aad


def seal_backup(contents: bytes, manufacturer_key: bytes, *, aad: bytes, compress: bool = True) -> bytes:
    """Encrypt ``contents`` into a self-describing blob (see the module docstring for the format).

    ``aad`` must name the backup (e.g. :func:`backup_aad`); the same value is required to open it.
    With ``compress`` the contents are zlib-compressed first, kept only when that makes them smaller.
    """
    _check_manufacturer_key(manufacturer_key)
    contents = bytes(contents)
    aad = bytes(aad)
    codec, body = CODEC_STORED, contents
    if compress and contents:
        packed = zlib.compress(contents, 6)
        if len(packed) < len(contents):
            codec, body = CODEC_ZLIB, packed
    ebk = os.urandom(EBK_LEN)
    nonce = os.urandom(NONCE_LEN)
    wrapped = aes_key_wrap(_pbk(manufacturer_key), ebk)
    header = MAGIC + bytes([VERSION]) + pbk_id(manufacturer_key) + wrapped + nonce
    assert len(header) == HEADER_LEN
    sealed = AESGCM(ebk).encrypt(nonce, bytes([codec]) + body, _gcm_aad(header, aad))
    return header + sealed


def open_backup(blob: bytes, manufacturer_key: bytes, *, aad: bytes) -> bytes:
    """Decrypt a blob made by :func:`seal_backup`; return the original contents.

    Raises :class:`BackupKeyMismatchError` when the blob was sealed under another manufacturer key,
    and :class:`BackupCorruptError` for anything else (truncation, bit flips, wrong ``aad``).
    """
    _check_manufacturer_key(manufacturer_key)
    blob = bytes(blob)
    aad = bytes(aad)
    if len(blob) < MIN_BLOB_LEN:
        raise BackupCorruptError(
            f"backup blob is truncated: {len(blob)} bytes, a valid blob has at least {MIN_BLOB_LEN}"
        )
    if blob[: len(MAGIC)] != MAGIC:
        raise BackupCorruptError("not a backup blob (bad magic bytes)")
    version = blob[_OFF_VERSION]
    if version != VERSION:
        raise BackupCorruptError(
            f"unsupported backup blob version {version} (this node reads version {VERSION})"
        )
    blob_pbk_id = blob[_OFF_PBK_ID:_OFF_WRAPPED]
    wrapped = blob[_OFF_WRAPPED:_OFF_NONCE]
    nonce = blob[_OFF_NONCE:HEADER_LEN]
    header = blob[:HEADER_LEN]
    ours = pbk_id(manufacturer_key)
    same_key_id = hmac.compare_digest(blob_pbk_id, ours)
    try:
        ebk = aes_key_unwrap(_pbk(manufacturer_key), wrapped)
    except InvalidUnwrap as exc:
        if not same_key_id:
            raise BackupKeyMismatchError(
                "backup was sealed under a different manufacturer key "
                f"(blob key id {blob_pbk_id.hex()}, this node's key id {ours.hex()}); "
                "it can only be restored by nodes of the deployment that created it"
            ) from None
        raise BackupCorruptError(
            "backup blob is corrupt: the wrapped backup key fails its integrity check"
        ) from exc
    # If the unwrap succeeded but the key id differs, the id field was damaged: the GCM
    # check below (which authenticates the whole header) reports it as corruption.
    try:
        payload = AESGCM(ebk).decrypt(nonce, blob[HEADER_LEN:], _gcm_aad(header, aad))
    except InvalidTag:
        raise BackupCorruptError(
            "backup blob failed authentication: it is corrupt or truncated, or belongs to another "
            "backup id / cluster (additional data mismatch)"
        ) from None
    codec, body = payload[0], payload[1:]
    if codec == CODEC_STORED:
        return body
    if codec == CODEC_ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error as exc:  # authenticated, so only a buggy writer gets here
            raise BackupCorruptError(f"backup contents do not decompress: {exc}") from None
    raise BackupCorruptError(f"backup blob uses an unknown contents codec {codec}")
