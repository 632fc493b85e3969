"""Custom key stores against real processes: the operation x ConnectionState matrix
(CustomKeyStoreInvalidStateException in the AWS KMS API Reference) in every state, and the kmsuser password rotation on connect.

One two-node cluster, one frontend and one store for the module. Every test leaves the
store DISCONNECTED with a stored password the cluster accepts.

CONNECTING and DISCONNECTING are transient; they are held by pausing the nodes
(SIGSTOP): the connection attempt's probe or the kmsuser logout then waits for its RPC
deadline (at least 2 s), while the checks take milliseconds and assert, through the error
messages, the state they saw.
"""
from __future__ import annotations

import asyncio

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from protos.kms.v1 import kms_pb2 as kms
from tests.harness import CU_PASSWORD, Lab, wait_until

from .test_key_stores_kit import (
    ORIGIN,
    HsmCluster,
    Kms,
    aws_error,
    hsm_error,
    make_cluster,
    start_frontend,
)

INVALID_STATE = "CustomKeyStoreInvalidStateException"
KNOWN_PASSWORD = "operatorChosen1"


class Env:
    def __init__(self, lab: Lab, cluster: HsmCluster, kms_: Kms) -> None:
        self.lab, self.cluster, self.kms = lab, cluster, kms_
        self.store_id = ""

    async def refused(self, call, state: str) -> str:
        message = await aws_error(call, INVALID_STATE)
        assert f"is {state}" in message, message
        assert self.store_id in message
        return message

    async def key_store_calls_refused(self, state: str) -> None:
        """CreateKey and GenerateRandom(CustomKeyStoreId) outside CONNECTED."""
        await self.refused(self.kms.stub.CreateKey(kms.CreateKeyRequest(
            origin=ORIGIN, custom_key_store_id=self.store_id), timeout=10), state)
        await self.refused(self.kms.stub.GenerateRandom(kms.GenerateRandomRequest(
            number_of_bytes=16, custom_key_store_id=self.store_id), timeout=10), state)


async def _is(k: Kms, store_id: str, state: str) -> bool:
    return await k.state(store_id) == state


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("key-store-states")
    lab = Lab(root)
    cluster = await make_cluster(lab, 2)
    fe = await start_frontend(root, cluster.endpoints)
    e = Env(lab, cluster, Kms(fe))
    e.store_id = await e.kms.create("states", cluster.cluster_id, cluster.anchor)
    yield e
    await fe.stop()
    await cluster.close()


async def test_new_store_is_disconnected_and_described(env):
    entry = await env.kms.describe(env.store_id)
    assert entry.custom_key_store_id.startswith("cks-") and len(entry.custom_key_store_id) == 21
    assert entry.custom_key_store_name == "states"
    assert entry.cloud_hsm_cluster_id == env.cluster.cluster_id
    assert entry.trust_anchor_certificate.strip() == env.cluster.anchor.strip()
    assert entry.connection_state == "DISCONNECTED"
    assert not entry.HasField("connection_error_code")
    assert entry.custom_key_store_type == "AWS_CLOUDHSM"
    assert entry.creation_date > 1_600_000_000_000  # ms since the epoch
    assert "key_store_password" not in str(entry) and CU_PASSWORD not in str(entry)


async def test_disconnected_row(env):
    k = env.kms
    # Disconnect: InvalidState, with advice.
    message = await env.refused(k.disconnect(env.store_id), "DISCONNECTED")
    assert "already disconnected" in message
    # UpdateCustomKeyStore: name, password and cluster all allowed.
    await k.update(env.store_id, name="states-renamed")
    assert (await k.describe(env.store_id)).custom_key_store_name == "states-renamed"
    await k.update(env.store_id, name="states", password=CU_PASSWORD, cluster_id=env.cluster.cluster_id)
    entry = await k.describe(env.store_id)
    assert (entry.custom_key_store_name, entry.connection_state) == ("states", "DISCONNECTED")
    # CreateKey / GenerateRandom: InvalidState.
    await env.key_store_calls_refused("DISCONNECTED")
    # Delete: allowed (no keys); the store is gone, and the cluster can back a new one.
    await k.delete(env.store_id)
    await aws_error(k.describe(env.store_id), "CustomKeyStoreNotFoundException")
    await aws_error(k.delete(env.store_id), "CustomKeyStoreNotFoundException")
    await aws_error(k.connect(env.store_id), "CustomKeyStoreNotFoundException")
    await aws_error(k.update(env.store_id, name="x"), "CustomKeyStoreNotFoundException")
    old = env.store_id
    env.store_id = await k.create("states", env.cluster.cluster_id, env.cluster.anchor)
    assert env.store_id != old
    # Connect: allowed, and the store leaves DISCONNECTED.
    await k.connected(env.store_id)
    await k.disconnected(env.store_id)


async def test_connected_row(env):
    k, sid = env.kms, env.store_id
    await k.connected(sid)
    version = await env.cluster.kmsuser_version()
    # Connect again: a no-op (no new rotation).
    await k.connect(sid)
    assert await k.state(sid) == "CONNECTED"
    assert await env.cluster.kmsuser_version() == version
    # Rename: allowed while CONNECTED.
    await k.update(sid, name="states-connected")
    assert (await k.describe(sid)).custom_key_store_name == "states-connected"
    # Password or cluster (alone or with a name): InvalidState, and nothing changes.
    message = await env.refused(k.update(sid, password=KNOWN_PASSWORD), "CONNECTED")
    assert "DisconnectCustomKeyStore" in message and "DISCONNECTED" in message
    await env.refused(k.update(sid, cluster_id=env.cluster.cluster_id), "CONNECTED")
    await env.refused(k.update(sid, name="states", password=KNOWN_PASSWORD), "CONNECTED")
    assert (await k.describe(sid)).custom_key_store_name == "states-connected"
    await k.update(sid, name="states")
    # Delete: InvalidState.
    await env.refused(k.delete(sid), "CONNECTED")
    assert await k.state(sid) == "CONNECTED"
    # Disconnect: allowed.
    await k.disconnected(sid)


async def test_failed_row(env):
    k, sid, cluster = env.kms, env.store_id, env.cluster
    await k.update(sid, password="notThePassword1")
    entry = await k.failed_with(sid, "INVALID_CREDENTIALS")
    assert entry.connection_state == "FAILED"
    # Connect: InvalidState; FAILED must be disconnected first, and the message says so.
    message = await env.refused(k.connect(sid), "FAILED")
    assert "DisconnectCustomKeyStore" in message
    await env.refused(k.update(sid, name="states-failed"), "FAILED")
    await env.refused(k.update(sid, password=KNOWN_PASSWORD), "FAILED")
    await env.refused(k.update(sid, cluster_id=cluster.cluster_id), "FAILED")
    await env.refused(k.delete(sid), "FAILED")
    await env.key_store_calls_refused("FAILED")
    entry = await k.describe(sid)
    assert (entry.connection_state, entry.connection_error_code, entry.custom_key_store_name) == \
        ("FAILED", "INVALID_CREDENTIALS", "states")
    # Disconnect: allowed; the error code goes with FAILED.
    await k.disconnected(sid)
    # The documented fix: a CO sets a known password, tell KMS, connect.
    await cluster.set_kmsuser_password(KNOWN_PASSWORD)
    await k.update(sid, password=KNOWN_PASSWORD)
    await k.connected(sid)
    await k.disconnected(sid)


async def test_connecting_row(env):
    """Held CONNECTING: with the nodes paused, the connection attempt first probes them afresh
    and waits at least the probe deadline (2 s) before it can fail."""
    k, sid = env.kms, env.store_id
    async with env.cluster.paused():
        await k.connect(sid)
        assert await k.state(sid) == "CONNECTING"
        await k.connect(sid)  # allowed: a no-op
        message = await env.refused(k.update(sid, name="states-connecting"), "CONNECTING")
        assert "Wait until" in message
        await env.refused(k.update(sid, password=KNOWN_PASSWORD), "CONNECTING")
        await env.refused(k.update(sid, cluster_id=env.cluster.cluster_id), "CONNECTING")
        await env.refused(k.delete(sid), "CONNECTING")
        await env.key_store_calls_refused("CONNECTING")
        assert await k.state(sid) == "CONNECTING"
        # Disconnect: allowed; it abandons the connection attempt.
        await k.disconnected(sid)
    # Whatever the abandoned attempt left (a pending rotation, stale sessions), the store
    # connects again and the password is not lost.
    await k.connected(sid)
    await k.disconnected(sid)


async def test_disconnecting_row(env):
    """Held DISCONNECTING: the nodes are paused, so logging kmsuser out waits for its deadline."""
    k, sid = env.kms, env.store_id
    await k.connected(sid)
    async with env.cluster.paused():
        pending = asyncio.ensure_future(k.disconnect(sid))
        await wait_until(lambda: _is(k, sid, "DISCONNECTING"), timeout=5, interval=0.01, what="DISCONNECTING")
        message = await env.refused(k.connect(sid), "DISCONNECTING")
        assert "Wait until" in message
        await env.refused(k.disconnect(sid), "DISCONNECTING")
        await env.refused(k.update(sid, name="states-disconnecting"), "DISCONNECTING")
        await env.refused(k.update(sid, password=KNOWN_PASSWORD), "DISCONNECTING")
        await env.refused(k.update(sid, cluster_id=env.cluster.cluster_id), "DISCONNECTING")
        await env.refused(k.delete(sid), "DISCONNECTING")
        await env.key_store_calls_refused("DISCONNECTING")
        assert await k.state(sid) == "DISCONNECTING"
    await pending
    assert await k.state(sid) == "DISCONNECTED"
    await k.connected(sid)
    await k.disconnected(sid)


async def test_connect_rotates_the_kmsuser_password(env):
    k, sid, cluster = env.kms, env.store_id, env.cluster
    n1 = cluster.nodes[0]
    # Start from a password we know.
    await cluster.set_kmsuser_password(KNOWN_PASSWORD)
    await k.update(sid, password=KNOWN_PASSWORD)
    v0 = await cluster.kmsuser_version()
    await k.connected(sid)
    v1 = await cluster.kmsuser_version()
    assert v1 > v0  # the password changed on connect, on every node
    # The password the customer gave no longer logs in (one failed login, well below the lockout).
    message = await hsm_error(cluster.kmsuser_login(n1, KNOWN_PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert "Login failed" in message
    # While CONNECTED KMS stays logged in: a CO cannot change kmsuser's password.
    message = await cluster.co_change_refused(n1)
    assert "logged in" in message
    assert await cluster.kmsuser_version() == v1
    # Each connect is one rotation.
    await k.disconnected(sid)
    await k.connected(sid)
    v2 = await cluster.kmsuser_version()
    assert v2 > v1
    await k.disconnected(sid)
    assert await cluster.kmsuser_version() == v2  # disconnecting changes nothing
    # After Disconnect a CO can set it, log in with it, and hand it back to KMS.
    await cluster.set_kmsuser_password(KNOWN_PASSWORD)
    token = await cluster.kmsuser_login(n1, KNOWN_PASSWORD)
    await n1.stub().Logout(pb.SessionRequest(session_token=token))
    await k.update(sid, password=KNOWN_PASSWORD)
    await k.connected(sid)
    assert await cluster.kmsuser_version() > v2
    await k.disconnected(sid)


async def test_key_operations_follow_the_store_state(env):
    """CreateKey, GenerateRandom(CustomKeyStoreId) and crypto on a key of the store, in every state."""
    k, sid = env.kms, env.store_id
    await k.connected(sid)
    r = await k.stub.GenerateRandom(kms.GenerateRandomRequest(number_of_bytes=32, custom_key_store_id=sid))
    assert len(r.plaintext) == 32
    created = await k.stub.CreateKey(kms.CreateKeyRequest(origin=ORIGIN, custom_key_store_id=sid))
    key = created.key_metadata
    assert key.custom_key_store_id == sid and key.origin == ORIGIN and key.key_state == "Enabled"
    ct = await k.stub.Encrypt(kms.EncryptRequest(key_id=key.key_id, plaintext=b"while connected"))

    async def key_unavailable() -> bool:
        described = await k.stub.DescribeKey(kms.DescribeKeyRequest(key_id=key.key_id), timeout=10)
        return described.key_metadata.key_state == "Unavailable"

    async def unusable(state: str) -> None:
        assert await key_unavailable(), state
        message = await aws_error(k.stub.Encrypt(kms.EncryptRequest(key_id=key.key_id, plaintext=b"x"), timeout=10),
                                  "KMSInvalidStateException")
        assert "unavailable" in message, (state, message)
        await aws_error(k.stub.Decrypt(kms.DecryptRequest(ciphertext_blob=ct.ciphertext_blob), timeout=10),
                        "KMSInvalidStateException")
        await env.key_store_calls_refused(state)
        assert await k.state(sid) == state

    # DISCONNECTING: the keys become Unavailable at once ("eventual consistency": within
    # moments), not only once every HSM has answered the logout.
    async with env.cluster.paused():
        pending = asyncio.ensure_future(k.disconnect(sid))
        await wait_until(lambda: _is(k, sid, "DISCONNECTING"), timeout=5, interval=0.01, what="DISCONNECTING")
        await wait_until(key_unavailable, timeout=5, interval=0.01, what="the key to be Unavailable")
        await unusable("DISCONNECTING")
    await pending
    # DISCONNECTED: a store that has a key cannot be deleted.
    await unusable("DISCONNECTED")
    await aws_error(k.delete(sid), "CustomKeyStoreHasCMKsException")
    # CONNECTING.
    async with env.cluster.paused():
        await k.connect(sid)
        await unusable("CONNECTING")
        await k.disconnected(sid)
    # FAILED.
    await k.update(sid, password="notThePassword1")
    await k.failed_with(sid, "INVALID_CREDENTIALS")
    await unusable("FAILED")
    await k.disconnected(sid)
    await env.cluster.set_kmsuser_password(KNOWN_PASSWORD)
    await k.update(sid, password=KNOWN_PASSWORD)
    # CONNECTED again: the key is back and decrypts what it encrypted.
    await k.connected(sid)
    described = await k.stub.DescribeKey(kms.DescribeKeyRequest(key_id=key.key_id))
    assert described.key_metadata.key_state == "Enabled"
    pt = await k.stub.Decrypt(kms.DecryptRequest(ciphertext_blob=ct.ciphertext_blob))
    assert pt.plaintext == b"while connected"
    await k.disconnected(sid)
