"""The five-try lockout on real hsm-node processes: it holds on a full disk (a real
small tmpfs), and failed logins count across the cluster's nodes."""
from __future__ import annotations

import asyncio

import grpc

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import Lab, NodeProcess, co, login, refused, three_node_cluster, wait_until
from tests.integration.test_node_durability import active_node_on_a_small_disk, fill

PW = "Password-1"
WRONG = "Wrong-Pass-1"


async def create(stub, name: str) -> None:
    await stub.CreateUser(pb.CreateUserRequest(session_token=await co(stub), user_type=pb.CU, username=name,
                                               password=PW))


async def listed(node: NodeProcess, name: str) -> pb.User:
    return next(u for u in (await node.stub().ListUsers(pb.Empty())).users if u.username == name)


async def attempt(node: NodeProcess, name: str, password: str) -> tuple[grpc.StatusCode, str]:
    """(status, message) of one login; OK and the session token when it succeeds."""
    try:
        r = await node.stub().Login(pb.LoginRequest(user_type=pb.CU, username=name, password=password))
        return grpc.StatusCode.OK, r.session_token
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""


# ------------------------------------------------------------------ a full disk


async def test_on_a_full_disk_a_failed_login_that_cannot_be_counted_closes_logins_for_that_user(lab: Lab) -> None:
    async with active_node_on_a_small_disk(lab) as node:
        stub = node.stub()
        await create(stub, "guesser")
        await create(stub, "bystander")
        cu = await login(stub, pb.CU, "bystander", PW)
        filler = fill(node.data_dir, 0)
        for i in range(500):  # whatever room SQLite's files still had, use it up
            try:
                await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32, label=f"k{i}"))
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
                break
        else:
            raise AssertionError("the disk never filled up")

        first = await attempt(node, "guesser", WRONG)
        assert first[0] == grpc.StatusCode.RESOURCE_EXHAUSTED, first
        # From now on every login of that user gets exactly that answer, whatever the password:
        # no more guesses, and nothing that tells the right password from a wrong one.
        for password in [WRONG, PW, "Another-Wrong-2", PW, WRONG, PW, "Third-Wrong-3", PW]:
            assert await attempt(node, "guesser", password) == first, password
        assert "logins of user guesser are refused" in first[1] and "storage is full" in first[1], first
        u = await listed(node, "guesser")
        assert u.login_failure_count == 1 and not u.locked  # the one real failure, not yet on disk
        # other users are not affected by it (their logins need no write)
        assert (await attempt(node, "bystander", PW))[0] == grpc.StatusCode.OK

        filler.unlink()  # space is back: the failure is written first, then the attempt is judged
        assert (await attempt(node, "guesser", WRONG))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert (await listed(node, "guesser")).login_failure_count == 2
        for _ in range(3):
            assert (await attempt(node, "guesser", WRONG))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert (await listed(node, "guesser")).locked
        assert (await attempt(node, "guesser", PW))[0] == grpc.StatusCode.PERMISSION_DENIED
        assert "Traceback" not in node.log_path.read_text()


# ------------------------------------------------------------------ across nodes


async def counts(nodes: list[NodeProcess], name: str) -> list[tuple[int, bool]]:
    return [((u := await listed(n, name)).login_failure_count, u.locked) for n in nodes]


async def test_failed_logins_count_across_nodes_and_lock_everywhere(lab: Lab) -> None:
    nodes = await three_node_cluster(lab)
    await create(nodes[0].stub(), "spread")
    await wait_until(lambda: all_have(nodes, "spread"), what="the user on every node")
    elsewhere = await login(nodes[2].stub(), pb.CU, "spread", PW)

    for _ in range(4):
        assert (await attempt(nodes[0], "spread", WRONG))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert await counts(nodes, "spread") == [(4, False)] * 3  # each failure reached the peers before its answer
    # The attack: 4 more tries on each other node. The first of them is the fifth failure.
    assert (await attempt(nodes[1], "spread", WRONG))[0] == grpc.StatusCode.UNAUTHENTICATED
    for node in nodes[1:]:
        for _ in range(3):
            assert (await attempt(node, "spread", WRONG))[0] == grpc.StatusCode.PERMISSION_DENIED
    await wait_until(lambda: _all_locked(nodes, "spread"), what="the lock on every node")
    for node in nodes:
        code, message = await attempt(node, "spread", PW)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "locked" in message, (node.name, code, message)
    # the lock ended the user's session on a node it was not counted on
    await refused(nodes[2].stub().KeepAlive(pb.SessionRequest(session_token=elsewhere)),
                  grpc.StatusCode.UNAUTHENTICATED)

    # a CO password reset on any node unlocks everywhere, with the count back to zero
    await nodes[2].stub().ChangePassword(pb.ChangePasswordRequest(
        session_token=await co(nodes[2].stub()), username="spread", new_password="Unlocked-Pass-1"))
    await wait_until(lambda: _counts_are(nodes, "spread", (0, False)), what="the reset on every node")
    assert (await attempt(nodes[0], "spread", "Unlocked-Pass-1"))[0] == grpc.StatusCode.OK


async def test_concurrent_failures_on_several_nodes_are_all_counted(lab: Lab) -> None:
    nodes = await three_node_cluster(lab)
    await create(nodes[0].stub(), "racer")
    await wait_until(lambda: all_have(nodes, "racer"), what="the user on every node")
    results = await asyncio.gather(*(attempt(n, "racer", WRONG) for n in nodes))
    assert [code for code, _ in results] == [grpc.StatusCode.UNAUTHENTICATED] * 3
    await wait_until(lambda: _counts_are(nodes, "racer", (3, False)), what="3 failures counted on every node")
    # a success anywhere ends the run of consecutive failures everywhere
    assert (await attempt(nodes[1], "racer", PW))[0] == grpc.StatusCode.OK
    await wait_until(lambda: _counts_are(nodes, "racer", (0, False)), what="the count reset on every node")
    results = await asyncio.gather(*(attempt(n, "racer", WRONG) for n in nodes + nodes[:2]))
    assert all(code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) for code, _ in results)
    await wait_until(lambda: _all_locked(nodes, "racer"), what="5 concurrent failures lock on every node")


async def all_have(nodes: list[NodeProcess], name: str) -> bool:
    for n in nodes:
        if not any(u.username == name for u in (await n.stub().ListUsers(pb.Empty())).users):
            return False
    return True


async def _all_locked(nodes: list[NodeProcess], name: str) -> bool:
    return all(locked for _, locked in await counts(nodes, name))


async def _counts_are(nodes: list[NodeProcess], name: str, expected: tuple[int, bool]) -> bool:
    return await counts(nodes, name) == [expected] * len(nodes)
