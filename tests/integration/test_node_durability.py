"""Durability and secrecy at rest of one real hsm-node process: restarts keep
users, keys and ciphertexts; kill -9 loses no acknowledged key; nothing secret
is on disk in the clear; a corrupted or foreign data dir is refused, untouched."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from hsm_node.storage import Storage
from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CO_PASSWORD, Lab, NodeProcess, co, free_port, login, refused

PW = "Password-1"
KMSUSER_PASSWORD = "kmsuser-Pa55-9f3c1d7e"  # distinctive, to search the disk for



async def active_node(lab: Lab) -> NodeProcess:
    n = await lab.start_node()
    await lab.init_active(n)
    return n


async def add_user(stub, co_token: str, name: str, user_type: int = pb.CU, password: str = PW) -> int:
    r = await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=user_type, username=name,
                                                   password=password))
    return r.user.user_id


def files_digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


async def run_node_once(node: NodeProcess, master_key: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Start hsm-node on ``node``'s data dir as a one-off process we expect to refuse to start."""
    env = {**os.environ, "HSM_MASTER_KEY": master_key}
    cmd = [sys.executable, "-m", "hsm_node.server", "--data-dir", str(node.data_dir),
           "--listen", f"127.0.0.1:{free_port()}", "--peer-listen", f"127.0.0.1:{free_port()}",
           "--backup-dir", str(node.backup_dir)]
    return await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_refusal(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    start = result.stderr.rfind("hsm-node: ")
    assert start >= 0, f"no 'hsm-node: ...' message on stderr: {result.stderr}"
    message = result.stderr[start:]  # the message may span lines (sqlite's integrity report)
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------ restarts


async def test_restart_keeps_users_keys_and_ciphertexts(lab: Lab) -> None:
    node = await active_node(lab)
    stub = node.stub()
    co_token = await co(stub)
    await add_user(stub, co_token, "durable_cu")
    friend_id = await add_user(stub, co_token, "durable_friend")
    await add_user(stub, co_token, "durable_co", pb.CO)
    cu = await login(stub, pb.CU, "durable_cu", PW)
    k256 = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32, label="k256",
                                                         share_with_user_ids=[friend_id]))).key_handle
    k128 = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=16, label="k128"))).key_handle
    sess = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32,
                                                         session_key=True))).key_handle
    sealed = {h: await stub.Encrypt(pb.EncryptRequest(session_token=cu, key_handle=h, plaintext=f"data {h}".encode(),
                                                      aad=b"aad")) for h in (k256, k128)}
    for _ in range(3):  # login failures are durable too
        await refused(stub.Login(pb.LoginRequest(user_type=pb.CU, username="durable_friend", password="Wrong-Pass")),
                      grpc.StatusCode.UNAUTHENTICATED)
    users_before = list((await stub.ListUsers(pb.Empty())).users)
    infos_before = [await stub.GetKeyInfo(pb.KeyRequest(session_token=cu, key_handle=h)) for h in (k256, k128)]
    status_before = await stub.GetStatus(pb.Empty())

    status = await node.restart()
    stub = node.stub()
    assert list((await stub.ListUsers(pb.Empty())).users) == users_before
    assert [u.login_failure_count for u in users_before if u.username == "durable_friend"] == [3]
    assert (status.user_count, status.key_count, status.consistency_hash) == \
        (status_before.user_count, status_before.key_count, status_before.consistency_hash)
    assert await login(stub, pb.CO, "durable_co", PW)
    cu = await login(stub, pb.CU, "durable_cu", PW)
    assert [await stub.GetKeyInfo(pb.KeyRequest(session_token=cu, key_handle=h)) for h in (k256, k128)] == infos_before
    for h, e in sealed.items():
        r = await stub.Decrypt(pb.DecryptRequest(session_token=cu, key_handle=h, iv=e.iv, ciphertext=e.ciphertext,
                                                 aad=b"aad"))
        assert r.plaintext == f"data {h}".encode()
    friend = await login(stub, pb.CU, "durable_friend", PW)
    e = sealed[k256]
    assert (await stub.Decrypt(pb.DecryptRequest(session_token=friend, key_handle=k256, iv=e.iv,
                                                 ciphertext=e.ciphertext, aad=b"aad"))).plaintext == f"data {k256}".encode()
    assert (await stub.FindKeys(pb.FindKeysRequest(session_token=cu, label="k128"))).key_handles == [k128]
    # a session key lives for one run of one node only
    await refused(stub.GetKeyInfo(pb.KeyRequest(session_token=cu, key_handle=sess)), grpc.StatusCode.NOT_FOUND, "0xa8")
    # new keys do not reuse handles of the previous run
    k_new = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32))).key_handle
    assert k_new not in (k256, k128)


async def test_kill_9_during_concurrent_key_generation_loses_no_acknowledged_key(lab: Lab) -> None:
    node = await active_node(lab)
    stub = node.stub()
    await add_user(stub, await co(stub), "kill_cu")
    cu = await login(stub, pb.CU, "kill_cu", PW)
    acked: list[int] = []
    failures: list[grpc.StatusCode] = []
    killed = asyncio.Event()
    target = 60

    async def generator(worker: int) -> None:
        i = 0
        while True:
            try:
                r = await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32,
                                                                 label=f"w{worker}-{i}"), timeout=20)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code())
                return
            acked.append(r.key_handle)
            i += 1
            if len(acked) >= target and not killed.is_set():
                killed.set()
                node.kill()  # SIGKILL while the other workers' calls are in flight

    await asyncio.wait_for(asyncio.gather(*(generator(w) for w in range(8))), timeout=60)
    assert killed.is_set() and len(acked) >= target
    assert len(set(acked)) == len(acked), "a handle was acknowledged twice"
    assert failures and all(code == grpc.StatusCode.UNAVAILABLE for code in failures), failures

    status = await node.restart()
    assert status.state == pb.ACTIVE and status.key_count >= len(acked)
    stub = node.stub()
    cu = await login(stub, pb.CU, "kill_cu", PW)
    owned = set((await stub.FindKeys(pb.FindKeysRequest(session_token=cu))).key_handles)
    missing = sorted(set(acked) - owned)
    assert not missing, f"acknowledged keys lost by kill -9: {missing}"
    batch = [pb.CryptoOp(id=h, encrypt=pb.EncryptRequest(session_token=cu, key_handle=h, plaintext=b"still here"))
             for h in acked]
    call = stub.CryptoStream()
    await call.write(pb.CryptoBatch(ops=batch))
    results = (await asyncio.wait_for(call.read(), timeout=20)).results
    await call.done_writing()
    assert sorted(r.id for r in results) == sorted(acked)
    assert all(r.WhichOneof("result") == "encrypt" for r in results), [r.error for r in results if r.error.code]
    for r in results[:10]:
        out = await stub.Decrypt(pb.DecryptRequest(session_token=cu, key_handle=r.id, iv=r.encrypt.iv,
                                                   ciphertext=r.encrypt.ciphertext))
        assert out.plaintext == b"still here"


# ------------------------------------------------------------------ secrecy at rest


async def test_the_data_dir_holds_no_secret_in_the_clear(lab: Lab) -> None:
    node = await active_node(lab)
    stub = node.stub()
    co_token = await co(stub)
    await add_user(stub, co_token, "kmsuser", password=KMSUSER_PASSWORD)
    cu = await login(stub, pb.CU, "kmsuser", KMSUSER_PASSWORD)
    handles = [(await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=size,
                                                             label=f"k{size}"))).key_handle for size in (32, 16, 32)]
    known = b"known plaintext 0123456789abcdef"
    for h in handles:
        await stub.Encrypt(pb.EncryptRequest(session_token=cu, key_handle=h, plaintext=known))
    dk = await stub.GenerateDataKey(pb.GenerateDataKeyRequest(session_token=cu, key_handle=handles[0], length=32))

    # kill -9: nothing is checkpointed or cleaned up; the write-ahead log keeps what it holds
    node.kill()
    raw = {p.name: p.read_bytes() for p in sorted(node.data_dir.iterdir()) if p.is_file()}
    assert raw.get("node.db-wal"), f"expected a non-empty WAL to search too, found {sorted(raw)}"

    # read the secrets back in-process, on a copy, with the deployment secret
    copy = lab.root / "inspect-copy"
    shutil.copytree(node.data_dir, copy)
    master = base64.b64decode(lab.master_key)
    storage = Storage(copy, master)
    try:
        records = {(r.kind, r.entity): r.record for r in storage.load_records()}
        secret_meta = {name: storage.get_secret(name) for name in ("node_key", "cluster_key", "domain_key")}
        storage_key = storage._key
    finally:
        storage.close()
    kmsuser = records[("user", "kmsuser")]
    materials = [records[("key", str(h))].material for h in handles]
    assert [len(m) for m in materials] == [32, 16, 32]
    assert kmsuser.password_hash.startswith("argon2id$")
    _, _, salt_b64, digest_b64 = kmsuser.password_hash.split("$")

    secrets: dict[str, bytes] = {
        "kmsuser password": KMSUSER_PASSWORD.encode(),
        "CO password": CO_PASSWORD.encode(),
        "kmsuser Argon2 hash string": kmsuser.password_hash.encode(),
        "kmsuser Argon2 digest (base64)": digest_b64.encode(),
        "kmsuser Argon2 digest": base64.b64decode(digest_b64),
        "kmsuser Argon2 salt": base64.b64decode(salt_b64),
        "storage key": storage_key,
        "domain key": secret_meta["domain_key"],
        "node private key": secret_meta["node_key"],
        "cluster private key": secret_meta["cluster_key"],
        "PEM private key marker": b"PRIVATE KEY",
        "master key": master,
        "master key (base64)": lab.master_key.encode(),
        "known plaintext": known,
        "data key plaintext": dk.plaintext,
    }
    for i, m in enumerate(materials):
        secrets[f"key material {handles[i]}"] = m
        secrets[f"key material {handles[i]} (base64)"] = base64.b64encode(m)
    assert all(len(v) >= 11 for v in secrets.values())  # long enough not to occur by chance

    leaks = [(what, name) for what, secret in secrets.items() for name, data in raw.items() if secret in data]
    assert not leaks, f"secrets in the clear in the data dir: {leaks}"

    # nor in the node's log, nor in a backup store if one was written
    log = node.log_path.read_bytes()
    assert not [what for what, secret in secrets.items() if secret in log and what != "PEM private key marker"]
    if node.backup_dir.exists():
        for p in node.backup_dir.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert not [what for what, secret in secrets.items() if secret in data], p


# ------------------------------------------------------------------ refusing data dirs


@pytest.mark.parametrize("damage", ["garbage", "truncated", "scribbled-page"])
async def test_a_corrupted_data_dir_is_refused_and_left_untouched(lab: Lab, damage: str) -> None:
    node = await active_node(lab)
    stub = node.stub()
    await add_user(stub, await co(stub), "survivor")
    await node.stop()
    db = node.data_dir / "node.db"
    # Whatever a stop left in the write-ahead log goes into node.db first (what a clean close
    # does), so that the page scribbled below is the one the node reads, not one the log shadows.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root, = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()
        page_size, = conn.execute("PRAGMA page_size").fetchone()
    original = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(os.urandom(16384))
    elif damage == "truncated":
        db.write_bytes(original[: len(original) // 2])
    else:  # the whole root page of the records table: a page that surely holds live rows (not a
        # free page, as a fixed page number may be once writes have moved the tables around)
        scribbled = bytearray(original)
        start = (root - 1) * page_size + (100 if root == 1 else 0)
        scribbled[start: root * page_size] = b"\x55" * (root * page_size - start)
        db.write_bytes(bytes(scribbled))
    before = files_digest(node.data_dir)

    result = await run_node_once(node, lab.master_key)
    assert_clean_refusal(result, str(node.data_dir), "restore the node from a backup")
    assert "corrupted" in result.stderr
    assert files_digest(node.data_dir) == before  # not repaired, not replaced, not re-initialised

    # put the original back: the node comes up with its data (the refusal changed nothing)
    db.write_bytes(original)
    status = await node.restart()
    assert status.state == pb.ACTIVE
    assert "survivor" in [u.username for u in (await node.stub().ListUsers(pb.Empty())).users]


async def test_a_foreign_data_dir_is_refused_and_left_untouched(lab: Lab) -> None:
    node = await active_node(lab)
    stub = node.stub()
    await add_user(stub, await co(stub), "homebody")
    status = await stub.GetStatus(pb.Empty())
    await node.stop()
    before = files_digest(node.data_dir)

    other_master = base64.b64encode(os.urandom(32)).decode()
    result = await run_node_once(node, other_master)
    assert_clean_refusal(result, "the master key does not open this data directory")
    assert files_digest(node.data_dir) == before

    again = await node.restart()  # with its own master key, all is there
    assert (again.state, again.node_id, again.cluster_id) == (pb.ACTIVE, status.node_id, status.cluster_id)
    assert "homebody" in [u.username for u in (await node.stub().ListUsers(pb.Empty())).users]


async def test_a_data_dir_in_use_is_refused(lab: Lab) -> None:
    node = await active_node(lab)
    result = await run_node_once(node, lab.master_key)
    assert_clean_refusal(result, "is in use by another hsm-node process")
    assert (await node.stub().GetStatus(pb.Empty())).state == pb.ACTIVE


async def test_a_tampered_sealed_record_is_refused_clearly(lab: Lab) -> None:
    node = await active_node(lab)
    stub = node.stub()
    await add_user(stub, await co(stub), "tampered")
    await node.stop()
    with sqlite3.connect(node.data_dir / "node.db") as db:
        blob = bytearray(db.execute("SELECT sealed FROM records WHERE kind='user' AND entity='tampered'").fetchone()[0])
        blob[-1] ^= 0x01
        db.execute("UPDATE records SET sealed=? WHERE kind='user' AND entity='tampered'", (bytes(blob),))
    db.close()
    result = await run_node_once(node, lab.master_key)
    assert_clean_refusal(result, "restore the node from a backup")


@pytest.mark.parametrize("tamper", [
    "UPDATE oplog SET entity='someone_else' WHERE entity='tampered'",                   # the oplog
    "UPDATE positions SET seq=seq+1",                                                     # positions
    "UPDATE meta SET value=CAST('UNINITIALIZED' AS BLOB) WHERE name='state'",            # plain meta
    "UPDATE records SET hlc=hlc+1 WHERE kind='user' AND entity='tampered'",             # a version
    "DELETE FROM records WHERE kind='user' AND entity='tampered'",                       # a row gone
])
async def test_a_tampered_row_of_any_table_is_refused_clearly(lab: Lab, tamper: str) -> None:
    node = await active_node(lab)
    stub = node.stub()
    await add_user(stub, await co(stub), "tampered")
    await node.stop()
    with sqlite3.connect(node.data_dir / "node.db") as db:
        assert db.execute(tamper).rowcount >= 1
    db.close()
    before = files_digest(node.data_dir)
    result = await run_node_once(node, lab.master_key)
    assert_clean_refusal(result, "corrupted or was altered", "restore the node from a backup")
    assert files_digest(node.data_dir) == before


# ------------------------------------------------------------------ a full disk


def mount_small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"cannot mount a small tmpfs to fill ({r.stderr.strip() or r.returncode}); needs root", file=sys.stderr)
    return r.returncode == 0


def fill(directory: Path, leave_bytes: int) -> Path:
    """A filler file taking all but ``leave_bytes`` of the file system."""
    st = os.statvfs(directory)
    filler = directory / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


@contextlib.asynccontextmanager
async def active_node_on_a_small_disk(lab: Lab, size: str = "4m") -> AsyncIterator[NodeProcess]:
    """An ACTIVE node whose data directory is a small tmpfs of its own (to fill up for real);
    skipped, saying why, where no tmpfs can be mounted."""
    node = lab.node()
    if not mount_small_tmpfs(node.data_dir, size):
        pytest.skip("a full disk needs a small tmpfs (mount) here")
    try:
        node.start()
        await node.wait_ready()
        await lab.init_active(node)
        yield node
    finally:
        await node.stop()
        subprocess.run(["umount", str(node.data_dir)], capture_output=True)


async def test_a_full_disk_refuses_writes_clearly_keeps_serving_and_loses_nothing(lab: Lab) -> None:
    async with active_node_on_a_small_disk(lab) as node:
        stub = node.stub()
        await add_user(stub, await co(stub), "disk_cu")
        cu = await login(stub, pb.CU, "disk_cu", PW)
        first = (await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32,
                                                              label="before"))).key_handle
        filler = fill(node.data_dir, 96 * 1024)
        acknowledged = [first]
        details = ""
        for i in range(200):
            try:
                r = await stub.GenerateKey(pb.GenerateKeyRequest(session_token=cu, key_size_bytes=32, label=f"k{i}"))
                acknowledged.append(r.key_handle)
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
                details = err.details() or ""
                break
        assert "storage is full" in details and "nothing was changed" in details, details
        # still serving: status, crypto with an existing key, reads
        assert (await stub.GetStatus(pb.Empty())).state == pb.ACTIVE
        sealed = await stub.Encrypt(pb.EncryptRequest(session_token=cu, key_handle=first, plaintext=b"still", aad=b"a"))
        assert (await stub.Decrypt(pb.DecryptRequest(session_token=cu, key_handle=first, iv=sealed.iv,
                                                     ciphertext=sealed.ciphertext, aad=b"a"))).plaintext == b"still"
        filler.unlink()  # space is back: writes work again
        acknowledged.append((await stub.GenerateKey(pb.GenerateKeyRequest(
            session_token=cu, key_size_bytes=32, label="after"))).key_handle)
        node.kill()  # kill -9, then every acknowledged key is there
        node.start()
        await node.wait_ready()
        stub = node.stub()
        cu = await login(stub, pb.CU, "disk_cu", PW)
        found = set((await stub.FindKeys(pb.FindKeysRequest(session_token=cu))).key_handles)
        assert set(acknowledged) <= found, set(acknowledged) - found
        assert "Traceback" not in node.log_path.read_text()
