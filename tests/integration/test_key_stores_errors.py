"""Every ConnectionErrorCode from a real cause, the way out of FAILED, and moving a
store between related and unrelated clusters (AWS KMS API Reference: UpdateCustomKeyStore, and ConnectionErrorCode
in CustomKeyStoresListEntry).

Processes: cluster C1 (two nodes, lab A) backing the store; cluster R restored from a
backup of C1 (lab A, same cluster certificate: "shares a backup history"); cluster U, a
one-node cluster of another lab (another trust anchor). One frontend knows all of them.
Every test starts and ends with the store DISCONNECTED.
"""
from __future__ import annotations

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CU_PASSWORD, Lab, co, wait_until

from .test_key_stores_kit import (
    HsmCluster,
    Kms,
    add_node,
    aws_error,
    delete_cluster,
    hsm_error,
    make_cluster,
    restart_frontend,
    start_frontend,
)

KNOWN_PASSWORD = "operatorChosen1"
WRONG_PASSWORD = "notThePassword1"


class Env:
    def __init__(self) -> None:
        self.c1: HsmCluster
        self.r: HsmCluster
        self.u: HsmCluster
        self.kms: Kms
        self.store_id = ""

    async def fails_with(self, code: str) -> None:
        """Connect ends FAILED with ``code``; FAILED then refuses Connect until it is disconnected."""
        await self.kms.failed_with(self.store_id, code)
        message = await aws_error(self.kms.connect(self.store_id), "CustomKeyStoreInvalidStateException")
        assert "is FAILED" in message and "DisconnectCustomKeyStore" in message
        assert (await self.kms.describe(self.store_id)).connection_error_code == code

    async def recover(self, password: str) -> None:
        """The documented way out of FAILED: Disconnect, tell KMS the current password, Connect."""
        k, sid = self.kms, self.store_id
        if await k.state(sid) == "FAILED":
            await k.disconnected(sid)
        await k.update(sid, password=password)
        await k.connected(sid)
        await k.disconnected(sid)


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("key-store-errors")
    lab_a, lab_b = Lab(root / "a"), Lab(root / "b")
    e = Env()
    e.c1 = await make_cluster(lab_a, 2)
    n1 = e.c1.nodes[0]
    token = await co(n1.stub())
    backup = await n1.stub().CreateBackup(pb.CreateBackupRequest(session_token=token))
    r1 = await lab_a.start_node()
    restored = await r1.stub().RestoreCluster(pb.RestoreClusterRequest(backup_id=backup.backup_id))
    r1.anchor_pem = lab_a.anchor.cert_pem
    await r1.reset_channel()
    e.r = HsmCluster(lab_a, [r1], restored.cluster_id)
    e.u = await make_cluster(lab_b, 1, kmsuser=False)
    fe = await start_frontend(root, e.c1.endpoints + e.r.endpoints + e.u.endpoints)
    e.kms = Kms(fe)
    e.store_id = await e.kms.create("errors", e.c1.cluster_id, e.c1.anchor)
    yield e
    await fe.stop()
    for c in (e.c1, e.r, e.u):
        await c.close()


async def test_invalid_credentials(env):
    k, sid = env.kms, env.store_id
    await k.update(sid, password=WRONG_PASSWORD)
    await env.fails_with("INVALID_CREDENTIALS")
    # The password was never rotated: the customer's original one is still the cluster's.
    await env.recover(CU_PASSWORD)


async def test_user_locked_out(env):
    c1 = env.c1
    node = c1.nodes[0]
    for _ in range(5):  # five consecutive bad logins lock a CloudHSM user
        if (await c1.kmsuser(node)).locked:
            break
        await hsm_error(c1.kmsuser_login(node, WRONG_PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert (await c1.kmsuser(node)).locked
    await hsm_error(c1.kmsuser_login(node, WRONG_PASSWORD), grpc.StatusCode.PERMISSION_DENIED)

    async def locked_everywhere():
        return all([(await c1.kmsuser(n)).locked for n in c1.nodes])
    await wait_until(locked_everywhere, what="the lock to replicate")
    await env.fails_with("USER_LOCKED_OUT")
    # Only a CO password reset unlocks kmsuser; then tell KMS the new password.
    await c1.set_kmsuser_password(KNOWN_PASSWORD)
    assert not any([(await c1.kmsuser(n)).locked for n in c1.nodes])
    await env.recover(KNOWN_PASSWORD)


async def test_user_not_found(env):
    c1, k, sid = env.c1, env.kms, env.store_id
    n1, n2 = c1.nodes
    token = await co(n1.stub())
    await n1.stub().DeleteUser(pb.DeleteUserRequest(session_token=token, username="kmsuser"))

    async def gone():
        return all([await c1.kmsuser(n) is None for n in c1.nodes])
    await wait_until(gone, what="kmsuser deletion to replicate")
    await env.fails_with("USER_NOT_FOUND")
    await k.disconnected(sid)
    # kmsuser on one HSM only (CMU's partial fan-out): still USER_NOT_FOUND.
    await n1.stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="kmsuser",
                                                    password=KNOWN_PASSWORD, this_node_only=True))
    assert await c1.kmsuser(n1) is not None and await c1.kmsuser(n2) is None
    await k.update(sid, password=KNOWN_PASSWORD)
    await env.fails_with("USER_NOT_FOUND")
    # Sync it to every HSM, and the store connects.
    await n1.stub().SyncUser(pb.SyncUserRequest(session_token=token, username="kmsuser"))
    await n1.stub().Logout(pb.SessionRequest(session_token=token))
    await wait_until(lambda: c1.kmsuser(n2), what="kmsuser on the second node")
    await env.recover(KNOWN_PASSWORD)


async def test_user_logged_in(env):
    c1, k, sid = env.c1, env.kms, env.store_id
    await c1.set_kmsuser_password(KNOWN_PASSWORD)
    await k.update(sid, password=KNOWN_PASSWORD)
    tokens = [(n, await c1.kmsuser_login(n, KNOWN_PASSWORD)) for n in c1.nodes]
    await env.fails_with("USER_LOGGED_IN")
    # KMS did not change the password.
    tokens.append((c1.nodes[0], await c1.kmsuser_login(c1.nodes[0], KNOWN_PASSWORD)))
    for n, token in tokens:
        await n.stub().Logout(pb.SessionRequest(session_token=token))
    await k.disconnected(sid)
    # Logging kmsuser out is the whole fix: the stored password is intact (the rotation was abandoned).
    await k.connected(sid)
    await k.disconnected(sid)


async def test_network_errors_while_the_hsms_do_not_answer(env):
    k, sid = env.kms, env.store_id
    async with env.c1.paused():
        await env.fails_with("NETWORK_ERRORS")
        await k.disconnected(sid)
        # Asking again while they still hang: the same diagnosis (not "no HSMs").
        await env.fails_with("NETWORK_ERRORS")
        await k.disconnected(sid)
    await env.c1.wait_healthy()
    await k.connected(sid)
    await k.disconnected(sid)


async def test_insufficient_hsms_when_every_hsm_is_down(env):
    k, sid = env.kms, env.store_id
    env.c1.kill()
    # The frontend also reaches other clusters' nodes (R, U): a cluster it knew whose HSMs
    # are all down is a cluster without active HSMs, not a cluster that does not exist.
    await env.fails_with("INSUFFICIENT_CLOUDHSM_HSMS")
    await k.disconnected(sid)
    await env.c1.restart()  # "add an HSM"
    await k.connected(sid)
    await k.disconnected(sid)


async def test_cluster_swap_related_and_unrelated(env):
    k, sid, c1, r, u = env.kms, env.store_id, env.c1, env.r, env.u
    # An unrelated cluster (another lab, another trust anchor, another cluster certificate).
    message = await aws_error(k.update(sid, cluster_id=u.cluster_id), "CloudHsmClusterNotRelatedException")
    assert u.cluster_id in message and c1.cluster_id in message
    # The restored cluster shares C1's backup history: it cannot back a second store...
    message = await aws_error(k.create_call("second", r.cluster_id, r.anchor), "CloudHsmClusterInUseException")
    assert sid in message
    # ...and it is a valid replacement, once it has two active HSMs.
    message = await aws_error(k.update(sid, cluster_id=r.cluster_id), "CloudHsmClusterInvalidConfigurationException")
    assert "1 active HSM" in message
    r.nodes.append(await add_node(r.lab, r.nodes[0]))
    await r.wait_healthy()
    # Not while CONNECTED.
    await k.connected(sid)
    message = await aws_error(k.update(sid, cluster_id=r.cluster_id), "CustomKeyStoreInvalidStateException")
    assert "CONNECTED" in message
    assert (await k.describe(sid)).cloud_hsm_cluster_id == c1.cluster_id
    await k.disconnected(sid)
    c1_version, r_version = await c1.kmsuser_version(), await r.kmsuser_version()
    # Related and DISCONNECTED: allowed (with the password R's kmsuser has, from the backup).
    await k.update(sid, cluster_id=r.cluster_id, password=CU_PASSWORD)
    entry = await k.describe(sid)
    assert (entry.cloud_hsm_cluster_id, entry.connection_state) == (r.cluster_id, "DISCONNECTED")
    await k.connected(sid)
    assert await r.kmsuser_version() > r_version  # rotated in R
    assert await c1.kmsuser_version() == c1_version  # C1 untouched
    await k.disconnected(sid)


async def test_cluster_not_found(env):
    """The store names R; R's HSMs are gone: a cluster without active HSMs, even after a frontend
    restart (the CloudHSM control plane remembers R); once R is deleted, no cluster R exists."""
    k, sid, c1, r = env.kms, env.store_id, env.c1, env.r
    assert (await k.describe(sid)).cloud_hsm_cluster_id == r.cluster_id
    r.kill()
    await env.fails_with("INSUFFICIENT_CLOUDHSM_HSMS")
    await k.disconnected(sid)
    await restart_frontend(k.fe)
    await env.fails_with("INSUFFICIENT_CLOUDHSM_HSMS")
    await k.disconnected(sid)
    await delete_cluster(k.fe, r.cluster_id)  # as its owner would on AWS: its HSMs, then the cluster
    await env.fails_with("CLUSTER_NOT_FOUND")
    await k.disconnected(sid)
    # Switch back to a related cluster that exists (C1), with its current kmsuser password.
    await c1.set_kmsuser_password(KNOWN_PASSWORD)
    await k.update(sid, cluster_id=c1.cluster_id, password=KNOWN_PASSWORD)
    await k.connected(sid)
    await k.disconnected(sid)
