"""Every validation limit of the cryptographic operations (AWS KMS API Reference: Encrypt, Decrypt,
ReEncrypt, GenerateDataKey, GenerateRandom), with AWS's
ValidationException messages, against real hsm-node processes and a real kms-frontend."""
from __future__ import annotations

import pytest

from protos.kms.v1 import kms_pb2 as k
from tests.integration.test_keys_common import ACCOUNT, CALL_TIMEOUT, expect, start_env

PREFIX = "1 validation error detected: "


def too_long(field: str, n: int) -> str:
    return f"{PREFIX}Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {n}"


def too_short(field: str, n: int = 1) -> str:
    return f"{PREFIX}Value at '{field}' failed to satisfy constraint: Member must have length greater than or equal to {n}"


def value_above(field: str, value: int, n: int) -> str:
    return f"{PREFIX}Value '{value}' at '{field}' failed to satisfy constraint: Member must have value less than or equal to {n}"


def value_below(field: str, value: int, n: int) -> str:
    return (f"{PREFIX}Value '{value}' at '{field}' failed to satisfy constraint: Member must have value greater than "
            f"or equal to {n}")


DATA_KEY_SPEC = "Please specify either number of bytes or key spec."
DRY_RUN = "The request would have succeeded, but the DryRun option is set."


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    e = await start_env(tmp_path_factory.mktemp("crypto-validation"))
    yield e
    await e.close()


@pytest.fixture(scope="module")
async def key(env):
    return await env.create_key()


async def test_plaintext_length_limits(env, key):
    kms = env.kms
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"")), "ValidationException",
                 too_short("plaintext"))
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x" * 4097)), "ValidationException",
                 too_long("plaintext", 4096))
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x" * 100_000)), "ValidationException",
                 too_long("plaintext", 4096))
    for n in (1, 4096):
        data = bytes(i % 251 for i in range(n))
        e = await env.encrypt(key.key_id, data)
        assert len(e.ciphertext_blob) <= 6144
        assert (await env.decrypt(e.ciphertext_blob)).plaintext == data
    big = await env.encrypt(key.key_id, b"\xff" * 4096, {"k" * 100: "v" * 1000})
    assert 4096 < len(big.ciphertext_blob) <= 6144  # the context is not stored in the blob
    small = await env.encrypt(key.key_id, b"\xff" * 4096)
    assert len(small.ciphertext_blob) == len(big.ciphertext_blob)


async def test_ciphertext_length_limits(env, key):
    kms = env.kms
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=b"")), "ValidationException", too_short("ciphertextBlob"))
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=b"\x01" * 6145)), "ValidationException",
                 too_long("ciphertextBlob", 6144))
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=b"\x01" * 6145, destination_key_id=key.key_id)),
                 "ValidationException", too_long("ciphertextBlob", 6144))
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=b"", destination_key_id=key.key_id)),
                 "ValidationException", too_short("ciphertextBlob"))
    # in range but not a blob: InvalidCiphertextException
    for blob in (b"\x01", b"\x01" * 6144, b"\x00" * 100):
        await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob)), "InvalidCiphertextException")


@pytest.mark.parametrize("without_plaintext", [False, True])
async def test_data_key_size_limits(env, key, without_plaintext):
    kms = env.kms
    if without_plaintext:
        def call(**kw):
            return kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(key_id=key.key_id, **kw),
                                                       timeout=CALL_TIMEOUT)
    else:
        def call(**kw):
            return kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id, **kw), timeout=CALL_TIMEOUT)

    await expect(call(number_of_bytes=0), "ValidationException", value_below("numberOfBytes", 0, 1))
    await expect(call(number_of_bytes=-5), "ValidationException", value_below("numberOfBytes", -5, 1))
    await expect(call(number_of_bytes=1025), "ValidationException", value_above("numberOfBytes", 1025, 1024))
    await expect(call(), "ValidationException", DATA_KEY_SPEC)
    await expect(call(number_of_bytes=32, key_spec="AES_256"), "ValidationException", DATA_KEY_SPEC)
    await expect(call(key_spec="AES_512"), "ValidationException",
                 f"{PREFIX}Value 'AES_512' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: "
                 "[AES_256, AES_128]")
    for kw, n in (({"number_of_bytes": 1}, 1), ({"number_of_bytes": 1024}, 1024), ({"key_spec": "AES_128"}, 16),
                  ({"key_spec": "AES_256"}, 32)):
        r = await call(**kw)
        assert r.key_id == key.arn
        plain = (await env.decrypt(r.ciphertext_blob)).plaintext
        assert len(plain) == n
        assert len(r.ciphertext_blob) <= 6144
        if not without_plaintext:
            assert r.plaintext == plain


async def test_generate_random_limits(env):
    kms = env.kms
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=0)), "ValidationException",
                 value_below("numberOfBytes", 0, 1))
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=1025)), "ValidationException",
                 value_above("numberOfBytes", 1025, 1024))
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=1025, custom_key_store_id=env.store_id)),
                 "ValidationException", value_above("numberOfBytes", 1025, 1024))
    await expect(kms.GenerateRandom(k.GenerateRandomRequest()), "ValidationException",
                 f"{PREFIX}Value null at 'numberOfBytes' failed to satisfy constraint: Member must not be null")
    for store in (None, env.store_id):
        for n in (1, 1024):
            req = k.GenerateRandomRequest(number_of_bytes=n)
            if store:
                req.custom_key_store_id = store
            a = (await kms.GenerateRandom(req, timeout=CALL_TIMEOUT)).plaintext
            b = (await kms.GenerateRandom(req, timeout=CALL_TIMEOUT)).plaintext
            assert len(a) == len(b) == n
            if n == 1024:
                assert a != b
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=8, custom_key_store_id="cks-0123456789abcdef0")),
                 "CustomKeyStoreNotFoundException", contains="cks-0123456789abcdef0")
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=8, custom_key_store_id="c" * 65)),
                 "ValidationException", contains="at 'customKeyStoreId' failed to satisfy constraint: "
                                                 "Member must have length less than or equal to 64")


async def test_grant_tokens_algorithms_context_and_dry_run(env, key):
    kms = env.kms
    blob = (await env.encrypt(key.key_id, b"data")).ciphertext_blob
    tokens = [f"t{i}" for i in range(11)]
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", grant_tokens=tokens)),
                 "ValidationException", contains="at 'grantTokens' failed to satisfy constraint: "
                                                 "Member must have length less than or equal to 10")
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, grant_tokens=tokens)), "ValidationException",
                 contains="at 'grantTokens'")
    await expect(kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id, key_spec="AES_256", grant_tokens=tokens)),
                 "ValidationException", contains="at 'grantTokens'")
    # ten tokens pass the model; tokens this service did not issue are refused as AWS refuses them
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", grant_tokens=tokens[:10])),
                 "InvalidGrantTokenException", "The request was rejected because the specified grant token is not valid.")
    grant = await kms.CreateGrant(k.CreateGrantRequest(key_id=key.key_id, grantee_principal=f"arn:aws:iam::{ACCOUNT}:root",
                                                       operations=["Encrypt"]), timeout=CALL_TIMEOUT)
    await kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", grant_tokens=[grant.grant_token] * 10),
                      timeout=CALL_TIMEOUT)

    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", encryption_algorithm="AES_GCM")),
                 "ValidationException",
                 f"{PREFIX}Value 'AES_GCM' at 'encryptionAlgorithm' failed to satisfy constraint: Member must satisfy "
                 "enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]")
    e = await kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", encryption_algorithm="SYMMETRIC_DEFAULT"),
                          timeout=CALL_TIMEOUT)
    assert e.encryption_algorithm == "SYMMETRIC_DEFAULT"
    d = await kms.Decrypt(k.DecryptRequest(ciphertext_blob=e.ciphertext_blob, encryption_algorithm="SYMMETRIC_DEFAULT"),
                          timeout=CALL_TIMEOUT)
    assert d.plaintext == b"x" and d.encryption_algorithm == "SYMMETRIC_DEFAULT"
    # an asymmetric algorithm with a symmetric key: InvalidKeyUsageException
    incompatible = "Algorithm RSAES_OAEP_SHA_256 is incompatible with key spec SYMMETRIC_DEFAULT."
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", encryption_algorithm="RSAES_OAEP_SHA_256")),
                 "InvalidKeyUsageException", incompatible)
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, encryption_algorithm="RSAES_OAEP_SHA_256")),
                 "InvalidKeyUsageException", incompatible)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, destination_key_id=key.key_id,
                                                  destination_encryption_algorithm="RSAES_OAEP_SHA_256")),
                 "InvalidKeyUsageException", incompatible)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, destination_key_id=key.key_id,
                                                  source_encryption_algorithm="RSAES_OAEP_SHA_256")),
                 "InvalidKeyUsageException", incompatible)

    huge = {f"key{i}": "v" * 200 for i in range(60)}  # ~12 KB encoded: more than an HSM takes as AAD
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", encryption_context=huge)),
                 "ValidationException", contains="encryptionContext")

    # DryRun: the checks run, nothing is done
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x", dry_run=True)),
                 "DryRunOperationException", DRY_RUN)
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, dry_run=True)), "DryRunOperationException", DRY_RUN)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, destination_key_id=key.key_id, dry_run=True)),
                 "DryRunOperationException", DRY_RUN)
    await expect(kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id, key_spec="AES_256", dry_run=True)),
                 "DryRunOperationException", DRY_RUN)
    await expect(kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
        key_id=key.key_id, key_spec="AES_256", dry_run=True)), "DryRunOperationException", DRY_RUN)
    # a dry run of a request that fails validation reports that failure
    await expect(kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x" * 4097, dry_run=True)),
                 "ValidationException", too_long("plaintext", 4096))


async def test_missing_key_id(env):
    kms = env.kms
    missing = (f"{PREFIX}Value '' at 'keyId' failed to satisfy constraint: "
               "Member must have length greater than or equal to 1")
    for call in (kms.Encrypt(k.EncryptRequest(plaintext=b"x")),
                 kms.GenerateDataKey(k.GenerateDataKeyRequest(key_spec="AES_256")),
                 kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(key_spec="AES_256"))):
        await expect(call, "ValidationException", missing)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=b"x")), "ValidationException",
                 contains="at 'destinationKeyId' failed to satisfy constraint")
