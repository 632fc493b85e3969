"""Keys and crypto on one real hsm-node process: generation, attributes, lookup,
ownership and sharing, deletion, AES-GCM with AAD and tampering, random, data
keys and batched crypto on a stream.

One ACTIVE node serves the whole module; each test works with its own keys."""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import Lab, NodeProcess, co, login, refused

PW = "Password-1"
KEY_ACCESS_DENIED = "0xc6 : HSM Error: Key Access is denied."
INVALID_HANDLE = "0xa8 : HSM Error: Invalid object handle is passed to this operation"



@dataclass
class Env:
    node: NodeProcess
    co: str
    owner: str
    owner_id: int
    friend: str
    friend_id: int
    stranger: str
    stranger_id: int
    officer_id: int

    @property
    def stub(self):
        return self.node.stub()


@pytest.fixture(scope="module")
async def env(tmp_path_factory) -> Env:
    lab = Lab(tmp_path_factory.mktemp("node-keys"))
    n = await lab.start_node()
    await lab.init_active(n)
    stub = n.stub()
    co_token = await co(stub)
    ids = {}
    for name, utype in (("key_owner", pb.CU), ("key_friend", pb.CU), ("key_stranger", pb.CU), ("officer", pb.CO)):
        r = await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=utype, username=name,
                                                       password=PW))
        ids[name] = r.user.user_id
    tokens = {name: await login(stub, pb.CU, name, PW) for name in ("key_owner", "key_friend", "key_stranger")}
    yield Env(n, co_token, tokens["key_owner"], ids["key_owner"], tokens["key_friend"], ids["key_friend"],
              tokens["key_stranger"], ids["key_stranger"], ids["officer"])
    await lab.close()


async def gen(env: Env, size: int = 32, label: str = "", token: str | None = None, **kw) -> int:
    r = await env.stub.GenerateKey(pb.GenerateKeyRequest(session_token=token or env.owner, key_size_bytes=size,
                                                         label=label, **kw))
    return r.key_handle


async def encrypt(env: Env, token: str, handle: int, plaintext: bytes, aad: bytes = b"") -> pb.EncryptResponse:
    return await env.stub.Encrypt(pb.EncryptRequest(session_token=token, key_handle=handle, plaintext=plaintext,
                                                    aad=aad))


async def decrypt(env: Env, token: str, handle: int, iv: bytes, ct: bytes, aad: bytes = b"") -> bytes:
    r = await env.stub.Decrypt(pb.DecryptRequest(session_token=token, key_handle=handle, iv=iv, ciphertext=ct,
                                                 aad=aad))
    return r.plaintext


# ------------------------------------------------------------------ generation and attributes


async def test_generate_aes_256_and_aes_128_with_their_attributes(env: Env) -> None:
    before = (await env.stub.GetStatus(pb.Empty())).key_count
    t0 = int(time.time() * 1000)
    r = await env.stub.GenerateKey(pb.GenerateKeyRequest(session_token=env.owner, key_size_bytes=32,
                                                         label="arn:aws:kms:eu-west-1:111122223333:key/k256"))
    assert r.write.replicas == 1 and r.write.members == 1
    h256 = r.key_handle
    h128 = await gen(env, 16, "aes-128")
    hdefault = await gen(env, 0, "")  # 0 means the default, AES-256
    handles = [h256, h128, hdefault]
    assert len(set(handles)) == 3 and all(h % 32 == 1 for h in handles)  # ordinal 1's id residue
    assert (await env.stub.GetStatus(pb.Empty())).key_count == before + 3

    info = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h256))
    assert info.key_handle == h256
    assert info.label == "arn:aws:kms:eu-west-1:111122223333:key/k256"
    assert (info.owner_user_id, info.owner_username) == (env.owner_id, "key_owner")
    assert list(info.shared_user_ids) == []
    assert (info.key_size_bytes, info.key_type) == (32, "AES")
    assert info.token is True and info.extractable is False and info.never_extractable is True
    assert t0 - 5000 <= info.created_ms <= int(time.time() * 1000) + 5000
    assert re.fullmatch(r"[0-9a-f]{6}", info.kcv)

    info128 = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h128))
    assert (info128.key_size_bytes, info128.label) == (16, "aes-128")
    assert info128.kcv != info.kcv
    assert (await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=hdefault))).key_size_bytes == 32

    for h in handles:  # each of them works
        e = await encrypt(env, env.owner, h, b"hello")
        assert await decrypt(env, env.owner, h, e.iv, e.ciphertext) == b"hello"


async def test_generate_shared_at_creation_and_session_keys(env: Env) -> None:
    h = await gen(env, 32, "born-shared", share_with_user_ids=[env.friend_id])
    info = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.friend, key_handle=h))
    assert list(info.shared_user_ids) == [env.friend_id]
    sess = await gen(env, 32, "session", session_key=True)
    sinfo = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=sess))
    assert sinfo.token is False and sinfo.never_extractable is True
    e = await encrypt(env, env.owner, sess, b"ephemeral")
    assert await decrypt(env, env.owner, sess, e.iv, e.ciphertext) == b"ephemeral"
    # session keys are not persistent: not in the CO's ownership listing
    listing = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=env.owner_id))
    assert sess not in [k.key_handle for k in listing.keys] and h in [k.key_handle for k in listing.keys]


# ------------------------------------------------------------------ lookup


async def test_find_keys_by_label_and_owner(env: Env) -> None:
    a = await gen(env, 32, "find-me")
    b = await gen(env, 16, "find-me")
    c = await gen(env, 32, "find-me-not")
    theirs = await gen(env, 32, "find-me", token=env.stranger)

    by_label = (await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.owner, label="find-me"))).key_handles
    assert sorted(by_label) == sorted([a, b])  # exact label; only keys the caller owns or shares
    mine = (await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.owner, owner_user_id=env.owner_id))).key_handles
    assert {a, b, c} <= set(mine) and theirs not in mine
    assert list(mine) == sorted(mine)
    everything = (await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.owner))).key_handles
    assert set(mine) <= set(everything) and theirs not in everything
    none = await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.owner, owner_user_id=env.stranger_id))
    assert list(none.key_handles) == []
    assert list((await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.stranger, label="find-me"))).key_handles) \
        == [theirs]
    # once shared, the friend finds it by owner and label
    await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=c, user_ids=[env.friend_id]))
    found = await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.friend, label="find-me-not",
                                                       owner_user_id=env.owner_id))
    assert list(found.key_handles) == [c]


async def test_find_all_keys_as_co_with_the_consistency_hash(env: Env) -> None:
    h = await gen(env, 32, "audited")
    r = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=env.owner_id, include_hash=True))
    status = await env.stub.GetStatus(pb.Empty())
    assert (h, True) in [(k.key_handle, k.owned) for k in r.keys]
    assert re.fullmatch(r"[0-9a-f]{64}", r.key_hash) and r.key_hash == status.consistency_hash
    assert r.node_id == status.node_id
    friend_view = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=env.friend_id))
    assert h not in [k.key_handle for k in friend_view.keys] and friend_view.key_hash == ""  # no hash unless asked

    await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id]))
    shared = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=env.friend_id,
                                                              include_hash=True))
    assert (h, False) in [(k.key_handle, k.owned) for k in shared.keys]  # (s)hared, not (o)wned
    assert shared.key_hash != r.key_hash  # ownership data changed
    await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id],
                                               unshare=True))
    after = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=env.friend_id,
                                                             include_hash=True))
    assert h not in [k.key_handle for k in after.keys]
    assert after.key_hash not in (r.key_hash, shared.key_hash)
    everyone = await env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co))
    assert h in [k.key_handle for k in everyone.keys]
    await refused(env.stub.FindAllKeys(pb.FindAllKeysRequest(session_token=env.co, user_id=999_999)),
                  grpc.StatusCode.NOT_FOUND, "no user with id 999999")


# ------------------------------------------------------------------ sharing and deletion


async def test_share_and_unshare(env: Env) -> None:
    h = await gen(env, 32, "to-share")
    e = await encrypt(env, env.owner, h, b"owner's secret", b"ctx")
    await refused(encrypt(env, env.friend, h, b"x"), grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)
    await refused(decrypt(env, env.friend, h, e.iv, e.ciphertext, b"ctx"), grpc.StatusCode.PERMISSION_DENIED,
                  KEY_ACCESS_DENIED)
    await refused(env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.friend, key_handle=h)),
                  grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)

    r = await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id]))
    assert r.replicas == 1
    # the shared user can use the key both ways, and see it
    assert await decrypt(env, env.friend, h, e.iv, e.ciphertext, b"ctx") == b"owner's secret"
    e2 = await encrypt(env, env.friend, h, b"friend's secret")
    assert await decrypt(env, env.owner, h, e2.iv, e2.ciphertext) == b"friend's secret"
    info = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.friend, key_handle=h))
    assert list(info.shared_user_ids) == [env.friend_id] and info.owner_user_id == env.owner_id
    # ... but cannot delete, re-share or unshare it: only the owner can
    await refused(env.stub.DeleteKey(pb.KeyRequest(session_token=env.friend, key_handle=h)),
                  grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)
    await refused(env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.friend, key_handle=h,
                                                       user_ids=[env.stranger_id])),
                  grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)
    # sharing twice is idempotent
    await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id]))
    info = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))
    assert list(info.shared_user_ids) == [env.friend_id]

    await env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id],
                                               unshare=True))
    await refused(decrypt(env, env.friend, h, e.iv, e.ciphertext, b"ctx"), grpc.StatusCode.PERMISSION_DENIED,
                  KEY_ACCESS_DENIED)
    assert list((await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))).shared_user_ids) == []


@pytest.mark.parametrize("target", ["officer", "owner", "unknown"])
async def test_keys_are_shared_only_with_other_existing_crypto_users(env: Env, target: str) -> None:
    h = await gen(env, 32)
    uid = {"officer": env.officer_id, "owner": env.owner_id, "unknown": 424_242}[target]
    await refused(env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[uid])),
                  grpc.StatusCode.INVALID_ARGUMENT)
    await refused(env.stub.GenerateKey(pb.GenerateKeyRequest(session_token=env.owner, key_size_bytes=32,
                                                             share_with_user_ids=[uid])),
                  grpc.StatusCode.INVALID_ARGUMENT)
    assert list((await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))).shared_user_ids) == []


async def test_delete_by_owner_only_then_the_handle_is_unknown(env: Env) -> None:
    h = await gen(env, 32, "doomed-key")
    e = await encrypt(env, env.owner, h, b"x")
    await refused(env.stub.DeleteKey(pb.KeyRequest(session_token=env.stranger, key_handle=h)),
                  grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)
    before = (await env.stub.GetStatus(pb.Empty())).key_count
    r = await env.stub.DeleteKey(pb.KeyRequest(session_token=env.owner, key_handle=h))
    assert r.replicas == 1
    assert (await env.stub.GetStatus(pb.Empty())).key_count == before - 1
    for call in (
        env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h)),
        env.stub.DeleteKey(pb.KeyRequest(session_token=env.owner, key_handle=h)),
        env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id])),
        encrypt(env, env.owner, h, b"x"),
        decrypt(env, env.owner, h, e.iv, e.ciphertext),
        env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.owner, key_handle=h, length=32)),
    ):
        await refused(call, grpc.StatusCode.NOT_FOUND, INVALID_HANDLE, f"(handle {h})")
    assert h not in (await env.stub.FindKeys(pb.FindKeysRequest(session_token=env.owner))).key_handles


async def test_a_deleted_users_id_never_reaches_keys_shared_with_it(env: Env) -> None:
    """Shares name user ids; a user created after a deletion must not inherit the deleted user's shares."""
    stub = env.stub
    await stub.CreateUser(pb.CreateUserRequest(session_token=env.co, user_type=pb.CU, username="short_lived",
                                               password=PW))
    victim = await stub.Login(pb.LoginRequest(user_type=pb.CU, username="short_lived", password=PW))
    h = await gen(env, 32, "shared-with-short-lived", share_with_user_ids=[victim.user_id])
    await stub.Logout(pb.SessionRequest(session_token=victim.session_token))
    await stub.DeleteUser(pb.DeleteUserRequest(session_token=env.co, username="short_lived"))
    created = await stub.CreateUser(pb.CreateUserRequest(session_token=env.co, user_type=pb.CU, username="newcomer",
                                                         password=PW))
    assert created.user.user_id != victim.user_id
    newcomer = await login(stub, pb.CU, "newcomer", PW)
    await refused(encrypt(env, newcomer, h, b"not yours"), grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)


async def test_concurrent_generations_get_distinct_handles_and_keep_their_keys(env: Env) -> None:
    async def generate_and_use(i: int) -> tuple[int, pb.EncryptResponse]:
        h = await gen(env, 32, f"parallel-{i}")
        return h, await encrypt(env, env.owner, h, f"payload {i}".encode())

    results = await asyncio.gather(*(generate_and_use(i) for i in range(12)))
    handles = [h for h, _ in results]
    assert len(set(handles)) == 12, f"handles handed out twice: {handles}"
    for i, (h, e) in enumerate(results):  # every acknowledged key is still the key that encrypted
        assert await decrypt(env, env.owner, h, e.iv, e.ciphertext) == f"payload {i}".encode()
        info = await env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))
        assert info.label == f"parallel-{i}"


async def test_concurrent_shares_are_all_kept(env: Env) -> None:
    stub = env.stub
    ids = []
    for i in range(4):
        r = await stub.CreateUser(pb.CreateUserRequest(session_token=env.co, user_type=pb.CU,
                                                       username=f"share_target_{i}", password=PW))
        ids.append(r.user.user_id)
    h = await gen(env, 32, "shared-concurrently")
    await asyncio.gather(*(stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[u]))
                           for u in ids))
    info = await stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))
    assert sorted(info.shared_user_ids) == sorted(ids), "an acknowledged share was lost"
    await asyncio.gather(*(stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[u],
                                                            unshare=True)) for u in ids))
    assert list((await stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h))).shared_user_ids) == []


async def test_a_share_racing_a_deletion_does_not_revive_the_key(env: Env) -> None:
    h = await gen(env, 32, "share-vs-delete")
    share, delete = await asyncio.gather(
        env.stub.ShareKey(pb.ShareKeyRequest(session_token=env.owner, key_handle=h, user_ids=[env.friend_id])),
        env.stub.DeleteKey(pb.KeyRequest(session_token=env.owner, key_handle=h)),
        return_exceptions=True)
    assert not isinstance(delete, BaseException), delete          # the deletion was acknowledged ...
    await refused(env.stub.GetKeyInfo(pb.KeyRequest(session_token=env.owner, key_handle=h)),
                  grpc.StatusCode.NOT_FOUND, INVALID_HANDLE)       # ... so the key stays deleted
    if isinstance(share, BaseException):
        assert share.code() == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------ AES-GCM


@pytest.fixture(scope="module")
async def crypto_key(env: Env) -> int:
    return await gen(env, 32, "crypto")


@pytest.mark.parametrize("plaintext,aad", [
    (b"hello world", b"encryption context"), (b"", b""), (b"no aad", b""), (b"", b"aad only"),
    (bytes(range(256)) * 256, b"a" * 8192),  # the limits: 65536 bytes of plaintext, 8192 of aad
])
async def test_round_trip_with_aad(env: Env, crypto_key: int, plaintext: bytes, aad: bytes) -> None:
    e = await encrypt(env, env.owner, crypto_key, plaintext, aad)
    assert len(e.iv) == 12 and len(e.ciphertext) == len(plaintext) + 16
    if plaintext:
        assert plaintext not in e.ciphertext
    assert await decrypt(env, env.owner, crypto_key, e.iv, e.ciphertext, aad) == plaintext


async def test_iv_is_fresh_for_each_encryption(env: Env, crypto_key: int) -> None:
    results = await asyncio.gather(*(encrypt(env, env.owner, crypto_key, b"same") for _ in range(20)))
    assert len({r.iv for r in results}) == 20 and len({r.ciphertext for r in results}) == 20


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("part", ["ciphertext-first", "ciphertext-last", "tag-first", "tag-last", "iv", "aad",
                                  "aad-dropped", "aad-added", "truncated", "other-key"])
async def test_any_change_fails_authentication(env: Env, crypto_key: int, part: str) -> None:
    plaintext, aad = b"attack at dawn, 32 bytes long..", b"purpose=test"
    e = await encrypt(env, env.owner, crypto_key, plaintext, aad)
    iv, ct, handle = e.iv, e.ciphertext, crypto_key
    body = len(ct) - 16
    if part == "ciphertext-first":
        ct = _flip(ct, 0)
    elif part == "ciphertext-last":
        ct = _flip(ct, body - 1)
    elif part == "tag-first":
        ct = _flip(ct, body)
    elif part == "tag-last":
        ct = _flip(ct, len(ct) - 1)
    elif part == "iv":
        iv = _flip(iv, 5)
    elif part == "aad":
        aad = _flip(aad, 0)
    elif part == "aad-dropped":
        aad = b""
    elif part == "aad-added":
        aad = aad + b"!"
    elif part == "truncated":
        ct = ct[:-1]
    elif part == "other-key":
        handle = await gen(env, 32)
    await refused(decrypt(env, env.owner, handle, iv, ct, aad), grpc.StatusCode.INVALID_ARGUMENT,
                  "0x40", "decryption failed")
    assert await decrypt(env, env.owner, crypto_key, e.iv, e.ciphertext, b"purpose=test") == plaintext


async def test_crypto_size_limits(env: Env, crypto_key: int) -> None:
    await refused(encrypt(env, env.owner, crypto_key, b"x" * 65537), grpc.StatusCode.INVALID_ARGUMENT,
                  "plaintext must be 0 to 65536 bytes long (got 65537)")
    await refused(encrypt(env, env.owner, crypto_key, b"x", b"a" * 8193), grpc.StatusCode.INVALID_ARGUMENT,
                  "aad must be 0 to 8192 bytes long (got 8193)")
    e = await encrypt(env, env.owner, crypto_key, b"x")
    for iv in (b"", bytes(11), bytes(13), bytes(16)):
        await refused(decrypt(env, env.owner, crypto_key, iv, e.ciphertext), grpc.StatusCode.INVALID_ARGUMENT,
                      f"iv must be 12 bytes (got {len(iv)})")
    for ct in (b"", bytes(15), bytes(65536 + 17)):
        await refused(decrypt(env, env.owner, crypto_key, e.iv, ct), grpc.StatusCode.INVALID_ARGUMENT,
                      f"ciphertext must be 16 to 65552 bytes long (got {len(ct)})")
    await refused(decrypt(env, env.owner, crypto_key, e.iv, e.ciphertext, b"a" * 8193),
                  grpc.StatusCode.INVALID_ARGUMENT, "aad must be 0 to 8192")


# ------------------------------------------------------------------ random and data keys


async def test_random_lengths_and_limits(env: Env) -> None:
    seen = set()
    for n in (1, 12, 32, 1000, 4096):
        r = (await env.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=env.owner, length=n))).random
        assert len(r) == n
        seen.add(r)
    a = (await env.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=env.owner, length=32))).random
    assert a not in seen
    for n in (0, 4097, 2**32 - 1):
        await refused(env.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=env.owner, length=n)),
                      grpc.StatusCode.INVALID_ARGUMENT, f"random length must be between 1 and 4096 (got {n})")


async def test_generate_data_key_returns_a_plaintext_that_decrypts_from_its_ciphertext(env: Env, crypto_key) -> None:
    r = await env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.owner, key_handle=crypto_key,
                                                                 length=32, aad=b"dk-context"))
    assert len(r.plaintext) == 32 and len(r.iv) == 12 and len(r.ciphertext) == 48
    assert await decrypt(env, env.owner, crypto_key, r.iv, r.ciphertext, b"dk-context") == r.plaintext
    await refused(decrypt(env, env.owner, crypto_key, r.iv, r.ciphertext, b"other"), grpc.StatusCode.INVALID_ARGUMENT)

    bare = await env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.owner, key_handle=crypto_key,
                                                                    length=64, without_plaintext=True))
    assert bare.plaintext == b""
    assert len(await decrypt(env, env.owner, crypto_key, bare.iv, bare.ciphertext)) == 64
    for n in (1, 4096):
        r = await env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.owner, key_handle=crypto_key,
                                                                     length=n))
        assert len(r.plaintext) == n
    for n in (0, 4097):
        await refused(env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.owner,
                                                                         key_handle=crypto_key, length=n)),
                      grpc.StatusCode.INVALID_ARGUMENT, "data key length must be between 1 and 4096")
    await refused(env.stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=env.stranger, key_handle=crypto_key,
                                                                     length=32)),
                  grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED)


# ------------------------------------------------------------------ batched crypto on a stream


async def test_crypto_stream_batch_with_mixed_ops_and_per_op_errors(env: Env, crypto_key: int) -> None:
    e = await encrypt(env, env.owner, crypto_key, b"decrypt me", b"ctx")
    bad = _flip(e.ciphertext, 0)
    ops = [
        pb.CryptoOp(id=1, encrypt=pb.EncryptRequest(session_token=env.owner, key_handle=crypto_key,
                                                    plaintext=b"streamed", aad=b"s")),
        pb.CryptoOp(id=2, decrypt=pb.DecryptRequest(session_token=env.owner, key_handle=crypto_key, iv=e.iv,
                                                    ciphertext=e.ciphertext, aad=b"ctx")),
        pb.CryptoOp(id=3, random=pb.GenerateRandomRequest(session_token=env.owner, length=24)),
        pb.CryptoOp(id=4, data_key=pb.GenerateDataKeyRequest(session_token=env.owner, key_handle=crypto_key,
                                                             length=32)),
        pb.CryptoOp(id=5, decrypt=pb.DecryptRequest(session_token=env.owner, key_handle=crypto_key, iv=e.iv,
                                                    ciphertext=bad, aad=b"ctx")),            # tampered
        pb.CryptoOp(id=6, encrypt=pb.EncryptRequest(session_token=env.owner, key_handle=987_654_321,
                                                    plaintext=b"x")),                        # unknown handle
        pb.CryptoOp(id=7, encrypt=pb.EncryptRequest(session_token="garbage", key_handle=crypto_key,
                                                    plaintext=b"x")),                        # bad token
        pb.CryptoOp(id=8, encrypt=pb.EncryptRequest(session_token=env.stranger, key_handle=crypto_key,
                                                    plaintext=b"x")),                        # not shared
        pb.CryptoOp(id=9),                                                                   # no op at all
        pb.CryptoOp(id=10, random=pb.GenerateRandomRequest(session_token=env.owner, length=0)),
    ]
    second = [pb.CryptoOp(id=11, random=pb.GenerateRandomRequest(session_token=env.owner, length=8))]

    call = env.stub.CryptoStream()
    await call.write(pb.CryptoBatch(ops=ops))
    first = await asyncio.wait_for(call.read(), timeout=10)
    await call.write(pb.CryptoBatch(ops=second))  # the stream keeps working after failed ops
    later = await asyncio.wait_for(call.read(), timeout=10)
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK

    res = {r.id: r for r in first.results}
    assert sorted(res) == list(range(1, 11))
    kinds = {i: r.WhichOneof("result") for i, r in res.items()}
    assert kinds == {1: "encrypt", 2: "decrypt", 3: "random", 4: "data_key", 5: "error", 6: "error", 7: "error",
                     8: "error", 9: "error", 10: "error"}
    assert await decrypt(env, env.owner, crypto_key, res[1].encrypt.iv, res[1].encrypt.ciphertext, b"s") == b"streamed"
    assert res[2].decrypt.plaintext == b"decrypt me"
    assert len(res[3].random.random) == 24
    dk = res[4].data_key
    assert await decrypt(env, env.owner, crypto_key, dk.iv, dk.ciphertext) == dk.plaintext
    expected = {
        5: (grpc.StatusCode.INVALID_ARGUMENT, "0x40"),
        6: (grpc.StatusCode.NOT_FOUND, INVALID_HANDLE),
        7: (grpc.StatusCode.UNAUTHENTICATED, "0xb9"),
        8: (grpc.StatusCode.PERMISSION_DENIED, KEY_ACCESS_DENIED),
        9: (grpc.StatusCode.INVALID_ARGUMENT, "no operation"),
        10: (grpc.StatusCode.INVALID_ARGUMENT, "random length"),
    }
    for i, (code, fragment) in expected.items():
        assert res[i].error.code == code.value[0], (i, res[i].error)
        assert fragment in res[i].error.message, (i, res[i].error.message)
    assert [r.id for r in later.results] == [11] and len(later.results[0].random.random) == 8


async def test_crypto_stream_many_batches_and_concurrent_streams(env: Env, crypto_key: int) -> None:
    async def one_stream(tag: int) -> None:
        call = env.stub.CryptoStream()
        for b in range(5):
            ops = [pb.CryptoOp(id=b * 100 + i, encrypt=pb.EncryptRequest(
                session_token=env.owner, key_handle=crypto_key, plaintext=f"{tag}-{b}-{i}".encode()))
                for i in range(50)]
            await call.write(pb.CryptoBatch(ops=ops))
            out = await asyncio.wait_for(call.read(), timeout=10)
            assert sorted(r.id for r in out.results) == [b * 100 + i for i in range(50)]
            assert all(r.WhichOneof("result") == "encrypt" for r in out.results)
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK

    await asyncio.gather(*(one_stream(t) for t in range(4)))
    # an empty batch gives an empty result
    call = env.stub.CryptoStream()
    await call.write(pb.CryptoBatch())
    assert list((await asyncio.wait_for(call.read(), timeout=10)).results) == []
    await call.done_writing()
