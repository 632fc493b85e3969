from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsm_node.backup_crypto import (
    HEADER_LEN,
    MAGIC,
    MIN_BLOB_LEN,
    BackupCorruptError,
    BackupCryptoError,
    BackupKeyMismatchError,
    backup_aad,
    open_backup,
    pbk_id,
    seal_backup,
)

MK = bytes(range(32))
OTHER_MK = bytes(range(1, 33))
AAD = backup_aad("backup-abcdefghijk", "cluster-aaaaaaaaaaa")


@pytest.mark.parametrize(
    "contents",
    [
        b"",
        b"x",
        b"users+keys " * 1000,  # compressible
        os.urandom(5000),  # incompressible
    ],
)
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(contents: bytes, compress: bool) -> None:
    blob = seal_backup(contents, MK, aad=AAD, compress=compress)
    assert blob.startswith(MAGIC)
    assert open_backup(blob, MK, aad=AAD) == contents


def test_compression_shrinks_compressible_contents() -> None:
    contents = b"A" * 100_000
    assert len(seal_backup(contents, MK, aad=AAD)) < 1000
    assert len(seal_backup(contents, MK, aad=AAD, compress=False)) == MIN_BLOB_LEN + len(contents)


def test_each_seal_uses_a_fresh_key_and_nonce() -> None:
    a = seal_backup(b"same", MK, aad=AAD)
    b = seal_backup(b"same", MK, aad=AAD)
    assert a != b
    assert a[:HEADER_LEN] != b[:HEADER_LEN]


def test_wrong_manufacturer_key_is_a_key_mismatch() -> None:
    blob = seal_backup(b"contents", MK, aad=AAD)
    with pytest.raises(BackupKeyMismatchError) as info:
        open_backup(blob, OTHER_MK, aad=AAD)
    message = str(info.value)
    assert "different manufacturer key" in message
    for key in (MK, OTHER_MK):
        assert key.hex() not in message
        assert repr(key) not in message
    # The key ids shown are fingerprints, not the keys.
    assert pbk_id(MK).hex() in message


def test_swapped_aad_is_rejected() -> None:
    blob = seal_backup(b"contents of backup A", MK, aad=backup_aad("backup-aaaaaaaaaaa", "cluster-1"))
    with pytest.raises(BackupCorruptError, match="another backup id"):
        open_backup(blob, MK, aad=backup_aad("backup-bbbbbbbbbbb", "cluster-1"))
    with pytest.raises(BackupCorruptError):
        open_backup(blob, MK, aad=backup_aad("backup-aaaaaaaaaaa", "cluster-2"))
    with pytest.raises(BackupCorruptError):
        open_backup(blob, MK, aad=b"")


def test_backup_aad_is_unambiguous() -> None:
    assert backup_aad("backup-a", "bc") != backup_aad("backup-ab", "c")


def test_every_truncation_is_detected() -> None:
    blob = seal_backup(os.urandom(40), MK, aad=AAD, compress=False)
    for n in range(len(blob)):
        with pytest.raises(BackupCorruptError):
            open_backup(blob[:n], MK, aad=AAD)
    with pytest.raises(BackupCorruptError):
        open_backup(blob + b"\x00", MK, aad=AAD)


def test_every_bit_flip_is_detected() -> None:
    blob = seal_backup(b"some backup contents", MK, aad=AAD)
    for i in range(len(blob)):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[i] ^= 1 << bit
            # Damage is never mistaken for another deployment's key.
            with pytest.raises(BackupCorruptError):
                open_backup(bytes(damaged), MK, aad=AAD)


def test_plaintext_never_appears_in_blob_file(tmp_path: Path) -> None:
    secret = b"KEY-MATERIAL-0123456789abcdef" * 3
    for compress in (True, False):
        path = tmp_path / f"b{compress}.backup"
        path.write_bytes(seal_backup(secret, MK, aad=AAD, compress=compress))
        on_disk = path.read_bytes()
        for start in range(0, len(secret) - 8):
            assert secret[start : start + 8] not in on_disk
        assert MK not in on_disk
        assert MK[:8] not in on_disk


def test_header_checks_have_clear_messages() -> None:
    blob = seal_backup(b"x", MK, aad=AAD)
    with pytest.raises(BackupCorruptError, match="truncated"):
        open_backup(blob[:10], MK, aad=AAD)
    with pytest.raises(BackupCorruptError, match="magic"):
        open_backup(b"ZZZZ" + blob[4:], MK, aad=AAD)
    with pytest.raises(BackupCorruptError, match="version 9"):
        open_backup(blob[:4] + b"\x09" + blob[5:], MK, aad=AAD)


def test_errors_share_a_base_class() -> None:
    assert issubclass(BackupCorruptError, BackupCryptoError)
    assert issubclass(BackupKeyMismatchError, BackupCryptoError)


def test_short_manufacturer_key_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        seal_backup(b"x", b"short", aad=AAD)
    with pytest.raises(ValueError, match="too short"):
        open_backup(b"x" * 100, b"", aad=AAD)
