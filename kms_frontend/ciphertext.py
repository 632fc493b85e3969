"""The versioned ciphertext blob, its authenticated header and the encryption-context encoding.

The AES-256-GCM itself runs inside an HSM node; this module only builds the header and the AAD
the HSM authenticates, packs the node's answer into a blob and parses blobs back.

Blob layout, version 1 (all integers big-endian)::

    offset   size  field
    0        1     version = 0x01                                   \\
    1        16    KMS key id (UUID, raw 16 bytes)                   |  header:
    17       8     HSM key handle of the backing key (uint64)        |  authenticated
    25       1     L = length of the custom key store id (1..64)     |  as AAD
    26       L     custom key store id (UTF-8)                      /
    26+L     12    GCM IV (chosen by the HSM)
    38+L     2     N = length of ciphertext||tag (uint16, 17..4112)
    40+L     N     ciphertext || 16-byte GCM tag

The key id, the backing key handle and the store id together are the "key-material identifier":
a blob names the exact KMS key that produced it, and a blob from another store (even one whose
cluster holds the same AES key under the same handle) has a different header, hence a different
AAD, and fails authentication. Nothing may follow the ciphertext (trailing bytes are rejected).
Size: at most 40 + 64 + 4096 + 16 = 4216 bytes for a 4096-byte plaintext, within the 6144 limit.

AAD = uint16 len(header) || header || encode_context(encryption_context).
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

VERSION_1 = 1
IV_LEN = 12
TAG_LEN = 16
MAX_PLAINTEXT = 4096
MAX_BLOB = 6144
MAX_STORE_ID_BYTES = 64
MIN_CIPHERTEXT = TAG_LEN + 1  # plaintexts are at least 1 byte
MAX_CIPHERTEXT = MAX_PLAINTEXT + TAG_LEN

_FIXED = struct.Struct(">B16sQB")  # version, key id, key handle, store id length
MAX_HEADER_BYTES = _FIXED.size + MAX_STORE_ID_BYTES
MAX_AAD_BYTES = 8192  # what an HSM node accepts as AAD
MAX_ENCODED_CONTEXT_BYTES = MAX_AAD_BYTES - 2 - MAX_HEADER_BYTES
MAX_BLOB_BYTES = MAX_HEADER_BYTES + IV_LEN + 2 + MAX_CIPHERTEXT

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class CiphertextFormatError(ValueError):
    """A blob that cannot be one of ours. The service answers InvalidCiphertextException."""


@dataclass(frozen=True)
class BlobHeader:
    """The authenticated part of a blob: which KMS key, which backing key, which store."""

    key_id: str  # canonical lowercase UUID string
    key_handle: int  # uint64
    custom_key_store_id: str  # 1..64 UTF-8 bytes
    version: int = VERSION_1

    def __post_init__(self) -> None:
        if self.version != VERSION_1:
            raise ValueError(f"unsupported blob version {self.version}")
        try:
            canonical = str(uuid.UUID(self.key_id))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"key id {self.key_id!r} is not a UUID") from exc
        if canonical != self.key_id:
            raise ValueError(f"key id {self.key_id!r} is not a canonical lowercase UUID")
        if not 0 <= self.key_handle < 2**64:
            raise ValueError(f"key handle {self.key_handle} is not a uint64")
        if not 1 <= len(self.custom_key_store_id.encode("utf-8")) <= MAX_STORE_ID_BYTES:
            raise ValueError("custom key store id must be 1..64 UTF-8 bytes")

    def to_bytes(self) -> bytes:
        store = self.custom_key_store_id.encode("utf-8")
        return _FIXED.pack(self.version, uuid.UUID(self.key_id).bytes, self.key_handle, len(store)) + store


@dataclass(frozen=True)
class ParsedBlob:
    header: BlobHeader
    header_bytes: bytes  # exactly as found in the blob
    iv: bytes
    ciphertext: bytes  # ciphertext || tag, as the HSM wants it

    def aad(self, context: Mapping[str, str] | None) -> bytes:
        return build_aad(self.header_bytes, context)


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """Canonical, unambiguous encoding of an encryption context.

    ``uint32 count`` then, for each pair sorted by key (code-point order, which is also UTF-8
    byte order), ``uint32 len(key) || key || uint32 len(value) || value`` in UTF-8. Length
    prefixes keep ``{"ab": "c"}`` and ``{"a": "bc"}`` apart. ``None`` and ``{}`` both mean "no
    encryption context" (as in AWS, where an empty map equals an omitted one) and encode to
    four zero bytes, which differs from every non-empty context.

    Raises TypeError for a non-str key or value, ValueError for a string that is not valid
    Unicode (lone surrogates).
    """
    if not context:
        return _U32.pack(0)
    parts = [_U32.pack(len(context))]
    encoded: list[tuple[bytes, bytes]] = []
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("encryption context keys and values must be strings")
        try:
            encoded.append((key.encode("utf-8"), value.encode("utf-8")))
        except UnicodeEncodeError as exc:
            raise ValueError("encryption context is not valid Unicode") from exc
    for k, v in sorted(encoded):
        parts += [_U32.pack(len(k)), k, _U32.pack(len(v)), v]
    return b"".join(parts)


def build_aad(header_bytes: bytes, context: Mapping[str, str] | None) -> bytes:
    """The AAD the HSM authenticates: the blob header and the encryption context, both bound."""
    return aad_of_encoded(header_bytes, encode_context(context))


def aad_of_encoded(header_bytes: bytes, encoded_context: bytes) -> bytes:
    """``build_aad`` for a context already encoded (validation encodes it anyway: once is enough)."""
    return _U16.pack(len(header_bytes)) + header_bytes + encoded_context


@functools.lru_cache(maxsize=4096)
def header_bytes(key_id: str, key_handle: int, custom_key_store_id: str) -> bytes:
    """The encoded header of every blob made under this key material, validated and encoded once.

    It is the same for every Encrypt / GenerateDataKey under a key, and building it costs two UUID
    parses (about 10 us, a per-request cost worth removing from the crypto path). The cache is
    keyed by all three fields, so a key whose backing key changes gets a new header."""
    return BlobHeader(key_id, key_handle, custom_key_store_id).to_bytes()


@functools.lru_cache(maxsize=4096)
def _key_id_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def key_id_of(blob: bytes) -> str:
    """The KMS key id a blob names, read from its header without checking the rest (the
    authorizer needs the key before the operation parses the blob). Raises CiphertextFormatError
    for a blob too short or of another version."""
    if len(blob) < _FIXED.size or blob[0] != VERSION_1:
        raise CiphertextFormatError("not a version 1 blob")
    return _key_id_text(bytes(blob[1:17]))


def pack(header: BlobHeader, iv: bytes, ciphertext: bytes) -> bytes:
    """Assemble a blob from the header and what the HSM returned (IV, ciphertext||tag)."""
    return pack_encoded(header.to_bytes(), iv, ciphertext)


def pack_encoded(header: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """``pack`` with the header already encoded (see :func:`header_bytes`)."""
    if len(iv) != IV_LEN:
        raise ValueError(f"IV must be {IV_LEN} bytes, got {len(iv)}")
    if not MIN_CIPHERTEXT <= len(ciphertext) <= MAX_CIPHERTEXT:
        raise ValueError(f"ciphertext||tag must be {MIN_CIPHERTEXT}..{MAX_CIPHERTEXT} bytes")
    return header + iv + _U16.pack(len(ciphertext)) + ciphertext


def unpack(blob: bytes) -> ParsedBlob:
    """Parse a blob. Raises CiphertextFormatError for anything that is not a well-formed blob."""
    if len(blob) < _FIXED.size:
        raise CiphertextFormatError("blob too short")
    if len(blob) > MAX_BLOB:
        raise CiphertextFormatError("blob too long")
    version, key_bytes, handle, store_len = _FIXED.unpack_from(blob, 0)
    if version != VERSION_1:
        raise CiphertextFormatError(f"unknown blob version {version}")
    if not 1 <= store_len <= MAX_STORE_ID_BYTES:
        raise CiphertextFormatError("bad custom key store id length")
    header_end = _FIXED.size + store_len
    body_start = header_end + IV_LEN + _U16.size
    if len(blob) < body_start:
        raise CiphertextFormatError("blob truncated in header")
    try:
        store_id = blob[_FIXED.size : header_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CiphertextFormatError("custom key store id is not UTF-8") from exc
    (ct_len,) = _U16.unpack_from(blob, header_end + IV_LEN)
    if not MIN_CIPHERTEXT <= ct_len <= MAX_CIPHERTEXT:
        raise CiphertextFormatError("bad ciphertext length")
    if len(blob) != body_start + ct_len:
        raise CiphertextFormatError("blob truncated" if len(blob) < body_start + ct_len else "trailing bytes")
    header = BlobHeader(
        key_id=str(uuid.UUID(bytes=key_bytes)), key_handle=handle, custom_key_store_id=store_id
    )
    return ParsedBlob(
        header=header,
        header_bytes=blob[:header_end],
        iv=blob[header_end : header_end + IV_LEN],
        ciphertext=blob[body_start:],
    )
