"""Sealing small secrets (the kmsuser password) for storage at rest.

A :class:`SecretBox` encrypts with AES-256-GCM under a key derived by HKDF-SHA256 from the
frontend master key, a 32-byte random file kept outside the metadata database (created with
mode 0600 when missing). Sealed format::

    0x01 || key id (4 bytes, identifies the master key) || nonce (12) || ciphertext || tag (16)

The version byte, key id and the caller's ``context`` are authenticated. Bind each secret to
where it is stored by passing a context, e.g. ``b"kmsuser-password:" + store_id.encode()``, so a
sealed value copied to another row does not open.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plumbing.files import create_private

log = logging.getLogger(__name__)

MASTER_KEY_BYTES = 32
_VERSION = 1
_KEY_ID_LEN = 4
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = 1 + _KEY_ID_LEN + _NONCE_LEN


class SealError(Exception):
    """A sealed value that cannot be opened (wrong master key, tampered, or not sealed by us)."""


def _derive(master_key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(master_key)


class SecretBox:
    """AES-256-GCM sealing under a key derived from the frontend master key."""

    def __init__(self, master_key: bytes, *, purpose: bytes = b"kms-frontend/secret-box/v1") -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError(f"master key must be {MASTER_KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(master_key, purpose + b"/aes-256-gcm", 32))
        self.key_id = _derive(master_key, purpose + b"/key-id", _KEY_ID_LEN)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], *, create: bool = True) -> SecretBox:
        return cls(load_master_key(path, create=create))

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        header = bytes([_VERSION]) + self.key_id
        nonce = os.urandom(_NONCE_LEN)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + context)

    def open(self, sealed: bytes, *, context: bytes = b"") -> bytes:
        if len(sealed) < _HEADER_LEN + _TAG_LEN or sealed[0] != _VERSION:
            raise SealError("not a sealed value (bad length or version)")
        header, nonce = sealed[: 1 + _KEY_ID_LEN], sealed[1 + _KEY_ID_LEN : _HEADER_LEN]
        if header[1:] != self.key_id:
            raise SealError(
                "value was sealed under a different frontend master key "
                f"(key id {header[1:].hex()}, this frontend has {self.key_id.hex()}); "
                "start the frontend with the master key file it was created with"
            )
        try:
            return self._aead.decrypt(nonce, sealed[_HEADER_LEN:], header + context)
        except InvalidTag as exc:
            raise SealError("sealed value failed authentication (tampered, or wrong context)") from exc


def load_master_key(path: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """Read the 32-byte master key; when missing and ``create``, make it (mode 0600, durably)."""
    p = Path(path)
    if not p.exists():
        if not create:
            raise FileNotFoundError(f"frontend master key file {p} does not exist")
        _create_key_file(p)
    data = p.read_bytes()
    if len(data) != MASTER_KEY_BYTES:
        raise ValueError(
            f"frontend master key file {p} must hold exactly {MASTER_KEY_BYTES} bytes, it holds {len(data)}"
        )
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        log.warning("event=master_key_file_permissive path=%s mode=%o advice=chmod_600", p, mode)
    return data


def _create_key_file(path: Path) -> None:
    """A fresh key, durably, never clobbering one another process created first (then theirs is used)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if create_private(path, secrets.token_bytes(MASTER_KEY_BYTES)):
        log.info("event=master_key_created path=%s", path)
