"""CloudHSM's limit of keys per cluster (3,300 on hsm1.medium, reference 5.2), enforced by the
HSM node and reported by KMS, against real processes with a lowered limit."""
from __future__ import annotations

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as h
from protos.kms.v1 import kms_pb2 as k
from tests.harness import CU_PASSWORD, co, login, refused, wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, expect, start_env

LIMIT = 4


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    e = await start_env(tmp_path_factory.mktemp("key-limit"), node_args=["--max-keys", str(LIMIT)])
    yield e
    await e.close()


async def wait_all_hold(env, keys: int) -> None:
    async def held() -> bool:
        counts = [(await n.stub().GetStatus(h.Empty(), timeout=CALL_TIMEOUT)).key_count for n in env.nodes]
        return counts == [keys] * len(env.nodes)
    await wait_until(held, what=f"every node to hold {keys} keys")


def reason(err: grpc.aio.AioRpcError) -> dict[str, str]:
    return {k: v for k, v in (err.trailing_metadata() or ())}


async def test_create_key_in_a_full_cluster_is_refused_as_aws_reports_an_exceeded_quota(env):
    made = [await env.create_key(description=f"key {i}") for i in range(LIMIT)]
    await wait_all_hold(env, LIMIT)  # (a node that lags behind would still take one: the limit is per HSM)
    message = await expect(env.kms.CreateKey(k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=env.store_id),
                                             timeout=CALL_TIMEOUT),
                           "LimitExceededException", contains=f"maximum number of keys per cluster ({LIMIT})")
    assert env.cluster_id in message and "No KMS key was created" in message
    # Nothing was left behind: no KMS key (not even one stuck in Creating), no extra HSM key.
    assert sorted(await env.list_all_keys()) == sorted(m.key_id for m in made)
    assert len(await env.kmsuser_handles_anywhere()) == LIMIT
    # The keys that exist still work.
    blob = (await env.encrypt(made[0].key_id, b"still fine")).ciphertext_blob
    assert (await env.decrypt(blob)).plaintext == b"still fine"


async def test_the_node_refuses_the_key_beyond_the_limit_with_its_reason(env):
    """A CloudHSM-style refusal on the node itself: RESOURCE_EXHAUSTED, a message that says
    what to do, and the reason in the trailing metadata (what KMS acts on)."""
    node = env.nodes[1]
    while len(await env.kmsuser_handles_anywhere()) < LIMIT:
        await env.create_key()
    await wait_all_hold(env, LIMIT)
    officer = await co(node.stub())
    await node.stub().CreateUser(h.CreateUserRequest(session_token=officer, user_type=h.CU, username="limited",
                                                     password=CU_PASSWORD), timeout=CALL_TIMEOUT)
    token = await login(node.stub(), h.CU, "limited", CU_PASSWORD)
    for session_key in (False, True):  # session keys count against the HSM's capacity too
        try:
            await node.stub().GenerateKey(h.GenerateKeyRequest(session_token=token, key_size_bytes=32,
                                                               session_key=session_key), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            assert "key limit reached" in err.details() and "--max-keys" in err.details()
            assert {"x-hsm-error": "KeyLimitExceeded", "x-hsm-key-limit": str(LIMIT)}.items() <= \
                reason(err).items()
        else:
            raise AssertionError("a key beyond the limit was created")


async def test_a_deleted_key_frees_its_place(lab, monkeypatch):
    """One node whose limit comes from HSM_MAX_KEYS: a deletion makes room for exactly one key."""
    monkeypatch.setenv("HSM_MAX_KEYS", "2")
    node = await lab.start_node()
    await lab.init_active(node)
    officer = await co(node.stub())
    await node.stub().CreateUser(h.CreateUserRequest(session_token=officer, user_type=h.CU, username="owner",
                                                     password=CU_PASSWORD), timeout=CALL_TIMEOUT)
    token = await login(node.stub(), h.CU, "owner", CU_PASSWORD)

    def generate():
        return node.stub().GenerateKey(h.GenerateKeyRequest(session_token=token, key_size_bytes=32),
                                       timeout=CALL_TIMEOUT)
    first = (await generate()).key_handle
    await generate()
    await refused(generate(), grpc.StatusCode.RESOURCE_EXHAUSTED, "key limit reached", "maximum is 2")
    await node.stub().DeleteKey(h.KeyRequest(session_token=token, key_handle=first), timeout=CALL_TIMEOUT)
    third = (await generate()).key_handle
    assert third != first  # a deleted key's handle is never given again
    await refused(generate(), grpc.StatusCode.RESOURCE_EXHAUSTED, "key limit reached")
    assert (await node.stub().GetStatus(h.Empty(), timeout=CALL_TIMEOUT)).key_count == 2
