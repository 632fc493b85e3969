"""Ciphertext blobs ("Encryption context" in the AWS KMS Developer Guide;
the blob layout in kms_frontend/ciphertext.py): round trips through Encrypt / Decrypt / ReEncrypt /
GenerateDataKey[WithoutPlaintext], IncorrectKeyException, encryption-context binding, tampering
with every byte, and blobs of another custom key store (a second cluster backs a second store).

Blob layout (kms_frontend/ciphertext.py, version 1): version(1) | key id(16) | key handle(8) |
store id length L(1) | store id(L) | IV(12) | N(2) | ciphertext||tag(N); header and encryption
context are the AES-GCM AAD."""
from __future__ import annotations

import asyncio
import struct
import uuid

import grpc
import pytest

from protos.kms.v1 import kms_pb2 as k
from tests.harness import Lab, three_node_cluster
from tests.integration.test_keys_common import CALL_TIMEOUT, alias_arn, expect, start_env

KEY_ID_BYTES = range(1, 17)
INCORRECT_KEY = "The key ID in the request does not identify the KMS key that was used to encrypt the ciphertext."


def header_len(blob: bytes) -> int:
    return 26 + blob[25]


def with_header(blob: bytes, *, key_id: str | None = None, handle: int | None = None, store_id: str | None = None) -> bytes:
    """The same blob with header fields replaced (the AAD no longer matches what was sealed)."""
    version, kid, h, n = struct.unpack_from(">B16sQB", blob, 0)
    store = blob[26:26 + n]
    if key_id is not None:
        kid = uuid.UUID(key_id).bytes
    if handle is not None:
        h = handle
    if store_id is not None:
        store = store_id.encode()
    return struct.pack(">B16sQB", version, kid, h, len(store)) + store + blob[26 + n:]


def splice(header_from: bytes, body_from: bytes) -> bytes:
    return header_from[:header_len(header_from)] + body_from[header_len(body_from):]


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("crypto-ciphertext")
    lab_b = Lab(root / "cluster-b")
    try:
        nodes_b = await three_node_cluster(lab_b, n=2)
        e = await start_env(root, extra_endpoints=[n.endpoint for n in nodes_b])
    except BaseException:
        await lab_b.close()
        raise
    e.extra_labs.append(lab_b)
    e.store_b, e.cluster_b = await e.create_store(lab_b, nodes_b, "store-2")
    await e.connect(e.store_b)
    yield e
    await e.close()


@pytest.fixture(scope="module")
async def keys(env):
    a = await env.create_key(description="a")
    b = await env.create_key(description="b")
    other_store = await env.create_key(store_id=env.store_b, description="in the second store")
    await env.kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/ct-a", target_key_id=a.key_id), timeout=CALL_TIMEOUT)
    await env.kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/ct-b", target_key_id=b.key_id), timeout=CALL_TIMEOUT)
    return a, b, other_store


# ---------------------------------------------------------------- round trips


async def test_encrypt_decrypt_round_trips(env, keys):
    a, b, _ = keys
    for data in (b"\x00", b"hello world", bytes(range(256)) * 16):
        e = await env.encrypt(a.key_id, data, {"purpose": "roundtrip", "n": str(len(data))})
        assert e.key_id == a.arn and e.encryption_algorithm == "SYMMETRIC_DEFAULT"
        assert data not in e.ciphertext_blob or len(data) == 1
        d = await env.decrypt(e.ciphertext_blob, {"n": str(len(data)), "purpose": "roundtrip"})  # order is irrelevant
        assert d.plaintext == data and d.key_id == a.arn and d.encryption_algorithm == "SYMMETRIC_DEFAULT"
        for ref in (a.key_id, a.arn, "alias/ct-a", alias_arn("alias/ct-a")):
            d = await env.decrypt(e.ciphertext_blob, {"purpose": "roundtrip", "n": str(len(data))}, key_id=ref)
            assert d.plaintext == data
    # randomized: the same plaintext never gives the same blob
    one, two = await env.encrypt(a.key_id, b"same"), await env.encrypt(a.key_id, b"same")
    assert one.ciphertext_blob != two.ciphertext_blob
    # blob size for the largest plaintext stays within the 6144-byte limit
    assert len((await env.encrypt(b.key_id, b"z" * 4096)).ciphertext_blob) <= 6144


async def test_decrypt_with_another_key_id_is_incorrect_key(env, keys):
    a, b, other_store = keys
    blob = (await env.encrypt(a.key_id, b"mine")).ciphertext_blob
    for ref in (b.key_id, b.arn, "alias/ct-b", alias_arn("alias/ct-b"), other_store.key_id):
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, key_id=ref)), "IncorrectKeyException",
                     INCORRECT_KEY)
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, key_id="00000000-1111-2222-3333-444444444444")),
                 "NotFoundException")


async def test_re_encrypt(env, keys):
    a, b, other_store = keys
    kms = env.kms
    blob = (await env.encrypt(a.key_id, b"move me", {"v": "1"})).ciphertext_blob
    # same key, new encryption context
    r = await kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context={"v": "1"},
                                               destination_key_id=a.key_id, destination_encryption_context={"v": "2"}),
                            timeout=CALL_TIMEOUT)
    assert r.source_key_id == a.arn and r.key_id == a.arn
    assert r.source_encryption_algorithm == r.destination_encryption_algorithm == "SYMMETRIC_DEFAULT"
    assert (await env.decrypt(r.ciphertext_blob, {"v": "2"})).plaintext == b"move me"
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=r.ciphertext_blob, encryption_context={"v": "1"})),
                 "InvalidCiphertextException")
    # another key (and another store), with SourceKeyId given or not
    for dest, source_ref in ((b, None), (b, "alias/ct-a"), (other_store, a.arn)):
        req = k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context={"v": "1"}, destination_key_id=dest.arn)
        if source_ref:
            req.source_key_id = source_ref
        r = await kms.ReEncrypt(req, timeout=CALL_TIMEOUT)
        assert r.source_key_id == a.arn and r.key_id == dest.arn
        d = await env.decrypt(r.ciphertext_blob)
        assert d.plaintext == b"move me" and d.key_id == dest.arn
        await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=r.ciphertext_blob, key_id=a.key_id)),
                     "IncorrectKeyException", INCORRECT_KEY)
    # a wrong SourceKeyId, a wrong source context
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context={"v": "1"},
                                                  source_key_id=b.key_id, destination_key_id=b.key_id)),
                 "IncorrectKeyException", INCORRECT_KEY)
    for ctx in ({}, {"v": "2"}, {"v": "1", "w": "1"}):
        await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context=ctx,
                                                      destination_key_id=b.key_id)), "InvalidCiphertextException")
    # the original still decrypts
    assert (await env.decrypt(blob, {"v": "1"})).plaintext == b"move me"


async def test_generate_data_key_blobs(env, keys):
    a, _, other_store = keys
    kms = env.kms
    for key in (a, other_store):
        g = await kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id, key_spec="AES_256",
                                                               encryption_context={"file": "x"}), timeout=CALL_TIMEOUT)
        assert len(g.plaintext) == 32 and g.key_id == key.arn
        d = await env.decrypt(g.ciphertext_blob, {"file": "x"})
        assert d.plaintext == g.plaintext and d.key_id == key.arn
        await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=g.ciphertext_blob)), "InvalidCiphertextException")
        w = await kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
            key_id=key.arn, number_of_bytes=64), timeout=CALL_TIMEOUT)
        assert w.key_id == key.arn
        d = await env.decrypt(w.ciphertext_blob, key_id=key.key_id)
        assert len(d.plaintext) == 64
    keys_seen = {(await kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=a.key_id, number_of_bytes=16),
                                            timeout=CALL_TIMEOUT)).plaintext for _ in range(5)}
    assert len(keys_seen) == 5


# ---------------------------------------------------------------- encryption context


async def test_encryption_context_must_match_exactly(env, keys):
    a, _, _ = keys
    ctx = {"ab": "c", "Dept": "IT"}
    blob = (await env.encrypt(a.key_id, b"bound", ctx)).ciphertext_blob
    assert (await env.decrypt(blob, dict(reversed(list(ctx.items()))))).plaintext == b"bound"
    wrong = [
        {},                                      # missing
        {"ab": "c"},                             # a pair missing
        {"ab": "c", "Dept": "IT", "x": "y"},     # extra pair
        {"a": "bc", "Dept": "IT"},               # same concatenation, other split
        {"ab": "c", "dept": "IT"},               # key case
        {"ab": "c", "Dept": "it"},               # value case
        {"ab": "c", "Dept": "IT "},              # trailing space
        {"abc": "", "Dept": "IT"},
    ]
    for w in wrong:
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, encryption_context=w)),
                     "InvalidCiphertextException", "")
    # {"ab": "c"} vs {"a": "bc"} the other way round, and a context where none was used
    blob2 = (await env.encrypt(a.key_id, b"split", {"a": "bc"})).ciphertext_blob
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob2, encryption_context={"ab": "c"})),
                 "InvalidCiphertextException")
    plain = (await env.encrypt(a.key_id, b"no context")).ciphertext_blob
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=plain, encryption_context={"a": "b"})),
                 "InvalidCiphertextException")
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=plain, encryption_context={"": ""})),
                 "InvalidCiphertextException")
    assert (await env.decrypt(plain, {})).plaintext == b"no context"
    # non-ASCII keys and values
    uni = {"ключ": "значение", "emoji": "\U0001f511"}
    blob3 = (await env.encrypt(a.key_id, b"unicode", uni)).ciphertext_blob
    assert (await env.decrypt(blob3, uni)).plaintext == b"unicode"
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob3, encryption_context={"ключ": "значение"})),
                 "InvalidCiphertextException")


# ---------------------------------------------------------------- tampering


async def test_every_single_bit_flip_is_rejected(env, keys):
    """Flip one bit at every position of a blob. Decrypt without KeyId: always
    InvalidCiphertextException (a changed key id names no key). Decrypt with the KeyId: the
    positions of the key id in the header give IncorrectKeyException (the blob now names another
    key), every other position InvalidCiphertextException."""
    a, _, _ = keys
    ctx = {"tamper": "test"}
    blob = (await env.encrypt(a.key_id, b"do not touch", ctx)).ciphertext_blob
    assert blob[0] == 1 and uuid.UUID(bytes=blob[1:17]) == uuid.UUID(a.key_id)
    sem = asyncio.Semaphore(16)

    async def outcome(tampered: bytes, key_id: str | None) -> tuple[str, str]:
        req = k.DecryptRequest(ciphertext_blob=tampered, encryption_context=ctx)
        if key_id is not None:
            req.key_id = key_id
        async with sem:
            try:
                r = await env.kms.Decrypt(req, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                md = dict(exc.trailing_metadata() or ())
                return md.get("x-aws-exception", "?"), exc.details() or ""
            return "OK", r.plaintext.decode(errors="replace")

    for bit in (0x01, 0x80):
        variants = [blob[:i] + bytes([blob[i] ^ bit]) + blob[i + 1:] for i in range(len(blob))]
        without = await asyncio.gather(*(outcome(v, None) for v in variants))
        with_id = await asyncio.gather(*(outcome(v, a.arn) for v in variants))
        for i, (o1, o2) in enumerate(zip(without, with_id, strict=True)):
            assert o1 == ("InvalidCiphertextException", ""), (i, bit, o1)
            expected = ("IncorrectKeyException", INCORRECT_KEY) if i in KEY_ID_BYTES else ("InvalidCiphertextException", "")
            assert o2 == expected, (i, bit, o2)
    # still fine untouched
    assert (await env.decrypt(blob, ctx)).plaintext == b"do not touch"


async def test_truncated_extended_and_garbage_blobs(env, keys):
    a, _, _ = keys
    blob = (await env.encrypt(a.key_id, b"whole")).ciphertext_blob
    for n in range(1, len(blob)):
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob[:n])), "InvalidCiphertextException")
    for extra in (b"\x00", b"trailing bytes"):
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob + extra)), "InvalidCiphertextException")
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob[1:])), "InvalidCiphertextException")
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=b"\x02" + blob[1:])), "InvalidCiphertextException")


async def test_forged_headers_are_rejected(env, keys):
    a, b, _ = keys
    blob = (await env.encrypt(a.key_id, b"forge")).ciphertext_blob
    handle = struct.unpack_from(">Q", blob, 17)[0]
    forged = [
        with_header(blob, store_id="cks-0000000000000000a"),   # a store that does not exist
        with_header(blob, store_id=env.store_b),               # the other, real store
        with_header(blob, handle=handle + 1),                  # other key material
        with_header(blob, handle=0),
        with_header(blob, key_id=b.key_id),                    # names another key of the same store
    ]
    for f in forged:
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=f)), "InvalidCiphertextException", "")
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=forged[-1], key_id=a.key_id)), "IncorrectKeyException")
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=forged[-1], key_id=b.key_id)),
                 "InvalidCiphertextException")


async def test_blobs_of_another_store(env, keys):
    """Two stores on two clusters: a blob made by the second store's key decrypts only as that
    key's blob; passing it off as the first store's key fails."""
    a, _, other_store = keys
    assert other_store.custom_key_store_id == env.store_b and other_store.cloud_hsm_cluster_id == env.cluster_b
    assert env.cluster_b != env.cluster_id
    theirs = (await env.encrypt(other_store.key_id, b"store two", {"c": "d"})).ciphertext_blob
    mine = (await env.encrypt(a.key_id, b"store one", {"c": "d"})).ciphertext_blob
    assert theirs[26:26 + theirs[25]].decode() == env.store_b
    assert (await env.decrypt(theirs, {"c": "d"})).key_id == other_store.arn
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=theirs, encryption_context={"c": "d"},
                                                  key_id=a.key_id)), "IncorrectKeyException", INCORRECT_KEY)
    # the other store's body under this store's header, and the reverse
    for f in (splice(mine, theirs), splice(theirs, mine)):
        await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=f, encryption_context={"c": "d"})),
                     "InvalidCiphertextException", "")
    # their blob relabelled as key A of store one (key id, handle and store id all rewritten)
    relabelled = with_header(theirs, key_id=a.key_id, handle=struct.unpack_from(">Q", mine, 17)[0],
                             store_id=env.store_id)
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=relabelled, encryption_context={"c": "d"})),
                 "InvalidCiphertextException", "")
    # their blob claiming to come from store one, key unchanged
    await expect(env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=with_header(theirs, store_id=env.store_id),
                                                  encryption_context={"c": "d"})), "InvalidCiphertextException", "")
