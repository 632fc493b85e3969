"""The per-custom-key-store request quota ("Request quotas" in the AWS KMS Developer Guide): a frontend started with a small
--store-quota (KMS_STORE_QUOTA=20 cryptographic requests per second per store) answers
ThrottlingException with AWS's message beyond it; management operations and GenerateRandom
without a store do not count; the service recovers as the quota refills."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from protos.kms.v1 import kms_pb2 as k
from tests.harness import wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, start_env

QUOTA = 20
THROTTLED = "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    e = await start_env(tmp_path_factory.mktemp("crypto-throttling"), fe_env={"KMS_STORE_QUOTA": str(QUOTA)})
    yield e
    await e.close()


@pytest.fixture(scope="module")
async def key(env):
    return await env.create_key()


async def outcome(call) -> str:
    try:
        await call
        return "OK"
    except grpc.aio.AioRpcError as exc:
        name = dict(exc.trailing_metadata() or ()).get("x-aws-exception", "?")
        if name == "ThrottlingException":
            assert exc.details() == THROTTLED, exc.details()
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return name


async def quota_available(env, key) -> bool:
    """The quota has refilled enough for one request (which it uses)."""
    await env.encrypt(key.key_id, b"probe")
    return True


async def burst(env, make_call, n: int) -> tuple[list[str], float]:
    t0 = time.monotonic()
    results = await asyncio.gather(*(outcome(make_call()) for _ in range(n)))
    return results, time.monotonic() - t0


async def test_burst_beyond_the_store_quota_is_throttled(env, key):
    await wait_until(lambda: quota_available(env, key), timeout=10, what="quota")
    results, elapsed = await burst(env, lambda: env.kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x"),
                                                                 timeout=CALL_TIMEOUT), 3 * QUOTA)
    ok, throttled = results.count("OK"), results.count("ThrottlingException")
    assert ok + throttled == len(results), results
    assert throttled > 0 and ok > 0
    assert ok <= QUOTA + QUOTA * elapsed + 1, (ok, elapsed)


async def test_every_crypto_operation_counts(env, key):
    async def encrypted() -> bytes:
        return (await env.encrypt(key.key_id, b"payload")).ciphertext_blob
    blob = await wait_until(encrypted, timeout=10, what="quota")
    makers = {
        "Decrypt": lambda: env.kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob), timeout=CALL_TIMEOUT),
        "ReEncrypt": lambda: env.kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, destination_key_id=key.key_id),
                                               timeout=CALL_TIMEOUT),
        "GenerateDataKey": lambda: env.kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=key.key_id,
                                                                                    key_spec="AES_256"),
                                                           timeout=CALL_TIMEOUT),
        "GenerateDataKeyWithoutPlaintext": lambda: env.kms.GenerateDataKeyWithoutPlaintext(
            k.GenerateDataKeyWithoutPlaintextRequest(key_id=key.key_id, number_of_bytes=8), timeout=CALL_TIMEOUT),
        "GenerateRandom": lambda: env.kms.GenerateRandom(k.GenerateRandomRequest(
            number_of_bytes=8, custom_key_store_id=env.store_id), timeout=CALL_TIMEOUT),
    }
    for name, make in makers.items():
        await wait_until(lambda: quota_available(env, key), timeout=10, what="quota")
        results, _ = await burst(env, make, 3 * QUOTA)
        assert "ThrottlingException" in results, (name, results)
        assert set(results) <= {"OK", "ThrottlingException"}, (name, results)


async def test_management_and_storeless_random_are_not_counted(env, key):
    await wait_until(lambda: quota_available(env, key), timeout=10, what="quota")
    # use up the quota
    results, _ = await burst(env, lambda: env.kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x"),
                                                           timeout=CALL_TIMEOUT), 3 * QUOTA)
    assert "ThrottlingException" in results
    calls = [lambda: env.kms.DescribeKey(k.DescribeKeyRequest(key_id=key.key_id), timeout=CALL_TIMEOUT),
             lambda: env.kms.ListResourceTags(k.ListResourceTagsRequest(key_id=key.key_id), timeout=CALL_TIMEOUT),
             lambda: env.kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=key.key_id), timeout=CALL_TIMEOUT),
             lambda: env.kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=16), timeout=CALL_TIMEOUT)]
    for make in calls:
        results, _ = await burst(env, make, 2 * QUOTA)
        assert results == ["OK"] * (2 * QUOTA), results


async def test_a_pace_below_the_quota_is_never_throttled(env, key):
    await wait_until(lambda: quota_available(env, key), timeout=10, what="quota")
    results = []
    for _ in range(3 * QUOTA):  # paced at two thirds of the quota: each gap refills 1.5 requests' worth
        await asyncio.sleep(1.5 / QUOTA)
        results.append(await outcome(env.kms.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=b"x"),
                                                     timeout=CALL_TIMEOUT)))
    assert results == ["OK"] * (3 * QUOTA)


async def test_re_encrypt_counts_as_one_request(env, key):
    """ReEncrypt is one request against the store's quota ("Request quotas"), though it both
    decrypts and encrypts in the cluster: paced at three quarters of the quota, never throttled."""
    async def encrypted() -> bytes:
        return (await env.encrypt(key.key_id, b"payload")).ciphertext_blob
    blob = await wait_until(encrypted, timeout=10, what="quota")
    results = []
    for _ in range(3 * QUOTA):
        await asyncio.sleep(1 / (0.75 * QUOTA))
        results.append(await outcome(env.kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob,
                                                                          destination_key_id=key.key_id),
                                                       timeout=CALL_TIMEOUT)))
    assert results == ["OK"] * (3 * QUOTA), results
