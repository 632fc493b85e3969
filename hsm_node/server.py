"""The ``hsm-node`` process: wiring of storage, rules, TLS and gRPC servers.

The client port serves server-authenticated TLS: a bootstrap self-signed
certificate while UNINITIALIZED, then the node certificate chained to the
cluster certificate and trust anchor (switched live, no restart). The peer
port (mutual TLS, cluster certificates only) opens once the node has a
cluster identity.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from plumbing.addresses import split_listen
from plumbing.drain import add_port, new_server, run_main, running_loop_name, serve_until_signalled
from plumbing.files import ensure_private
from plumbing.metrics import MetricsServer
from plumbing.options import add_process_options, positive_seconds
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc

from .api.servicer import HsmServicer
from .errors import DEFAULT_MAX_KEYS
from .keys import KeyRules
from .membership import Membership
from .node import ACTIVE, HsmNode, NodeConfig
from .observability import NodeCollector
from .storage import StorageError
from .storage_sealing import load_master_key
from .users import UserRules

log = logging.getLogger("hsm_node.server")
MAX_MESSAGE = 64 * 1024 * 1024
STOP_MARGIN_S = 0.5  # of the grace, left to gRPC's own stop after the lame duck
# SO_REUSEPORT off (gRPC turns it on): a second node started on a port another one holds must fail
# to start, not silently share the port and answer half the connections with its own certificate.
GRPC_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.so_reuseport", 0)]


class NodeServer:
    def __init__(self, config: NodeConfig, listen: str, peer_listen: str, metrics_listen: str = "") -> None:
        self.config, self.listen, self.peer_listen = config, listen, peer_listen
        self.node = HsmNode(config)
        self.users, self.keys = UserRules(self.node), KeyRules(self.node)
        self.membership = Membership(self.node, peer_listen)
        self.servicer = HsmServicer(self.node, self.users, self.keys, self.membership)
        self.metrics = MetricsServer(metrics_listen, NodeCollector(self.node, self.membership),
                                     log=logging.getLogger("hsm_node.metrics")) if metrics_listen else None
        self.health = health.aio.HealthServicer()
        self._tls_version = 0
        self._served_version = -1
        self.node.on_identity_change.append(self._identity_changed)
        self.server, self.core_calls = new_server(options=GRPC_OPTIONS)
        self.stopped = asyncio.Event()

    def _cert_config(self) -> grpc.ServerCertificateConfiguration:
        key, chain = self.node.tls_identity()
        return grpc.ssl_server_certificate_configuration([(key, chain)])

    def _fetch_cert_config(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on each handshake: hand over a new certificate only when it changed.
        if self._served_version == self._tls_version:
            return None
        self._served_version = self._tls_version
        return self._cert_config()

    def _identity_changed(self) -> None:
        self._tls_version += 1
        asyncio.get_running_loop().create_task(self._sync_serving())

    async def _sync_serving(self) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if self.node.state == ACTIVE else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("hsm.v1.Hsm", status)
        if self.node.cluster_cert_pem:
            await self.membership.start_peer_server()

    async def start(self) -> None:
        pb_grpc.add_HsmServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._served_version = self._tls_version
        creds = grpc.dynamic_ssl_server_credentials(self._cert_config(), self._fetch_cert_config)
        add_port(self.server, self.listen, creds, "--listen")
        await self.server.start()
        if self.metrics is not None:
            self.metrics.start()
        await self.membership.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._sync_serving()
        log.info("listening", extra={"event": "listening", "listen": self.listen, "node_id": self.node.node_id,
                                     "state": self.node.state, "cluster_id": self.node.cluster_id,
                                     "event_loop": running_loop_name()})

    async def stop(self, grace: float = 5.0) -> None:
        """Drain: refuse new calls (UNAVAILABLE; health NOT_SERVING), let in-flight ones finish (up
        to ``grace`` seconds; writes keep replicating meanwhile), end crypto streams after their
        current batch, then close storage."""
        deadline = asyncio.get_running_loop().time() + grace
        await self.health.enter_graceful_shutdown()
        self.servicer.drain()
        # Stop gRPC only once its core holds no call of ours: its stop cancels every call not yet
        # handed to a handler. Calls in flight end within the grace anyway (plumbing.drain).
        await self.servicer.quiesce(max(0.0, grace - STOP_MARGIN_S), self.core_calls)
        await self.server.stop(max(STOP_MARGIN_S, deadline - asyncio.get_running_loop().time()))
        await self.node.finish_changes(deadline - asyncio.get_running_loop().time())
        await self.membership.stop()
        self.node.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        log.info("stopped", extra={"event": "stopped", "node_id": self.node.node_id})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="hsm-node", description="Run one HSM node (a CloudHSM-like HSM over gRPC/TLS).")
    p.add_argument("--data-dir", default=env("HSM_DATA_DIR", "./hsm-data"), help="node state directory [HSM_DATA_DIR]")
    p.add_argument("--listen", default=env("HSM_LISTEN", "127.0.0.1:2225"), help="client port [HSM_LISTEN]")
    p.add_argument("--peer-listen", default=env("HSM_PEER_LISTEN", "127.0.0.1:2226"), help="peer port [HSM_PEER_LISTEN]")
    p.add_argument("--advertise", default=env("HSM_ADVERTISE"), help="client endpoint others use [HSM_ADVERTISE]")
    p.add_argument("--peer-advertise", default=env("HSM_PEER_ADVERTISE"), help="peer endpoint others use [HSM_PEER_ADVERTISE]")
    p.add_argument("--host", action="append", default=[h for h in (env("HSM_HOSTS") or "").split(",") if h],
                   help="extra host name for the node certificate (repeatable) [HSM_HOSTS]")
    p.add_argument("--master-key-file", default=env("HSM_MASTER_KEY_FILE", "~/.config/hsm-node/master.key"),
                   help="deployment secret (created if missing); or HSM_MASTER_KEY=base64 [HSM_MASTER_KEY_FILE]")
    p.add_argument("--appliance-key-file", default=env("HSM_APPLIANCE_KEY_FILE", ""),
                   help="secret of the appliance user (AU) the CloudHSM control plane logs in with; without it "
                        "the control plane cannot add or remove this node's members [HSM_APPLIANCE_KEY_FILE]")
    p.add_argument("--hsm-id", default=env("HSM_ID", ""),
                   help="the HSM id to take when the data directory is new (the CloudHSM control plane's) [HSM_ID]")
    p.add_argument("--backup-dir", default=env("HSM_BACKUP_DIR", "./hsm-backups"), help="backup store [HSM_BACKUP_DIR]")
    p.add_argument("--backup-interval", type=positive_seconds, default=env("HSM_BACKUP_INTERVAL", "86400"),
                   help="seconds between periodic backups [HSM_BACKUP_INTERVAL]")
    p.add_argument("--session-idle-timeout", type=positive_seconds, default=env("HSM_SESSION_IDLE_TIMEOUT", "900"),
                   help="seconds before an idle login session expires [HSM_SESSION_IDLE_TIMEOUT]")
    p.add_argument("--max-keys", type=int, default=env("HSM_MAX_KEYS", str(DEFAULT_MAX_KEYS)),
                   help="keys the HSM may hold, CloudHSM's limit per cluster by default; 0 = no limit,"
                        " for scale tests [HSM_MAX_KEYS]")
    add_process_options(p, "HSM", grace_s=5, in_flight="calls")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> NodeConfig:
    if args.max_keys < 0:
        raise ValueError(f"--max-keys must be 0 (no limit) or more (got {args.max_keys})")
    master = load_master_key(args.master_key_file, os.environ.get("HSM_MASTER_KEY"), create=True)
    endpoint = args.advertise or args.listen
    peer_endpoint = args.peer_advertise or args.peer_listen
    host = split_listen(endpoint, "--advertise" if args.advertise else "--listen")[0]
    peer_host = split_listen(peer_endpoint, "--peer-advertise" if args.peer_advertise else "--peer-listen")[0]
    hosts = list(dict.fromkeys(["localhost", "127.0.0.1", host, peer_host, *args.host]))
    hosts = [h for h in hosts if h not in ("0.0.0.0", "::", "")]
    return NodeConfig(
        data_dir=args.data_dir, master_key=master, endpoint=endpoint, peer_endpoint=peer_endpoint, hosts=hosts,
        backup_dir=args.backup_dir, backup_interval_s=args.backup_interval,
        session_idle_timeout_s=args.session_idle_timeout, max_keys=args.max_keys,
        appliance_key=read_appliance_key(args.appliance_key_file), hsm_id=args.hsm_id,
    )


def private_paths(args: argparse.Namespace) -> list[str]:
    """What the node keeps, which must be its user's only: data, backups, the deployment secret,
    the appliance user's secret."""
    master_file = None if os.environ.get("HSM_MASTER_KEY") else os.path.expanduser(args.master_key_file)
    appliance_file = os.path.expanduser(args.appliance_key_file) if args.appliance_key_file else None
    return [p for p in (args.data_dir, args.backup_dir, master_file, appliance_file) if p]


def read_appliance_key(path: str) -> bytes:
    """The appliance user's secret (a text file written by the launcher or the compose secrets step)."""
    if not path:
        return b""
    try:
        return Path(os.path.expanduser(path)).read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the appliance key file {path} (--appliance-key-file): "
                         f"{exc.strerror or exc}") from None


async def run(args: argparse.Namespace) -> None:
    config = build_config(args)
    ensure_private(log, *private_paths(args))  # fixed, with a warning, when found open to others
    server = NodeServer(config, args.listen, args.peer_listen, args.metrics_listen)
    await serve_until_signalled(server, args.shutdown_grace, log)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_main("hsm-node", args.log_level, run(args), (StorageError, ValueError, OSError), log, args.log_file,
             args.event_loop)


if __name__ == "__main__":
    main()
