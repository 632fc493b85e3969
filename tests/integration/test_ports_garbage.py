"""Every port of an HSM node and of the frontend, as someone who can connect but has nothing to say
in its protocol sees it: random bytes, plain HTTP, a TLS hello, an HTTP/2 preface then junk, a
request left half sent. Each is refused or ignored; afterwards each process still runs, still
serves, and logged no traceback. (The AWS endpoint's own table is test_aws_endpoint_fuzz.py.)"""
from __future__ import annotations

import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from protos.hsm.v1 import hsm_pb2 as pb
from protos.kms.v1 import kms_pb2 as kms
from tests.harness import FrontendProcess, Lab, free_port

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GARBAGE = [
    ("random bytes", bytes(range(256)) * 16),
    ("NUL bytes", b"\x00" * 65536),
    ("plain HTTP", b"POST /hsm.v1.Hsm/Login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
    ("a TLS hello, then junk", bytes.fromhex("16030100f4010000f00303") + b"\xff" * 500),
    ("an HTTP/2 preface, then junk", H2_PREFACE + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\xee" * 300),
    ("an HTTP/2 preface, then a huge frame", H2_PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"a" * 1000),
    ("half a request", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Le"),
]


def throw(port: int, data: bytes) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            s.settimeout(2)
            try:
                while s.recv(65536):
                    pass
            except TimeoutError:
                pass  # it waits for more (a half request): closing is the sender's job
    except (ConnectionResetError, BrokenPipeError):
        pass


async def test_garbage_to_every_port_is_refused_and_every_process_keeps_serving(lab: Lab, tmp_path) -> None:
    node_metrics, fe_metrics, console = free_port(), free_port(), free_port()
    node = await lab.start_node(extra_args=["--metrics-listen", f"127.0.0.1:{node_metrics}"])
    await lab.init_active(node)
    frontend = FrontendProcess(tmp_path, [node.endpoint], env={"KMS_METRICS_LISTEN": f"127.0.0.1:{fe_metrics}",
                                                                   "KMS_CONSOLE_LISTEN": f"127.0.0.1:{console}"})
    frontend.start()
    await frontend.wait_ready()
    ports = {"node client": node.port, "node peer": node.peer_port, "node metrics": node_metrics,
             "frontend gRPC": frontend.port, "frontend AWS": frontend.aws_port, "frontend metrics": fe_metrics,
             "frontend console": console}
    try:
        # All at once: a half request holds its connection until the sender gives up (2 s), and
        # many senders at a time is also the harder case for the servers.
        throws = [(port, data) for port in ports.values() for _, data in GARBAGE]
        with ThreadPoolExecutor(max_workers=len(throws)) as pool:
            list(pool.map(lambda t: throw(*t), throws))
        assert node.proc.poll() is None and frontend.proc.poll() is None
        assert (await node.stub().GetStatus(pb.Empty(), timeout=10)).state == pb.ACTIVE
        await frontend.stub().DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=10)
        for port in (node_metrics, fe_metrics):
            assert b"# HELP" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        assert b"Sign in" in urllib.request.urlopen(f"http://127.0.0.1:{console}/", timeout=10).read()
        for log in (node.log_path, frontend.log_path):
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
    finally:
        await frontend.stop()
