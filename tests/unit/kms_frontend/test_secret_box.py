import os
import stat

import pytest

from kms_frontend.secret_box import SealError, SecretBox, load_master_key


def test_key_file_created_0600_and_reused(tmp_path):
    path = tmp_path / "secrets" / "master.key"
    key = load_master_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left behind


def test_missing_key_file_without_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_master_key(tmp_path / "absent", create=False)


def test_wrong_size_key_file(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        load_master_key(path)


def test_permissive_key_file_warns(tmp_path, caplog):
    path = tmp_path / "k"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    load_master_key(path)
    assert "master_key_file_permissive" in caplog.text


def test_seal_open_round_trip(tmp_path):
    box = SecretBox.from_key_file(tmp_path / "k")
    sealed = box.seal(b"kmsPassw0rd", context=b"kmsuser-password:cks-1")
    assert b"kmsPassw0rd" not in sealed
    assert box.open(sealed, context=b"kmsuser-password:cks-1") == b"kmsPassw0rd"
    assert box.seal(b"kmsPassw0rd") != box.seal(b"kmsPassw0rd")  # fresh nonce each time
    # a new process with the same key file opens it
    assert (
        SecretBox.from_key_file(tmp_path / "k").open(sealed, context=b"kmsuser-password:cks-1")
        == b"kmsPassw0rd"
    )


def test_context_binding():
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b"pw", context=b"store-a")
    with pytest.raises(SealError, match="authentication"):
        box.open(sealed, context=b"store-b")


def test_every_bit_flip_detected():
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b"password")
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x80
        with pytest.raises(SealError):
            box.open(bytes(tampered))
    for n in range(len(sealed)):
        with pytest.raises(SealError):
            box.open(sealed[:n])


def test_other_master_key_is_named_in_error():
    sealed = SecretBox(os.urandom(32)).seal(b"pw")
    with pytest.raises(SealError, match="different frontend master key"):
        SecretBox(os.urandom(32)).open(sealed)


def test_master_key_size_enforced():
    with pytest.raises(ValueError):
        SecretBox(b"x" * 31)
