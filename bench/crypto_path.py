"""Benchmark: Encrypt (256 B) through the frontend vs bare gRPC echoes, in one run.

    python bench/crypto_path.py [--seconds 5] [--callers 1,16,64] [--rounds 3]
                                [--client-processes 2] [--client-tls] [--json out.json]
                                [--paths encrypt,aws,stream2,encrypt_w,aws_w --workers 2 --channels 4]

Starts, on one machine: three hsm-node processes and a kms-frontend (a CONNECTED
custom key store with one key), and a bare echo pair: an echo server and a proxy
that forwards each unary call to it over the same TLS as the frontend -> node leg.
The paths (``--paths``; by default the first four):

* ``encrypt``  client -> kms-frontend -> hsm-node (Encrypt of 256 B, the real path)
* ``echo2``    client -> proxy -> echo             (two hops, no work: the baseline)
* ``echo1``    client -> echo                      (one hop: the stretch baseline)
* ``stream2``  client -> stream proxy -> echo      (a reference: the frontend's design with no work,
               unary calls carried over one batching TLS stream; the most the frontend could reach)
* ``surface2`` client -> the stream proxy behind the frontend's API surface -> echo (takes the
               EncryptRequest the frontend takes, reads metadata and peer, answers an
               EncryptResponse with a request id in trailing metadata: what gRPC makes the frontend
               pay around each call before any of its own work; ``echo_server.kms_surface``)
* ``aws``      client -> kms-frontend's AWS endpoint -> hsm-node (Encrypt as AWS JSON 1.1 over
               HTTP/1.1 keep-alive, one connection per caller; SigV4-signed once per measurement,
               so the client's signing is not what is measured)
* ``encrypt_w``, ``aws_w``: the same two calls to a second stack whose frontend runs
               ``--workers N`` (``--workers N``), measured interleaved with the single process;
               give ``--channels`` > 1 so each load process opens several gRPC connections for
               the kernel to spread over the workers (SO_REUSEPORT spreads connections, not calls)

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
import base64
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
from plumbing.options import EVENT_LOOPS  # noqa: E402
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
STATS_METHOD = "/bench.Echo/Stats"
ENCRYPT_METHOD = "/kms.v1.Kms/Encrypt"
PATHS = {"encrypt": "Encrypt via frontend", "aws": "Encrypt, AWS endpoint", "echo2": "bare 2-hop echo",
         "echo1": "bare 1-hop echo", "stream2": "no-work stream proxy", "surface2": "stream proxy, KMS API",
         "encrypt_w": "Encrypt, N workers", "aws_w": "AWS endpoint, N workers"}
WORKER_PATHS = {"encrypt_w": "encrypt", "aws_w": "aws"}  # the same calls to the second stack (--workers N)
BASES = {"echo2": "Encrypt / 2-hop echo", "echo1": "Encrypt / 1-hop echo", "stream2": "Encrypt / stream proxy",
         "surface2": "Encrypt / KMS API proxy"}
DEFAULT_PATHS = "encrypt,echo2,echo1,stream2"


# ---------------------------------------------------------------- client processes


Target = tuple[str, "str | None", str, bytes, "tuple[str, str, str] | None"]  # address, CA, method, request, signer
# A target whose method is HTTP_METHOD is the AWS endpoint: the request is Encrypt's JSON body, and the
# callers send it as raw HTTP/1.1 (one keep-alive connection each), signed once per measurement.
HTTP_METHOD = "http:TrentService.Encrypt"


def client_process(conn: Any, targets: dict[str, Target], channels: int = 1) -> None:
    """Entry point of a load process: run the commands the parent sends over ``conn``."""
    asyncio.run(_client(conn, targets, channels))


def _signer(address: str, method: str, request: bytes, signer: tuple[str, str, str] | None) -> Any:
    """Metadata for a measurement: SigV4 over ``request`` (kms.v1 calls), or nothing; for the AWS
    endpoint, the whole signed HTTP request."""
    if signer is None:
        return lambda: None
    key_id, secret, region = signer
    from botocore.credentials import Credentials
    if method == HTTP_METHOD:
        return lambda: http_request(address, request, Credentials(key_id, secret), region)
    return lambda: kms_auth.sign(method, request, Credentials(key_id, secret), region, address)


def http_request(address: str, body: bytes, credentials: Any, region: str) -> bytes:
    """A complete, SigV4-signed AWS JSON 1.1 Encrypt request (as botocore signs it), as bytes on the wire."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=f"http://{address}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"})
    SigV4Auth(credentials, "kms", region).add_auth(request)
    headers = {"Host": address, **{k: v for k, v in request.headers.items() if k.lower() != "host"},
               "Content-Length": str(len(body))}
    return ("POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


class HttpCall:
    """One keep-alive HTTP/1.1 connection per caller, sending pre-built requests and reading the
    answers with as little work as possible (status line, Content-Length, body): the client's cost
    stays small beside the server's, as the gRPC callers' does."""

    def __init__(self, address: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)

    async def caller(self, request: bytes, stop: float, latencies: array, errors: Counter[str]) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        perf = time.perf_counter
        try:
            while time.monotonic() < stop:
                t0 = perf()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
                status = head[9:12]
                if status != b"200":
                    errors[f"HTTP{status.decode()}"] += 1
                    continue
                latencies.append(perf() - t0)
        finally:
            writer.close()


async def _client(conn: Any, targets: dict[str, Target], connections: int) -> None:
    channels, calls = [], {}
    # ``connections`` channels per path, each on its own connection: several frontend workers share
    # a port and the kernel hands each connection to one of them (SO_REUSEPORT), so one would not spread.
    options = [("grpc.use_local_subchannel_pool", 1)] if connections > 1 else []
    for name, (address, ca_pem, method, request, signer) in targets.items():
        if method == HTTP_METHOD:  # one connection per caller already
            calls[name] = (HttpCall(address), request, _signer(address, method, request, signer))
            continue
        stubs = []
        for _ in range(connections):
            if ca_pem:
                ch = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca_pem.encode()), options=options)
            else:
                ch = grpc.aio.insecure_channel(address, options=options)
            channels.append(ch)
            # no serializer and no deserializer: bytes in, bytes out, the same cost on every path
            stubs.append(ch.unary_unary(method))
        calls[name] = (stubs, request, _signer(address, method, request, signer))
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
    if isinstance(call, HttpCall):
        started = time.monotonic()
        await asyncio.gather(*(call.caller(metadata, stop, latencies, errors) for _ in range(callers)))
        return {"latencies": latencies.tobytes(), "errors": dict(errors), "elapsed": time.monotonic() - started}

    async def caller(call: Any) -> None:
        while time.monotonic() < stop:
            t0 = perf()
            try:
                await call(request, timeout=30, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(perf() - t0)
    started = time.monotonic()
    await asyncio.gather(*(caller(call[i % len(call)]) for i in range(callers)))
    return {"latencies": latencies.tobytes(), "errors": dict(errors), "elapsed": time.monotonic() - started}


async def proxy_batch_totals(address: str) -> tuple[float, float]:
    """(operations, messages) the stream proxy has sent on its stream so far."""
    async with grpc.aio.insecure_channel(address) as ch:
        ops, msgs = (await ch.unary_unary(STATS_METHOD)(b"", timeout=5)).split()
    return float(ops), float(msgs)


def served_per_worker(metrics_urls: list[str]) -> list[float]:
    """Encrypt requests each worker has answered so far (its /metrics), to show how the kernel spread them."""
    import urllib.request

    out = []
    for url in metrics_urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            out.append(0.0)
            continue
        out.append(sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("kms_requests_total{") and 'operation="Encrypt"' in line))
    return out


def batch_totals(metrics_urls: list[str]) -> tuple[float, float]:
    """(operations, messages) the frontend (all its workers) has sent on its crypto streams so far, from /metrics."""
    import urllib.request

    ops = msgs = 0.0
    for url in metrics_urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("kms_hsm_batch_size_sum"):
                ops += float(line.split()[-1])
            elif line.startswith("kms_hsm_batch_size_count"):
                msgs += float(line.split()[-1])
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

    def __init__(self, n: int, targets: dict[str, Target], channels: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(child, targets, channels), daemon=True)
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


def start_echo(root: Path, client_tls: bool, event_loop: str = "auto") -> tuple[list[subprocess.Popen], dict[str, str]]:
    """The echo server, its proxy and its stream proxy (on ``event_loop``, as the product's servers);
    returns them and the client address of each path."""
    echo_port, proxy_port, plain_port, stream_port, surface_port = (free_port() for _ in range(5))
    here = Path(__file__).parent / "echo_server.py"
    cert = ["--tls-cert", str(root / "bench.crt"), "--tls-key", str(root / "bench.key")]
    echo_cmd = [sys.executable, str(here), "echo", "--listen", f"127.0.0.1:{echo_port}", *cert]
    if not client_tls:
        echo_cmd += ["--plain-listen", f"127.0.0.1:{plain_port}"]
    upstream = ["--upstream", f"127.0.0.1:{echo_port}", "--ca", str(root / "bench.crt")]
    proxy_cmd = [sys.executable, str(here), "proxy", "--listen", f"127.0.0.1:{proxy_port}", *upstream]
    stream_cmd = [sys.executable, str(here), "stream-proxy", "--listen", f"127.0.0.1:{stream_port}", *upstream]
    surface_cmd = [sys.executable, str(here), "stream-proxy", "--kms-surface", "--listen", f"127.0.0.1:{surface_port}",
                   *upstream]
    if client_tls:
        proxy_cmd += cert
        stream_cmd += cert
        surface_cmd += cert
    procs = [subprocess.Popen([*cmd, "--event-loop", event_loop])
             for cmd in (echo_cmd, proxy_cmd, stream_cmd, surface_cmd)]
    return procs, {"echo2": f"127.0.0.1:{proxy_port}", "echo1": f"127.0.0.1:{echo_port if client_tls else plain_port}",
                   "stream2": f"127.0.0.1:{stream_port}", "surface2": f"127.0.0.1:{surface_port}"}


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
    metrics_urls: list[str]  # one per worker
    key_id: str = ""

    async def stop(self) -> None:
        await self.fe.stop()
        await self.lab.close()


def consecutive_ports(n: int) -> int:
    """A free port P with P+1 .. P+n-1 free too (worker i serves /metrics on P+i)."""
    import socket
    while True:
        p = free_port()
        try:
            for i in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + i))
        except OSError:
            continue
        return p


async def start_kms(root: Path, cert_pem: str, client_tls: bool, check: bool = True, workers: int = 1) -> KmsStack:
    """Start the stack under ``root`` (certificate ``root/bench.crt``, key ``root/bench.key``);
    ``check``: make sure an Encrypt / Decrypt round trip works; ``workers``: kms-frontend --workers."""
    lab = Lab(root)
    try:
        nodes = await three_node_cluster(lab)
    except BaseException:
        await lab.close()
        raise
    metrics_port = consecutive_ports(workers)
    env = {"KMS_STORE_QUOTA": "1000000", "KMS_LOG_LEVEL": "warning", "KMS_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
           "KMS_WORKERS": str(workers)}
    if client_tls:
        env.update(KMS_TLS_CERT=str(root / "bench.crt"), KMS_TLS_KEY=str(root / "bench.key"))
    fe = FrontendProcess(root, [n.endpoint for n in nodes], env=env)
    stack = KmsStack(lab, nodes, fe, [f"http://127.0.0.1:{metrics_port + i}/metrics" for i in range(workers)])
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


def aws_target(stack: KmsStack) -> Target:
    body = json.dumps({"KeyId": stack.key_id, "Plaintext": base64.b64encode(os.urandom(PAYLOAD_BYTES)).decode()})
    key_id, secret = stack.fe.aws_credentials()
    return (f"127.0.0.1:{stack.fe.aws_port}", None, HTTP_METHOD, body.encode(), (key_id, secret, stack.fe.region))


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (a frontend with --workers: the supervisor and its workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return found


def encrypt_watch(stack: KmsStack) -> dict[str, list[int]]:
    return {"frontend": descendants(stack.fe.proc.pid) if stack.fe.proc else [],
            "nodes": [n.proc.pid for n in stack.nodes if n.proc is not None]}


async def measure_encrypt(clients: Clients, path: str, stack: KmsStack, callers: int, seconds: float) -> dict:
    """One Encrypt measurement, with the operations per stream message the frontend sent meanwhile."""
    ops0, msgs0 = await asyncio.to_thread(batch_totals, stack.metrics_urls)
    served0 = await asyncio.to_thread(served_per_worker, stack.metrics_urls)
    result = await clients.run(path, callers, seconds, encrypt_watch(stack))
    ops1, msgs1 = await asyncio.to_thread(batch_totals, stack.metrics_urls)
    served1 = await asyncio.to_thread(served_per_worker, stack.metrics_urls)
    result["ops_per_message"] = (ops1 - ops0) / (msgs1 - msgs0) if msgs1 > msgs0 else 0.0
    if len(served0) > 1:  # the share of the requests each worker answered
        total = sum(served1) - sum(served0)
        result["worker_shares"] = [round((b - a) / total, 2) if total else 0.0 for a, b in zip(served0, served1, strict=True)]
    return result


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="length of one measurement (one path, one point)")
    p.add_argument("--callers", default="1,16,64", help="concurrent closed-loop callers per point")
    p.add_argument("--rounds", type=int, default=3, help="repeat the sweep; the table shows medians")
    p.add_argument("--client-processes", type=int, default=2, help="load processes the callers are spread over")
    p.add_argument("--paths", default=DEFAULT_PATHS, help=f"subset of {','.join(PATHS)}")
    p.add_argument("--unsigned-baselines", action="store_true",
                   help="the echo paths' calls without the signature metadata Encrypt's calls carry (as before issue 16)")
    p.add_argument("--client-tls", action="store_true", help="TLS on the client leg of every path too")
    p.add_argument("--workers", type=int, default=0,
                   help="also start a second stack whose frontend runs N workers (paths encrypt_w, aws_w)")
    p.add_argument("--channels", type=int, default=1,
                   help="gRPC connections per load process and path (several workers: the kernel spreads connections)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load on each path before measuring")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--event-loop", choices=EVENT_LOOPS, default="auto",
                   help="every server's loop, the product's (KMS_/HSM_EVENT_LOOP) and the baselines' alike")
    args = p.parse_args()
    os.environ["KMS_EVENT_LOOP"] = os.environ["HSM_EVENT_LOOP"] = args.event_loop  # the product's servers
    paths = [x for x in args.paths.split(",") if x]
    callers_list = [int(c) for c in args.callers.split(",")]
    info = machine()
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    cert_pem = write_cert(root)
    ca = cert_pem if args.client_tls else None
    stack: KmsStack | None = None
    stack_w: KmsStack | None = None
    echo_procs: list[subprocess.Popen] = []
    clients: Clients | None = None
    try:
        stack = await start_kms(root, cert_pem, args.client_tls)
        if args.workers > 1:
            (root / "w").mkdir()
            for name in ("bench.crt", "bench.key"):
                (root / "w" / name).write_bytes((root / name).read_bytes())
            stack_w = await start_kms(root / "w", cert_pem, args.client_tls, workers=args.workers)
            PATHS["encrypt_w"] = f"Encrypt, {args.workers} workers"
            PATHS["aws_w"] = f"AWS endpoint, {args.workers} wkrs"
        echo_procs, addresses = start_echo(root, args.client_tls, args.event_loop)
        for path, address in addresses.items():
            ch = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(cert_pem.encode())) if ca \
                else grpc.aio.insecure_channel(address)
            echo = ch.unary_unary(ECHO_METHOD)

            async def answers(echo: Any = echo, api: bool = path == "surface2") -> bool:
                if api:
                    reply = await echo(kms.EncryptRequest(plaintext=b"x").SerializeToString(), timeout=1)
                    return kms.EncryptResponse.FromString(reply).ciphertext_blob == b"x"
                return await echo(b"x", timeout=1) == b"x"
            await wait_until(answers, timeout=20, what=f"the echo server at {address}")
            await ch.close()
        payload = os.urandom(PAYLOAD_BYTES)
        # The baselines' calls carry a signature like Encrypt's (same headers, same size), unless
        # --unsigned-baselines: gRPC parses and hands over every call's metadata whether the server
        # reads it or not, so that part of the cost belongs to the transport, which the baselines
        # must pay too; checking the signature is the frontend's own work, which they do not do.
        signer = None if args.unsigned_baselines else encrypt_target(stack, ca)[4]
        targets = {"encrypt": encrypt_target(stack, ca), "aws": aws_target(stack),
                   **{path: (address, ca, ECHO_METHOD, payload, signer) for path, address in addresses.items()}}
        # the KMS API proxy is sent what the frontend is sent (an EncryptRequest)
        targets["surface2"] = (addresses["surface2"], ca, ECHO_METHOD, targets["encrypt"][3], signer)
        if stack_w is not None:
            targets.update(encrypt_w=encrypt_target(stack_w, ca), aws_w=aws_target(stack_w))
        paths = [x for x in paths if x in targets]
        clients = Clients(args.client_processes, {k: v for k, v in targets.items() if k in paths}, args.channels)
        watch = {"echo2": {"proxy": [echo_procs[1].pid], "echo": [echo_procs[0].pid]},
                 "echo1": {"echo": [echo_procs[0].pid]},
                 "stream2": {"proxy": [echo_procs[2].pid], "echo": [echo_procs[0].pid]},
                 "surface2": {"proxy": [echo_procs[3].pid], "echo": [echo_procs[0].pid]}}

        async def measure(path: str, callers: int, seconds: float) -> dict:
            if path in ("encrypt", "aws"):
                assert stack is not None
                return await measure_encrypt(clients, path, stack, callers, seconds)
            if path in WORKER_PATHS:
                assert stack_w is not None
                return await measure_encrypt(clients, path, stack_w, callers, seconds)
            if path in ("stream2", "surface2") and not args.client_tls:
                ops0, msgs0 = await proxy_batch_totals(addresses[path])
                result = await clients.run(path, callers, seconds, watch[path])
                ops1, msgs1 = await proxy_batch_totals(addresses[path])
                result["ops_per_message"] = (ops1 - ops0) / (msgs1 - msgs0) if msgs1 > msgs0 else 0.0
                return result
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
                    f"{path} {point[path]['rps']:.0f} req/s" + (f" (workers' shares {point[path]['worker_shares']})"
                                                               if "worker_shares" in point[path] else "")
                    for path in paths), flush=True)
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
        for st in (stack, stack_w):
            if st is not None:
                await st.stop()


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
        for path in paths:
            if "ops_per_message" in first[path]:
                row[path]["ops_per_message"] = statistics.median(pt[path]["ops_per_message"] for pt in pts)
        for path, base in (("encrypt", "stream2"), ("encrypt", "surface2"), ("aws", "encrypt"), ("encrypt_w", "encrypt"),
                           ("aws_w", "aws")):
            if path in paths and base in paths:  # per-round ratios, then the median
                groups = ((("frontend", "proxy"), ("nodes", "echo")) if base in ("stream2", "surface2")
                          else (("frontend", "frontend"),))
                for group, base_group in groups:
                    row[f"cpu_{path}_{base}_{group}"] = statistics.median(
                        pt[path]["cpu_us_per_req"][group] / pt[base]["cpu_us_per_req"][base_group]
                        for pt in pts if pt[base]["cpu_us_per_req"][base_group])
                row[f"p99_{path}_{base}"] = statistics.median(pt[path]["p99_ms"] / pt[base]["p99_ms"] for pt in pts
                                                              if pt[base]["p99_ms"])
                row[f"rps_{path}_{base}"] = statistics.median(pt[path]["rps"] / pt[base]["rps"] for pt in pts
                                                              if pt[base]["rps"])
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
          f" median of {args.rounds} interleaved rounds; event loop {args.event_loop} (uvloop if installed)")
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
        for key, label in (("cpu_encrypt_stream2_frontend", "CPU: frontend / proxy"),
                           ("cpu_encrypt_stream2_nodes", "CPU: nodes / echo"),
                           ("p99_encrypt_stream2", "p99: Encrypt / proxy"),
                           ("cpu_encrypt_surface2_frontend", "CPU: frontend / API px"),
                           ("p99_encrypt_surface2", "p99: Encrypt / API px"),
                           ("rps_aws_encrypt", "req/s: AWS / gRPC"),
                           ("cpu_aws_encrypt_frontend", "CPU: AWS / gRPC fe"),
                           ("p99_aws_encrypt", "p99: AWS / gRPC"),
                           ("rps_encrypt_w_encrypt", "req/s: N workers / 1"),
                           ("cpu_encrypt_w_encrypt_frontend", "CPU: N workers / 1"),
                           ("p99_encrypt_w_encrypt", "p99: N workers / 1"),
                           ("rps_aws_w_aws", "AWS req/s: N wkrs / 1"),
                           ("cpu_aws_w_aws_frontend", "AWS CPU: N wkrs / 1")):
            if key in row:
                print(f"{'':>7} | {label:<22} | {row[key]:>7.2f} | median of per-round ratios")


if __name__ == "__main__":
    asyncio.run(main())
