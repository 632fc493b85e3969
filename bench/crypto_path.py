"""Benchmark: Encrypt (256 B) through the frontend vs bare gRPC echoes, in one run.

    python bench/crypto_path.py [--seconds 5] [--callers 1,16,64] [--rounds 3]
                                [--client-processes 2] [--client-tls] [--json out.json]

Starts, on one machine: three hsm-node processes and a kms-frontend (a CONNECTED
custom key store with one key), and a bare echo pair: an echo server and a proxy
that forwards each unary call to it over the same TLS as the frontend -> node leg.
Three paths are measured:

* ``encrypt``  client -> kms-frontend -> hsm-node (Encrypt of 256 B, the real path)
* ``echo2``    client -> proxy -> echo             (two hops, no work: the baseline)
* ``echo1``    client -> echo                      (one hop: the stretch baseline)
* ``stream2``  client -> stream proxy -> echo      (a reference: the frontend's design with no work,
               unary calls carried over one batching TLS stream; the most the frontend could reach)

The client leg is plaintext gRPC on every path (as the test harness runs the
frontend), or TLS on every path with ``--client-tls``. Encrypt calls are signed
(SigV4, as every kms.v1 call must be) as the account root: each load process signs
its request once per measurement and sends it with the same metadata throughout
(SigV4 accepts a signature for five minutes), so signing costs the clients nothing
per call and the frontend's verification is measured.

Load comes from ``--client-processes`` separate processes (one Python client
process tops out near the rate of the servers it measures), each running
closed-loop callers (the callers of a point are spread over the processes) on
one channel per path; latencies are merged. Clients send pre-serialised
requests and do not parse replies, the same on every path, so that as little
client CPU as possible competes with the servers on a small machine. The paths
are interleaved (each point measures all paths back to back, in an order that
rotates every round) and the whole sweep is repeated ``--rounds`` times: the
table shows the median over rounds of each figure, and the ratios are the median
of the per-round ratios (each from paths measured seconds apart). Not a test:
it prints figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hsm_node import certs  # noqa: E402
from protos.hsm.v1 import hsm_pb2 as hsm  # noqa: E402
from protos.kms.v1 import auth as kms_auth  # noqa: E402
from protos.kms.v1 import kms_pb2 as kms  # noqa: E402
from protos.kms.v1 import kms_pb2_grpc as kms_grpc  # noqa: E402
from tests.harness import (  # noqa: E402
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    free_port,
    three_node_cluster,
    wait_until,
)

PAYLOAD_BYTES = 256
ECHO_METHOD = "/bench.Echo/Echo"
ENCRYPT_METHOD = "/kms.v1.Kms/Encrypt"
PATHS = {"encrypt": "Encrypt via frontend", "echo2": "bare 2-hop echo", "echo1": "bare 1-hop echo",
         "stream2": "no-work stream proxy"}
BASES = {"echo2": "Encrypt / 2-hop echo", "echo1": "Encrypt / 1-hop echo", "stream2": "Encrypt / stream proxy"}


# ---------------------------------------------------------------- client processes


Target = tuple[str, "str | None", str, bytes, "tuple[str, str, str] | None"]  # address, CA, method, request, signer


def client_process(conn: Any, targets: dict[str, Target]) -> None:
    """Entry point of a load process: run the commands the parent sends over ``conn``."""
    asyncio.run(_client(conn, targets))


def _signer(address: str, method: str, request: bytes, signer: tuple[str, str, str] | None) -> Any:
    """Metadata for a measurement: SigV4 over ``request`` (kms.v1 calls), or nothing (echo)."""
    if signer is None:
        return lambda: None
    key_id, secret, region = signer
    from botocore.credentials import Credentials
    return lambda: kms_auth.sign(method, request, Credentials(key_id, secret), region, address)


async def _client(conn: Any, targets: dict[str, Target]) -> None:
    channels, calls = [], {}
    for name, (address, ca_pem, method, request, signer) in targets.items():
        if ca_pem:
            ch = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca_pem.encode()))
        else:
            ch = grpc.aio.insecure_channel(address)
        channels.append(ch)
        # no serializer and no deserializer: bytes in, bytes out, the same cost on every path
        calls[name] = (ch.unary_unary(method), request, _signer(address, method, request, signer))
    loop = asyncio.get_running_loop()
    conn.send("ready")
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd is None:
            break
        name, callers, seconds, start_at = cmd
        conn.send(await _closed_loop(*calls[name], callers, seconds, start_at))
    for ch in channels:
        await ch.close()


async def _closed_loop(call: Any, request: bytes, sign: Any, callers: int, seconds: float, start_at: float) -> dict:
    latencies = array("d")
    errors: Counter[str] = Counter()
    metadata = sign()  # once per measurement: the clients' cost per call stays what it was
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))  # every process starts together
    stop = start_at + seconds
    perf = time.perf_counter

    async def caller() -> None:
        while time.monotonic() < stop:
            t0 = perf()
            try:
                await call(request, timeout=30, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(perf() - t0)
    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return {"latencies": latencies.tobytes(), "errors": dict(errors), "elapsed": time.monotonic() - started}


def batch_totals(metrics_url: str) -> tuple[float, float]:
    """(operations, messages) the frontend has sent on its crypto streams so far, from its /metrics."""
    import urllib.request

    ops = msgs = 0.0
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("kms_hsm_batch_size_sum"):
            ops = float(line.split()[-1])
        elif line.startswith("kms_hsm_batch_size_count"):
            msgs = float(line.split()[-1])
    return ops, msgs


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    """``n`` load processes, each with one channel per path, driven in lock step."""

    def __init__(self, n: int, targets: dict[str, Target]) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(child, targets), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for c in self.conns:
            if c.recv() != "ready":
                raise RuntimeError("a load process failed to start")

    async def run(self, path: str, callers: int, seconds: float, watch: dict[str, list[int]] | None = None) -> dict:
        """One measurement; ``watch`` names groups of processes whose CPU time per request to report."""
        watch = {"clients": [p.pid for p in self.procs if p.pid], **(watch or {})}
        before = {group: sum(cpu_seconds(pid) for pid in pids) for group, pids in watch.items()}
        shares = [callers // len(self.conns) + (1 if i < callers % len(self.conns) else 0) for i in range(len(self.conns))]
        busy = [(c, k) for c, k in zip(self.conns, shares, strict=True) if k]
        start_at = time.monotonic() + 0.1
        for c, k in busy:
            c.send((path, k, seconds, start_at))
        loop = asyncio.get_running_loop()
        parts = [await loop.run_in_executor(None, c.recv) for c, _ in busy]
        latencies = array("d")
        errors: Counter[str] = Counter()
        for part in parts:
            latencies.frombytes(part["latencies"])
            errors.update(part["errors"])
        result = summarize(callers, sorted(latencies), max(p["elapsed"] for p in parts), errors)
        ops = max(1, result["ops"])
        result["cpu_us_per_req"] = {group: round((sum(cpu_seconds(pid) for pid in pids) - before[group]) / ops * 1e6, 1)
                                    for group, pids in watch.items()}
        return result

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def summarize(callers: int, latencies: list[float], elapsed: float, errors: Counter[str]) -> dict:
    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
    return {"callers": callers, "ops": len(latencies), "errors": sum(errors.values()), "error_codes": dict(errors),
            "rps": len(latencies) / elapsed if elapsed else 0.0, "p50_ms": q(0.50), "p90_ms": q(0.90),
            "p99_ms": q(0.99), "max_ms": latencies[-1] * 1000 if latencies else 0.0,
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0}


# ---------------------------------------------------------------- the servers


def start_echo(root: Path, client_tls: bool) -> tuple[list[subprocess.Popen], dict[str, str]]:
    """The echo server, its proxy and its stream proxy; returns them and the client address of each path."""
    echo_port, proxy_port, plain_port, stream_port = free_port(), free_port(), free_port(), free_port()
    here = Path(__file__).parent / "echo_server.py"
    cert = ["--tls-cert", str(root / "bench.crt"), "--tls-key", str(root / "bench.key")]
    echo_cmd = [sys.executable, str(here), "echo", "--listen", f"127.0.0.1:{echo_port}", *cert]
    if not client_tls:
        echo_cmd += ["--plain-listen", f"127.0.0.1:{plain_port}"]
    upstream = ["--upstream", f"127.0.0.1:{echo_port}", "--ca", str(root / "bench.crt")]
    proxy_cmd = [sys.executable, str(here), "proxy", "--listen", f"127.0.0.1:{proxy_port}", *upstream]
    stream_cmd = [sys.executable, str(here), "stream-proxy", "--listen", f"127.0.0.1:{stream_port}", *upstream]
    if client_tls:
        proxy_cmd += cert
        stream_cmd += cert
    procs = [subprocess.Popen(echo_cmd), subprocess.Popen(proxy_cmd), subprocess.Popen(stream_cmd)]
    return procs, {"echo2": f"127.0.0.1:{proxy_port}", "echo1": f"127.0.0.1:{echo_port if client_tls else plain_port}",
                   "stream2": f"127.0.0.1:{stream_port}"}


def machine() -> dict:
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        cpu = ""
    return {"uname_m": platform.machine(), "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "grpcio": grpc.__version__, "load_avg_at_start": os.getloadavg()}


@dataclass
class KmsStack:
    """Three hsm-nodes and a kms-frontend with a CONNECTED store and one key."""
    lab: Lab
    nodes: list[NodeProcess]
    fe: FrontendProcess
    metrics_url: str
    key_id: str = ""

    async def stop(self) -> None:
        await self.fe.stop()
        await self.lab.close()


async def start_kms(root: Path, cert_pem: str, client_tls: bool, check: bool = True) -> KmsStack:
    """Start the stack under ``root`` (certificate ``root/bench.crt``, key ``root/bench.key``);
    ``check``: make sure an Encrypt / Decrypt round trip works."""
    lab = Lab(root)
    try:
        nodes = await three_node_cluster(lab)
    except BaseException:
        await lab.close()
        raise
    metrics_port = free_port()
    env = {"KMS_STORE_QUOTA": "1000000", "KMS_LOG_LEVEL": "warning", "KMS_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    if client_tls:
        env.update(KMS_TLS_CERT=str(root / "bench.crt"), KMS_TLS_KEY=str(root / "bench.key"))
    fe = FrontendProcess(root, [n.endpoint for n in nodes], env=env)
    stack = KmsStack(lab, nodes, fe, f"http://127.0.0.1:{metrics_port}/metrics")
    fe.start()
    try:
        tls = grpc.ssl_channel_credentials(cert_pem.encode()) if client_tls else None

        async def serving() -> bool:
            if fe.proc is not None and fe.proc.poll() is not None:
                raise RuntimeError(f"frontend exited: {fe.log_path.read_text()[-2000:]}")
            fe.root_credentials()  # written by the frontend as it starts
            return True
        await wait_until(serving, timeout=30, what="frontend to write its credentials")
        channel = kms_auth.aio_channel(fe.endpoint, fe.root_credentials(), fe.region, channel_credentials=tls)
        stub = kms_grpc.KmsStub(channel)

        async def answering() -> bool:
            await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=2)
            return True
        await wait_until(answering, timeout=30, what="frontend to serve")
        cluster_id = (await nodes[0].stub().GetStatus(hsm.Empty())).cluster_id
        store = await stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(
            custom_key_store_name="bench", cloud_hsm_cluster_id=cluster_id,
            trust_anchor_certificate=lab.anchor.cert_pem, key_store_password=CU_PASSWORD))
        await stub.ConnectCustomKeyStore(kms.ConnectCustomKeyStoreRequest(custom_key_store_id=store.custom_key_store_id))

        async def connected() -> bool:
            d = await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(
                custom_key_store_id=store.custom_key_store_id))
            return d.custom_key_stores[0].connection_state == "CONNECTED"
        await wait_until(connected, timeout=30)
        created = await stub.CreateKey(kms.CreateKeyRequest(origin="AWS_CLOUDHSM",
                                                            custom_key_store_id=store.custom_key_store_id))
        stack.key_id = created.key_metadata.key_id
        if check:
            payload = os.urandom(PAYLOAD_BYTES)
            answer = await stub.Encrypt(kms.EncryptRequest(key_id=stack.key_id, plaintext=payload))
            decrypted = await stub.Decrypt(kms.DecryptRequest(ciphertext_blob=answer.ciphertext_blob))
            assert decrypted.plaintext == payload, "Encrypt/Decrypt round trip failed"
        await channel.close()
    except BaseException:
        await stack.stop()
        raise
    return stack


def write_cert(root: Path) -> str:
    """A self-signed certificate for 127.0.0.1 (every TLS leg of the benchmark): its PEM."""
    key = certs.new_key()
    (root / "bench.key").write_bytes(certs.key_pem(key))
    cert_pem = certs.cert_pem(certs.self_signed(key, "bench", ["127.0.0.1", "localhost"]))
    (root / "bench.crt").write_text(cert_pem)
    return cert_pem


def encrypt_target(stack: KmsStack, ca: str | None) -> Target:
    request = kms.EncryptRequest(key_id=stack.key_id, plaintext=os.urandom(PAYLOAD_BYTES))
    key_id, secret = stack.fe.aws_credentials()
    return (stack.fe.endpoint, ca, ENCRYPT_METHOD, request.SerializeToString(), (key_id, secret, stack.fe.region))


def encrypt_watch(stack: KmsStack) -> dict[str, list[int]]:
    return {"frontend": [stack.fe.proc.pid] if stack.fe.proc else [],
            "nodes": [n.proc.pid for n in stack.nodes if n.proc is not None]}


async def measure_encrypt(clients: Clients, path: str, stack: KmsStack, callers: int, seconds: float) -> dict:
    """One Encrypt measurement, with the operations per stream message the frontend sent meanwhile."""
    ops0, msgs0 = await asyncio.to_thread(batch_totals, stack.metrics_url)
    result = await clients.run(path, callers, seconds, encrypt_watch(stack))
    ops1, msgs1 = await asyncio.to_thread(batch_totals, stack.metrics_url)
    result["ops_per_message"] = (ops1 - ops0) / (msgs1 - msgs0) if msgs1 > msgs0 else 0.0
    return result


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="length of one measurement (one path, one point)")
    p.add_argument("--callers", default="1,16,64", help="concurrent closed-loop callers per point")
    p.add_argument("--rounds", type=int, default=3, help="repeat the sweep; the table shows medians")
    p.add_argument("--client-processes", type=int, default=2, help="load processes the callers are spread over")
    p.add_argument("--paths", default=",".join(PATHS), help=f"subset of {','.join(PATHS)}")
    p.add_argument("--client-tls", action="store_true", help="TLS on the client leg of every path too")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load on each path before measuring")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    paths = [x for x in args.paths.split(",") if x]
    callers_list = [int(c) for c in args.callers.split(",")]
    info = machine()
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    cert_pem = write_cert(root)
    ca = cert_pem if args.client_tls else None
    stack: KmsStack | None = None
    echo_procs: list[subprocess.Popen] = []
    clients: Clients | None = None
    try:
        stack = await start_kms(root, cert_pem, args.client_tls)
        echo_procs, addresses = start_echo(root, args.client_tls)
        for address in addresses.values():
            ch = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(cert_pem.encode())) if ca \
                else grpc.aio.insecure_channel(address)
            echo = ch.unary_unary(ECHO_METHOD)

            async def answers(echo: Any = echo) -> bool:
                return await echo(b"x", timeout=1) == b"x"
            await wait_until(answers, timeout=20, what=f"the echo server at {address}")
            await ch.close()
        payload = os.urandom(PAYLOAD_BYTES)
        targets = {"encrypt": encrypt_target(stack, ca),
                   **{path: (address, ca, ECHO_METHOD, payload, None) for path, address in addresses.items()}}
        clients = Clients(args.client_processes, {k: v for k, v in targets.items() if k in paths})
        watch = {"echo2": {"proxy": [echo_procs[1].pid], "echo": [echo_procs[0].pid]},
                 "echo1": {"echo": [echo_procs[0].pid]},
                 "stream2": {"proxy": [echo_procs[2].pid], "echo": [echo_procs[0].pid]}}

        async def measure(path: str, callers: int, seconds: float) -> dict:
            if path == "encrypt":
                assert stack is not None
                return await measure_encrypt(clients, path, stack, callers, seconds)
            return await clients.run(path, callers, seconds, watch[path])
        for path in paths:  # warm up every path (connections, caches, the frontend's streams)
            await measure(path, 16, args.warmup)

        rounds: list[list[dict]] = []
        for r in range(args.rounds):
            points = []
            for callers in callers_list:
                order = paths[r % len(paths):] + paths[:r % len(paths)]
                point = {"callers": callers, "order": order}
                for path in order:
                    point[path] = await measure(path, callers, args.seconds)
                for base in BASES:
                    if "encrypt" in point and base in point and point[base]["rps"]:
                        point[f"ratio_{base}"] = point["encrypt"]["rps"] / point[base]["rps"]
                points.append(point)
                print(f"round {r + 1}/{args.rounds}, {callers} callers: " + ", ".join(
                    f"{path} {point[path]['rps']:.0f} req/s" for path in paths), flush=True)
            rounds.append(points)
        table = medians(rounds, paths)
        report(info, args, table)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "machine": info, "command": shlex.join([sys.executable, *sys.argv]),
                "args": vars(args), "median": table, "rounds": rounds}, indent=2))
    finally:
        if clients is not None:
            clients.close()
        for proc in echo_procs:
            proc.terminate()
        if stack is not None:
            await stack.stop()


def medians(rounds: list[list[dict]], paths: list[str]) -> list[dict]:
    out = []
    for i, first in enumerate(rounds[0]):
        pts = [r[i] for r in rounds]
        row: dict[str, Any] = {"callers": first["callers"]}
        for path in paths:
            row[path] = {m: statistics.median(pt[path][m] for pt in pts)
                         for m in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
            row[path]["errors"] = sum(pt[path]["errors"] for pt in pts)
            row[path]["cpu_us_per_req"] = {g: statistics.median(pt[path]["cpu_us_per_req"][g] for pt in pts)
                                           for g in first[path]["cpu_us_per_req"]}
        if "encrypt" in paths:
            row["encrypt"]["ops_per_message"] = statistics.median(pt["encrypt"]["ops_per_message"] for pt in pts)
        for base in BASES:
            key = f"ratio_{base}"
            if key in first:
                row[key] = statistics.median(pt[key] for pt in pts)
                row[f"{key}_rounds"] = [round(pt[key], 3) for pt in pts]
        out.append(row)
    return out


def report(info: dict, args: argparse.Namespace, table: list[dict]) -> None:
    print(f"\nmachine: {info['uname_m']}, {info['nproc']} cores ({info['cpu']}), Python {info['python']},"
          f" grpcio {info['grpcio']}")
    print(f"Encrypt of {PAYLOAD_BYTES} B; {args.client_processes} load processes; client leg"
          f" {'TLS' if args.client_tls else 'plaintext'}, second hop TLS; {args.seconds:g} s per point;"
          f" median of {args.rounds} interleaved rounds")
    print(f"{'callers':>7} | {'path':<22} | {'req/s':>7} | {'p50 ms':>6} | {'p90 ms':>6} | {'p99 ms':>6} |"
          f" {'max ms':>7} | errors | CPU us per request")
    for row in table:
        for path in [p for p in PATHS if p in row]:
            m = row[path]
            cpu = ", ".join(f"{g} {v:.0f}" for g, v in m["cpu_us_per_req"].items())
            if "ops_per_message" in m:
                cpu += f" ({m['ops_per_message']:.1f} ops per stream message)"
            print(f"{row['callers']:>7} | {PATHS[path]:<22} | {m['rps']:>7.0f} | {m['p50_ms']:>6.2f} |"
                  f" {m['p90_ms']:>6.2f} | {m['p99_ms']:>6.2f} | {m['max_ms']:>7.2f} | {m['errors']:>6} | {cpu}")
        for base, label in BASES.items():
            key = f"ratio_{base}"
            if key in row:
                per_round = ", ".join(f"{x:.2f}" for x in row[f"{key}_rounds"])
                print(f"{'':>7} | {label:<22} | {row[key]:>7.2f} | rounds: {per_round}")


if __name__ == "__main__":
    asyncio.run(main())
