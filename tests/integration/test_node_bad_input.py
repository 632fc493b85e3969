"""Bad input to every RPC of one real hsm-node process: wrong enum values,
oversized fields, unknown handles and ids, empty or garbage tokens, the wrong
role. Each is refused with a precise status code and a message (never INTERNAL,
never a traceback), the same way on the unary calls and on CryptoStream, and
the node keeps serving afterwards.

One ACTIVE node serves the whole module; refused calls change nothing."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CO_PASSWORD, Lab, NodeProcess, co, login

PW = "Password-1"
S = grpc.StatusCode
GARBAGE_TOKEN = "not-a-session-token"
BIG_PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" * 1000



@dataclass
class Ctx:
    node: NodeProcess
    co: str
    cu: str
    cu2: str
    co_id: int
    cu_id: int
    cu2_id: int
    handle: int          # owned by cu, not shared
    iv: bytes            # a valid encryption under handle, aad b"aad"
    ct: bytes

    @property
    def stub(self):
        return self.node.stub()


@pytest.fixture(scope="module")
async def ctx(tmp_path_factory) -> Ctx:
    lab = Lab(tmp_path_factory.mktemp("node-bad-input"))
    n = await lab.start_node()
    await lab.init_active(n)
    stub = n.stub()
    co_token = await co(stub)
    ids = {}
    for name in ("bad_cu", "bad_cu2"):
        r = await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=pb.CU, username=name,
                                                       password=PW))
        ids[name] = r.user.user_id
    cu, cu2 = await login(stub, pb.CU, "bad_cu", PW), await login(stub, pb.CU, "bad_cu2", PW)
    handle = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32))).key_handle
    e = await stub.Encrypt(pb.EncryptRequest(session_token=cu, key_handle=handle, plaintext=b"payload", aad=b"aad"))
    yield Ctx(n, co_token, cu, cu2, 1, ids["bad_cu"], ids["bad_cu2"], handle, e.iv, e.ciphertext)
    await lab.close()


Call = Callable[[Ctx], Awaitable[Any]]


def case(name: str, call: Call, code: grpc.StatusCode, fragment: str, *marks: Any) -> Any:
    return pytest.param(call, code, fragment, id=name, marks=list(marks))


def create(c: Ctx, token: str | None = None, **kw: Any):
    args = {"session_token": c.co if token is None else token, "user_type": pb.CU, "username": "fresh_user",
            "password": PW, **kw}
    return c.stub.CreateUser(pb.CreateUserRequest(**args))


def change(c: Ctx, token: str | None = None, **kw: Any):
    args = {"session_token": c.co if token is None else token, "username": "bad_cu2", "new_password": PW, **kw}
    return c.stub.ChangePassword(pb.ChangePasswordRequest(**args))


def gen(c: Ctx, token: str | None = None, **kw: Any):
    args = {"session_token": c.cu if token is None else token, "key_size_bytes": 32, **kw}
    return c.stub.GenerateKey(pb.GenerateKeyRequest(**args))


CASES = [
    # ---- lifecycle
    case("Initialize-on-active", lambda c: c.stub.Initialize(pb.InitializeRequest(
        signed_cluster_certificate_pem="garbage", trust_anchor_pem="garbage")), S.FAILED_PRECONDITION, "ACTIVE"),
    case("Initialize-empty", lambda c: c.stub.Initialize(pb.InitializeRequest()), S.FAILED_PRECONDITION, "ACTIVE"),
    case("Initialize-huge", lambda c: c.stub.Initialize(pb.InitializeRequest(
        signed_cluster_certificate_pem=BIG_PEM, trust_anchor_pem=BIG_PEM)), S.FAILED_PRECONDITION, "ACTIVE"),
    # ---- sessions
    case("Login-enum-99", lambda c: c.stub.Login(pb.LoginRequest(user_type=99, username="bad_cu", password=PW)),
         S.INVALID_ARGUMENT, "user_type must be one of"),
    case("Login-enum-unspecified", lambda c: c.stub.Login(pb.LoginRequest(username="bad_cu", password=PW)),
         S.INVALID_ARGUMENT, "user_type must be one of"),
    case("Login-AU", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.AU, username="bad_cu", password=PW)),
         S.UNAUTHENTICATED, "0xa3"),
    case("Login-empty-name", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, password=PW)),
         S.INVALID_ARGUMENT, "invalid user name"),
    case("Login-long-name", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, username="n" * 32, password=PW)),
         S.INVALID_ARGUMENT, "1 to 31 letters"),
    case("Login-bad-chars", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, username="bad-cu\x00",
                                                                   password=PW)), S.INVALID_ARGUMENT, "invalid user name"),
    case("Login-huge-name", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, username="n" * 100_000,
                                                                   password=PW)), S.INVALID_ARGUMENT, "invalid user name"),
    case("Login-unknown-user", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, username="ghost", password=PW)),
         S.UNAUTHENTICATED, "0xa3"),
    case("Login-huge-password", lambda c: c.stub.Login(pb.LoginRequest(user_type=pb.CU, username="ghost",
                                                                       password="p" * 100_000)),
         S.UNAUTHENTICATED, "0xa3"),
    case("Logout-garbage", lambda c: c.stub.Logout(pb.SessionRequest(session_token=GARBAGE_TOKEN)),
         S.UNAUTHENTICATED, "0xb9"),
    case("Logout-empty", lambda c: c.stub.Logout(pb.SessionRequest()), S.UNAUTHENTICATED, "0xb9"),
    case("KeepAlive-garbage", lambda c: c.stub.KeepAlive(pb.SessionRequest(session_token=GARBAGE_TOKEN)),
         S.UNAUTHENTICATED, "0xb9"),
    case("KeepAlive-huge", lambda c: c.stub.KeepAlive(pb.SessionRequest(session_token="t" * 1_000_000)),
         S.UNAUTHENTICATED, "0xb9"),
    # ---- users
    case("CreateUser-enum-99", lambda c: create(c, user_type=99), S.INVALID_ARGUMENT, "user_type must be one of"),
    case("CreateUser-enum-unspecified", lambda c: create(c, user_type=0), S.INVALID_ARGUMENT, "user_type"),
    case("CreateUser-PRECO", lambda c: create(c, user_type=pb.PRECO), S.INVALID_ARGUMENT, "choose CO or CU"),
    case("CreateUser-AU", lambda c: create(c, user_type=pb.AU), S.INVALID_ARGUMENT, "choose CO or CU"),
    case("CreateUser-bad-name", lambda c: create(c, username="fresh user"), S.INVALID_ARGUMENT, "invalid user name"),
    case("CreateUser-long-name", lambda c: create(c, username="u" * 32), S.INVALID_ARGUMENT, "1 to 31"),
    case("CreateUser-short-password", lambda c: create(c, password="short"), S.INVALID_ARGUMENT, "7 to 32 characters"),
    case("CreateUser-long-password", lambda c: create(c, password="p" * 33), S.INVALID_ARGUMENT, "7 to 32 characters"),
    case("CreateUser-duplicate", lambda c: create(c, username="BAD_CU"), S.ALREADY_EXISTS, "already exists"),
    case("CreateUser-garbage-token", lambda c: create(c, token=GARBAGE_TOKEN), S.UNAUTHENTICATED, "0xb9"),
    case("CreateUser-empty-token", lambda c: create(c, token=""), S.UNAUTHENTICATED, "0xb9"),
    case("CreateUser-as-CU", lambda c: create(c, token=c.cu), S.PERMISSION_DENIED, "needs a crypto officer"),
    case("DeleteUser-unknown", lambda c: c.stub.DeleteUser(pb.DeleteUserRequest(session_token=c.co, username="ghost")),
         S.NOT_FOUND, "0xa6"),
    case("DeleteUser-bad-name", lambda c: c.stub.DeleteUser(pb.DeleteUserRequest(session_token=c.co, username="")),
         S.INVALID_ARGUMENT, "invalid user name"),
    case("DeleteUser-garbage-token", lambda c: c.stub.DeleteUser(pb.DeleteUserRequest(
        session_token=GARBAGE_TOKEN, username="bad_cu2")), S.UNAUTHENTICATED, "0xb9"),
    case("DeleteUser-as-CU", lambda c: c.stub.DeleteUser(pb.DeleteUserRequest(session_token=c.cu, username="bad_cu2")),
         S.PERMISSION_DENIED, "needs a crypto officer"),
    case("DeleteUser-logged-in", lambda c: c.stub.DeleteUser(pb.DeleteUserRequest(session_token=c.co,
                                                                                  username="bad_cu2")),
         S.FAILED_PRECONDITION, "0xb5"),
    case("ChangePassword-enum-99", lambda c: change(c, user_type=99), S.INVALID_ARGUMENT, "user_type must be one of"),
    case("ChangePassword-wrong-type", lambda c: change(c, user_type=pb.CO), S.INVALID_ARGUMENT, "is a CU, not a CO"),
    case("ChangePassword-unknown", lambda c: change(c, username="ghost"), S.NOT_FOUND, "0xa6"),
    case("ChangePassword-bad-name", lambda c: change(c, username="a.b"), S.INVALID_ARGUMENT, "invalid user name"),
    case("ChangePassword-short", lambda c: change(c, new_password="123456"), S.INVALID_ARGUMENT, "7 to 32"),
    case("ChangePassword-long", lambda c: change(c, new_password="p" * 33), S.INVALID_ARGUMENT, "7 to 32"),
    case("ChangePassword-garbage-token", lambda c: change(c, token=GARBAGE_TOKEN), S.UNAUTHENTICATED, "0xb9"),
    case("ChangePassword-CU-for-other", lambda c: change(c, token=c.cu), S.PERMISSION_DENIED, "only a crypto officer"),
    case("ChangePassword-logged-in", lambda c: change(c), S.FAILED_PRECONDITION, "0xb5"),
    case("SyncUser-garbage-token", lambda c: c.stub.SyncUser(pb.SyncUserRequest(session_token=GARBAGE_TOKEN,
                                                                                username="bad_cu")),
         S.UNAUTHENTICATED, "0xb9"),
    case("SyncUser-as-CU", lambda c: c.stub.SyncUser(pb.SyncUserRequest(session_token=c.cu, username="bad_cu")),
         S.PERMISSION_DENIED, "needs a crypto officer"),
    case("SyncUser-bad-name", lambda c: c.stub.SyncUser(pb.SyncUserRequest(session_token=c.co, username="x" * 40)),
         S.INVALID_ARGUMENT, "invalid user name"),
    # ---- keys
    case("GenerateKey-size-24", lambda c: gen(c, key_size_bytes=24), S.INVALID_ARGUMENT, "invalid AES key size 24"),
    case("GenerateKey-size-max", lambda c: gen(c, key_size_bytes=2**32 - 1), S.INVALID_ARGUMENT, "invalid AES key size"),
    case("GenerateKey-label-128", lambda c: gen(c, label="l" * 128), S.INVALID_ARGUMENT, "at most 127"),
    case("GenerateKey-label-huge", lambda c: gen(c, label="l" * 1_000_000), S.INVALID_ARGUMENT, "at most 127"),
    case("GenerateKey-share-unknown", lambda c: gen(c, share_with_user_ids=[123456]), S.INVALID_ARGUMENT,
         "cannot share with user id 123456"),
    case("GenerateKey-share-CO", lambda c: gen(c, share_with_user_ids=[c.co_id]), S.INVALID_ARGUMENT,
         "only be shared with crypto users"),
    case("GenerateKey-share-self", lambda c: gen(c, share_with_user_ids=[c.cu_id]), S.INVALID_ARGUMENT,
         "with its owner"),
    case("GenerateKey-min-replicas", lambda c: gen(c, min_replicas=2), S.UNAVAILABLE, "needs 2 nodes"),
    case("GenerateKey-min-replicas-huge", lambda c: gen(c, min_replicas=2**32 - 1), S.UNAVAILABLE, "no key was created"),
    case("GenerateKey-garbage-token", lambda c: gen(c, token=GARBAGE_TOKEN), S.UNAUTHENTICATED, "0xb9"),
    case("GenerateKey-as-CO", lambda c: gen(c, token=c.co), S.PERMISSION_DENIED, "needs a crypto user"),
    case("FindKeys-as-CO", lambda c: c.stub.FindKeys(pb.FindKeysRequest(session_token=c.co)), S.PERMISSION_DENIED,
         "needs a crypto user"),
    case("FindKeys-garbage-token", lambda c: c.stub.FindKeys(pb.FindKeysRequest(session_token=GARBAGE_TOKEN)),
         S.UNAUTHENTICATED, "0xb9"),
    case("FindAllKeys-as-CU", lambda c: c.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=c.cu)),
         S.PERMISSION_DENIED, "needs a crypto officer"),
    case("FindAllKeys-unknown-user", lambda c: c.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=c.co,
                                                                                        user_id=2**32 - 1)),
         S.NOT_FOUND, "no user with id"),
    case("FindAllKeys-garbage-token", lambda c: c.stub.FindAllKeys(pb.FindAllKeysRequest(session_token="")),
         S.UNAUTHENTICATED, "0xb9"),
    case("GetKeyInfo-unknown", lambda c: c.stub.GetKeyInfo(pb.KeyRequest(session_token=c.cu, key_handle=999_999)),
         S.NOT_FOUND, "0xa8"),
    case("GetKeyInfo-zero", lambda c: c.stub.GetKeyInfo(pb.KeyRequest(session_token=c.cu)), S.NOT_FOUND, "0xa8"),
    case("GetKeyInfo-max", lambda c: c.stub.GetKeyInfo(pb.KeyRequest(session_token=c.cu, key_handle=2**64 - 1)),
         S.NOT_FOUND, "0xa8"),
    case("GetKeyInfo-not-shared", lambda c: c.stub.GetKeyInfo(pb.KeyRequest(session_token=c.cu2, key_handle=c.handle)),
         S.PERMISSION_DENIED, "0xc6 : HSM Error: Key Access is denied."),
    case("GetKeyInfo-as-CO", lambda c: c.stub.GetKeyInfo(pb.KeyRequest(session_token=c.co, key_handle=c.handle)),
         S.PERMISSION_DENIED, "needs a crypto user"),
    case("ShareKey-unknown", lambda c: c.stub.ShareKey(pb.ShareKeyRequest(session_token=c.cu, key_handle=999_999,
                                                                          user_ids=[c.cu2_id])), S.NOT_FOUND, "0xa8"),
    case("ShareKey-non-owner", lambda c: c.stub.ShareKey(pb.ShareKeyRequest(session_token=c.cu2, key_handle=c.handle,
                                                                            user_ids=[c.cu2_id])),
         S.PERMISSION_DENIED, "0xc6"),
    case("ShareKey-with-CO", lambda c: c.stub.ShareKey(pb.ShareKeyRequest(session_token=c.cu, key_handle=c.handle,
                                                                          user_ids=[c.co_id])),
         S.INVALID_ARGUMENT, "only be shared with crypto users"),
    case("ShareKey-with-unknown", lambda c: c.stub.ShareKey(pb.ShareKeyRequest(
        session_token=c.cu, key_handle=c.handle, user_ids=[c.cu2_id, 2**32 - 1])), S.INVALID_ARGUMENT,
        "cannot share with user id"),
    case("ShareKey-garbage-token", lambda c: c.stub.ShareKey(pb.ShareKeyRequest(session_token=GARBAGE_TOKEN,
                                                                                key_handle=c.handle)),
         S.UNAUTHENTICATED, "0xb9"),
    case("DeleteKey-unknown", lambda c: c.stub.DeleteKey(pb.KeyRequest(session_token=c.cu, key_handle=999_999)),
         S.NOT_FOUND, "0xa8"),
    case("DeleteKey-non-owner", lambda c: c.stub.DeleteKey(pb.KeyRequest(session_token=c.cu2, key_handle=c.handle)),
         S.PERMISSION_DENIED, "0xc6 : HSM Error: Key Access is denied."),
    case("DeleteKey-as-CO", lambda c: c.stub.DeleteKey(pb.KeyRequest(session_token=c.co, key_handle=c.handle)),
         S.PERMISSION_DENIED, "needs a crypto user"),
    case("DeleteKey-garbage-token", lambda c: c.stub.DeleteKey(pb.KeyRequest(session_token=GARBAGE_TOKEN,
                                                                             key_handle=c.handle)),
         S.UNAUTHENTICATED, "0xb9"),
    case("SyncKey-unknown", lambda c: c.stub.SyncKey(pb.SyncKeyRequest(session_token=c.cu, key_handle=999_999)),
         S.NOT_FOUND, "0xa8"),
    case("SyncKey-non-owner", lambda c: c.stub.SyncKey(pb.SyncKeyRequest(session_token=c.cu2, key_handle=c.handle)),
         S.PERMISSION_DENIED, "0xc6"),
    case("SyncKey-garbage-token", lambda c: c.stub.SyncKey(pb.SyncKeyRequest(key_handle=c.handle)),
         S.UNAUTHENTICATED, "0xb9"),
    # ---- cluster
    case("AddNode-garbage-token", lambda c: c.stub.AddNode(pb.AddNodeRequest(
        session_token=GARBAGE_TOKEN, endpoint="127.0.0.1:1", peer_endpoint="127.0.0.1:2")), S.UNAUTHENTICATED, "0xb9"),
    case("AddNode-as-CU", lambda c: c.stub.AddNode(pb.AddNodeRequest(
        session_token=c.cu, endpoint="127.0.0.1:1", peer_endpoint="127.0.0.1:2")), S.PERMISSION_DENIED, "0xc6"),
    case("AddNode-no-endpoint", lambda c: c.stub.AddNode(pb.AddNodeRequest(session_token=c.co)),
         S.INVALID_ARGUMENT, "endpoint"),
    case("AddNode-not-host-port", lambda c: c.stub.AddNode(pb.AddNodeRequest(
        session_token=c.co, endpoint="127.0.0.1", peer_endpoint="127.0.0.1:2")), S.INVALID_ARGUMENT, "not host:port"),
    case("AddNode-refused", lambda c: c.stub.AddNode(pb.AddNodeRequest(
        session_token=c.co, endpoint="127.0.0.1:1", peer_endpoint="127.0.0.1:2")), S.UNAVAILABLE, "127.0.0.1:1"),
    case("AddNode-port-out-of-range", lambda c: c.stub.AddNode(pb.AddNodeRequest(
        session_token=c.co, endpoint="127.0.0.1:99999", peer_endpoint="127.0.0.1:2")), S.INVALID_ARGUMENT, "99999"),
    case("RemoveNode-unknown", lambda c: c.stub.RemoveNode(pb.RemoveNodeRequest(session_token=c.co, node_id="node-x")),
         S.NOT_FOUND, "not a member"),
    case("RemoveNode-garbage-token", lambda c: c.stub.RemoveNode(pb.RemoveNodeRequest(node_id="node-x")),
         S.UNAUTHENTICATED, "0xb9"),
    case("RemoveNode-as-CU", lambda c: c.stub.RemoveNode(pb.RemoveNodeRequest(session_token=c.cu, node_id="node-x")),
         S.PERMISSION_DENIED, "0xc6"),
    case("JoinCluster-when-active", lambda c: c.stub.JoinCluster(pb.JoinClusterRequest(backup_id="backup-x")),
         S.FAILED_PRECONDITION, "ACTIVE"),
    case("RestoreCluster-when-active", lambda c: c.stub.RestoreCluster(pb.RestoreClusterRequest(backup_id="../x")),
         S.FAILED_PRECONDITION, "ACTIVE"),
    # ---- backups
    case("CreateBackup-garbage-token", lambda c: c.stub.CreateBackup(pb.CreateBackupRequest(session_token="x")),
         S.UNAUTHENTICATED, "0xb9"),
    case("CreateBackup-as-CU", lambda c: c.stub.CreateBackup(pb.CreateBackupRequest(session_token=c.cu)),
         S.PERMISSION_DENIED, "0xc6"),
    case("DescribeBackup-unknown", lambda c: c.stub.DescribeBackup(pb.BackupRequest(backup_id="backup-aaaaaaaaaaa")),
         S.NOT_FOUND, "backup-aaaaaaaaaaa"),
    case("DescribeBackup-path", lambda c: c.stub.DescribeBackup(pb.BackupRequest(backup_id="../../etc/passwd")),
         S.INVALID_ARGUMENT, "invalid backup id"),
    case("DescribeBackup-empty", lambda c: c.stub.DescribeBackup(pb.BackupRequest()),
         S.INVALID_ARGUMENT, "invalid backup id"),
    case("DeleteBackup-garbage-token", lambda c: c.stub.DeleteBackup(pb.BackupRequest(
        session_token=GARBAGE_TOKEN, backup_id="backup-aaaaaaaaaaa")), S.UNAUTHENTICATED, "0xb9"),
    case("DeleteBackup-unknown", lambda c: c.stub.DeleteBackup(pb.BackupRequest(
        session_token=c.co, backup_id="backup-aaaaaaaaaaa")), S.NOT_FOUND, "backup-aaaaaaaaaaa"),
    case("DeleteBackup-path", lambda c: c.stub.DeleteBackup(pb.BackupRequest(session_token=c.co, backup_id="../x")),
         S.INVALID_ARGUMENT, "invalid backup id"),
    case("RestoreBackup-as-CU", lambda c: c.stub.RestoreBackup(pb.BackupRequest(
        session_token=c.cu, backup_id="backup-aaaaaaaaaaa")), S.PERMISSION_DENIED, "0xc6"),
    case("RestoreBackup-unknown", lambda c: c.stub.RestoreBackup(pb.BackupRequest(
        session_token=c.co, backup_id="backup-aaaaaaaaaaa")), S.NOT_FOUND, "backup-aaaaaaaaaaa"),
    case("RestoreBackup-empty", lambda c: c.stub.RestoreBackup(pb.BackupRequest(session_token=c.co)),
         S.INVALID_ARGUMENT, "invalid backup id"),
    case("SetBackupRetention-6", lambda c: c.stub.SetBackupRetention(pb.SetBackupRetentionRequest(
        session_token=c.co, days=6)), S.INVALID_ARGUMENT, "between 7 and 379"),
    case("SetBackupRetention-380", lambda c: c.stub.SetBackupRetention(pb.SetBackupRetentionRequest(
        session_token=c.co, days=380)), S.INVALID_ARGUMENT, "between 7 and 379"),
    case("SetBackupRetention-garbage-token", lambda c: c.stub.SetBackupRetention(pb.SetBackupRetentionRequest(
        days=30)), S.UNAUTHENTICATED, "0xb9"),
    case("SetBackupRetention-as-CU", lambda c: c.stub.SetBackupRetention(pb.SetBackupRetentionRequest(
        session_token=c.cu, days=30)), S.PERMISSION_DENIED, "0xc6"),
]


def check_status(code: grpc.StatusCode, details: str, expected: grpc.StatusCode, fragment: str) -> None:
    assert code == expected, f"expected {expected}, got {code}: {details}"
    assert details and fragment in details, details
    assert "Traceback" not in details and "incident" not in details and len(details) < 600, details


@pytest.mark.parametrize("call,code,fragment", CASES)
async def test_bad_input_is_refused_precisely(ctx: Ctx, call: Call, code: grpc.StatusCode, fragment: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(ctx)
    check_status(info.value.code(), info.value.details() or "", code, fragment)


# ------------------------------------------------------------------ crypto: unary and stream alike

Req = Callable[[Ctx], Any]

CRYPTO_CASES = [
    # (id, op field, request builder, code, fragment)
    ("Encrypt-plaintext-65537", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.cu, key_handle=c.handle, plaintext=b"p" * 65537), S.INVALID_ARGUMENT, "65536"),
    ("Encrypt-plaintext-4MiB", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.cu, key_handle=c.handle, plaintext=b"p" * (4 << 20)), S.INVALID_ARGUMENT, "plaintext"),
    ("Encrypt-aad-8193", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.cu, key_handle=c.handle, plaintext=b"p", aad=b"a" * 8193), S.INVALID_ARGUMENT, "aad"),
    ("Encrypt-unknown-handle", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.cu, key_handle=999_999, plaintext=b"p"), S.NOT_FOUND, "0xa8"),
    ("Encrypt-not-shared", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.cu2, key_handle=c.handle, plaintext=b"p"), S.PERMISSION_DENIED, "0xc6"),
    ("Encrypt-as-CO", "encrypt", lambda c: pb.EncryptRequest(
        session_token=c.co, key_handle=c.handle, plaintext=b"p"), S.PERMISSION_DENIED, "needs a crypto user"),
    ("Encrypt-garbage-token", "encrypt", lambda c: pb.EncryptRequest(
        session_token=GARBAGE_TOKEN, key_handle=c.handle, plaintext=b"p"), S.UNAUTHENTICATED, "0xb9"),
    ("Encrypt-empty-token", "encrypt", lambda c: pb.EncryptRequest(key_handle=c.handle), S.UNAUTHENTICATED, "0xb9"),
    ("Decrypt-iv-empty", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, ciphertext=c.ct, aad=b"aad"), S.INVALID_ARGUMENT, "iv must be 12"),
    ("Decrypt-iv-16", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv + b"1234", ciphertext=c.ct, aad=b"aad"),
     S.INVALID_ARGUMENT, "iv must be 12"),
    ("Decrypt-ciphertext-short", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv, ciphertext=b"x" * 15), S.INVALID_ARGUMENT, "16 to"),
    ("Decrypt-ciphertext-huge", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv, ciphertext=b"x" * (1 << 20)), S.INVALID_ARGUMENT, "ciphertext"),
    ("Decrypt-garbage-ciphertext", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv, ciphertext=b"\x00" * 64, aad=b"aad"),
     S.INVALID_ARGUMENT, "0x40"),
    ("Decrypt-wrong-aad", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv, ciphertext=c.ct, aad=b"other"), S.INVALID_ARGUMENT, "0x40"),
    ("Decrypt-aad-8193", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=c.handle, iv=c.iv, ciphertext=c.ct, aad=b"a" * 8193), S.INVALID_ARGUMENT, "aad"),
    ("Decrypt-unknown-handle", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu, key_handle=2**64 - 1, iv=c.iv, ciphertext=c.ct), S.NOT_FOUND, "0xa8"),
    ("Decrypt-not-shared", "decrypt", lambda c: pb.DecryptRequest(
        session_token=c.cu2, key_handle=c.handle, iv=c.iv, ciphertext=c.ct, aad=b"aad"), S.PERMISSION_DENIED, "0xc6"),
    ("Decrypt-garbage-token", "decrypt", lambda c: pb.DecryptRequest(
        session_token=GARBAGE_TOKEN, key_handle=c.handle, iv=c.iv, ciphertext=c.ct), S.UNAUTHENTICATED, "0xb9"),
    ("Random-0", "random", lambda c: pb.GenerateRandomRequest(session_token=c.cu), S.INVALID_ARGUMENT, "between 1 and"),
    ("Random-4097", "random", lambda c: pb.GenerateRandomRequest(session_token=c.cu, length=4097),
     S.INVALID_ARGUMENT, "between 1 and 4096"),
    ("Random-max", "random", lambda c: pb.GenerateRandomRequest(session_token=c.cu, length=2**32 - 1),
     S.INVALID_ARGUMENT, "between 1 and 4096"),
    ("Random-as-CO", "random", lambda c: pb.GenerateRandomRequest(session_token=c.co, length=8),
     S.PERMISSION_DENIED, "needs a crypto user"),
    ("Random-garbage-token", "random", lambda c: pb.GenerateRandomRequest(session_token=GARBAGE_TOKEN, length=8),
     S.UNAUTHENTICATED, "0xb9"),
    ("DataKey-length-0", "data_key", lambda c: pb.GenerateDataKeyRequest(session_token=c.cu, key_handle=c.handle),
     S.INVALID_ARGUMENT, "data key length"),
    ("DataKey-length-4097", "data_key", lambda c: pb.GenerateDataKeyRequest(
        session_token=c.cu, key_handle=c.handle, length=4097), S.INVALID_ARGUMENT, "data key length"),
    ("DataKey-aad-8193", "data_key", lambda c: pb.GenerateDataKeyRequest(
        session_token=c.cu, key_handle=c.handle, length=32, aad=b"a" * 8193), S.INVALID_ARGUMENT, "aad"),
    ("DataKey-unknown-handle", "data_key", lambda c: pb.GenerateDataKeyRequest(
        session_token=c.cu, key_handle=999_999, length=32), S.NOT_FOUND, "0xa8"),
    ("DataKey-not-shared", "data_key", lambda c: pb.GenerateDataKeyRequest(
        session_token=c.cu2, key_handle=c.handle, length=32), S.PERMISSION_DENIED, "0xc6"),
    ("DataKey-garbage-token", "data_key", lambda c: pb.GenerateDataKeyRequest(
        session_token=GARBAGE_TOKEN, key_handle=c.handle, length=32), S.UNAUTHENTICATED, "0xb9"),
]
UNARY = {"encrypt": "Encrypt", "decrypt": "Decrypt", "random": "GenerateRandom", "data_key": "GenerateDataKey"}


@pytest.mark.parametrize("kind,request_of,code,fragment",
                         [pytest.param(*c[1:], id=c[0]) for c in CRYPTO_CASES])
async def test_bad_crypto_input_unary(ctx: Ctx, kind: str, request_of: Req, code: grpc.StatusCode,
                                      fragment: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(ctx.stub, UNARY[kind])(request_of(ctx))
    check_status(info.value.code(), info.value.details() or "", code, fragment)


async def test_bad_crypto_input_on_the_stream_gives_the_same_per_op_errors(ctx: Ctx) -> None:
    ops = [pb.CryptoOp(id=i, **{kind: request_of(ctx)}) for i, (_, kind, request_of, _, _) in enumerate(CRYPTO_CASES)]
    ops.append(pb.CryptoOp(id=len(ops)))  # no operation at all
    ok_id = len(ops)
    ops.append(pb.CryptoOp(id=ok_id, decrypt=pb.DecryptRequest(session_token=ctx.cu, key_handle=ctx.handle, iv=ctx.iv,
                                                               ciphertext=ctx.ct, aad=b"aad")))
    call = ctx.stub.CryptoStream()
    await call.write(pb.CryptoBatch(ops=ops))
    results = {r.id: r for r in (await asyncio.wait_for(call.read(), timeout=20)).results}
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert sorted(results) == list(range(len(ops)))
    for i, (name, _, _, code, fragment) in enumerate(CRYPTO_CASES):
        err = results[i].error
        assert results[i].WhichOneof("result") == "error", name
        check_status(_code(err.code), err.message, code, fragment)
    assert _code(results[len(CRYPTO_CASES)].error.code) == grpc.StatusCode.INVALID_ARGUMENT
    assert results[ok_id].decrypt.plaintext == b"payload"


def _code(value: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == value)


async def test_a_stream_of_garbage_batches_does_not_break_the_node(ctx: Ctx) -> None:
    call = ctx.stub.CryptoStream()
    for n in (0, 1, 500):
        await call.write(pb.CryptoBatch(ops=[pb.CryptoOp(id=i) for i in range(n)]))
        out = await asyncio.wait_for(call.read(), timeout=20)
        assert len(out.results) == n
    call.cancel()  # a client vanishing mid-stream
    r = await ctx.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=ctx.cu, length=8))
    assert len(r.random) == 8


# ------------------------------------------------------------------ and afterwards


async def test_the_node_still_serves_and_refused_calls_changed_nothing(ctx: Ctx) -> None:
    stub = ctx.stub
    status = await stub.GetStatus(pb.Empty())
    assert status.state == pb.ACTIVE
    users = {u.username: u for u in (await stub.ListUsers(pb.Empty())).users}
    assert set(users) == {"admin", "bad_cu", "bad_cu2"}
    assert all(not u.locked for u in users.values())
    assert status.key_count == 1
    assert await login(stub, pb.CO, "admin", CO_PASSWORD)
    assert await login(stub, pb.CU, "bad_cu2", PW)
    info = await stub.GetKeyInfo(pb.KeyRequest(session_token=ctx.cu, key_handle=ctx.handle))
    assert list(info.shared_user_ids) == []
    out = await stub.Decrypt(pb.DecryptRequest(session_token=ctx.cu, key_handle=ctx.handle, iv=ctx.iv,
                                               ciphertext=ctx.ct, aad=b"aad"))
    assert out.plaintext == b"payload"
    assert (await stub.DescribeCluster(pb.Empty())).state == pb.ACTIVE
    # the node logged no internal error
    internal = []
    for line in ctx.node.log_path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            if "Traceback" in line:  # not a structured log line: a stray traceback
                internal.append(line)
            continue
        if event.get("event") == "internal_error":
            internal.append(line)
    assert not internal, internal[:3]
