"""Users on one real hsm-node process: create, list, delete, password changes,
lockout, roles and sessions (CloudHSM CMU semantics).

One ACTIVE node serves the whole module; every test works with its own users."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CO_PASSWORD, Lab, NodeProcess, co, login, refused

PW = "Password-1"



@pytest.fixture(scope="module")
async def node(tmp_path_factory) -> NodeProcess:
    lab = Lab(tmp_path_factory.mktemp("node-users"))
    n = await lab.start_node()
    await lab.init_active(n)
    yield n
    await lab.close()


@pytest.fixture
def stub(node):
    return node.stub()


@pytest.fixture
async def co_token(stub) -> str:
    return await co(stub)


async def create(stub, co_token: str, name: str, user_type: int = pb.CU, password: str = PW) -> pb.User:
    r = await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=user_type, username=name,
                                                   password=password))
    return r.user


async def listed(stub, name: str) -> pb.User | None:
    return next((u for u in (await stub.ListUsers(pb.Empty())).users if u.username == name), None)


# ------------------------------------------------------------------ create / list / delete


async def test_create_co_and_cu_and_list_them(stub, co_token) -> None:
    before = (await stub.GetStatus(pb.Empty())).user_count
    r = await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=pb.CU, username="Crypto_User1",
                                                   password=PW))
    cu = r.user
    assert (cu.username, cu.user_type, cu.locked, cu.login_failure_count) == ("crypto_user1", pb.CU, False, 0)
    assert cu.user_id > 1 and cu.user_id % 32 == 1  # ordinal 1 takes ids 1, 33, 65, ...
    assert (r.write.replicas, r.write.members, list(r.write.node_ids)) == (1, 1, [(await stub.GetStatus(pb.Empty())).node_id])
    officer = await create(stub, co_token, "Officer2", pb.CO)
    assert officer.user_type == pb.CO and officer.user_id > cu.user_id

    # listUsers needs no login, and shows every field
    users = {u.username: u for u in (await stub.ListUsers(pb.Empty())).users}
    assert users["admin"].user_id == 1 and users["admin"].user_type == pb.CO
    for name, expected in (("crypto_user1", cu), ("officer2", officer)):
        u = users[name]
        assert (u.user_id, u.user_type, u.username, u.login_failure_count, u.locked, u.two_factor) == \
            (expected.user_id, expected.user_type, name, 0, False, False)
    ids = [u.user_id for u in (await stub.ListUsers(pb.Empty())).users]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert (await stub.GetStatus(pb.Empty())).user_count == before + 2

    # both can log in, with their own role
    assert (await stub.Login(pb.LoginRequest(user_type=pb.CU, username="CRYPTO_USER1", password=PW))).user_type == pb.CU
    assert (await stub.Login(pb.LoginRequest(user_type=pb.CO, username="officer2", password=PW))).user_type == pb.CO
    # ... but not with the other role
    await refused(stub.Login(pb.LoginRequest(user_type=pb.CO, username="crypto_user1", password=PW)),
                  grpc.StatusCode.UNAUTHENTICATED, "0xa3")


async def test_duplicate_names_are_refused_case_insensitively(stub, co_token) -> None:
    await create(stub, co_token, "Dup_User")
    for name, utype in (("dup_user", pb.CU), ("DUP_USER", pb.CU), ("dUp_UsEr", pb.CO)):
        await refused(stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=utype, username=name,
                                                           password=PW)),
                      grpc.StatusCode.ALREADY_EXISTS, "0xa1", "dup_user already exists")
    assert [u.username for u in (await stub.ListUsers(pb.Empty())).users].count("dup_user") == 1
    await refused(stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=pb.CO, username="ADMIN",
                                                       password=PW)), grpc.StatusCode.ALREADY_EXISTS)


async def test_delete_user(stub, co_token) -> None:
    await create(stub, co_token, "Doomed")
    r = await stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="DOOMED"))
    assert r.replicas == 1
    assert await listed(stub, "doomed") is None
    await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="doomed", password=PW)),
                  grpc.StatusCode.UNAUTHENTICATED, "0xa3")
    await refused(stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="doomed")),
                  grpc.StatusCode.NOT_FOUND, "0xa6", "doomed does not exist")
    # the name is free again
    assert (await create(stub, co_token, "doomed")).username == "doomed"


async def test_a_co_cannot_delete_itself_and_users_owning_keys_stay(stub, co_token) -> None:
    await refused(stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="admin")),
                  grpc.StatusCode.PERMISSION_DENIED, "cannot delete itself")
    await create(stub, co_token, "keyholder")
    cu = await login(stub, pb.CU, "keyholder", PW)
    handle = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32))).key_handle
    await stub.Logout(pb.SessionRequest(session_token=cu))
    await refused(stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="keyholder")),
                  grpc.StatusCode.FAILED_PRECONDITION, "owns 1 key(s)", f"handle {handle}")
    assert await listed(stub, "keyholder") is not None


async def test_a_logged_in_user_cannot_be_deleted(stub, co_token) -> None:
    await create(stub, co_token, "busy_user")
    cu = await login(stub, pb.CU, "busy_user", PW)
    await refused(stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="busy_user")),
                  grpc.StatusCode.FAILED_PRECONDITION, "0xb5", "busy_user is logged in")
    await stub.Logout(pb.SessionRequest(session_token=cu))
    await stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="busy_user"))
    assert await listed(stub, "busy_user") is None


async def test_concurrent_creations_get_distinct_ids(stub, co_token) -> None:
    results = await asyncio.gather(*(create(stub, co_token, f"parallel_{i}") for i in range(6)))
    ids = [u.user_id for u in results]
    assert len(set(ids)) == 6, f"user ids handed out twice: {ids}"
    listed_ids = {u.username: u.user_id for u in (await stub.ListUsers(pb.Empty())).users}
    assert [listed_ids[f"parallel_{i}"] for i in range(6)] == ids
    assert len(set(listed_ids.values())) == len(listed_ids)


async def test_concurrent_creations_of_one_name_create_it_once(stub, co_token) -> None:
    calls = [stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=pb.CU, username="Racy_Name",
                                                  password=f"Password-{i}")) for i in range(4)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.ALREADY_EXISTS for r in lost)
    # the one acknowledged password is the one that works
    assert await login(stub, pb.CU, "racy_name", f"Password-{won[0]}")


async def test_a_password_change_racing_a_deletion_does_not_revive_the_user(stub, co_token) -> None:
    await create(stub, co_token, "raced_user")
    results = await asyncio.gather(
        stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, username="raced_user",
                                                     new_password="Revived-Pass-1")),
        stub.DeleteUser(pb.DeleteUserRequest(session_token=co_token, username="raced_user")),
        return_exceptions=True)
    assert not isinstance(results[1], BaseException), results[1]  # the deletion was acknowledged ...
    assert await listed(stub, "raced_user") is None                # ... so the user stays deleted
    for pw in (PW, "Revived-Pass-1"):
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="raced_user", password=pw)),
                      grpc.StatusCode.UNAUTHENTICATED)


# ------------------------------------------------------------------ passwords


async def test_a_user_changes_its_own_password(stub, co_token) -> None:
    await create(stub, co_token, "self_changer")
    cu = await login(stub, pb.CU, "self_changer", PW)
    r = await stub.ChangePassword(pb.ChangePasswordRequest(session_token=cu, user_type=pb.CU, username="Self_Changer",
                                                           new_password="New-Password-2"))
    assert r.replicas == 1
    await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="self_changer", password=PW)),
                  grpc.StatusCode.UNAUTHENTICATED, "0xa3")
    assert await login(stub, pb.CU, "self_changer", "New-Password-2")


async def test_a_co_changes_anyones_password_without_the_old_one(stub, co_token) -> None:
    await create(stub, co_token, "reset_me")
    await create(stub, co_token, "reset_officer", pb.CO)
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, user_type=pb.CU, username="reset_me",
                                                       new_password="Reset-Pass-3"))
    # user_type may be left unspecified; a mismatching one is refused
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, username="reset_officer",
                                                       new_password="Reset-Pass-4"))
    await refused(stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, user_type=pb.CO,
                                                               username="reset_me", new_password="Reset-Pass-5")),
                  grpc.StatusCode.INVALID_ARGUMENT, "reset_me is a CU, not a CO")
    assert await login(stub, pb.CU, "reset_me", "Reset-Pass-3")
    assert await login(stub, pb.CO, "reset_officer", "Reset-Pass-4")


async def test_a_cu_cannot_change_another_users_password(stub, co_token) -> None:
    await create(stub, co_token, "nosy_cu")
    await create(stub, co_token, "nosy_target")
    cu = await login(stub, pb.CU, "nosy_cu", PW)
    for target in ("nosy_target", "admin"):
        await refused(stub.ChangePassword(pb.ChangePasswordRequest(session_token=cu, username=target,
                                                                   new_password="Hijacked-99")),
                      grpc.StatusCode.PERMISSION_DENIED, "0xc6", "only a crypto officer")
    assert await login(stub, pb.CU, "nosy_target", PW)


async def test_password_change_is_refused_while_the_target_is_logged_in(stub, co_token) -> None:
    await create(stub, co_token, "online_cu")
    cu = await login(stub, pb.CU, "online_cu", PW)
    await refused(stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, username="online_cu",
                                                               new_password="Other-Pass-1")),
                  grpc.StatusCode.FAILED_PRECONDITION, "0xb5", "online_cu is logged in (1 session(s))")
    # its own change from a second, separate session is refused too
    second = await login(stub, pb.CU, "online_cu", PW)
    await refused(stub.ChangePassword(pb.ChangePasswordRequest(session_token=second, username="online_cu",
                                                               new_password="Other-Pass-1")),
                  grpc.StatusCode.FAILED_PRECONDITION, "0xb5")
    await stub.Logout(pb.SessionRequest(session_token=second))
    # with only the caller's own session left, the user may change its own password
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=cu, username="online_cu",
                                                       new_password="Other-Pass-1"))
    await stub.Logout(pb.SessionRequest(session_token=cu))
    # with everyone logged out, the CO may
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, username="online_cu",
                                                       new_password="Other-Pass-2"))
    assert await login(stub, pb.CU, "online_cu", "Other-Pass-2")


async def test_sessions_of_one_client_replace_each_other_and_do_not_block_it(stub, co_token) -> None:
    await create(stub, co_token, "frontend_cu")
    first = await login(stub, pb.CU, "frontend_cu", PW, client_id="kms-frontend-A")
    second = await login(stub, pb.CU, "frontend_cu", PW, client_id="kms-frontend-A")
    assert first != second
    await refused(stub.KeepAlive(pb.SessionRequest(session_token=first)), grpc.StatusCode.UNAUTHENTICATED)
    await stub.KeepAlive(pb.SessionRequest(session_token=second))
    other_client = await login(stub, pb.CU, "frontend_cu", PW)
    await refused(stub.ChangePassword(pb.ChangePasswordRequest(session_token=second, username="frontend_cu",
                                                               new_password="Rotated-Pass-1")),
                  grpc.StatusCode.FAILED_PRECONDITION, "0xb5")
    await stub.Logout(pb.SessionRequest(session_token=other_client))
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=second, username="frontend_cu",
                                                       new_password="Rotated-Pass-1"))
    assert await login(stub, pb.CU, "frontend_cu", "Rotated-Pass-1", client_id="kms-frontend-A")


# ------------------------------------------------------------------ lockout


async def test_five_bad_logins_lock_the_user_until_a_co_resets_it(stub, co_token) -> None:
    await create(stub, co_token, "locky")
    for attempt in range(1, 6):
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="locky", password="Wrong-Pass")),
                      grpc.StatusCode.UNAUTHENTICATED, "0xa3")
        u = await listed(stub, "locky")
        assert u.login_failure_count == attempt
        assert u.locked == (attempt == 5)
    # the right password no longer works
    await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="locky", password=PW)),
                  grpc.StatusCode.PERMISSION_DENIED, "0xa4", "locked")
    # a CO password reset unlocks
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=co_token, username="locky",
                                                       new_password="Unlocked-Pass-1"))
    u = await listed(stub, "locky")
    assert (u.locked, u.login_failure_count) == (False, 0)
    assert await login(stub, pb.CU, "locky", "Unlocked-Pass-1")


async def test_only_consecutive_failures_count(stub, co_token) -> None:
    await create(stub, co_token, "fumbler")
    for _ in range(4):
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="fumbler", password="Wrong-Pass")),
                      grpc.StatusCode.UNAUTHENTICATED)
    assert (await listed(stub, "fumbler")).login_failure_count == 4
    assert await login(stub, pb.CU, "fumbler", PW)
    assert (await listed(stub, "fumbler")).login_failure_count == 0
    for _ in range(4):
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="fumbler", password="Wrong-Pass")),
                      grpc.StatusCode.UNAUTHENTICATED)
    u = await listed(stub, "fumbler")
    assert (u.locked, u.login_failure_count) == (False, 4)
    assert await login(stub, pb.CU, "fumbler", PW)


async def test_locking_ends_the_users_open_sessions(stub, co_token) -> None:
    await create(stub, co_token, "locked_out")
    cu = await login(stub, pb.CU, "locked_out", PW)
    for _ in range(5):
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="locked_out", password="Wrong-Pass")),
                      grpc.StatusCode.UNAUTHENTICATED)
    await refused(stub.KeepAlive(pb.SessionRequest(session_token=cu)), grpc.StatusCode.UNAUTHENTICATED)


async def test_unknown_users_fail_like_wrong_passwords(stub) -> None:
    unknown = await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="nobody_here", password=PW)),
                            grpc.StatusCode.UNAUTHENTICATED)
    await create(stub, await co(stub), "known_user")
    wrong = await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="known_user", password="Wrong-Pass")),
                          grpc.StatusCode.UNAUTHENTICATED)
    assert unknown == wrong  # no user enumeration through the message


# ------------------------------------------------------------------ roles and sessions


async def test_roles(stub, co_token) -> None:
    await create(stub, co_token, "role_cu")
    cu = await login(stub, pb.CU, "role_cu", PW)
    handle = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32))).key_handle

    # a CO manages users but cannot generate or use keys
    for call in (
        stub.GenerateKey(pb.GenerateKeyRequest(session_token=co_token, key_size_bytes=32)),
        stub.Encrypt(pb.EncryptRequest(session_token=co_token, key_handle=handle, plaintext=b"x")),
        stub.Decrypt(pb.DecryptRequest(session_token=co_token, key_handle=handle, iv=bytes(12), ciphertext=bytes(17))),
        stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=co_token, key_handle=handle, length=32)),
        stub.GenerateRandom(pb.GenerateRandomRequest(session_token=co_token, length=16)),
        stub.FindKeys(pb.FindKeysRequest(session_token=co_token)),
        stub.GetKeyInfo(pb.KeyRequest(session_token=co_token, key_handle=handle)),
        stub.DeleteKey(pb.KeyRequest(session_token=co_token, key_handle=handle)),
    ):
        await refused(call, grpc.StatusCode.PERMISSION_DENIED, "0xc6", "needs a crypto user (CU)",
                      "you are logged in as CO")

    # a CU uses keys but cannot manage users or list everyone's keys
    for call in (
        stub.CreateUser(pb.CreateUserRequest(session_token=cu, user_type=pb.CU, username="by_cu", password=PW)),
        stub.DeleteUser(pb.DeleteUserRequest(session_token=cu, username="admin")),
        stub.FindAllKeys(pb.FindAllKeysRequest(session_token=cu)),
        stub.SyncUser(pb.SyncUserRequest(session_token=cu, username="role_cu")),
    ):
        await refused(call, grpc.StatusCode.PERMISSION_DENIED, "0xc6", "needs a crypto officer (CO)",
                      "you are logged in as CU")
    assert await listed(stub, "by_cu") is None
    assert (await stub.Encrypt(pb.EncryptRequest(session_token=cu, key_handle=handle, plaintext=b"x"))).ciphertext


async def test_logout_invalidates_the_token(stub, co_token) -> None:
    token = await co(stub)
    await stub.KeepAlive(pb.SessionRequest(session_token=token))
    await stub.Logout(pb.SessionRequest(session_token=token))
    for call in (
        stub.KeepAlive(pb.SessionRequest(session_token=token)),
        stub.CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="after_logout",
                                             password=PW)),
        stub.Logout(pb.SessionRequest(session_token=token)),
    ):
        await refused(call, grpc.StatusCode.UNAUTHENTICATED, "0xb9", "not logged in")
    # other sessions of the same user are unaffected
    await stub.KeepAlive(pb.SessionRequest(session_token=co_token))


@pytest.mark.parametrize("token", ["", "garbage", "x" * 10_000, "\u00e9\u00e8", "Bearer abc"])
async def test_bad_tokens_are_unauthenticated(stub, token) -> None:
    for call in (
        stub.KeepAlive(pb.SessionRequest(session_token=token)),
        stub.CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="tok_user", password=PW)),
        stub.GenerateKey(pb.GenerateKeyRequest(session_token=token, key_size_bytes=32)),
        stub.Encrypt(pb.EncryptRequest(session_token=token, key_handle=1, plaintext=b"x")),
    ):
        await refused(call, grpc.StatusCode.UNAUTHENTICATED, "0xb9")


async def test_the_co_password_still_works_at_the_end(stub) -> None:
    assert await login(stub, pb.CO, "admin", CO_PASSWORD)
