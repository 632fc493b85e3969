import os
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms_frontend import ciphertext as ct
from kms_frontend.ciphertext import BlobHeader, CiphertextFormatError

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
STORE = "cks-1234567890abcdef0"


def make_blob(
    plaintext: bytes = b"hello", context=None, header: BlobHeader | None = None, key: bytes | None = None
) -> tuple[bytes, bytes]:
    """Encrypt the way an HSM node would: AES-256-GCM with the module's AAD."""
    header = header or BlobHeader(key_id=KEY_ID, key_handle=262162, custom_key_store_id=STORE)
    key = key or AESGCM.generate_key(bit_length=256)
    iv = os.urandom(ct.IV_LEN)
    sealed = AESGCM(key).encrypt(iv, plaintext, ct.build_aad(header.to_bytes(), context))
    return ct.pack(header, iv, sealed), key


def test_round_trip_and_decrypt():
    context = {"purpose": "test", "tenant": "a"}
    blob, key = make_blob(b"secret", context)
    parsed = ct.unpack(blob)
    assert parsed.header == BlobHeader(key_id=KEY_ID, key_handle=262162, custom_key_store_id=STORE)
    assert (
        AESGCM(key).decrypt(parsed.iv, parsed.ciphertext, parsed.aad(dict(reversed(context.items()))))
        == b"secret"
    )


def test_layout():
    blob, _ = make_blob(b"x" * 10)
    assert blob[0] == 1
    assert blob[1:17] == uuid.UUID(KEY_ID).bytes
    assert int.from_bytes(blob[17:25], "big") == 262162
    assert blob[25] == len(STORE) and blob[26 : 26 + len(STORE)] == STORE.encode()
    assert len(blob) == 26 + len(STORE) + 12 + 2 + 10 + 16


def test_max_size_fits_aws_limit():
    header = BlobHeader(key_id=KEY_ID, key_handle=2**64 - 1, custom_key_store_id="c" * 64)
    blob, _ = make_blob(b"\0" * 4096, header=header)
    assert len(blob) == ct.MAX_BLOB_BYTES <= 6144
    assert ct.unpack(blob).header.key_handle == 2**64 - 1


def test_every_truncation_is_rejected():
    blob, _ = make_blob(b"data key material", {"a": "b"})
    for n in range(len(blob)):
        with pytest.raises(CiphertextFormatError):
            ct.unpack(blob[:n])


def test_trailing_bytes_rejected():
    blob, _ = make_blob()
    with pytest.raises(CiphertextFormatError, match="trailing"):
        ct.unpack(blob + b"\0")


def test_bad_version_rejected():
    blob, _ = make_blob()
    with pytest.raises(CiphertextFormatError, match="version"):
        ct.unpack(b"\x02" + blob[1:])


def test_every_header_bit_flip_is_rejected_or_changes_the_aad():
    context = {"k": "v"}
    blob, key = make_blob(b"payload", context)
    original = ct.unpack(blob)
    header_len = len(original.header_bytes)
    body_start = header_len + ct.IV_LEN + 2
    for i in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[i] ^= 1 << bit
            try:
                parsed = ct.unpack(bytes(tampered))
            except CiphertextFormatError:
                continue
            if i < header_len:
                assert parsed.aad(context) != original.aad(context)
            elif i < body_start - 2:
                assert parsed.iv != original.iv
            else:
                assert parsed.ciphertext != original.ciphertext
    # and, end to end, none of the surviving flips decrypts
    for i in range(body_start):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        try:
            parsed = ct.unpack(bytes(tampered))
        except CiphertextFormatError:
            continue
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(parsed.iv, parsed.ciphertext, parsed.aad(context))


def test_other_store_or_handle_changes_aad():
    a = BlobHeader(key_id=KEY_ID, key_handle=7, custom_key_store_id="cks-a")
    b = BlobHeader(key_id=KEY_ID, key_handle=7, custom_key_store_id="cks-b")
    c = BlobHeader(key_id=KEY_ID, key_handle=8, custom_key_store_id="cks-a")
    aads = {ct.build_aad(h.to_bytes(), None) for h in (a, b, c)}
    assert len(aads) == 3


def test_context_encoding_is_unambiguous_and_order_free():
    assert ct.encode_context({"ab": "c"}) != ct.encode_context({"a": "bc"})
    assert ct.encode_context({"a": "b", "c": "d"}) == ct.encode_context({"c": "d", "a": "b"})
    assert ct.encode_context({"a": ""}) != ct.encode_context({})
    assert ct.encode_context({"": "a"}) != ct.encode_context({"a": ""})
    assert ct.encode_context(None) == ct.encode_context({}) == b"\0\0\0\0"
    assert ct.encode_context({"A": "b"}) != ct.encode_context({"a": "b"})  # case sensitive
    # a pair boundary cannot be forged by embedding a length prefix in a value
    assert ct.encode_context({"a": "b\0\0\0\x01c"}) != ct.encode_context({"a": "b", "c": ""})
    h = BlobHeader(key_id=KEY_ID, key_handle=1, custom_key_store_id=STORE).to_bytes()
    assert ct.build_aad(h, {"ab": "c"}) != ct.build_aad(h, {"a": "bc"})
    assert ct.build_aad(h, None) != ct.build_aad(h, {"a": "b"})


def test_context_encoding_rejects_non_strings_and_surrogates():
    with pytest.raises(TypeError):
        ct.encode_context({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        ct.encode_context({"a": "\ud800"})


def test_context_sorted_by_code_point():
    encoded = ct.encode_context({"\u00e9": "1", "z": "2", "a": "3"})
    assert encoded.index(b"a") < encoded.index(b"z") < encoded.index("\u00e9".encode())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key_id": "not-a-uuid", "key_handle": 1, "custom_key_store_id": STORE},
        {"key_id": KEY_ID.upper(), "key_handle": 1, "custom_key_store_id": STORE},
        {"key_id": KEY_ID, "key_handle": -1, "custom_key_store_id": STORE},
        {"key_id": KEY_ID, "key_handle": 2**64, "custom_key_store_id": STORE},
        {"key_id": KEY_ID, "key_handle": 1, "custom_key_store_id": ""},
        {"key_id": KEY_ID, "key_handle": 1, "custom_key_store_id": "x" * 65},
        {"key_id": KEY_ID, "key_handle": 1, "custom_key_store_id": STORE, "version": 2},
    ],
)
def test_header_validation(kwargs):
    with pytest.raises(ValueError):
        BlobHeader(**kwargs)


def test_pack_validates_hsm_output():
    h = BlobHeader(key_id=KEY_ID, key_handle=1, custom_key_store_id=STORE)
    with pytest.raises(ValueError):
        ct.pack(h, b"\0" * 11, b"\0" * 32)
    with pytest.raises(ValueError):
        ct.pack(h, b"\0" * 12, b"\0" * 16)  # tag only: empty plaintext
    with pytest.raises(ValueError):
        ct.pack(h, b"\0" * 12, b"\0" * (4096 + 17))


def test_garbage_and_oversize_rejected():
    for junk in (b"", b"\x01", os.urandom(40), b"\x01" + b"\0" * 6200):
        with pytest.raises(CiphertextFormatError):
            ct.unpack(junk)


def test_aad_limits_are_consistent():
    assert 2 + ct.MAX_HEADER_BYTES + ct.MAX_ENCODED_CONTEXT_BYTES == ct.MAX_AAD_BYTES


def test_cached_header_and_encoded_forms_match_the_plain_ones():
    h = BlobHeader(key_id=KEY_ID, key_handle=262162, custom_key_store_id=STORE)
    assert ct.header_bytes(KEY_ID, 262162, STORE) == h.to_bytes()
    assert ct.header_bytes(KEY_ID, 262163, STORE) != h.to_bytes()  # other key material, other header
    iv, sealed = b"\1" * 12, b"\2" * 40
    assert ct.pack_encoded(ct.header_bytes(KEY_ID, 262162, STORE), iv, sealed) == ct.pack(h, iv, sealed)
    context = {"b": "2", "a": "1"}
    assert ct.aad_of_encoded(h.to_bytes(), ct.encode_context(context)) == ct.build_aad(h.to_bytes(), context)
    with pytest.raises(ValueError):
        ct.header_bytes("not-a-uuid", 1, STORE)
