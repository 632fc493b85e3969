"""Benchmark: Encrypt (256 B) through the frontend vs a bare two-hop gRPC echo.

    python bench/crypto_path.py [--seconds 5] [--callers 1,16,64] [--json out.json]

Starts, in one run on one machine: three hsm-node processes and a kms-frontend
(a CONNECTED custom key store with one key), and a bare echo pair (client ->
proxy -> echo, the proxy leg over the same TLS). For each number of concurrent
callers it drives both closed-loop from this process and prints throughput,
p50/p99/max latency and the ratio frontend/echo. Not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hsm_node import certs  # noqa: E402
from protos.hsm.v1 import hsm_pb2 as hsm  # noqa: E402
from protos.kms.v1 import kms_pb2 as kms  # noqa: E402
from tests.harness import CU_PASSWORD, FrontendProcess, Lab, free_port, three_node_cluster, wait_until  # noqa: E402

PAYLOAD = os.urandom(256)


async def closed_loop(call, callers: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                await call()
                latencies.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError:
                errors += 1
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(callers)))
    elapsed = time.monotonic() - start
    latencies.sort()
    q = (lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000) if latencies else (lambda p: 0.0)
    return {"callers": callers, "ops": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": latencies[-1] * 1000 if latencies else 0,
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0}


async def start_echo(root: Path) -> tuple[list[subprocess.Popen], str]:
    key = certs.new_key()
    cert = certs.self_signed(key, "echo", ["127.0.0.1", "localhost"])
    (root / "echo.key").write_bytes(certs.key_pem(key))
    (root / "echo.crt").write_text(certs.cert_pem(cert))
    echo_port, proxy_port = free_port(), free_port()
    here = Path(__file__).parent / "echo_server.py"
    procs = [
        subprocess.Popen([sys.executable, str(here), "echo", "--listen", f"127.0.0.1:{echo_port}",
                          "--tls-cert", str(root / "echo.crt"), "--tls-key", str(root / "echo.key")]),
        subprocess.Popen([sys.executable, str(here), "proxy", "--listen", f"127.0.0.1:{proxy_port}",
                          "--upstream", f"127.0.0.1:{echo_port}", "--ca", str(root / "echo.crt")]),
    ]
    return procs, f"127.0.0.1:{proxy_port}"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--callers", default="1,16,64")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    lab = Lab(root)
    fe: FrontendProcess | None = None
    echo_procs: list[subprocess.Popen] = []
    try:
        nodes = await three_node_cluster(lab)
        fe = FrontendProcess(root, [n.endpoint for n in nodes], env={"KMS_STORE_QUOTA": "1000000", "KMS_LOG_LEVEL": "warning"})
        fe.start()
        await fe.wait_ready()
        cluster_id = (await nodes[0].stub().GetStatus(hsm.Empty())).cluster_id
        stub = fe.stub()
        store = await stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(
            custom_key_store_name="bench", cloud_hsm_cluster_id=cluster_id,
            trust_anchor_certificate=lab.anchor.cert_pem, key_store_password=CU_PASSWORD))
        await stub.ConnectCustomKeyStore(kms.ConnectCustomKeyStoreRequest(custom_key_store_id=store.custom_key_store_id))

        async def connected() -> bool:
            d = await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(
                custom_key_store_id=store.custom_key_store_id))
            return d.custom_key_stores[0].connection_state == "CONNECTED"
        await wait_until(connected, timeout=30)
        key = await stub.CreateKey(kms.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=store.custom_key_store_id))
        key_id = key.key_metadata.key_id
        echo_procs, proxy = await start_echo(root)
        echo_channel = grpc.aio.insecure_channel(proxy)
        echo = echo_channel.unary_unary("/bench.Echo/Echo", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        await wait_until(lambda: echo(b"x", timeout=1), timeout=20, what="echo pair")

        async def encrypt() -> None:
            await stub.Encrypt(kms.EncryptRequest(key_id=key_id, plaintext=PAYLOAD))

        async def bare() -> None:
            await echo(PAYLOAD)
        for _ in range(2):  # warm up both paths
            await closed_loop(encrypt, 16, 1.0)
            await closed_loop(bare, 16, 1.0)
        results = []
        for callers in [int(c) for c in args.callers.split(",")]:
            e = await closed_loop(encrypt, callers, args.seconds)
            b = await closed_loop(bare, callers, args.seconds)
            results.append({"callers": callers, "encrypt": e, "echo": b, "ratio": e["rps"] / b["rps"] if b["rps"] else 0})
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()},"
              f" grpcio {grpc.__version__}; {args.seconds:.0f} s per point, Encrypt of 256 B")
        print(f"{'callers':>7} | {'path':<22} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | errors")
        for r in results:
            for name, label in (("encrypt", "Encrypt via frontend"), ("echo", "bare 2-hop echo")):
                m = r[name]
                print(f"{r['callers']:>7} | {label:<22} | {m['rps']:>8.0f} | {m['p50_ms']:>7.2f} | {m['p99_ms']:>7.2f} |"
                      f" {m['max_ms']:>7.2f} | {m['errors']}")
            print(f"{'':>7} | {'ratio encrypt/echo':<22} | {r['ratio']:>8.2f}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        await echo_channel.close()
    finally:
        for proc in echo_procs:
            proc.terminate()
        if fe is not None:
            await fe.stop()
        await lab.close()


if __name__ == "__main__":
    asyncio.run(main())
