"""Benchmark: what the system costs as the number of keys in one custom key store grows.

    python bench/scale.py                              # sizes 1000,10000,100000 (the last takes a while)
    python bench/scale.py --sizes 1000,10000 --json scale.json

Not a test: it prints figures. One run starts three real hsm-node processes (replicated)
and a kms-frontend with one CONNECTED custom key store, then grows the store to each size
in turn with real ``CreateKey`` calls through the frontend's public gRPC API (``--callers``
concurrent callers; nothing is seeded behind the API's back), and at each size measures:

* CreateKey, bulk: throughput and latency of the calls that grew the store to this size
  (``--callers`` callers: closed-loop latency there follows throughput);
* CreateKey, one caller: p50/p99 of ``--probe`` sequential calls made at this size
  (the latency a single client sees; the target's p50 < 20 ms is about this one);
* RSS of the frontend and of each node (from /proc), after the growth;
* frontend start: SIGTERM, start again, time until it answers, and until the store is
  CONNECTED again and an Encrypt with the newest key works; the frontend's RSS just after,
  and the CPU it uses over the next 5 s while nobody calls it;
* ListKeys: a full pagination (1000 per page) through every key;
* backup: CreateBackup on node 1 (time, sealed size); restore: RestoreCluster of that backup
  on a fresh node, until a ciphertext made before the backup decrypts there;
* catch-up: node 3 is killed, node 1 takes ``--catchup-writes`` writes (SyncKey of a small set
  of a separate crypto user's keys, so the store keeps its size), node 3 restarts; timed from
  its restart until its consistency hash and replication positions equal node 1's (its own
  start time is shown apart).

It prints a table per size as it goes, then every figure side by side with the growth
factor between consecutive sizes. ``--json FILE`` writes everything.

Run it against older code with ``PYTHONPATH=<old tree>``: the limit of keys per cluster is
lifted through ``HSM_MAX_KEYS`` in the environment, which older nodes ignore.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from protos.hsm.v1 import hsm_pb2 as hsm  # noqa: E402
from protos.kms.v1 import kms_pb2 as kms  # noqa: E402
from protos.kms.v1 import kms_pb2_grpc as kms_grpc  # noqa: E402
from tests.harness import (  # noqa: E402
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    co,
    login,
    three_node_cluster,
    wait_until,
)

BENCH_USER, BENCH_PASSWORD = "benchuser", "benchPassword1"
IDLE_S = 5.0  # how long the idle frontend's CPU use is measured
BENCH_USER_KEYS = 100  # keys of the separate crypto user whose SyncKeys make the catch-up writes


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def fmt(v: float, unit: str = "") -> str:
    if v != v:  # nan
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"


class Scale:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.lab = Lab(root)
        self.nodes: list[NodeProcess] = []
        self.fe: FrontendProcess | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: kms_grpc.KmsStub | None = None
        self.store_id = ""
        self.keys = 0
        self.last_key = ""
        self.bench_handles: list[int] = []

    # ------------------------------------------------------------ setup

    async def start(self) -> None:
        self.nodes = await three_node_cluster(self.lab)
        n1 = self.nodes[0].stub()
        await n1.CreateUser(hsm.CreateUserRequest(session_token=await co(n1), user_type=hsm.CU, username=BENCH_USER,
                                                  password=BENCH_PASSWORD))
        token = await login(n1, hsm.CU, BENCH_USER, BENCH_PASSWORD)
        for i in range(BENCH_USER_KEYS):
            r = await n1.GenerateKey(hsm.GenerateKeyRequest(session_token=token, key_size_bytes=32, label=f"bench{i}"))
            self.bench_handles.append(r.key_handle)
        env = {"KMS_LOG_LEVEL": "warning", "KMS_STORE_QUOTA": "1000000"}
        self.fe = FrontendProcess(self.root, [n.endpoint for n in self.nodes], env=env)
        self.fe.start()
        await self._connect_client()
        cluster_id = (await n1.GetStatus(hsm.Empty())).cluster_id
        store = await self.stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(  # type: ignore[union-attr]
            custom_key_store_name="scale", cloud_hsm_cluster_id=cluster_id,
            trust_anchor_certificate=self.lab.anchor.cert_pem, key_store_password=CU_PASSWORD))
        self.store_id = store.custom_key_store_id
        await self.stub.ConnectCustomKeyStore(kms.ConnectCustomKeyStoreRequest(  # type: ignore[union-attr]
            custom_key_store_id=self.store_id))
        await self._wait_connected(timeout=60)

    async def _connect_client(self, timeout: float = 120) -> float:
        """(Re)open the client channel; returns the seconds until the frontend answered."""
        assert self.fe is not None
        if self.channel is not None:
            await self.channel.close()
        self.channel = grpc.aio.insecure_channel(self.fe.endpoint)
        self.stub = kms_grpc.KmsStub(self.channel)
        t0 = time.perf_counter()
        fe, stub = self.fe, self.stub

        async def serving() -> bool:
            if fe.proc is not None and fe.proc.poll() is not None:
                raise RuntimeError(f"frontend exited: {fe.log_path.read_text()[-2000:]}")
            await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=2)
            return True
        await wait_until(serving, timeout=timeout, interval=0.02, what="frontend to serve")
        return time.perf_counter() - t0

    async def _wait_connected(self, timeout: float) -> None:
        stub, store_id = self.stub, self.store_id

        async def connected() -> bool:
            d = await stub.DescribeCustomKeyStores(  # type: ignore[union-attr]
                kms.DescribeCustomKeyStoresRequest(custom_key_store_id=store_id), timeout=5)
            return d.custom_key_stores[0].connection_state == "CONNECTED"
        await wait_until(connected, timeout=timeout, interval=0.02, what="the store to be CONNECTED")

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.fe is not None:
            await self.fe.stop()
        await self.lab.close()

    # ------------------------------------------------------------ CreateKey

    async def create_keys(self, n: int, callers: int, label: str) -> dict:
        latencies: list[float] = []
        errors: dict[str, int] = {}
        remaining = n
        stub, store_id = self.stub, self.store_id
        done = 0
        t_start = time.perf_counter()
        last_print = t_start

        async def caller() -> None:
            nonlocal remaining, done, last_print
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    r = await stub.CreateKey(kms.CreateKeyRequest(  # type: ignore[union-attr]
                        origin="AWS_CLOUDHSM", custom_key_store_id=store_id), timeout=60)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    remaining += 1  # the store must reach its size: try again
                    if sum(errors.values()) > max(100, n // 10):
                        raise
                    await asyncio.sleep(0.1)
                    continue
                now = time.perf_counter()
                latencies.append(now - t0)
                self.last_key = r.key_metadata.key_id
                self.keys += 1
                done += 1
                if now - last_print >= 10:
                    last_print = now
                    print(f"    {label}: {self.keys:,} keys in the store, {done / (now - t_start):.0f} CreateKey/s,"
                          f" p50 {pct(latencies[-500:], 0.5) * 1000:.1f} ms (last 500)", flush=True)
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - t_start
        return {"calls": len(latencies), "callers": callers, "seconds": elapsed, "per_s": len(latencies) / elapsed,
                "p50_ms": pct(latencies, 0.5) * 1000, "p90_ms": pct(latencies, 0.9) * 1000,
                "p99_ms": pct(latencies, 0.99) * 1000, "errors": errors}

    # ------------------------------------------------------------ the other figures

    def rss(self) -> dict:
        assert self.fe is not None and self.fe.proc is not None
        return {"frontend_mb": rss_mb(self.fe.proc.pid),
                "nodes_mb": [rss_mb(n.proc.pid) for n in self.nodes if n.proc is not None and n.proc.poll() is None]}

    async def list_all(self) -> dict:
        t0 = time.perf_counter()
        marker, count, pages = None, 0, 0
        while True:
            req = kms.ListKeysRequest(limit=1000)
            if marker:
                req.marker = marker
            r = await self.stub.ListKeys(req, timeout=60)  # type: ignore[union-attr]
            count += len(r.keys)
            pages += 1
            if not r.truncated:
                break
            marker = r.next_marker
        return {"seconds": time.perf_counter() - t0, "keys": count, "pages": pages}

    async def restart_frontend(self) -> dict:
        assert self.fe is not None
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        t0 = time.perf_counter()
        await self.fe.stop()
        stop_s = time.perf_counter() - t0
        self.fe.start()
        t0 = time.perf_counter()
        await self._connect_client()
        serving_s = time.perf_counter() - t0
        await self._wait_connected(timeout=120)
        stub, key = self.stub, self.last_key

        async def encrypts() -> bool:
            await stub.Encrypt(kms.EncryptRequest(key_id=key, plaintext=b"x"), timeout=5)  # type: ignore[union-attr]
            return True
        await wait_until(encrypts, timeout=120, interval=0.02, what="Encrypt after the restart")
        usable_s = time.perf_counter() - t0
        pid = self.fe.proc.pid  # type: ignore[union-attr]
        rss = rss_mb(pid)
        # What the frontend costs doing nothing (periodic sweeps, discovery), over a few seconds.
        cpu0, t1 = cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        idle_pct = 100 * (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t1)
        return {"stop_s": stop_s, "serving_s": serving_s, "usable_s": usable_s, "rss_mb": rss, "idle_cpu_pct": idle_pct}

    async def backup_restore(self) -> dict:
        n1 = self.nodes[0].stub()
        token = await login(n1, hsm.CU, BENCH_USER, BENCH_PASSWORD)
        handle = self.bench_handles[0]
        ct = await n1.Encrypt(hsm.EncryptRequest(session_token=token, key_handle=handle, plaintext=b"before the backup"))
        t0 = time.perf_counter()
        backup = await n1.CreateBackup(hsm.CreateBackupRequest(session_token=await co(n1)), timeout=900)
        backup_s = time.perf_counter() - t0
        fresh = await self.lab.start_node()
        try:
            t0 = time.perf_counter()
            await fresh.stub().RestoreCluster(hsm.RestoreClusterRequest(backup_id=backup.backup_id), timeout=900)
            fresh.anchor_pem = self.lab.anchor.cert_pem
            await fresh.reset_channel()
            tok = await login(fresh.stub(), hsm.CU, BENCH_USER, BENCH_PASSWORD)
            pt = await fresh.stub().Decrypt(hsm.DecryptRequest(session_token=tok, key_handle=handle, iv=ct.iv,
                                                               ciphertext=ct.ciphertext))
            restore_s = time.perf_counter() - t0
            assert pt.plaintext == b"before the backup"
            restored_keys = (await fresh.stub().GetStatus(hsm.Empty())).key_count
        finally:
            await fresh.stop()
            self.lab.nodes.remove(fresh)
            shutil.rmtree(fresh.data_dir, ignore_errors=True)
        return {"backup_s": backup_s, "backup_mb": backup.size_bytes / 1e6, "backup_keys": backup.key_count,
                "restore_s": restore_s, "restored_keys": restored_keys}

    async def catch_up(self, writes: int) -> dict:
        n1, n3 = self.nodes[0], self.nodes[2]
        n3.kill()
        token = await login(n1.stub(), hsm.CU, BENCH_USER, BENCH_PASSWORD)
        sem = asyncio.Semaphore(32)
        stub = n1.stub()

        async def one(i: int) -> None:
            async with sem:
                await stub.SyncKey(hsm.SyncKeyRequest(session_token=token,
                                                      key_handle=self.bench_handles[i % len(self.bench_handles)]),
                                   timeout=60)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(writes)))
        write_s = time.perf_counter() - t0
        target = await stub.GetStatus(hsm.Empty())
        t0 = time.perf_counter()
        n3.start()
        await n3.wait_ready(timeout=300)
        node_start_s = time.perf_counter() - t0

        async def caught_up() -> bool:
            s = await n3.stub().GetStatus(hsm.Empty(), timeout=5)
            return s.consistency_hash == target.consistency_hash and dict(s.positions) == dict(target.positions)
        await wait_until(caught_up, timeout=900, interval=0.02, what="node 3 to catch up")
        return {"writes": writes, "writes_per_s": writes / write_s, "node_start_s": node_start_s,
                "converged_s": time.perf_counter() - t0}


# ------------------------------------------------------------------ reporting

ROWS: list[tuple[str, str, str, bool]] = [
    # (label, json path, unit, per-key growth: does "linear" mean proportional to the size?)
    ("CreateKey bulk, keys/s", "create.per_s", "/s", False),
    ("CreateKey bulk, p50", "create.p50_ms", " ms", False),
    ("CreateKey bulk, p99", "create.p99_ms", " ms", False),
    ("CreateKey 1 caller, p50", "probe.p50_ms", " ms", False),
    ("CreateKey 1 caller, p99", "probe.p99_ms", " ms", False),
    ("frontend RSS after growth", "rss.frontend_mb", " MB", True),
    ("node RSS (max of 3)", "rss.node_max_mb", " MB", True),
    ("frontend restart: serving", "restart.serving_s", " s", True),
    ("frontend restart: Encrypt ok", "restart.usable_s", " s", True),
    ("frontend RSS after restart", "restart.rss_mb", " MB", True),
    ("frontend idle CPU after restart", "restart.idle_cpu_pct", " %", True),
    ("ListKeys, all pages", "list.seconds", " s", True),
    ("backup: time", "backup.backup_s", " s", True),
    ("backup: size", "backup.backup_mb", " MB", True),
    ("restore: time", "backup.restore_s", " s", True),
    ("catch-up: node start", "catchup.node_start_s", " s", True),
    ("catch-up: converged", "catchup.converged_s", " s", True),
]


def get(d: dict, path: str) -> float:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return float("nan")
        d = d[part]
    return float(d)  # type: ignore[arg-type]


def print_size(r: dict) -> None:
    print(f"\n== {r['size']:,} keys in the store ({r['hsm_keys']:,} keys on the HSMs)")
    for label, path, unit, _ in ROWS:
        print(f"  {label:<34} {fmt(get(r, path), unit):>12}")
    c = r.get("create", {})
    if c.get("errors"):
        print(f"  CreateKey errors (retried): {c['errors']}")


def print_growth(results: list[dict]) -> None:
    if not results:
        return
    sizes = [r["size"] for r in results]
    head = f"{'':<34}" + "".join(f"{s:>12,}" for s in sizes)
    for a, b in zip(sizes, sizes[1:], strict=False):
        head += f"{f'x {b / a:g} keys':>16}"
    print("\n== all sizes, and the growth factor between consecutive sizes")
    print(head)
    for label, path, unit, _ in ROWS:
        values = [get(r, path) for r in results]
        line = f"{label:<34}" + "".join(f"{fmt(v, unit):>12}" for v in values)
        for a, b in zip(values, values[1:], strict=False):
            line += f"{('x' + fmt(b / a)) if a and a == a and b == b else '-':>16}"
        print(line)


# ------------------------------------------------------------------ main


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000", help="store sizes to measure at, ascending")
    p.add_argument("--callers", type=int, default=16, help="concurrent CreateKey callers while growing")
    p.add_argument("--probe", type=int, default=200, help="sequential CreateKey calls measured at each size")
    p.add_argument("--catchup-writes", type=int, default=10_000)
    p.add_argument("--skip", default="", help="comma-separated: restart,list,backup,catchup")
    p.add_argument("--dir", default="", help="work directory (default: a new temporary one, removed at the end)")
    p.add_argument("--json", default="", help="write every figure to this file")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    skip = {s for s in args.skip.split(",") if s}
    os.environ.setdefault("HSM_MAX_KEYS", str(max(sizes) * 2 + 10_000))
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    info = {"machine": platform.machine(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(), "argv": sys.argv[1:], "sizes": sizes}
    print(f"machine: {info['machine']} {info['nproc']} cores, Python {info['python']}, load average at start"
          f" {', '.join(f'{x:.2f}' for x in info['load_avg_at_start'])}; work dir {root}", flush=True)
    bench = Scale(root, args)
    results: list[dict] = []
    try:
        await bench.start()
        for size in sizes:
            r: dict = {"size": size}
            bulk = max(0, size - bench.keys - args.probe)
            print(f"-- growing the store to {size:,} keys ({bulk:,} CreateKey with {args.callers} callers,"
                  f" then {min(args.probe, size - bench.keys - bulk)} with one)", flush=True)
            if bulk:
                r["create"] = await bench.create_keys(bulk, args.callers, f"to {size:,}")
            probe = size - bench.keys
            if probe > 0:
                r["probe"] = await bench.create_keys(probe, 1, "one caller")
            rss = bench.rss()
            r["rss"] = {**rss, "node_max_mb": max(rss["nodes_mb"])}
            r["hsm_keys"] = (await bench.nodes[0].stub().GetStatus(hsm.Empty())).key_count
            if "list" not in skip:
                print("-- ListKeys", flush=True)
                r["list"] = await bench.list_all()
                assert r["list"]["keys"] == size, r["list"]
            if "restart" not in skip:
                print("-- frontend restart", flush=True)
                r["restart"] = await bench.restart_frontend()
            if "backup" not in skip:
                print("-- backup and restore", flush=True)
                r["backup"] = await bench.backup_restore()
            if "catchup" not in skip:
                print(f"-- catch-up of {args.catchup_writes:,} writes", flush=True)
                r["catchup"] = await bench.catch_up(args.catchup_writes)
            r["load_avg"] = os.getloadavg()
            results.append(r)
            print_size(r)
            if args.json:
                Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=1))
        print_growth(results)
    finally:
        await bench.close()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    asyncio.run(main())
