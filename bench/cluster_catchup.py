"""Benchmark: how long a node takes to catch up after missing N writes, and how long
a backup and a restore of N keys take.

    python bench/cluster_catchup.py [--writes 10000] [--keys 10000]

Three real hsm-node processes on loopback. Catch-up: node 3 is killed (SIGKILL),
node 1 takes N key generations, node 3 restarts; timed from its restart until its
consistency hash and replication positions equal node 1's. Backup/restore: with N
keys in the cluster, CreateBackup is timed, then RestoreCluster of that backup on a
fresh node (timed until it serves), and a key made before the backup is used there.
Not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protos.hsm.v1 import hsm_pb2 as pb  # noqa: E402
from tests.harness import CU_PASSWORD, Lab, co, login, three_node_cluster, wait_until  # noqa: E402


async def generate(stub, token: str, n: int, concurrency: int = 32) -> list[int]:
    handles: list[int] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            r = await stub.GenerateKey(pb.GenerateKeyRequest(session_token=token, key_size_bytes=32, label=f"k{i}"))
            handles.append(r.key_handle)
    await asyncio.gather(*(one(i) for i in range(n)))
    return handles


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=10_000)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args()
    lab = Lab(Path(tempfile.mkdtemp(prefix="bench-catchup-")))
    try:
        n1, n2, n3 = await three_node_cluster(lab)
        cu1 = await login(n1.stub(), pb.CU, "kmsuser", CU_PASSWORD)

        n3.kill()
        t0 = time.perf_counter()
        await generate(n1.stub(), cu1, args.writes)
        write_s = time.perf_counter() - t0
        target = await n1.stub().GetStatus(pb.Empty())
        t0 = time.perf_counter()
        n3.start()
        await n3.wait_ready(timeout=60)

        async def caught_up() -> bool:
            s = await n3.stub().GetStatus(pb.Empty(), timeout=5)
            return s.consistency_hash == target.consistency_hash and dict(s.positions) == dict(target.positions)
        await wait_until(caught_up, timeout=600, interval=0.05, what="node 3 to catch up")
        catchup_s = time.perf_counter() - t0

        have = (await n1.stub().GetStatus(pb.Empty())).key_count
        if have < args.keys:
            await generate(n1.stub(), cu1, args.keys - have)
        key_count = (await n1.stub().GetStatus(pb.Empty())).key_count
        handle = (await n1.stub().FindKeys(pb.FindKeysRequest(session_token=cu1, label="k0"))).key_handles[0]
        ct = await n1.stub().Encrypt(pb.EncryptRequest(session_token=cu1, key_handle=handle,
                                                       plaintext=b"made before the backup"))
        t0 = time.perf_counter()
        backup = await n1.stub().CreateBackup(pb.CreateBackupRequest(session_token=await co(n1.stub())), timeout=600)
        backup_s = time.perf_counter() - t0
        fresh = await lab.start_node()
        t0 = time.perf_counter()
        await fresh.stub().RestoreCluster(pb.RestoreClusterRequest(backup_id=backup.backup_id), timeout=600)
        fresh.anchor_pem = lab.anchor.cert_pem
        await fresh.reset_channel()
        tok = await login(fresh.stub(), pb.CU, "kmsuser", CU_PASSWORD)
        pt = await fresh.stub().Decrypt(pb.DecryptRequest(session_token=tok, key_handle=handle, iv=ct.iv,
                                                          ciphertext=ct.ciphertext))
        restore_s = time.perf_counter() - t0
        assert pt.plaintext == b"made before the backup"
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"catch-up: node missed {args.writes} writes (key generations, {args.writes / write_s:.0f}/s while it"
              f" was down); restart -> converged in {catchup_s:.2f} s")
        print(f"backup of {key_count} keys: {backup_s:.2f} s ({backup.size_bytes / 1e6:.1f} MB sealed)")
        print(f"restore of that backup into a new cluster, until a pre-backup ciphertext decrypts there:"
              f" {restore_s:.2f} s")
    finally:
        await lab.close()


if __name__ == "__main__":
    asyncio.run(main())
