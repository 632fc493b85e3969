"""Secrets at rest (hsm_node/storage_sealing.py): record sealing, the wrapped storage
key, the master key loader and Argon2id password hashes."""
from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from hsm_node import storage_sealing as sealing
from hsm_node.storage_sealing import (
    NONCE_LEN,
    HashParams,
    SealError,
    hash_password,
    load_master_key,
    open_sealed,
    seal,
    unwrap_storage_key,
    verify_password,
    wrap_storage_key,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = b"key\x0033\x00123\x00node-a"

# Cheap parameters for tests that only exercise the encoding, not the cost.
FAST = HashParams(iterations=1, memory_kib=64, lanes=1)


# ------------------------------------------------------------------ seal / open


@pytest.mark.parametrize("data", [b"", b"x", b"secret key material" * 100, os.urandom(4096)])
def test_seal_open_round_trip(data: bytes) -> None:
    blob = seal(KEY, data, AAD)
    assert len(blob) == NONCE_LEN + len(data) + 16
    assert open_sealed(KEY, blob, AAD) == data


def test_sealing_is_randomised_and_hides_the_plaintext() -> None:
    data = b"0123456789abcdef0123456789abcdef"
    a, b = seal(KEY, data, AAD), seal(KEY, data, AAD)
    assert a != b
    assert a[:NONCE_LEN] != b[:NONCE_LEN]
    assert data not in a and data not in b


def test_the_aad_binds_a_sealed_value_to_its_row() -> None:
    blob = seal(KEY, b"material", AAD)
    for other in (b"", b"key\x0034\x00123\x00node-a", AAD + b"x", AAD[:-1]):
        with pytest.raises(SealError, match="failed authentication"):
            open_sealed(KEY, blob, other)


def test_a_wrong_key_does_not_open() -> None:
    blob = seal(KEY, b"material", AAD)
    with pytest.raises(SealError, match="failed authentication"):
        open_sealed(OTHER_KEY, blob, AAD)


@pytest.mark.parametrize("where", [0, NONCE_LEN, -1])
def test_any_flipped_bit_is_detected(where: int) -> None:
    blob = bytearray(seal(KEY, b"material", AAD))
    blob[where] ^= 0x01
    with pytest.raises(SealError):
        open_sealed(KEY, bytes(blob), AAD)


@pytest.mark.parametrize("length", [0, 1, NONCE_LEN, NONCE_LEN + 15])
def test_truncated_blobs_are_refused(length: int) -> None:
    blob = seal(KEY, b"", AAD)
    with pytest.raises(SealError, match="truncated"):
        open_sealed(KEY, blob[:length], AAD)


# ------------------------------------------------------------------ storage key wrap


def test_storage_key_wrap_round_trip_and_binding() -> None:
    master, storage_key = os.urandom(32), os.urandom(32)
    wrapped = wrap_storage_key(master, "node-1", storage_key)
    assert storage_key not in wrapped
    assert unwrap_storage_key(master, "node-1", wrapped) == storage_key
    with pytest.raises(SealError, match="another master key"):
        unwrap_storage_key(os.urandom(32), "node-1", wrapped)
    with pytest.raises(SealError, match="another master key"):
        unwrap_storage_key(master, "node-2", wrapped)  # bound to the node id


# ------------------------------------------------------------------ master key


def test_master_key_from_environment_value() -> None:
    raw = os.urandom(32)
    assert load_master_key(None, base64.b64encode(raw).decode(), create=False) == raw


@pytest.mark.parametrize("value,message", [
    ("not base64 !!", "not valid base64"),
    (base64.b64encode(b"short").decode(), "at least 32 bytes"),
])
def test_bad_master_keys_are_refused_clearly(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_master_key(None, value, create=False)


def test_master_key_file_is_created_private_and_then_reused(tmp_path) -> None:
    path = tmp_path / "cfg" / "master.key"
    with pytest.raises(ValueError, match="does not exist"):
        load_master_key(str(path), None, create=False)
    first = load_master_key(str(path), None, create=True)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(str(path), None, create=True) == first
    with pytest.raises(ValueError, match="no master key"):
        load_master_key(None, None, create=True)


# ------------------------------------------------------------------ password hashes


def test_password_hash_is_argon2id_with_the_stated_parameters() -> None:
    encoded = hash_password("kmsPassword1")
    alg, params, salt_b64, digest_b64 = encoded.split("$")
    assert alg == "argon2id"
    assert params == "m=19456,t=2,p=1"
    salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    assert len(salt) == 16 and len(digest) == 32
    # Recompute independently with Argon2id: the stored digest is exactly that.
    expected = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456).derive(b"kmsPassword1")
    assert digest == expected
    assert "kmsPassword1" not in encoded


def test_verify_accepts_the_right_password_only() -> None:
    encoded = hash_password("Correct-Horse7")
    assert verify_password("Correct-Horse7", encoded)
    assert not verify_password("correct-horse7", encoded)  # case sensitive
    assert not verify_password("Correct-Horse", encoded)
    assert not verify_password("", encoded)


def test_hashes_are_salted() -> None:
    a, b = hash_password("same-password", FAST), hash_password("same-password", FAST)
    assert a != b
    assert verify_password("same-password", a) and verify_password("same-password", b)


def test_verify_reads_the_parameters_from_the_hash() -> None:
    encoded = hash_password("pw-1234567", FAST)
    assert encoded.split("$")[1] == "m=64,t=1,p=1"
    assert verify_password("pw-1234567", encoded)


@pytest.mark.parametrize("encoded", [
    "", "garbage", "argon2id$m=64,t=1,p=1$abc", "argon2id$m=64;t=1$AAAA$AAAA", "argon2id$q=1$AAAA$AAAA",
    "argon2id$m=x,t=1,p=1$AAAA$AAAA",
])
def test_malformed_hashes_never_verify_and_never_raise(encoded: str) -> None:
    assert verify_password("anything1", encoded) is False


@pytest.mark.parametrize("encoded", [
    "argon2id$m=64,t=1,p=1$!!!!$AAAA",            # salt decodes to b""
    "argon2id$m=64,t=1,p=1$AAAA$AAAA",            # 3-byte salt
    "argon2id$m=1,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # memory too small
    "argon2id$m=64,t=0,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # zero iterations
])
def test_hashes_with_out_of_range_parameters_never_verify_and_never_raise(encoded: str) -> None:
    assert verify_password("anything1", encoded) is False


def test_other_algorithms_are_refused() -> None:
    encoded = hash_password("pw-1234567", FAST)
    assert not verify_password("pw-1234567", "argon2i" + encoded[len("argon2id"):])
    assert not verify_password("pw-1234567", encoded.replace("argon2id", "pbkdf2", 1))


def test_default_parameters_are_memory_hard() -> None:
    assert sealing.DEFAULT_HASH.memory_kib >= 19 * 1024
    assert sealing.DEFAULT_HASH.iterations >= 2
