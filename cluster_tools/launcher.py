"""``kms-cluster``: the whole thing on one machine, as real processes.

    kms-cluster up [--nodes 3] [--dir .kms-cluster]     start (or resume) and stay in the foreground
    kms-cluster up --detach                              start and return
    kms-cluster up --principals principals.json          IAM users and roles besides the account root
    kms-cluster status [--json]                          endpoints, ids, node health
    kms-cluster down                                     stop everything that `up` started

``up`` starts a kms-frontend on loopback whose CloudHSM control plane starts the hsm-node
processes (the ``local`` provisioner: one loopback address per HSM, port 2225); the first time
it does what a customer does on AWS, through the ``cloudhsmv2`` API and ``hsm-mgmt``: create a
cluster, create its first HSM, sign the cluster CSR with its own CA, initialise, activate, add
the other HSMs, create ``kmsuser``; then it creates and connects a custom key store. All state
lives under one directory, so a second ``up`` resumes the same cluster (the frontend starts its
HSMs again). The directory's ``env`` file holds the endpoints, trust anchor and CO credentials
that ``kms``, ``hsm-mgmt`` and the AWS SDKs read by default. ``provision`` does the operator's
steps for nodes started elsewhere (compose), through ``hsm-mgmt``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from botocore.credentials import Credentials
from cryptography.x509.oid import ExtendedKeyUsageOID

from hsm_node import certs
from hsm_node.errors import InvalidArgument
from hsm_node.mgmt import provision
from kms_frontend.service.principals import load_principals_file
from plumbing.addresses import split_endpoint
from plumbing.envfile import EnvFileError, read_env_file
from plumbing.files import harden_process, make_private, write_private
from plumbing.options import positive_seconds, seconds
from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc

from . import cloudhsm_api

DEFAULT_DIR = ".kms-cluster"
STORE_NAME = "local-cloudhsm-store"
ALNUM = string.ascii_letters + string.digits


class LauncherError(Exception):
    pass


@dataclass
class NodeSpec:
    name: str
    port: int
    peer_port: int
    host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no /metrics
    hsm_id: str = ""       # the control plane's HSM (kms-cluster up); empty: a node started elsewhere

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def peer_endpoint(self) -> str:
        return f"{self.host}:{self.peer_port}"


@dataclass
class State:
    nodes: list[NodeSpec] = field(default_factory=list)
    frontend_port: int = 7800
    frontend_host: str = "127.0.0.1"
    frontend_metrics_port: int = 0  # worker i of the frontend serves /metrics on this port + i
    frontend_workers: int = 1
    aws_port: int = 4599
    console_port: int = 0  # 0: no web console (a state.json from before the console)
    cluster_id: str = ""
    store_id: str = ""
    aws_access_key_id: str = ""
    region: str = "us-east-1"
    principals_file: str = ""  # absolute path given to `up --principals`, read on every start
    aws_tls: bool = False      # the AWS endpoint serves HTTPS with a certificate under the cluster's CA
    pids: dict[str, int] = field(default_factory=dict)
    address_prefix: str = "127.0"        # HSMs of `up` listen on <prefix>.<zone>.<n>:2225
    hsm_replace_after: float = 300.0     # seconds before the control plane replaces a silent HSM (0: never)
    up_pid: int = 0                      # a foreground `up` that `down` must stop too (0: none, or detached)

    @classmethod
    def load(cls, path: Path) -> tuple[State, dict[str, str]]:
        """The state, and the secrets an earlier version kept in it (to move to the env file)."""
        if not path.exists():
            return cls(), {}
        doc = json.loads(path.read_text())
        doc["nodes"] = [NodeSpec(**n) for n in doc.get("nodes", [])]
        legacy = {k: doc[k] for k in LEGACY_SECRETS if doc.get(k)}
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__}), legacy

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2).encode())


# Secrets state.json held before they moved to the env file (or, for kmsuser's first
# password, out of every file: KMS replaces it when it connects).
LEGACY_SECRETS = ("co_password", "kmsuser_initial_password", "aws_secret_access_key")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(preferred: int, taken: set[int]) -> int:
    port = preferred
    while port in taken or not port_free(port):
        port += 1
    taken.add(port)
    return port


def pick_block(preferred: int, size: int, taken: set[int]) -> int:
    """The first of ``size`` consecutive free ports from ``preferred`` on."""
    port = preferred
    while any(p in taken or not port_free(p) for p in range(port, port + size)):
        port += 1
    taken.update(range(port, port + size))
    return port


def password(n: int = 24) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


class Cluster:
    """What ``up`` keeps on disk (README, "Files on disk"): ``state.json`` holds no secret (ports,
    ids, pids); the two secrets the tools need again, the CO password and the AWS secret key,
    live only in the ``env`` file (0600), which hands them to ``hsm-mgmt``, ``kms`` and the AWS
    SDKs anyway; kmsuser's first password is never written down (KMS replaces it on connect)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.state_path = self.dir / "state.json"
        self.state, legacy = State.load(self.state_path)
        self.procs: dict[str, subprocess.Popen] = {}
        known = self._read_env()
        self.co_password = known.get("HSM_CO_PASSWORD", "") or legacy.get("co_password", "")
        self.aws_secret_access_key = known.get("AWS_SECRET_ACCESS_KEY", "") \
            or legacy.get("aws_secret_access_key", "")
        self.kmsuser_password = ""  # in memory only, from createUser until the store holds it
        if legacy:  # move them out of state.json, into the one file that keeps them
            self.write_env()
            self.state.save(self.state_path)

    def _read_env(self) -> dict[str, str]:
        try:
            return read_env_file(self.env_path)
        except (OSError, EnvFileError):
            return {}

    # ------------------------------------------------------------ paths

    @property
    def anchor(self) -> Path:
        return self.dir / "ca" / "customerCA.crt"

    @property
    def aws_url(self) -> str:
        s = self.state
        return f"{'https' if s.aws_tls else 'http'}://127.0.0.1:{s.aws_port}"

    @property
    def aws_ca_bundle(self) -> str:
        """What AWS_CA_BUNDLE names for the SDKs to trust the endpoint (empty: plain HTTP)."""
        return str(self.anchor) if self.state.aws_tls else ""

    @property
    def aws_tls_files(self) -> tuple[Path, Path]:
        return self.dir / "tls" / "aws-endpoint.crt", self.dir / "tls" / "aws-endpoint.key"

    def ensure_aws_tls(self) -> None:
        """The AWS endpoint's certificate (127.0.0.1, localhost), issued by the cluster's CA (the
        trust anchor, made now if this is the first run), so that one CA file is all the SDKs need."""
        cert_path, key_path = self.aws_tls_files
        anchor = provision.make_trust_anchor(self.anchor.parent)
        ca_cert = certs.load_cert(anchor.cert_pem)
        if cert_path.exists() and key_path.exists():
            try:
                certs.verify_issued_by(certs.load_cert(cert_path.read_bytes()), ca_cert, "the AWS endpoint certificate")
                return
            except (InvalidArgument, ValueError):
                pass  # another CA's (the ca directory was replaced): issue a new one
        key = certs.new_key()
        cert = certs.issue_tls_cert(certs.load_key(anchor.key_path.read_bytes()), ca_cert, key,
                                    "kms-frontend AWS endpoint", ["127.0.0.1", "localhost"],
                                    [ExtendedKeyUsageOID.SERVER_AUTH])
        write_private(key_path, certs.key_pem(key))
        write_private(cert_path, certs.cert_pem(cert).encode())

    @property
    def env_path(self) -> Path:
        return self.dir / "env"

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    # ------------------------------------------------------------ processes

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.log(name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        logf = os.fdopen(os.open(self.log(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.procs[name] = proc
        self.state.pids[name] = proc.pid

    @property
    def hsms(self) -> cloudhsm_api.LocalHsms:
        """The HSM nodes the frontend's control plane started (``<dir>/hsms``)."""
        return cloudhsm_api.LocalHsms(self.dir / "hsms")

    def start_node(self, spec: NodeSpec, interval: float | None = None) -> None:
        """Start a node again on its own data (as the frontend's provisioner would)."""
        if spec.hsm_id:
            self.hsms.start(spec.hsm_id)
            return
        cmd = [sys.executable, "-m", "hsm_node.server", "--data-dir", str(self.dir / "nodes" / spec.name),
               "--listen", spec.endpoint, "--peer-listen", spec.peer_endpoint,
               "--master-key-file", str(self.dir / "secrets" / "hsm-master.key"),
               "--backup-dir", str(self.dir / "backups")]
        if interval is not None:
            cmd += ["--backup-interval", str(interval)]
        if spec.metrics_port:
            cmd += ["--metrics-listen", f"127.0.0.1:{spec.metrics_port}"]
        self._spawn(spec.name, cmd, {})

    def start_frontend(self, backup_interval: float | None = None) -> None:
        s = self.state
        cmd = [sys.executable, "-m", "kms_frontend.server", "--listen", f"127.0.0.1:{s.frontend_port}",
               "--data-dir", str(self.dir / "frontend"),
               "--master-key-file", str(self.dir / "secrets" / "frontend-master.key"),
               "--region", s.region]
        for n in s.nodes:
            if not n.hsm_id:  # nodes of an older kms-cluster directory, started by `up` itself
                cmd += ["--hsm-endpoint", n.endpoint]
        if s.frontend_metrics_port:
            cmd += ["--metrics-listen", f"127.0.0.1:{s.frontend_metrics_port}"]
        if s.frontend_workers > 1:
            cmd += ["--workers", str(s.frontend_workers)]
        if s.principals_file:
            cmd += ["--principals", s.principals_file]
        if s.console_port:
            cmd += ["--console-listen", f"127.0.0.1:{s.console_port}"]
        env = {"KMS_AWS_LISTEN": f"127.0.0.1:{s.aws_port}",
               "KMS_AWS_ACCESS_KEYS": f"{s.aws_access_key_id}:{self.aws_secret_access_key}",  # never argv
               # the CloudHSM control plane starts and keeps the HSM nodes
               "KMS_CLOUDHSM_PROVISIONER": "local", "KMS_CLOUDHSM_DIR": str(self.dir / "hsms"),
               "KMS_CLOUDHSM_ADDRESS_PREFIX": s.address_prefix, "KMS_BACKUP_DIR": str(self.dir / "backups"),
               "KMS_HSM_MASTER_KEY_FILE": str(self.dir / "secrets" / "hsm-master.key"),
               "KMS_APPLIANCE_KEY_FILE": str(self.dir / "secrets" / "appliance.key"),
               "KMS_HSM_REPLACE_AFTER": str(s.hsm_replace_after)}
        if backup_interval is not None:
            env["KMS_HSM_BACKUP_INTERVAL"] = str(backup_interval)
        if s.aws_tls:
            cert, key = self.aws_tls_files
            env.update({"KMS_AWS_TLS_CERT": str(cert), "KMS_AWS_TLS_KEY": str(key)})
        self._spawn("frontend", cmd, env)

    def api(self) -> cloudhsm_api.Api:
        s = self.state
        return cloudhsm_api.Api(self.aws_url, s.region, s.aws_access_key_id, self.aws_secret_access_key,
                                self.aws_ca_bundle or None)

    def processes(self) -> dict[str, int]:
        """The processes of this cluster that run now, by name: those ``up`` started (checked to be
        ours: a pid recorded before a crash may belong to another program now) and the HSM nodes of
        the frontend's control plane (found by their data directories)."""
        pids = {name: pid for name, pid in self.state.pids.items()
                if _alive(pid, self.procs.get(name)) and self._is_ours(pid)}
        pids.update({n.name: pid for n in self.state.nodes if n.hsm_id and (pid := self.hsms.pid(n.hsm_id))})
        pids.update({f"hsm {hsm_id}": pid for hsm_id in self.hsms.ids() if (pid := self.hsms.pid(hsm_id))
                     and pid not in pids.values()})
        return pids

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM (the processes drain and exit), then SIGKILL whatever is left: the frontend first
        (its HSM nodes outlive it by design), then the nodes."""
        self._stop(self.processes(), timeout)
        self.state.pids.clear()
        self.state.up_pid = 0
        self.state.save(self.state_path)

    def stop_started(self, before: set[int], timeout: float = 15.0) -> None:
        """Stop the processes that run now but did not before (pids ``before``): what a failed
        ``up`` started, itself or through the frontend it started; the others keep running."""
        started = {name: pid for name, pid in self.processes().items() if pid not in before}
        self._stop(started, timeout)
        for name in started:
            self.state.pids.pop(name, None)
        self.state.save(self.state_path)

    def stop_frontend(self, timeout: float = 15.0) -> None:
        """Stop the frontend (it drains); its HSM nodes keep running."""
        self._stop({name: pid for name, pid in self.processes().items() if name == "frontend"}, timeout)
        self.state.pids.pop("frontend", None)
        self.state.save(self.state_path)

    def _stop(self, pids: dict[str, int], timeout: float) -> None:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, pid in pids.items():
            while _alive(pid, self.procs.get(name)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, self.procs.get(name)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def running(self) -> dict[str, bool]:
        """Whether each process runs: those ``up`` recorded (the same program on the same
        directory: after a crash its pid may have gone to another process), and the HSM nodes
        the frontend's control plane started (found by their data directories)."""
        running = self.processes()
        return {name: name in running for name in [*self.state.pids, *(n.name for n in self.state.nodes if n.hsm_id)]}

    def _is_ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return str(self.dir).encode() in f.read()
        except OSError:  # no /proc here, or no permission: trust the pid
            return True

    # ------------------------------------------------------------ one node (used by kms-chaos)

    def node_spec(self, name: str) -> NodeSpec:
        for spec in self.state.nodes:
            if spec.name == name:
                return spec
        raise LauncherError(f"no node named {name} in {self.state_path}")

    def node_pid(self, name: str) -> int | None:
        spec = self.node_spec(name)
        if spec.hsm_id:
            return self.hsms.pid(spec.hsm_id)
        pid = self.state.pids.get(name)
        return pid if pid is not None and _alive(pid, self.procs.get(name)) else None

    def node_running(self, name: str) -> bool:
        return self.node_pid(name) is not None

    def stop_node(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM one process (it drains and exits), SIGKILL it after ``timeout``."""
        spec = self.node_spec(name)
        if spec.hsm_id:
            self.hsms.stop(spec.hsm_id, timeout)
            return
        pid = self.state.pids.get(name)
        if pid is None:
            return
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not _alive(pid, self.procs.get(name)):
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                os.kill(pid, signal.SIGCONT)  # a paused (SIGSTOP) process handles SIGTERM only once continued
            deadline = time.monotonic() + timeout
            while _alive(pid, self.procs.get(name)) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.state.pids.pop(name, None)
        self.state.save(self.state_path)

    def restart_node(self, name: str, interval: float | None = None, timeout: float = 30.0) -> dict:
        """Stop the node if it runs, start it again on the same data directory and ports,
        record its pid, and wait until it answers; returns its status."""
        spec = self.node_spec(name)
        self.stop_node(name)
        self.start_node(spec, interval)
        self.state.save(self.state_path)
        return self.wait_node(spec, timeout)

    # ------------------------------------------------------------ the cluster, through the cloudhsmv2 API

    def create_cluster(self, nodes: int, timeout: float = 180.0) -> None:
        """AWS's flow: create the cluster and its first HSM, sign the CSR with our CA, initialise,
        activate (hsm-mgmt), add HSMs until there are ``nodes``. Resumable at every step."""
        s, api = self.state, self.api()
        api.wait_ready(timeout)
        if not s.cluster_id:
            s.cluster_id = api.create_cluster()
            s.save(self.state_path)
        cluster = api.wait_state(s.cluster_id, ("UNINITIALIZED", "INITIALIZE_IN_PROGRESS", "INITIALIZED", "ACTIVE",
                                                "DEGRADED"), timeout)
        if cluster["State"] in ("UNINITIALIZED", "INITIALIZE_IN_PROGRESS"):
            if not cluster["Hsms"]:
                api.create_hsm(s.cluster_id, 0)
            cluster = api.wait_hsms(s.cluster_id, 1, timeout)
            if cluster["State"] == "UNINITIALIZED":
                csr = api.wait_csr(s.cluster_id, timeout)
                signed, anchor = cloudhsm_api.sign_cluster_csr(self.anchor.parent, csr)
                api.initialize(s.cluster_id, signed, anchor)
            api.wait_state(s.cluster_id, ("INITIALIZED", "ACTIVE"), timeout)
        cluster = api.cluster(s.cluster_id)
        if cluster["State"] == "INITIALIZED":
            if not self.co_password:
                self.co_password = password()
                self.write_env()  # on disk before the cluster knows it
            self.hsm_mgmt("activate", new_password=self.co_password, endpoint=cloudhsm_api.endpoint(cluster["Hsms"][0]))
            api.wait_state(s.cluster_id, ("ACTIVE",), timeout)
        cluster = api.wait_settled(s.cluster_id, timeout)
        for i in range(len(cluster["Hsms"]), nodes):
            api.create_hsm(s.cluster_id, i)
            api.wait_settled(s.cluster_id, timeout)
        self.adopt_nodes(api.wait_hsms(s.cluster_id, max(nodes, len(cluster["Hsms"])), timeout))
        first = s.nodes[0].endpoint
        users = self.hsm_mgmt("listUsers", endpoint=first)
        names = {u.get("username") for server in users.get("servers", []) for u in server.get("users", [])}
        if "kmsuser" not in names:
            self.kmsuser_password = password()
            self.hsm_mgmt("createUser", "CU", "kmsuser", new_password=self.kmsuser_password, endpoint=first)

    def adopt_nodes(self, cluster: dict) -> None:
        """Name the cluster's HSMs node1, node2... (kms-chaos and status use the names); an HSM keeps
        its name, a new one takes the name of one that left (a replacement), else the first free one."""
        s = self.state
        present = {h["HsmId"] for h in cluster["Hsms"]}
        by_id = {n.hsm_id: n for n in s.nodes if n.hsm_id and n.hsm_id in present}
        freed = [n.name for n in s.nodes if n.hsm_id and n.hsm_id not in present]
        nodes = []
        for h in cluster["Hsms"]:
            spec = by_id.get(h["HsmId"])
            if spec is None and freed:
                spec = NodeSpec(freed.pop(0), 2225, 2226, h["EniIp"], 9100, h["HsmId"])
            if spec is None:
                taken = {n.name for n in nodes} | {n.name for n in by_id.values()}
                name = next(f"node{i}" for i in range(1, 100) if f"node{i}" not in taken)
                spec = NodeSpec(name, 2225, 2226, h["EniIp"], 9100, h["HsmId"])
            nodes.append(spec)
        s.nodes = sorted(nodes, key=lambda n: int(n.name[4:]) if n.name[4:].isdigit() else 0)
        s.save(self.state_path)

    # ------------------------------------------------------------ operator steps (hsm-mgmt)

    def hsm_mgmt(self, *args: str, endpoint: str | None = None, anchor: bool = True,
                 new_password: str | None = None) -> Any:
        """Run hsm-mgmt as an operator would. Passwords go through pipes (``--password-fd``,
        ``--new-password-fd``), never on its command line, where every user would see them."""
        cmd = [sys.executable, "-m", "hsm_node.mgmt", "--json"]
        cmd += ["--endpoint", endpoint or self.state.nodes[0].endpoint]
        if anchor and self.anchor.exists():
            cmd += ["--trust-anchor", str(self.anchor)]
        env = {k: v for k, v in os.environ.items() if not (k.startswith("HSM_") and k.endswith("PASSWORD"))}
        env.update({"HSM_ENV_FILE": os.devnull, "HSM_CO_USERNAME": "admin"})
        fds: list[int] = []
        try:
            if self.co_password:
                fds.append(_pipe_holding(self.co_password))
                cmd += ["--password-fd", str(fds[-1])]
            tail: list[str] = []
            if new_password is not None:
                fds.append(_pipe_holding(new_password))
                tail = ["--new-password-fd", str(fds[-1])]
            r = subprocess.run([*cmd, *args, *tail], env=env, capture_output=True, text=True, timeout=120,
                               pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        if r.returncode != 0:
            shown = " ".join(shlex.quote(a) for a in args[:1])
            raise LauncherError(f"hsm-mgmt {shown} failed: {r.stderr.strip() or r.stdout.strip()}")
        out = r.stdout.strip()
        try:
            return json.loads(out) if out else None
        except ValueError:
            return out

    def node_status(self, spec: NodeSpec) -> dict:
        doc = self.hsm_mgmt("status", endpoint=spec.endpoint)
        servers = doc.get("servers", []) if isinstance(doc, dict) else []
        if not servers or "error" in servers[0]:
            raise LauncherError(f"{spec.name} did not report its status: {doc}")
        return servers[0]

    def wait_node(self, spec: NodeSpec, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs.get(spec.name)
            if proc is not None and proc.poll() is not None:
                raise LauncherError(f"{spec.name} exited with {proc.returncode}; see {self.log(spec.name)}")
            try:
                return self.node_status(spec)
            except LauncherError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def provision(self) -> None:
        s = self.state
        first = s.nodes[0]
        status = self.wait_node(first)
        if status.get("state") == "UNINITIALIZED":
            self.hsm_mgmt("initialize", "--trust-anchor-dir", str(self.anchor.parent), anchor=False)
            if not self.co_password:
                self.co_password = password()
                self.write_env()  # on disk before the cluster knows it
            self.hsm_mgmt("activate", new_password=self.co_password)
        s.cluster_id = self.node_status(first)["cluster_id"]
        for spec in s.nodes[1:]:
            if self.wait_node(spec).get("state") == "UNINITIALIZED":
                self.hsm_mgmt("addNode", spec.endpoint, spec.peer_endpoint)
        users = self.hsm_mgmt("listUsers")
        names = {u.get("username") for server in users.get("servers", []) for u in server.get("users", [])}
        if "kmsuser" not in names:
            self.kmsuser_password = password()
            self.hsm_mgmt("createUser", "CU", "kmsuser", new_password=self.kmsuser_password)

    # ------------------------------------------------------------ the key store (kms.v1 over gRPC)

    async def ensure_store(self, timeout: float = 60.0) -> None:
        s = self.state
        credentials = Credentials(s.aws_access_key_id, self.aws_secret_access_key)
        async with kms_auth.aio_channel(f"{s.frontend_host}:{s.frontend_port}", credentials, s.region) as ch:
            stub = kms_grpc.KmsStub(ch)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(), timeout=2)
                    break
                except grpc.aio.AioRpcError:
                    if self.procs.get("frontend") and self.procs["frontend"].poll() is not None:
                        raise LauncherError(f"the frontend exited; see {self.log('frontend')}") from None
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            if not s.store_id:
                named = await _stores_named(stub, STORE_NAME)
                if named:  # created by a run that stopped before it could note the id
                    s.store_id = named[0].custom_key_store_id
                else:
                    if not self.kmsuser_password:
                        # kmsuser was created by a run that stopped before the store took its password,
                        # which nobody wrote down: set a new one, as an operator would (a CO may)
                        self.kmsuser_password = password()
                        self.hsm_mgmt("changePswd", "CU", "kmsuser", new_password=self.kmsuser_password)
                    r = await _retry_until(deadline, lambda: stub.CreateCustomKeyStore(kms.CreateCustomKeyStoreRequest(
                        custom_key_store_name=STORE_NAME, cloud_hsm_cluster_id=s.cluster_id,
                        trust_anchor_certificate=self.anchor.read_text(), key_store_password=self.kmsuser_password)))
                    s.store_id = r.custom_key_store_id
                self.kmsuser_password = ""  # the store holds it now (sealed); KMS replaces it on connect
                s.save(self.state_path)
            store = (await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(
                custom_key_store_id=s.store_id))).custom_key_stores[0]
            if store.connection_state == "DISCONNECTED":
                await stub.ConnectCustomKeyStore(kms.ConnectCustomKeyStoreRequest(custom_key_store_id=s.store_id))
            while True:
                store = (await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(
                    custom_key_store_id=s.store_id))).custom_key_stores[0]
                if store.connection_state == "CONNECTED":
                    return
                if store.connection_state == "FAILED":
                    raise LauncherError(f"custom key store {s.store_id} failed to connect: {store.connection_error_code}")
                if time.monotonic() > deadline:
                    raise LauncherError(f"custom key store {s.store_id} is still {store.connection_state}")
                await asyncio.sleep(0.2)

    # ------------------------------------------------------------ outputs

    def write_env(self) -> None:
        s = self.state
        lines = {
            "HSM_ENDPOINTS": ",".join(n.endpoint for n in s.nodes),
            "AWS_ENDPOINT_URL_CLOUDHSM_V2": self.aws_url,
            "HSM_TRUST_ANCHOR": str(self.anchor),
            "HSM_CO_USERNAME": "admin",
            "HSM_CO_PASSWORD": self.co_password,
            "KMS_ENDPOINT": f"{s.frontend_host}:{s.frontend_port}",
            "AWS_ENDPOINT_URL_KMS": self.aws_url,
            "AWS_ENDPOINT_URL_STS": self.aws_url,
            "AWS_ACCESS_KEY_ID": s.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_REGION": s.region,
            "AWS_DEFAULT_REGION": s.region,
        }
        if self.aws_ca_bundle:  # boto3, the AWS CLI and the Encryption SDK trust the endpoint through it
            lines["AWS_CA_BUNDLE"] = self.aws_ca_bundle
        write_private(self.env_path, "".join(f"{k}={v}\n" for k, v in lines.items()).encode())

    def describe_cluster(self) -> dict | None:
        """The cluster as the control plane shows it (DescribeClusters), or None if it does not answer.
        HSMs it replaced or created since (kms-chaos, automatic replacement) get their node names, and
        the env file follows."""
        if not self.state.cluster_id or not self.running().get("frontend"):
            return None
        try:
            cluster = self.api().cluster(self.state.cluster_id)
        except cloudhsm_api.ApiError:
            return None
        if self.state.nodes and all(n.hsm_id for n in self.state.nodes):
            settled = [h for h in cluster["Hsms"] if h["State"] in ("ACTIVE", "DEGRADED")]
            if {h["HsmId"] for h in settled} != {n.hsm_id for n in self.state.nodes}:
                self.adopt_nodes({**cluster, "Hsms": settled})
                self.write_env()
        return _cluster_summary(cluster)

    def status(self) -> dict:
        self.describe_cluster()  # node names follow the control plane's HSMs
        s = self.state
        alive = self.running()
        return {
            "directory": str(self.dir), "cluster_id": s.cluster_id, "custom_key_store_id": s.store_id,
            "kms_endpoint": f"127.0.0.1:{s.frontend_port}", "aws_endpoint_url": self.aws_url,
            "aws_ca_bundle": self.aws_ca_bundle,
            "console_url": f"http://127.0.0.1:{s.console_port}/" if s.console_port else None,
            "region": s.region, "aws_access_key_id": s.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "trust_anchor": str(self.anchor), "env_file": str(self.env_path),
            "frontend": {"running": alive.get("frontend", False), "log": str(self.log("frontend")),
                         "metrics": _metrics_url(s.frontend_metrics_port), "workers": s.frontend_workers},
            "nodes": [{"name": n.name, "hsm_id": n.hsm_id, "endpoint": n.endpoint, "peer_endpoint": n.peer_endpoint,
                       "running": alive.get(n.name, False), "log": self.hsms.log(n.hsm_id) or str(self.log(n.name)),
                       "metrics": f"http://{n.host}:{n.metrics_port}/metrics" if n.metrics_port else ""}
                      for n in s.nodes],
        }


def _pipe_holding(secret: str) -> int:
    """The read end of a pipe that holds ``secret`` (and a newline), its write end closed."""
    r, w = os.pipe()
    try:
        os.write(w, secret.encode() + b"\n")
    finally:
        os.close(w)
    return r


def _workers_note(st: dict) -> str:
    workers = st["frontend"].get("workers", 1)
    return f" ({workers} frontend workers: worker i on the port + i)" if workers > 1 else ""


def _metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics" if port else ""


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of ours, or another process that reused the pid
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


async def _stores_named(stub: kms_grpc.KmsStub, name: str) -> list[Any]:
    try:
        r = await stub.DescribeCustomKeyStores(kms.DescribeCustomKeyStoresRequest(custom_key_store_name=name))
    except grpc.aio.AioRpcError as exc:
        if dict(exc.trailing_metadata() or ()).get("x-aws-exception") == "CustomKeyStoreNotFoundException":
            return []  # as AWS answers a name it does not know
        raise
    return list(r.custom_key_stores)


async def _retry_until(deadline: float, call: Any) -> Any:
    """Right after start the frontend may not have discovered the cluster yet."""
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            trailing = dict(exc.trailing_metadata() or ())
            if trailing.get("x-aws-exception") not in ("CloudHsmClusterNotFoundException",
                                                       "CloudHsmClusterInvalidConfigurationException") \
                    or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------ commands


def cmd_up(args: argparse.Namespace) -> int:
    """Start what is not running (all of it the first time; after a crash, only what died) and
    keep what runs; then make sure the cluster is provisioned and the store CONNECTED."""
    c = Cluster(Path(args.dir))
    s = c.state
    c.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path, mode in make_private(c.dir):  # logs, state, secrets, data: this user's only
        print(f"kms-cluster: {path} was open to other users (mode {mode:04o}); made it private", file=sys.stderr)
    if args.principals is not None:
        s.principals_file = str(Path(args.principals).resolve()) if args.principals else ""
    tls_changed = args.aws_tls is not None and args.aws_tls != s.aws_tls
    if args.aws_tls is not None:
        s.aws_tls = args.aws_tls
    if s.principals_file:
        try:  # refused here, before anything starts, with the frontend's own message
            load_principals_file(s.principals_file)
        except ValueError as exc:
            print(f"kms-cluster: --principals: {exc}", file=sys.stderr)
            return 1
    secrets_dir = c.dir / "secrets"
    for name in ("hsm-master.key", "appliance.key"):  # the nodes' deployment secret; the appliance user's
        if not (secrets_dir / name).exists():
            write_private(secrets_dir / name, (base64.b64encode(os.urandom(32)).decode() + "\n").encode())
    legacy = any(not n.hsm_id for n in s.nodes)  # a directory from before the control plane started nodes
    taken: set[int] = set()
    if not s.aws_access_key_id:
        s.address_prefix = args.address_prefix
        s.hsm_replace_after = args.hsm_replace_after
        s.frontend_port = pick_port(args.port, taken)
        s.aws_port = pick_port(args.aws_port, taken)
        s.frontend_metrics_port = pick_port(args.metrics_port, taken)
        s.aws_access_key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
        c.aws_secret_access_key = base64.b64encode(os.urandom(30)).decode()
        s.region = args.region
        c.write_env()  # the secret key's one home, before any process is given it
    workers_changed = args.workers is not None and max(1, args.workers) != s.frontend_workers
    if workers_changed:
        s.frontend_workers = max(1, args.workers)
        if s.frontend_metrics_port and s.frontend_workers > 1:  # worker i serves /metrics on the port + i
            others = {p for n in s.nodes for p in (n.port, n.peer_port, n.metrics_port)} | {
                s.frontend_port, s.aws_port, s.console_port}
            block = range(s.frontend_metrics_port, s.frontend_metrics_port + s.frontend_workers)
            if any(p in others or not port_free(p) for p in block):
                s.frontend_metrics_port = pick_block(s.frontend_metrics_port, s.frontend_workers, others)
    if not s.console_port:  # also for a directory from before the console
        taken |= {s.frontend_port, s.aws_port, *range(s.frontend_metrics_port, s.frontend_metrics_port + s.frontend_workers)}
        s.console_port = pick_port(args.console_port, taken)
    running = c.running()
    if (tls_changed or workers_changed) and running.get("frontend"):  # it runs as asked before: start it again
        print(f"kms-cluster: restarting the frontend for {'HTTPS' if s.aws_tls else 'HTTP'} on the AWS endpoint"
              f" and {s.frontend_workers} worker(s)")
        c.stop_frontend()
        running["frontend"] = False
    before = set(c.processes().values())
    kept = [name for name in [*(n.name for n in s.nodes), "frontend"] if running.get(name)]
    for name in [n for n, alive in running.items() if not alive]:
        s.pids.pop(name, None)
    s.save(c.state_path)
    if kept:
        print(f"kms-cluster: {', '.join(kept)} already running from {c.dir}: kept")
    try:
        if s.aws_tls:
            c.ensure_aws_tls()
        if legacy:
            for spec in s.nodes:
                if spec.name not in kept:
                    c.start_node(spec, args.backup_interval)
            s.save(c.state_path)
            c.provision()
            if "frontend" not in kept:
                c.start_frontend(args.backup_interval)
        else:
            if "frontend" not in kept:  # its control plane starts (again) the HSM nodes that do not run
                c.start_frontend(args.backup_interval)
            else:  # the frontend runs, and starts its nodes only when it starts: start those that died
                for spec in s.nodes:
                    if spec.name not in kept:
                        c.start_node(spec)
            s.save(c.state_path)
            c.create_cluster(args.nodes)
        s.save(c.state_path)
        asyncio.run(c.ensure_store())
        c.write_env()
    except BaseException as exc:  # whatever happened, leave none of the processes this run started
        detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else (str(exc) or type(exc).__name__)
        print(f"kms-cluster: {detail}\nlogs: {c.dir / 'logs'}", file=sys.stderr)
        c.stop_started(before)
        return 1
    print_summary(c)
    if args.detach:
        print(f"Running in the background. Stop with: {_self_command(c, 'down')}"
              f"  (state is kept; `{_self_command(c, 'up')}` resumes)")
        return 0
    return _foreground(c)


def _self_command(c: Cluster, command: str) -> str:
    """How to run another kms-cluster command on this cluster from the current directory."""
    default = Path(DEFAULT_DIR).resolve()
    return f"kms-cluster {command}" if c.dir == default else f"kms-cluster --dir {shlex.quote(str(c.dir))} {command}"


def _foreground(c: Cluster) -> int:
    """Stay until Ctrl-C, SIGTERM or `kms-cluster down` (which sends SIGTERM to the pid recorded
    here), then stop everything. Processes that die meanwhile (an experiment) are reported once."""
    stop: dict[str, str] = {}

    def on_signal(signum: int, frame: Any) -> None:
        why = "Ctrl-C" if signum == signal.SIGINT else "kms-cluster down" if _down_requested(c) else "SIGTERM"
        stop.setdefault("why", why)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    c.state.up_pid = os.getpid()
    c.state.save(c.state_path)
    print(f"Running. Ctrl-C (or `{_self_command(c, 'down')}` from another shell) stops everything"
          " (state is kept; `kms-cluster up` resumes).", flush=True)
    watched = set(c.running())
    while not stop:
        time.sleep(0.2)
        if _down_requested(c):
            stop["why"] = "kms-cluster down"
            break
        dead = [n for n, alive in c.running().items() if n in watched and not alive]
        if dead:
            print(f"kms-cluster: {', '.join(dead)} exited (killed for an experiment?); the rest keep running"
                  " (`kms-cluster up` in another shell starts it again)", file=sys.stderr, flush=True)
            watched -= set(dead)
    print(f"Stopping ({stop['why']})...", flush=True)
    c.stop_all()
    print("Stopped.", flush=True)
    return 0


def _down_requested(c: Cluster) -> bool:
    """`down` (also one older than the SIGTERM it sends now) clears the recorded pids and up_pid."""
    try:
        saved, _ = State.load(c.state_path)
    except (OSError, ValueError, TypeError):
        return False
    return saved.up_pid != os.getpid()


def print_summary(c: Cluster) -> None:
    st = c.status()
    nodes = "\n".join(f"    {n['name']}: {n['hsm_id'] or '-'} at {n['endpoint']} (peer {n['peer_endpoint']})"
                      for n in st["nodes"])
    print(f"""
Cluster {st['cluster_id']} with {len(st['nodes'])} HSMs (aws cloudhsmv2 describe-clusters --endpoint-url {st['aws_endpoint_url']}):
{nodes}
KMS frontend (gRPC):   {st['kms_endpoint']}
AWS endpoint (JSON):   {st['aws_endpoint_url']}   region {st['region']}{'   CA ' + st['aws_ca_bundle'] if st['aws_ca_bundle'] else ''}
  aws_access_key_id     {st['aws_access_key_id']}
  aws_secret_access_key {st['aws_secret_access_key']}
Web console:           {st['console_url'] or '-'}  (sign in with the key pair above)
Custom key store:      {st['custom_key_store_id']} (CONNECTED)
Trust anchor:          {st['trust_anchor']}
Credentials and endpoints for kms / hsm-mgmt / AWS SDKs: {st['env_file']}
Logs:                  {c.dir / 'logs'}
Metrics (Prometheus):  {st['frontend']['metrics'] or '-'}{_workers_note(st)} (nodes: kms-cluster status --json)

Next:
  kms create-key --origin AWS_CLOUDHSM --custom-key-store-id {st['custom_key_store_id']}
  kms describe-custom-key-stores
  hsm-mgmt listUsers
  set -a; . {st['env_file']}; set +a; aws kms list-keys    # AWS CLI / boto3 pick up AWS_ENDPOINT_URL_KMS
""")


def cmd_status(args: argparse.Namespace) -> int:
    c = Cluster(Path(args.dir))
    if not c.state_path.exists():
        print(f"kms-cluster: no cluster in {c.dir} (run kms-cluster up)", file=sys.stderr)
        return 1
    st = c.status()
    if args.json:
        for n in st["nodes"]:
            n["health"] = _node_health(c, n)
        st["cluster"] = c.describe_cluster()
        print(json.dumps(st, indent=2))
        return 0
    print(f"cluster {st['cluster_id']}  store {st['custom_key_store_id']}  frontend {st['kms_endpoint']}"
          f" ({'running' if st['frontend']['running'] else 'stopped'})  aws {st['aws_endpoint_url']}")
    for n in st["nodes"]:
        print(f"  {n['name']:<8} {n['endpoint']:<18} {'running' if n['running'] else 'stopped':<8} {_node_health(c, n)}")
    return 0


def _cluster_summary(cluster: dict) -> dict:
    return {"cluster_id": cluster["ClusterId"], "state": cluster["State"],
            "hsms": [{"hsm_id": h["HsmId"], "state": h["State"], "availability_zone": h["AvailabilityZone"],
                      "eni_ip": h["EniIp"]} for h in cluster.get("Hsms", [])]}


def _node_health(c: Cluster, n: dict) -> str:
    if not n["running"]:
        return "DOWN"
    try:
        doc = c.node_status(c.node_spec(n["name"]))
        return str(doc.get("state", "UNKNOWN"))
    except LauncherError:
        return "UNREACHABLE"


def cmd_down(args: argparse.Namespace) -> int:
    c = Cluster(Path(args.dir))
    up_pid = c.state.up_pid
    if up_pid and _alive(up_pid, None) and up_pid != os.getpid():
        # a foreground `up` owns the processes: it stops them and exits; wait for it, then sweep.
        # Clearing up_pid first tells it who asked.
        c.state.up_pid = 0
        c.state.save(c.state_path)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(up_pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(up_pid, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        c = Cluster(Path(args.dir))
    elif not c.processes():  # nodes of the control plane may outlive a frontend that died
        print("kms-cluster: nothing running")
        return 0
    c.stop_all()
    print(f"stopped (state kept in {c.dir}; `kms-cluster up` resumes, delete the directory to start afresh)")
    return 0


# The deployment secrets of compose, and how each is made: the HSM nodes' deployment secret
# (base64), the frontend's sealing key (raw bytes, as kms-frontend creates it), a local AWS access
# key pair, the HSMs' appliance user (the control plane's), and the frontend's hsm-supervisor token.
DEPLOYMENT_SECRETS: dict[str, Callable[[], bytes]] = {
    "hsm-master.key": lambda: (base64.b64encode(os.urandom(32)).decode() + "\n").encode(),
    "frontend-master.key": lambda: os.urandom(32),
    "aws-access-keys": lambda: ("AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
                                + ":" + base64.b64encode(os.urandom(30)).decode()).encode(),
    "appliance.key": lambda: (base64.b64encode(os.urandom(32)).decode() + "\n").encode(),
    "supervisor.token": lambda: secrets.token_urlsafe(32).encode(),
}


def cmd_secrets(args: argparse.Namespace) -> int:
    """Deployment secrets for compose (kept if present; :data:`DEPLOYMENT_SECRETS`), and each
    service's share of them (``--share``). A directory it cannot write: one line, exit status 2."""
    try:
        return _make_secrets(args)
    except OSError as exc:
        print(f"kms-cluster secrets: cannot write {exc.filename or args.secrets_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2


def _make_secrets(args: argparse.Namespace) -> int:
    d = Path(args.secrets_dir)
    d.mkdir(parents=True, exist_ok=True)
    made = []
    for name, make in DEPLOYMENT_SECRETS.items():
        if not (d / name).exists():
            write_private(d / name, make())
            made.append(name)
    print(f"secrets in {d}: {', '.join(made) + ' created' if made else 'already present'}")
    for target, names in args.share:
        # Each service gets a volume with only the secrets it uses: an HSM container holds neither the
        # AWS root pair nor the token that commands the hsm-supervisor (and so the Docker socket).
        copied = []
        for name in names:
            data = (d / name).read_bytes()
            if _read_or_none(target / name) != data:
                write_private(target / name, data)
                copied.append(name)
        print(f"secrets in {target}: {', '.join(names)}" + (f" ({', '.join(copied)} updated)" if copied else ""))
    return 0


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def parse_share(text: str) -> tuple[Path, list[str]]:
    """DIR=NAME[,NAME...]: copy those secrets into DIR."""
    target, sep, names = text.partition("=")
    listed = [n for n in names.split(",") if n]
    unknown = [n for n in listed if n not in DEPLOYMENT_SECRETS]
    if not sep or not target or not listed or unknown:
        raise argparse.ArgumentTypeError(f"--share wants DIR=NAME[,NAME...] with names among {', '.join(DEPLOYMENT_SECRETS)}"
                                         f", got {text!r}")
    return Path(target), listed


def parse_node(text: str) -> NodeSpec:
    """name=host:port:peer_port, or host:port:peer_port (named after the host)."""
    name, _, rest = text.rpartition("=")
    try:
        host, port, peer = rest.split(":")
        return NodeSpec(name or host, int(port), int(peer), host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [name=]host:port:peer-port, got {text!r}") from None


def frontend_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` -> (host as it goes back into an address, port)."""
    try:
        host, port = split_endpoint(text, "--frontend")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return (f"[{host}]" if ":" in host else host), port


def cmd_provision(args: argparse.Namespace) -> int:
    """What `up` does as an operator, for nodes and a frontend that run elsewhere
    (docker compose): initialise/activate, add nodes, create kmsuser, create and
    connect the custom key store. Idempotent: a second run changes nothing."""
    c = Cluster(Path(args.dir))
    s = c.state
    s.nodes = list(args.node)
    s.frontend_host, s.frontend_port = args.frontend
    if args.aws_access_keys_file:
        s.aws_access_key_id, _, c.aws_secret_access_key = \
            Path(args.aws_access_keys_file).read_text().strip().partition(":")
    s.save(c.state_path)
    try:
        c.provision()
        asyncio.run(c.ensure_store(timeout=args.timeout))
        c.write_env()
    except (LauncherError, grpc.aio.AioRpcError, OSError, subprocess.TimeoutExpired) as exc:
        detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        print(f"kms-cluster provision: {detail}", file=sys.stderr)
        return 1
    print(json.dumps({"cluster_id": s.cluster_id, "custom_key_store_id": s.store_id, "connection_state": "CONNECTED",
                      "nodes": [n.endpoint for n in s.nodes], "trust_anchor": str(c.anchor),
                      "aws_access_key_id": s.aws_access_key_id, "env_file": str(c.env_path)}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> None:
    harden_process()  # it handles the CO password and the AWS secret key; what it writes is private
    env = os.environ.get
    p = argparse.ArgumentParser(prog="kms-cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=env("KMS_CLUSTER_DIR", DEFAULT_DIR), help="state directory [KMS_CLUSTER_DIR]")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or resume) the local cluster")
    up.add_argument("--nodes", type=int, default=env("KMS_CLUSTER_NODES", "3"), help="HSM nodes (default 3)")
    up.add_argument("--address-prefix", default="127.0",
                    help="the HSMs listen on <prefix>.<zone>.<n>:2225, one loopback address each (first run)")
    up.add_argument("--hsm-replace-after", type=seconds, default=300.0,
                    help="seconds an HSM may not answer before the control plane replaces it; 0: never (first run)")
    up.add_argument("--port", type=int, default=7800, help="frontend gRPC port (first run)")
    up.add_argument("--aws-port", type=int, default=4599, help="AWS JSON endpoint port (first run)")
    up.add_argument("--console-port", type=int, default=4600, help="web console port (first run)")
    up.add_argument("--metrics-port", type=int, default=9100,
                    help="frontend /metrics port (first run); nodes take the next ones")
    up.add_argument("--region", default="us-east-1")
    up.add_argument("--backup-interval", type=positive_seconds, default=None, help="seconds between periodic backups")
    up.add_argument("--workers", type=int, default=env("KMS_WORKERS") if env("KMS_WORKERS") else None,
                    help="frontend processes sharing its ports (kms-frontend --workers; kept for later runs)"
                         " [KMS_WORKERS]")
    up.add_argument("--detach", action="store_true", help="return once everything is up")
    up.add_argument("--aws-tls", action=argparse.BooleanOptionalAction, default=None,
                    help="serve the AWS endpoint over HTTPS, with a certificate issued by the cluster's CA; the env "
                         "file's AWS_CA_BUNDLE makes boto3 and the AWS CLI trust it (kept for later runs; "
                         "--no-aws-tls goes back to HTTP; a running frontend is restarted for the change)")
    up.add_argument("--principals", metavar="FILE",
                    help="IAM users and roles (JSON, see README) the frontend knows besides the account root; kept"
                         " for later runs, read again on every up (\"\" forgets it)")
    st = sub.add_parser("status", help="endpoints, ids and node health")
    st.add_argument("--json", action="store_true")
    sub.add_parser("down", help="stop everything `up` started")
    pr = sub.add_parser("provision", help="initialise, activate and connect nodes and a frontend running elsewhere")
    pr.add_argument("--node", type=parse_node, action="append", required=True,
                    help="[name=]host:port:peer-port of an hsm-node, repeatable; the first is initialised")
    pr.add_argument("--frontend", type=frontend_endpoint, required=True, help="host:port of the kms-frontend gRPC API")
    pr.add_argument("--aws-access-keys-file", help="ID:SECRET file the frontend accepts (shown in the env file)")
    pr.add_argument("--timeout", type=float, default=120.0)
    se = sub.add_parser("secrets", help="create deployment secrets (compose) if missing")
    se.add_argument("secrets_dir")
    se.add_argument("--share", type=parse_share, action="append", default=[], metavar="DIR=NAME[,NAME...]",
                    help="also copy these secrets into DIR (one per service, holding only what it uses; repeatable)")
    args = p.parse_args(argv)
    if args.command == "up" and not 1 <= args.nodes <= 28:
        p.error("--nodes must be between 1 and 28 (CloudHSM allows 28 HSMs per cluster)")
    try:
        commands = {"up": cmd_up, "status": cmd_status, "down": cmd_down, "provision": cmd_provision,
                    "secrets": cmd_secrets}
        sys.exit(commands[args.command](args))
    except BrokenPipeError:  # e.g. `kms-cluster status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
