"""The ``kms-frontend`` process: wiring of metadata, discovery, connections and
the two adapters (gRPC, AWS JSON 1.1). Rules live in ``service/``."""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from plumbing.addresses import split_listen
from plumbing.drain import Gate, add_port, new_server, run_main, running_loop_name, serve_until_signalled
from plumbing.files import ensure_private, write_private
from plumbing.metrics import MetricsServer
from plumbing.options import add_process_options, positive_seconds, seconds

from .api.aws_json import AwsJsonEndpoint
from .api.cloudhsm_forward import LeaderSocket, ToLeader
from .api.cloudhsm_json import CloudHsmEndpoint
from .api.grpc_service import GrpcApi
from .api.sigv4 import SigV4Verifier, access_keys
from .clock import OffsetClock
from .cluster.appliance import ApplianceClient
from .cluster.directory import ClusterDirectory
from .cluster.hsm_client import HsmClients
from .console.activity import Activity, publish_totals, shared_totals
from .console.app import Console
from .controlplane.provisioners import LocalProcesses, Provisioner
from .controlplane.remote import Supervised
from .controlplane.service import Authorizer, ControlPlane, ControlPlaneSettings, Regions, allow_all
from .controlplane.store import ControlPlaneStore
from .observability import FrontendCollector
from .secret_box import SecretBox
from .service.context import Context, FrontendSettings
from .service.frontend import Services, finish_abandoned
from .service.principals import Identities, load_principals_file
from .service.workers import Leadership, WorkerSync, lead_when_possible
from .store.changes import ChangeCounter
from .store.repository import SchemaVersionError
from .store.sqlite import SqliteRepository

log = logging.getLogger("kms_frontend.server")
STOP_MARGIN_S = 0.5  # of the grace, left to gRPC's own stop after the lame duck


class GenericHandlersOnly:
    """What a generated ``add_*Servicer_to_server`` is given instead of the server: it installs the
    service's generic handler (a dict lookup per call) and skips ``add_registered_method_handlers``.

    Why: grpc.aio keeps one pending "request call" future per registered method, and its serving
    loop runs ``asyncio.wait`` over all of them for every call it accepts (an iscoroutine check and
    a done-callback added and removed on each). With the ~45 methods of Kms, KmsAdmin and Health
    that is ~45 us per accepted call instead of ~17 us with the one generic future (measured in
    isolation), and py-spy put 3-7% of the frontend's samples under Encrypt load there. Same
    methods, same handlers, same behaviour; only the lookup is a dict lookup in Python."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass  # served by the generic handler added just before


def instance_id(data_dir: Path) -> str:
    """A stable id of this frontend (its sessions on the HSMs carry it across restarts)."""
    path = data_dir / "instance-id"
    if not path.exists():
        write_private(path, ("kms-frontend-" + uuid.uuid4().hex[:16]).encode())
    return path.read_text().strip()


def worker_address(listen: str, index: int) -> str:
    """A worker's own address for what each worker serves apart (/metrics): the port plus its index."""
    if not listen or index == 0:
        return listen
    host, port = split_listen(listen, "--metrics-listen")
    return f"[{host}]:{port + index}" if ":" in host else f"{host}:{port + index}"


class Frontend:
    def __init__(self, args: argparse.Namespace) -> None:
        data = Path(args.data_dir)
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        # metadata.db (policies, tags, aliases, audit), cloudhsm.db, credentials, ids, the backup
        # stores and the HSM nodes it starts: its user's only, fixed (with a warning) when found open
        ensure_private(log, *private_paths(args, data))
        self.args = args
        self.workers = max(1, args.workers)
        principals = load_principals_file(args.principals) if args.principals else None  # refused whole, or used
        box = SecretBox.from_key_file(os.path.expanduser(args.master_key_file), create=True)
        clock = OffsetClock(os.environ.get("KMS_CLOCK_OFFSET_FILE"))
        identities = Identities(args.account_id, access_keys(args.aws_access_key, data), principals, box, clock)
        # Several workers share the database, a change counter and each store's quota (service/workers.py).
        self.counter = ChangeCounter(data / "metadata.changes") if self.workers > 1 else None
        repo = SqliteRepository(data / "metadata.db", changes=self.counter)
        settings = FrontendSettings(args.account_id, args.region, args.store_quota,
                                    shared_quota_dir=str(data / "quota") if self.workers > 1 else None)
        self.ctx = Context(repo, box, settings, clock=clock)
        self.directory = ClusterDirectory(args.hsm_endpoint)
        client_ids = [instance_id(data) + f"-w{i}" for i in range(self.workers)] if self.workers > 1 \
            else [instance_id(data)]  # a session each on an HSM: one per user and client there
        self.hsms = HsmClients(self.directory, client_ids[max(0, args.worker_index)])
        self.services = Services(self.ctx, self.hsms, identities)
        self.services.connections.sibling_client_ids = [c for c in client_ids if c != self.hsms.client_id]
        self.leadership: Leadership | None = None
        if self.counter is not None:
            self.services.sync = WorkerSync(self.ctx, self.counter, self.services.catalog, self.services.connections)
            self.leadership = Leadership(data / "leader.lock")
            self.services.keys.recover_after_ms = RECOVER_AFTER_MS
        self.verifier = SigV4Verifier(identities.credential, args.region, services=("kms", "sts"))
        if principals is not None:
            log.info("principals loaded", extra={"event": "principals_loaded", "path": str(args.principals),
                                                 "users": sorted(identities.users), "roles": sorted(identities.roles)})
        # Several workers share the port; one process refuses to share it (gRPC's own default would let
        # a second frontend started by mistake on the same port take half the connections unnoticed).
        # optimization_target=throughput: under load, frontend CPU per Encrypt 0.91x and 1.36x the
        # requests per second against gRPC's default ("latency"); no change with one caller
        # (bench/frontend_ab.py, docs/performance.md "The hot path").
        self.server, self.core_calls = new_server(options=[("grpc.so_reuseport", 1 if self.workers > 1 else 0),
                                                           ("grpc.optimization_target", "throughput")])
        self.gate = Gate()
        self.tls = None
        if args.tls_cert and args.tls_key:
            self.tls = (Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())
        self.health = health.aio.HealthServicer()
        self.plane = control_plane(args, data, self.directory, clock, self.services.authorizer.authorize_identity)
        self.aws: AwsJsonEndpoint | None = None
        self.cloudhsm: CloudHsmEndpoint | None = None
        if args.aws_listen:
            # Several workers: the control plane runs in the leader; the others hand its requests over.
            to_leader = ToLeader(data / LEADER_SOCKET) if self.workers > 1 else None
            self.cloudhsm = CloudHsmEndpoint(self.plane, self.services.identities.credential, to_leader)
            self.aws = AwsJsonEndpoint(self.services, self.verifier, args.aws_listen, cloudhsm=self.cloudhsm,
                                       reuse_port=self.workers > 1, ssl=aws_tls(args))
        self.leader_socket: LeaderSocket | None = None
        # Several workers: the leader serves the console (its sign-in sessions live in one process)
        # and charts every worker's requests, which each publishes once a second.
        self.console: Console | None = None
        if args.console_listen:
            activity = Activity(totals=shared_totals(data / ACTIVITY_DIR)) if self.workers > 1 else None
            self.console = Console(self.services, args.console_listen, self.plane, activity)
        self.metrics: MetricsServer | None = None
        if args.metrics_listen:
            self.metrics = MetricsServer(worker_address(args.metrics_listen, args.worker_index), FrontendCollector(
                self.ctx, self.hsms.open_sessions, lambda: {"grpc": self.gate.in_flight,
                                                            "aws": self.aws.in_flight if self.aws is not None else 0}),
                log=logging.getLogger("kms_frontend.metrics"))
        self.stopped = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.server.add_generic_rpc_handlers(tuple(GrpcApi(self.services, self.verifier, self.gate,
                                                           secure=self.tls is not None).handlers()))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, GenericHandlersOnly(self.server))
        add_port(self.server, self.args.listen, grpc.ssl_server_credentials([self.tls]) if self.tls else None,
                 "--listen")
        leading = self.leadership is None or self.leadership.try_acquire()
        self.services.connections.leader = leading
        self.plane.following = not leading
        if leading:
            await self._start_control_plane()
        with contextlib.suppress(Exception):
            await self.directory.refresh()
        sync = self.services.sync
        if sync is not None:
            await sync.start()  # before the load: what other workers write from here on is applied after it
        await self.services.catalog.load()
        await self.server.start()
        if self.aws is not None:
            await self.aws.start()
        if self.console is not None and leading:
            await self.console.start()
        if self.metrics is not None:
            self.metrics.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.directory.run()))
        await self.services.connections.resume()  # a follower opens sessions of CONNECTED stores only
        if leading:
            self._tasks.append(loop.create_task(self.services.keys.run_deletions(self.args.sweep_interval)))
        else:  # the leader's work if the leader goes
            assert self.leadership is not None
            self._tasks.append(loop.create_task(lead_when_possible(self.leadership, self._lead)))
        if sync is not None:
            self._tasks.append(loop.create_task(sync.run()))
            if self.console is not None:
                self._tasks.append(loop.create_task(publish_totals(
                    Path(self.args.data_dir) / ACTIVITY_DIR / f"w{self.args.worker_index}.json")))
        self._tasks.append(loop.create_task(self.services.audit.run()))
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("kms.v1.Kms", health_pb2.HealthCheckResponse.SERVING)
        log.info("listening", extra={"event": "listening", "listen": self.args.listen,
                                     "hsm_endpoints": self.args.hsm_endpoint, "worker": self.args.worker_index,
                                     "pid": os.getpid(), "leader": self.services.connections.leader,
                                     "event_loop": running_loop_name()})

    async def _start_control_plane(self) -> None:
        """The leader's: HSM nodes it placed run again (adopted, or started on their data), and with
        several workers the others reach its API through a socket (api/cloudhsm_forward.py)."""
        await (self.plane.lead() if self.plane.following else self.plane.start())
        if self.workers > 1 and self.cloudhsm is not None:
            self.leader_socket = LeaderSocket(self.cloudhsm, Path(self.args.data_dir) / LEADER_SOCKET)
            await self.leader_socket.start()

    async def _lead(self) -> None:
        """This follower took the leader's lock (the leader ended): finish what it left, sweep."""
        self.services.connections.leader = True
        await self._start_control_plane()
        if self.console is not None:
            await self.console.start()  # sessions of the old leader's console are gone: sign in again
        await self.services.connections.resume(sessions=False)
        self._tasks.append(asyncio.get_running_loop().create_task(
            self.services.keys.run_deletions(self.args.sweep_interval)))

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: refuse new requests (UNAVAILABLE; health NOT_SERVING), let in-flight ones finish
        (up to ``grace`` seconds) over the HSM sessions and streams, which stay open until then;
        then close everything."""
        deadline = asyncio.get_running_loop().time() + grace
        await self.health.enter_graceful_shutdown()
        self.gate.close()

        async def drain_grpc() -> None:
            # Stop gRPC only once its core holds no call of ours: its stop cancels every call not
            # yet handed to a handler. Calls in flight end within the grace anyway, so the lame
            # duck may last that long (it ends as soon as all is done).
            began = asyncio.get_running_loop().time()
            done = await self.gate.quiesce(max(0.0, grace - STOP_MARGIN_S), core=self.core_calls)
            log.info("lame duck over", extra={"event": "lame_duck_over", "all_done": done,
                                              "in_flight": self.gate.in_flight,
                                              "lame_duck_s": round(asyncio.get_running_loop().time() - began, 3)})
            await self.server.stop(max(STOP_MARGIN_S, deadline - asyncio.get_running_loop().time()))

        draining = [drain_grpc()]
        if self.aws is not None:
            self.aws.grace = grace
            draining.append(self.aws.stop())
        if self.console is not None:
            draining.append(self.console.stop())
        await asyncio.gather(*draining)
        await finish_abandoned(deadline - asyncio.get_running_loop().time())
        for t in self._tasks:
            t.cancel()
        await self.services.audit.close()
        await self.services.connections.close()
        if self.leader_socket is not None:
            await self.leader_socket.stop()
        if self.cloudhsm is not None and self.cloudhsm.to_leader is not None:
            await self.cloudhsm.to_leader.close()
        await self.plane.stop()  # its HSM nodes keep running: the next start re-adopts them
        await self.directory.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        self.ctx.close()
        if self.leadership is not None:
            self.leadership.close()
        log.info("stopped", extra={"event": "stopped"})


def aws_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The AWS endpoint's TLS context (--aws-tls-cert and --aws-tls-key), or None for plain HTTP."""
    if not args.aws_tls_cert and not args.aws_tls_key:
        return None
    if not (args.aws_tls_cert and args.aws_tls_key):
        raise ValueError("--aws-tls-cert and --aws-tls-key go together (KMS_AWS_TLS_CERT, KMS_AWS_TLS_KEY)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # what AWS endpoints accept
    try:
        context.load_cert_chain(os.path.expanduser(args.aws_tls_cert), os.path.expanduser(args.aws_tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use {args.aws_tls_cert} / {args.aws_tls_key} for the AWS endpoint "
                         f"(--aws-tls-cert, --aws-tls-key): {exc}") from None
    return context


def backup_stores(args: argparse.Namespace) -> dict[str, str]:
    """Region -> the directory of its backup store (--backup-dir, --cloudhsm-region)."""
    stores = {args.region: os.path.expanduser(args.backup_dir)}
    for item in args.cloudhsm_region:
        region, sep, directory_path = item.partition("=")
        if not sep or not region or not directory_path:
            raise ValueError(f"--cloudhsm-region expects REGION=BACKUP_DIR, got {item!r}")
        stores[region.strip()] = os.path.expanduser(directory_path.strip())
    return stores


def private_paths(args: argparse.Namespace, data: Path) -> list[str | Path]:
    """What the frontend keeps or shares with the nodes it starts, which must be its user's only."""
    paths: list[str | Path] = [data, os.path.expanduser(args.master_key_file), *backup_stores(args).values()]
    if args.cloudhsm_dir:
        paths.append(os.path.expanduser(args.cloudhsm_dir))
    if args.appliance_key_file:
        paths.append(os.path.expanduser(args.appliance_key_file))
    for key in (args.tls_key, args.aws_tls_key):
        if key:
            paths.append(os.path.expanduser(key))
    return paths


def control_plane(args: argparse.Namespace, data: Path, directory: ClusterDirectory, clock: Any,
                  authorizer: Authorizer) -> ControlPlane:
    """The CloudHSM v2 control plane: its records, Regions (backup stores), provisioner, and the
    appliance user's secret (created when this frontend starts nodes itself)."""
    stores = backup_stores(args)
    appliance_key = ""
    key_file = os.path.expanduser(args.appliance_key_file) if args.appliance_key_file else ""
    if not key_file and args.cloudhsm_provisioner == "local":
        key_file = str(data / "appliance.key")
    if key_file:
        path = Path(key_file)
        if not path.exists() and args.cloudhsm_provisioner == "local":
            write_private(path, base64.b64encode(os.urandom(32)))
        try:
            appliance_key = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the appliance key file {path} (--appliance-key-file): "
                             f"{exc.strerror or exc}") from None
    provisioners: dict[str, Provisioner] = {}
    if args.cloudhsm_provisioner == "local":
        provisioners["local"] = LocalProcesses(
            Path(os.path.expanduser(args.cloudhsm_dir or str(data / "hsms"))),
            master_key_file=os.path.expanduser(args.hsm_master_key_file), appliance_key_file=key_file,
            backup_dirs=stores, prefix=args.cloudhsm_address_prefix,
            extra_args=["--backup-interval", str(args.hsm_backup_interval)] if args.hsm_backup_interval else [])
    elif args.cloudhsm_provisioner == "docker":  # compose: the hsm-supervisor service starts containers
        try:
            token = Path(os.path.expanduser(args.cloudhsm_supervisor_token_file)).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the supervisor token {args.cloudhsm_supervisor_token_file} "
                             f"(--cloudhsm-supervisor-token-file): {exc.strerror or exc}") from None
        provisioners["docker"] = Supervised(args.cloudhsm_supervisor, token)
    elif args.cloudhsm_provisioner != "static":
        raise ValueError(f"--cloudhsm-provisioner must be local, docker or static, not {args.cloudhsm_provisioner!r}")
    return ControlPlane(
        ControlPlaneStore(data / "cloudhsm.db"), Regions(args.region, stores), directory,
        ApplianceClient(appliance_key, "kms-frontend-control-plane"), provisioners, args.cloudhsm_provisioner,
        ControlPlaneSettings(args.account_id, replace_after_s=args.hsm_replace_after,
                             backup_copy_s=args.cloudhsm_backup_copy_seconds), clock=clock,
        authorizer=authorizer)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="kms-frontend", description="Run the KMS frontend (custom key stores over gRPC).")
    p.add_argument("--listen", default=env("KMS_LISTEN", "127.0.0.1:7800"), help="gRPC address [KMS_LISTEN]")
    p.add_argument("--console-listen", default=env("KMS_CONSOLE_LISTEN", ""),
                   help="serve the web console on HOST:PORT (sign in with an access key pair); empty, the"
                        " default, turns it off [KMS_CONSOLE_LISTEN]")
    p.add_argument("--aws-listen", default=env("KMS_AWS_LISTEN", "127.0.0.1:4599"),
                   help="AWS JSON 1.1 (boto3, AWS CLI) address; empty disables it [KMS_AWS_LISTEN]")
    p.add_argument("--aws-access-key", action="append",
                   default=[k for k in (env("KMS_AWS_ACCESS_KEYS") or "").split(",") if k],
                   help="ACCESS_KEY_ID:SECRET of the account root, accepted on both APIs (repeatable); without any, a"
                        " pair is generated into <data-dir>/aws-credentials.json [KMS_AWS_ACCESS_KEYS]")
    p.add_argument("--principals", default=env("KMS_PRINCIPALS_FILE") or None,
                   help="JSON file of IAM users and roles (with their access keys and IAM policies) allowed to call,"
                        " besides the account root; refused at start, whole, if not valid [KMS_PRINCIPALS_FILE]")
    p.add_argument("--data-dir", default=env("KMS_DATA_DIR", "./kms-data"), help="metadata directory [KMS_DATA_DIR]")
    p.add_argument("--master-key-file", default=env("KMS_MASTER_KEY_FILE", "~/.config/kms-frontend/master.key"),
                   help="key sealing the stored kmsuser passwords (created if missing) [KMS_MASTER_KEY_FILE]")
    p.add_argument("--hsm-endpoint", action="append",
                   default=[e for e in (env("KMS_HSM_ENDPOINTS") or "").split(",") if e],
                   help="HSM node client endpoint host:port (repeatable) [KMS_HSM_ENDPOINTS]")
    p.add_argument("--account-id", default=env("KMS_ACCOUNT_ID", "111122223333"), help="[KMS_ACCOUNT_ID]")
    p.add_argument("--region", default=env("KMS_REGION", "us-east-1"), help="[KMS_REGION]")
    p.add_argument("--store-quota", type=int, default=env("KMS_STORE_QUOTA", "1800"),
                   help="crypto requests per second per custom key store [KMS_STORE_QUOTA]")
    p.add_argument("--tls-cert", default=env("KMS_TLS_CERT"), help="serve gRPC over TLS with this cert [KMS_TLS_CERT]")
    p.add_argument("--tls-key", default=env("KMS_TLS_KEY"), help="[KMS_TLS_KEY]")
    p.add_argument("--aws-tls-cert", default=env("KMS_AWS_TLS_CERT"),
                   help="serve the AWS endpoint over HTTPS with this certificate (PEM, chain after it); clients "
                        "trust its CA through AWS_CA_BUNDLE [KMS_AWS_TLS_CERT]")
    p.add_argument("--aws-tls-key", default=env("KMS_AWS_TLS_KEY"), help="its private key (PEM) [KMS_AWS_TLS_KEY]")
    p.add_argument("--sweep-interval", type=positive_seconds, default=env("KMS_SWEEP_INTERVAL", "1"),
                   help="seconds between key-deletion sweeps [KMS_SWEEP_INTERVAL]")
    cp = p.add_argument_group("CloudHSM control plane (cloudhsmv2 on the AWS endpoint)")
    cp.add_argument("--cloudhsm-provisioner", default=env("KMS_CLOUDHSM_PROVISIONER", "static"),
                    help="who starts HSM nodes for CreateHsm: local (hsm-node processes of this machine), docker "
                         "(containers, through the compose stack's hsm-supervisor) or static (nobody: nodes are "
                         "started elsewhere and found through --hsm-endpoint) "
                         "[KMS_CLOUDHSM_PROVISIONER; static]")
    cp.add_argument("--cloudhsm-supervisor", default=env("KMS_CLOUDHSM_SUPERVISOR", "http://supervisor:8080"),
                    help="the hsm-supervisor service (provisioner docker) [KMS_CLOUDHSM_SUPERVISOR]")
    cp.add_argument("--cloudhsm-supervisor-token-file",
                    default=env("KMS_CLOUDHSM_SUPERVISOR_TOKEN_FILE", "/secrets/supervisor.token"),
                    help="bearer token for the supervisor [KMS_CLOUDHSM_SUPERVISOR_TOKEN_FILE]")
    cp.add_argument("--cloudhsm-dir", default=env("KMS_CLOUDHSM_DIR", ""),
                    help="where local HSM nodes keep their data and logs [KMS_CLOUDHSM_DIR; <data-dir>/hsms]")
    cp.add_argument("--cloudhsm-address-prefix", default=env("KMS_CLOUDHSM_ADDRESS_PREFIX", "127.0"),
                    help="local HSM nodes listen on <prefix>.<zone>.<n>:2225, one loopback address per HSM "
                         "[KMS_CLOUDHSM_ADDRESS_PREFIX; 127.0]")
    cp.add_argument("--backup-dir", default=env("KMS_BACKUP_DIR", "./hsm-backups"),
                    help="the Region's backup store, shared with its HSM nodes [KMS_BACKUP_DIR; ./hsm-backups]")
    cp.add_argument("--cloudhsm-region", action="append",
                    default=[r for r in (env("KMS_CLOUDHSM_REGIONS") or "").split(",") if r],
                    help="another Region served by the control plane, REGION=BACKUP_DIR (repeatable) "
                         "[KMS_CLOUDHSM_REGIONS, comma separated]")
    cp.add_argument("--hsm-master-key-file", default=env("KMS_HSM_MASTER_KEY_FILE", "~/.config/hsm-node/master.key"),
                    help="deployment secret handed (as a path) to the HSM nodes it starts; never read by the frontend "
                         "[KMS_HSM_MASTER_KEY_FILE]")
    cp.add_argument("--appliance-key-file", default=env("KMS_APPLIANCE_KEY_FILE", ""),
                    help="secret of the HSMs' appliance user, shared with the nodes (--appliance-key-file there); "
                         "created in <data-dir> with the local provisioner [KMS_APPLIANCE_KEY_FILE]")
    cp.add_argument("--hsm-replace-after", type=seconds, default=env("KMS_HSM_REPLACE_AFTER", "300"),
                    help="seconds an HSM may not answer before a new one replaces it; 0 turns replacement off "
                         "[KMS_HSM_REPLACE_AFTER; 300]")
    cp.add_argument("--cloudhsm-backup-copy-seconds", type=seconds,
                    default=env("KMS_CLOUDHSM_BACKUP_COPY_SECONDS", "2"),
                    help="how long a CopyBackupToRegion copy stays CREATE_IN_PROGRESS before it is READY "
                         "[KMS_CLOUDHSM_BACKUP_COPY_SECONDS; 2]")
    cp.add_argument("--hsm-backup-interval", type=seconds, default=env("KMS_HSM_BACKUP_INTERVAL", "0"),
                    help="periodic backup interval of the nodes it starts, seconds (0: their default) "
                         "[KMS_HSM_BACKUP_INTERVAL]")
    p.add_argument("--workers", type=int, default=env("KMS_WORKERS", "1"),
                   help="serving processes sharing the ports (SO_REUSEPORT), the metadata and each store's quota;"
                        " worker i serves /metrics on the metrics port + i [KMS_WORKERS]")
    p.add_argument("--worker-index", type=int, default=-1, help=argparse.SUPPRESS)  # set by the supervisor
    add_process_options(p, "KMS", grace_s=10, in_flight="requests")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    await serve_until_signalled(Frontend(args), args.shutdown_grace, log)


LEADER_SOCKET = "controlplane.sock"
ACTIVITY_DIR = "activity"  # several workers: each one's request totals, for the leader's console  # several workers: the leader's control plane, for the others
RECOVER_AFTER_MS = 60_000  # several workers: a key in Creating is another worker's until this old
WORKER_RESTART_S = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def prepare(args: argparse.Namespace) -> None:
    """What the first start creates, done once before the workers start (they would race for it):
    the data directory, the master key, the root's access keys, the instance id, the schemas."""
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    if args.principals:
        load_principals_file(args.principals)
    SecretBox.from_key_file(os.path.expanduser(args.master_key_file), create=True)
    access_keys(args.aws_access_key, data)
    instance_id(data)
    SqliteRepository(data / "metadata.db").close()
    # the control plane's database and (local provisioner) the appliance key; its flags are checked here too
    control_plane(args, data, ClusterDirectory([]), time.time, allow_all).store.close()


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N``: start N worker processes with the same flags (they share the ports), pass
    SIGTERM/SIGINT on to them, restart one that dies, and end when they have all stopped."""
    prepare(args)
    stopping = False
    supervisor = os.getpid()

    def die_with_supervisor() -> None:
        """In the worker, before it runs: SIGTERM (a drain) when the supervisor ends, however it ends
        (SIGKILL included), so that no orphan keeps the ports, the leader's lock or HSM sessions."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it ended before prctl took effect
            os._exit(1)

    def spawn(index: int) -> subprocess.Popen:
        # Its own process group: what a terminal sends its foreground group (Ctrl-C, Ctrl-Z) reaches the
        # supervisor only, which alone decides what the workers get; PDEATHSIG covers the supervisor's end.
        return subprocess.Popen([sys.executable, "-m", "kms_frontend.server", *argv, "--worker-index", str(index)],
                                preexec_fn=die_with_supervisor if sys.platform == "linux" else None, process_group=0)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    procs = [spawn(i) for i in range(args.workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("workers started", extra={"event": "workers_started", "pids": [p.pid for p in procs]})
    while True:
        if all(p.poll() is not None for p in procs) and stopping:
            return 0
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None and not stopping:
                if code == 2:  # a worker that cannot start (a port taken, bad flags): so would the others
                    stop(signal.SIGTERM, None)
                    for p in procs:
                        p.wait()
                    return 2
                log.warning("worker exited; restarting it", extra={"event": "worker_restart", "worker": i,
                                                                   "exit_code": code})
                time.sleep(WORKER_RESTART_S)
                if not stopping:
                    procs[i] = spawn(i)
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.workers > 1 and args.worker_index < 0:
        from plumbing import logs

        try:
            logs.setup("kms-frontend", args.log_level, args.log_file)   # the workers append to it too
            sys.exit(supervise(args, argv))
        except (SchemaVersionError, ValueError, OSError) as exc:
            log.error(str(exc), extra={"event": "startup_failed"})
            print(f"kms-frontend: {exc}", file=sys.stderr)
            sys.exit(2)
    args.worker_index = max(0, args.worker_index)
    run_main("kms-frontend", args.log_level, run(args), (SchemaVersionError, ValueError, OSError), log,
             args.log_file, args.event_loop)


if __name__ == "__main__":
    main()

