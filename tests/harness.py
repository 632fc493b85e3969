"""Real hsm-node processes on loopback ports for the integration tests."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from botocore.credentials import Credentials

from hsm_node import client
from hsm_node.mgmt import provision
from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc
from protos.kms.v1 import auth as kms_auth

CO_PASSWORD = "co-Password1"
CU_PASSWORD = "kmsPassword1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate, *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll an (async or sync) predicate until it returns a truthy value, with a deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (grpc.RpcError, OSError, AssertionError) as exc:
            last_exc = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class CliResult:
    """What a command-line run printed, shown whole when an assertion fails."""
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"

    def json(self):  # type: ignore[no-untyped-def]
        assert self.rc == 0, self
        return json.loads(self.out)


@dataclass
class NodeProcess:
    root: Path
    name: str
    master_key: str
    backup_dir: Path
    port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    anchor_pem: str | None = None
    _channel: grpc.aio.Channel | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def peer_endpoint(self) -> str:
        return f"127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self) -> None:
        env = {**os.environ, "HSM_MASTER_KEY": self.master_key}
        cmd = [sys.executable, "-m", "hsm_node.server", "--data-dir", str(self.data_dir), "--listen", self.endpoint,
               "--peer-listen", self.peer_endpoint, "--backup-dir", str(self.backup_dir), *self.extra_args]
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 20.0) -> pb.NodeStatus:
        async def ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            await self.reset_channel()
            return await self.stub().GetStatus(pb.Empty(), timeout=2)
        return await wait_until(ready, timeout=timeout, what=f"{self.name} to serve")

    async def reset_channel(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None

    def stub(self) -> pb_grpc.HsmStub:
        if self._channel is None:
            self._channel = client.channel(self.endpoint, self.anchor_pem)
        return client.stub(self._channel)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    async def stop(self) -> None:
        await self.reset_channel()
        self.kill(signal.SIGTERM)
        if getattr(self, "log_file", None):
            self.log_file.close()

    async def restart(self) -> pb.NodeStatus:
        await self.stop()
        self.start()
        return await self.wait_ready()


class Lab:
    """A directory of node processes sharing one deployment secret and backup store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.master_key = base64.b64encode(os.urandom(32)).decode()
        self.backup_dir = root / "backups"
        self.nodes: list[NodeProcess] = []
        self.anchor = provision.make_trust_anchor(root / "ca")

    def node(self, name: str | None = None, extra_args: list[str] | None = None) -> NodeProcess:
        n = NodeProcess(self.root, name or f"node{len(self.nodes) + 1}", self.master_key, self.backup_dir,
                        extra_args=extra_args or [])
        self.nodes.append(n)
        return n

    async def start_node(self, name: str | None = None, extra_args: list[str] | None = None) -> NodeProcess:
        n = self.node(name, extra_args)
        n.start()
        await n.wait_ready()
        return n

    async def init_active(self, n: NodeProcess) -> None:
        """Initialise and activate a node; switch its channel to verify the trust anchor."""
        await provision.initialize(n.stub(), self.anchor)
        n.anchor_pem = self.anchor.cert_pem
        await n.reset_channel()
        await provision.activate(n.stub(), CO_PASSWORD)

    async def close(self) -> None:
        for n in self.nodes:
            await n.stop()


async def refused(call, code: grpc.StatusCode, *fragments: str) -> str:
    """Await an RPC that must fail with ``code`` and a message containing every fragment."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
        for fragment in fragments:
            assert fragment in (err.details() or ""), err.details()
        return err.details() or ""
    raise AssertionError(f"expected {code}, but the call succeeded")


async def login(stub: pb_grpc.HsmStub, user_type: int, name: str, password: str, client_id: str = "") -> str:
    r = await stub.Login(pb.LoginRequest(user_type=user_type, username=name, password=password, client_id=client_id))
    return r.session_token


async def co(stub: pb_grpc.HsmStub) -> str:
    return await login(stub, pb.CO, "admin", CO_PASSWORD)


@dataclass
class FrontendProcess:
    root: Path
    hsm_endpoints: list[str]
    name: str = "frontend"
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    _channel: grpc.aio.Channel | None = None
    aws_port: int = field(default_factory=free_port)  # the AWS JSON endpoint (unless env sets KMS_AWS_LISTEN)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def aws_endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    def aws_credentials(self) -> tuple[str, str]:
        """The account root's access key pair: the configured one, else the one the frontend generated
        in its data dir."""
        configured = self.env.get("KMS_AWS_ACCESS_KEYS")
        if configured:
            key_id, _, secret = configured.split(",")[0].partition(":")
            return key_id, secret
        doc = json.loads((self.data_dir / "aws-credentials.json").read_text())
        return doc["aws_access_key_id"], doc["aws_secret_access_key"]

    @property
    def region(self) -> str:
        return self.env.get("KMS_REGION", "us-east-1")

    def root_credentials(self) -> Credentials:
        return Credentials(*self.aws_credentials())

    def channel(self, credentials: Credentials | None) -> grpc.aio.Channel:
        """A channel to the frontend's gRPC API whose calls are signed with ``credentials`` (none: unsigned)."""
        return kms_auth.aio_channel(self.endpoint, credentials, self.region)

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def backup_dir(self) -> Path:
        """The control plane's backup store (the Region's)."""
        return Path(self.env.get("KMS_BACKUP_DIR") or self.root / f"{self.name}-backups")

    def start(self) -> None:
        env = {**os.environ, **self.env}
        cmd = [sys.executable, "-m", "kms_frontend.server", "--listen", self.endpoint, "--data-dir", str(self.data_dir),
               "--master-key-file", str(self.root / f"{self.name}-master.key")]
        for e in self.hsm_endpoints:
            cmd += ["--hsm-endpoint", e]
        if "KMS_AWS_LISTEN" not in self.env:  # a free port each, so frontends never contend for the default
            cmd += ["--aws-listen", f"127.0.0.1:{self.aws_port}"]
        if "KMS_BACKUP_DIR" not in self.env:  # its own, not ./hsm-backups of whatever directory pytest runs in
            cmd += ["--backup-dir", str(self.backup_dir)]
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)

    def stub(self):
        """A Kms stub signed as the account root."""
        from protos.kms.v1 import kms_pb2_grpc

        if self._channel is None:
            self._channel = self.channel(self.root_credentials())
        return kms_pb2_grpc.KmsStub(self._channel)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        from protos.kms.v1 import kms_pb2

        async def ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"frontend exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            await self.stub().DescribeCustomKeyStores(kms_pb2.DescribeCustomKeyStoresRequest(), timeout=2)
            return True
        await wait_until(ready, timeout=timeout, what="frontend to serve")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        self.kill(signal.SIGTERM)
        if getattr(self, "log_file", None):
            self.log_file.close()

    async def restart(self) -> None:
        await self.stop()
        self.start()
        await self.wait_ready()


@contextlib.asynccontextmanager
async def running_frontend(root: Path, hsm_endpoints: list[str], env: dict[str, str] | None = None):
    """A frontend process that serves for the length of the block, stopped after it."""
    frontend = FrontendProcess(root, hsm_endpoints, env=dict(env or {}))
    frontend.start()
    try:
        await frontend.wait_ready()
        yield frontend
    finally:
        await frontend.stop()


async def three_node_cluster(lab: Lab, n: int = 3, kmsuser_password: str = CU_PASSWORD,
                             node_args: list[str] | None = None) -> list[NodeProcess]:
    """n nodes (each started with ``node_args``), initialised, activated, joined, with kmsuser created."""
    nodes = [await lab.start_node(extra_args=node_args) for _ in range(n)]
    await lab.init_active(nodes[0])
    token = await co(nodes[0].stub())
    for node in nodes[1:]:
        await nodes[0].stub().AddNode(pb.AddNodeRequest(session_token=token, endpoint=node.endpoint,
                                                        peer_endpoint=node.peer_endpoint))
        node.anchor_pem = lab.anchor.cert_pem
        await node.reset_channel()
    await nodes[0].stub().CreateUser(pb.CreateUserRequest(session_token=token, user_type=pb.CU, username="kmsuser",
                                                          password=kmsuser_password))
    return nodes
