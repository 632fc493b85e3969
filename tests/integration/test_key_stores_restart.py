"""Crashes and restarts: the frontend dying in the middle of the kmsuser password rotation
(KMS_CRASH_AT), frontend restarts (SIGTERM and kill -9) keeping every store's state and
its sessions, and CONNECTED not following the cluster's health (AWS KMS Developer Guide:
"Connecting and disconnecting an AWS CloudHSM key store"; DESIGN decision 7).

Processes: cluster C1 (two nodes) backing store S; cluster C2 (two nodes, same lab)
backing store D, which is only ever DISCONNECTED or FAILED; one frontend, restarted often.
"""
from __future__ import annotations

import signal

import grpc
import pytest

from kms_frontend.store.sqlite import SqliteRepository
from protos.kms.v1 import kms_pb2 as kms
from tests.harness import Lab, wait_until

from .test_key_stores_kit import (
    HsmCluster,
    Kms,
    aws_error,
    delete_cluster,
    log_events,
    log_offset,
    make_cluster,
    restart_frontend,
    start_frontend,
)


class Env:
    c1: HsmCluster
    c2: HsmCluster
    kms: Kms
    s: str  # on C1
    d: str  # on C2


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("key-store-restart")
    lab = Lab(root)
    e = Env()
    e.c1 = await make_cluster(lab, 2)
    e.c2 = await make_cluster(lab, 2, kmsuser=False)
    fe = await start_frontend(root, e.c1.endpoints + e.c2.endpoints)
    e.kms = Kms(fe)
    e.s = await e.kms.create("crash-and-restart", e.c1.cluster_id, e.c1.anchor)
    e.d = await e.kms.create("idle", e.c2.cluster_id, e.c2.anchor)
    e.c2.kill()  # D never connects: its cluster is gone (its HSMs died, then it was deleted)
    await delete_cluster(fe, e.c2.cluster_id)
    yield e
    await fe.stop()
    await e.c1.close()
    await e.c2.close()


async def crash_while_connecting(env: Env, point: str) -> None:
    fe = env.kms.fe
    await restart_frontend(fe, env={"KMS_CRASH_AT": point})
    try:
        await env.kms.connect(env.s)
    except grpc.aio.AioRpcError as err:  # the process may die before the answer leaves
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    await wait_until(lambda: fe.proc.poll() is not None, timeout=30, what=f"the frontend to crash at {point}")
    assert fe.proc.returncode == 137
    assert log_events(fe, event="crash_point", point=point)
    # What the dead frontend left on disk: still CONNECTING, the next password kept (sealed) as pending.
    repo = SqliteRepository(fe.data_dir / "metadata.db")
    try:
        record = repo.get_custom_key_store(env.s)
    finally:
        repo.close()
    assert record.connection_state == "CONNECTING"
    assert record.pending_sealed_password is not None


async def restart_and_settle(env: Env) -> int:
    """Restart without a crash point; the store was CONNECTING and finishes by itself."""
    fe = env.kms.fe
    offset = log_offset(fe)
    await restart_frontend(fe)
    entry = await env.kms.settled(env.s)
    assert entry.connection_state == "CONNECTED", entry.connection_error_code
    assert log_events(fe, offset, event="store_connected", store=env.s)
    return offset


async def fresh_cycle(env: Env) -> None:
    before = await env.c1.kmsuser_version()
    await env.kms.disconnected(env.s)
    await env.kms.connected(env.s)
    assert await env.c1.kmsuser_version() > before  # rotated with the password it kept
    await env.kms.disconnected(env.s)


async def test_crash_after_the_new_password_is_stored_but_before_the_hsm_changes(env):
    v0 = await env.c1.kmsuser_version()
    await crash_while_connecting(env, "rotation:pending-stored")
    assert await env.c1.kmsuser_version() == v0  # the HSM never saw the new password
    offset = await restart_and_settle(env)
    assert log_events(env.kms.fe, offset, event="rotation_aborted", store=env.s)
    assert await env.c1.kmsuser_version() > v0
    await fresh_cycle(env)


async def test_crash_after_the_hsm_changed_the_password_before_it_is_committed(env):
    v0 = await env.c1.kmsuser_version()
    await crash_while_connecting(env, "rotation:hsm-changed")
    v1 = await env.c1.kmsuser_version()
    assert v1 > v0  # the cluster holds the new password, the frontend had it only as "pending"
    offset = await restart_and_settle(env)
    assert log_events(env.kms.fe, offset, event="rotation_recovered", store=env.s)
    assert await env.c1.kmsuser_version() > v1
    await fresh_cycle(env)


async def random_from(env: Env, store_id: str) -> bytes:
    r = await env.kms.stub.GenerateRandom(kms.GenerateRandomRequest(number_of_bytes=8, custom_key_store_id=store_id),
                                          timeout=10)
    return r.plaintext


async def test_restarts_keep_every_state_and_bring_the_sessions_back(env):
    k, fe = env.kms, env.kms.fe
    await k.connected(env.s)
    version = await env.c1.kmsuser_version()
    for how, sig in (("SIGTERM", signal.SIGTERM), ("kill -9", signal.SIGKILL)):
        offset = log_offset(fe)
        await restart_frontend(fe, sig=sig)
        assert await k.state(env.s) == "CONNECTED", how
        # Its kmsuser sessions come back (logged in again with the password it kept, no rotation).
        await wait_until(lambda offset=offset: log_events(fe, offset, event="store_resumed", store=env.s),
                         what=f"sessions of {env.s} after {how}")
        assert len(await wait_until(lambda: random_from(env, env.s), what="crypto through the sessions")) == 8
        assert await env.c1.kmsuser_version() == version, how
        if how == "SIGTERM":
            # A DISCONNECTED store stayed DISCONNECTED; now make D FAILED for the kill -9 round.
            # (C2's HSMs died before this frontend process started: no node it reaches reports C2.)
            assert await k.state(env.d) == "DISCONNECTED"
            await k.failed_with(env.d, "CLUSTER_NOT_FOUND")
        else:
            entry = await k.describe(env.d)
            assert (entry.connection_state, entry.connection_error_code) == ("FAILED", "CLUSTER_NOT_FOUND")
    await k.disconnected(env.d)
    await fresh_cycle(env)
    assert await k.state(env.d) == "DISCONNECTED"


async def test_connected_does_not_follow_the_cluster_health(env):
    k, fe, c1 = env.kms, env.kms.fe, env.c1
    await k.connected(env.s)
    offset = log_offset(fe)
    c1.kill()
    # Make sure the frontend has looked at the cluster since: a connect probes every HSM afresh
    # (and with no HSM answering at all, D's cluster has no active HSM).
    await k.failed_with(env.d, "INSUFFICIENT_CLOUDHSM_HSMS")
    await k.disconnected(env.d)
    assert await k.state(env.s) == "CONNECTED"
    message = await aws_error(random_from(env, env.s), "KMSInvalidStateException")
    assert c1.cluster_id in message
    # The frontend knows its sessions are gone with the HSMs.
    for endpoint in c1.endpoints:
        await wait_until(lambda endpoint=endpoint: log_events(fe, offset, event="session_lost", endpoint=endpoint),
                         what=f"the session on {endpoint} to be dropped")
    offset = log_offset(fe)
    await c1.restart()
    for endpoint in c1.endpoints:
        await wait_until(lambda endpoint=endpoint: log_events(fe, offset, event="session_opened", endpoint=endpoint),
                         what=f"a new kmsuser session on {endpoint}")
    assert await k.state(env.s) == "CONNECTED"
    # The HSMs (which lost every session when they restarted) see kmsuser logged in again.
    for node in c1.nodes:
        assert "logged in" in await c1.co_change_refused(node)
    assert len(await random_from(env, env.s)) == 8
    await fresh_cycle(env)
