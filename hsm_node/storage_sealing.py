"""Secrets at rest: the node storage key, record sealing and password hashes.

* The deployment secret ("manufacturer key") is given to every node from outside
  its data directory (a file or an environment variable). It never reaches disk
  through us.
* Each node has a random storage key, kept in its database only wrapped (AES key
  wrap, RFC 3394) under a key derived from the deployment secret and the node id.
* Records holding secrets (password hashes, key material, the domain key) are
  sealed with AES-256-GCM under the storage key; the additional data names the
  record so sealed values cannot be swapped between rows.
* Passwords are stored only as Argon2id hashes (memory-hard).
"""
from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from plumbing.files import create_private

NONCE_LEN = 12


class SealError(Exception):
    """A sealed value could not be opened (wrong key, tampering, corruption)."""


def derive(secret: bytes, *, info: bytes, salt: bytes | None = None, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(key).encrypt(nonce, data, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_LEN + 16:
        raise SealError("sealed value is truncated")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
    except InvalidTag as exc:
        raise SealError("sealed value failed authentication") from exc


def wrap_storage_key(master: bytes, node_id: str, storage_key: bytes) -> bytes:
    kek = derive(master, info=b"hsm-node storage key v1", salt=node_id.encode())
    return aes_key_wrap(kek, storage_key)


def unwrap_storage_key(master: bytes, node_id: str, wrapped: bytes) -> bytes:
    kek = derive(master, info=b"hsm-node storage key v1", salt=node_id.encode())
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap as exc:
        raise SealError(
            "the master key does not open this data directory (it was created with another master key,"
            " or belongs to another deployment)"
        ) from exc


# ------------------------------------------------------------------ master key


def load_master_key(path: str | None, env_value: str | None, *, create: bool) -> bytes:
    """The deployment secret: base64 in HSM_MASTER_KEY, or a file holding it.

    A missing file is created (mode 0600) when ``create`` is set, like a keyring
    on first use.
    """
    if env_value:
        return _decode_master(env_value, "HSM_MASTER_KEY")
    if not path:
        raise ValueError("no master key: pass --master-key-file or set HSM_MASTER_KEY (base64, 32 bytes)")
    p = Path(path).expanduser()
    if not p.exists():
        if not create:
            raise ValueError(f"master key file {p} does not exist")
        create_private(p, (base64.b64encode(os.urandom(32)).decode() + "\n").encode())
    return _decode_master(p.read_text().strip(), str(p))


def _decode_master(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError(f"master key in {where} is not valid base64") from exc
    if len(raw) < 32:
        raise ValueError(f"master key in {where} must hold at least 32 bytes (got {len(raw)})")
    return raw


# ------------------------------------------------------------------ passwords


@dataclass(frozen=True)
class HashParams:
    iterations: int = 2
    memory_kib: int = 19 * 1024
    lanes: int = 1


DEFAULT_HASH = HashParams()


def hash_password(password: str, params: HashParams = DEFAULT_HASH) -> str:
    salt = os.urandom(16)
    digest = _argon(password, salt, params)
    b64 = base64.b64encode
    return f"argon2id$m={params.memory_kib},t={params.iterations},p={params.lanes}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        alg, ps, salt_b64, digest_b64 = encoded.split("$")
        kv = dict(item.split("=") for item in ps.split(","))
        params = HashParams(iterations=int(kv["t"]), memory_kib=int(kv["m"]), lanes=int(kv["p"]))
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (ValueError, KeyError):
        return False
    if alg != "argon2id":
        return False
    try:
        return hmac.compare_digest(_argon(password, salt, params), digest)
    except ValueError:  # parameters Argon2id refuses (short salt, t=0, too little memory): not ours
        return False


def _argon(password: str, salt: bytes, params: HashParams) -> bytes:
    return Argon2id(
        salt=salt, length=32, iterations=params.iterations, lanes=params.lanes, memory_cost=params.memory_kib
    ).derive(password.encode())
