"""The HSM's input rules (hsm_node/rules.py): user names, passwords, key sizes,
labels and byte/length limits, as CloudHSM states them."""
from __future__ import annotations

import grpc
import pytest

from hsm_node import rules
from hsm_node.errors import InvalidArgument

# ------------------------------------------------------------------ user names


@pytest.mark.parametrize("name", ["a", "kmsuser", "Crypto_User_1", "_", "9", "x" * 31, "A1_b2_C3"])
def test_valid_user_names_are_accepted(name: str) -> None:
    assert rules.username(name) == name.lower()


@pytest.mark.parametrize("name", ["KmsUser", "KMSUSER", "kmsUSER"])
def test_user_names_are_case_insensitive_and_canonically_lower_case(name: str) -> None:
    assert rules.username(name) == "kmsuser"


@pytest.mark.parametrize("name", [
    "", "x" * 32, "x" * 100, "kms-user", "kms user", "kms.user", "user@host", "ümlaut", "tab\t", "new\nline",
    " lead", "trail ", "semi;colon", "nul\x00",
])
def test_invalid_user_names_are_refused_with_a_message(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules.username(name)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 to 31 letters, digits or '_'" in exc.value.message


def test_a_huge_invalid_name_is_truncated_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules.username("-" * 5000)
    assert len(exc.value.message) < 200


# ------------------------------------------------------------------ passwords


@pytest.mark.parametrize("pw", ["a" * 7, "a" * 32, "Passw0rd", "with spaces ok", "ünïcödé!"])
def test_passwords_of_7_to_32_characters_are_accepted(pw: str) -> None:
    assert rules.password(pw) == pw


@pytest.mark.parametrize("pw", ["", "Q", "Qz9#Qz", "Qz9#" * 8 + "Q", "Qz9#" * 250])
def test_passwords_outside_7_to_32_are_refused_without_echoing_them(pw: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules.password(pw)
    assert "7 to 32 characters" in exc.value.message
    assert f"(got {len(pw)})" in exc.value.message
    if pw:
        assert pw not in exc.value.message


def test_passwords_are_case_sensitive_values_not_canonicalised() -> None:
    assert rules.password("PassWord1") == "PassWord1"


# ------------------------------------------------------------------ keys, labels, lengths


def test_key_sizes_are_aes_128_or_256_and_zero_means_256() -> None:
    assert rules.key_size(16) == 16
    assert rules.key_size(32) == 32
    assert rules.key_size(0) == 32


@pytest.mark.parametrize("size", [1, 8, 15, 17, 24, 31, 33, 64, 2**32 - 1])
def test_other_key_sizes_are_refused(size: int) -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules.key_size(size)
    assert f"invalid AES key size {size} bytes" in exc.value.message


def test_labels_up_to_127_characters() -> None:
    assert rules.label("") == ""
    assert rules.label("l" * 127) == "l" * 127
    assert rules.label("arn:aws:kms:us-east-1:111122223333:key/1234abcd").startswith("arn:")
    with pytest.raises(InvalidArgument) as exc:
        rules.label("l" * 128)
    assert "128 characters, at most 127" in exc.value.message


def test_length_bounds_are_inclusive() -> None:
    assert rules.length(1, "random length", 1, rules.MAX_RANDOM) == 1
    assert rules.length(4096, "random length", 1, rules.MAX_RANDOM) == 4096
    for bad in (0, 4097):
        with pytest.raises(InvalidArgument) as exc:
            rules.length(bad, "random length", 1, rules.MAX_RANDOM)
        assert exc.value.message == f"random length must be between 1 and 4096 (got {bad})"


def test_byte_limits() -> None:
    assert rules.max_bytes(b"x" * rules.MAX_PLAINTEXT, "plaintext", rules.MAX_PLAINTEXT) == b"x" * 65536
    assert rules.max_bytes(b"", "aad", rules.MAX_AAD) == b""
    with pytest.raises(InvalidArgument, match=r"plaintext must be 0 to 65536 bytes long \(got 65537\)"):
        rules.max_bytes(b"x" * 65537, "plaintext", rules.MAX_PLAINTEXT)
    with pytest.raises(InvalidArgument, match=r"aad must be 0 to 8192 bytes long \(got 8193\)"):
        rules.max_bytes(b"x" * 8193, "aad", rules.MAX_AAD)
    with pytest.raises(InvalidArgument, match=r"ciphertext must be 16 to"):
        rules.max_bytes(b"x" * 15, "ciphertext", rules.MAX_PLAINTEXT + 16, lo=rules.TAG_LEN)


def test_constants_match_cloudhsm() -> None:
    assert rules.MAX_LOGIN_FAILURES == 5
    assert (rules.PASSWORD_MIN, rules.PASSWORD_MAX) == (7, 32)
    assert rules.IV_LEN == 12 and rules.TAG_LEN == 16
    assert rules.PRECO_USERNAME == "admin"
