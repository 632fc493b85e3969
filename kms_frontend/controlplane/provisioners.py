"""Where an HSM's node runs: the provisioners. Each is a small class with three verbs:

* ``create(hsm_id, cluster_id, region)``: start a fresh, empty ``hsm-node`` for a new HSM and say
  where it listens (:class:`Placement`); the control plane then has it join its cluster (or
  restores a backup into it).
* ``ensure_running(hsm)``: at start, and when asked: re-adopt the HSM's node if it runs, start it
  again on its own data (same ports) if it does not. Never a second copy.
* ``destroy(hsm)``: stop its node and remove its data (DeleteHsm, after it left the cluster).

:class:`LocalProcesses` runs nodes as processes of this machine (``kms-cluster up``, tests);
under compose, :class:`~.remote.Supervised` asks the ``hsm-supervisor`` service, whose
:class:`~.docker.DockerContainers` runs them as containers; :class:`Static` manages nothing: its nodes were
started by someone else (discovered through ``--hsm-endpoint``), so it can neither start nor stop
one.

A node outlives the frontend that started it: it runs in its own session, and a frontend restart
finds it again by its data directory (``/proc/<pid>/cmdline``), not by a pid it might have lost.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from plumbing.files import write_private

from .records import STATIC, HsmRecord

log = logging.getLogger("kms_frontend.controlplane.provisioners")


class ProvisionerError(Exception):
    """The node could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Placement:
    endpoint: str
    peer_endpoint: str
    handle: dict[str, Any] = field(default_factory=dict)
    eni_ip: str = ""     # when only known once the node runs (a container's address)


CLIENT_PORT, PEER_PORT = 2225, 2226  # CloudHSM's client port; the peer port beside it
METRICS_PORT = 9100                  # a local node's /metrics, on its own address


class Provisioner:
    name = "provisioner"

    def choose_address(self, zone_index: int, requested: str | None, taken: set[str]) -> str:
        """The new HSM's address (its EniIp) in the subnet of Availability Zone ``zone_index``."""
        raise NotImplementedError

    async def create(self, hsm_id: str, cluster_id: str, region: str, address: str) -> Placement:
        raise NotImplementedError

    async def ensure_running(self, hsm: HsmRecord) -> str:
        """'adopted' (it was running), 'started' (it was not), or 'unmanaged'."""
        raise NotImplementedError

    async def destroy(self, hsm: HsmRecord) -> None:
        raise NotImplementedError

    def running(self, hsm: HsmRecord) -> bool | None:
        """Is its node process (container) running? None: not ours to know."""
        return None

    async def close(self) -> None:
        pass


class Static(Provisioner):
    """Nodes started by someone else. New HSMs cannot be created here, and a deleted HSM's node is
    left running (DELETED, refusing everything) for its owner to stop."""
    name = STATIC

    def choose_address(self, zone_index: int, requested: str | None, taken: set[str]) -> str:
        return self._refuse()

    async def create(self, hsm_id: str, cluster_id: str, region: str, address: str) -> Placement:
        return self._refuse()

    @staticmethod
    def _refuse() -> NoReturn:
        raise ProvisionerError(
            "this control plane was started without a provisioner (--cloudhsm-provisioner static): it manages the HSM "
            "nodes it discovers but cannot start new ones. Start the frontend with --cloudhsm-provisioner local (or "
            "docker under compose), or start an hsm-node yourself and add it with `hsm-mgmt addNode`.")

    async def ensure_running(self, hsm: HsmRecord) -> str:
        return "unmanaged"

    async def destroy(self, hsm: HsmRecord) -> None:
        log.info("HSM removed from its cluster; its node was started elsewhere and is left to its owner",
                 extra={"event": "hsm_left_running", "hsm_id": hsm.hsm_id, "endpoint": hsm.endpoint})


# ------------------------------------------------------------------ local processes


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def find_process(data_dir: Path) -> int | None:
    """The pid of the running ``hsm-node`` whose ``--data-dir`` is ``data_dir``, if any (Linux /proc)."""
    wanted = str(data_dir)
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue  # a zombie is not running
        args = [a.decode(errors="replace") for a in argv]
        if "--data-dir" in args:
            i = args.index("--data-dir")
            if i + 1 < len(args) and args[i + 1] == wanted and any("hsm_node" in a or "hsm-node" in a for a in args):
                return int(entry.name)
    return None


class LocalProcesses(Provisioner):
    """``hsm-node`` processes on this machine, one directory per HSM under ``base``::

        <base>/<hsm-id>/data          the node's data directory
        <base>/<hsm-id>/node.log      its log
        <base>/<hsm-id>/process.json  how it is started (argv, endpoints), written before it starts

    Each HSM gets its own loopback address, as each CloudHSM HSM has its own ENI address: the
    subnet of the cluster's n-th Availability Zone is ``<prefix>.<n+1>.0/24`` (``127.0.1.0/24``,
    ``127.0.2.0/24``...), and the node listens there on CloudHSM's port 2225 (peer port 2226). So
    an HSM's EniIp is where ``hsm-mgmt --endpoint <EniIp>:2225`` reaches it. The deployment secret
    and the appliance key are passed to the nodes as file paths; the frontend never reads the former.
    """
    name = "local"

    def __init__(self, base: Path, *, master_key_file: str, appliance_key_file: str,
                 backup_dirs: dict[str, str], prefix: str = "127.0",
                 extra_args: list[str] | None = None, python: str = sys.executable) -> None:
        self.base = base
        self.master_key_file, self.appliance_key_file = master_key_file, appliance_key_file
        self.backup_dirs, self.prefix = backup_dirs, prefix
        self.extra_args = list(extra_args or [])
        self.python = python
        self._lock = asyncio.Lock()

    def _dir(self, hsm_id: str) -> Path:
        return self.base / hsm_id

    def spec(self, hsm_id: str) -> dict[str, Any] | None:
        path = self._dir(hsm_id) / "process.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def specs(self) -> dict[str, dict[str, Any]]:
        """Every HSM this provisioner placed (kms-cluster and kms-chaos read these too)."""
        found = {}
        if self.base.is_dir():
            for d in sorted(self.base.iterdir()):
                spec = self.spec(d.name)
                if spec is not None:
                    found[d.name] = spec
        return found

    def choose_address(self, zone_index: int, requested: str | None, taken: set[str]) -> str:
        subnet = f"{self.prefix}.{zone_index + 1}."
        taken = taken | {spec["endpoint"].rsplit(":", 1)[0] for spec in self.specs().values()}
        if requested:
            if not requested.startswith(subnet):
                raise ProvisionerError(f"IpAddress {requested} is not in that Availability Zone's subnet ({subnet}0/24)")
            if requested in taken or not (_port_free(requested, CLIENT_PORT) and _port_free(requested, PEER_PORT)):
                raise ProvisionerError(f"IpAddress {requested} is in use; choose another in {subnet}0/24 or omit it")
            return requested
        for n in range(4, 255):
            ip = subnet + str(n)
            if ip not in taken and _port_free(ip, CLIENT_PORT) and _port_free(ip, PEER_PORT):
                return ip
        raise ProvisionerError(f"no free address left in {subnet}0/24 for a new HSM node")

    async def create(self, hsm_id: str, cluster_id: str, region: str, address: str) -> Placement:
        if region not in self.backup_dirs:
            raise ProvisionerError(f"no backup store is configured for Region {region}")
        async with self._lock:
            d = self._dir(hsm_id)
            endpoint, peer = f"{address}:{CLIENT_PORT}", f"{address}:{PEER_PORT}"
            argv = [self.python, "-m", "hsm_node.server", "--data-dir", str(d / "data"),
                    "--listen", endpoint, "--peer-listen", peer, "--hsm-id", hsm_id,
                    "--master-key-file", self.master_key_file,
                    "--backup-dir", self.backup_dirs[region], "--metrics-listen", f"{address}:{METRICS_PORT}",
                    *self.extra_args]
            if self.appliance_key_file:
                argv += ["--appliance-key-file", self.appliance_key_file]
            spec = {"hsm_id": hsm_id, "cluster_id": cluster_id, "region": region, "argv": argv, "endpoint": endpoint,
                    "peer_endpoint": peer, "data_dir": str(d / "data"), "log": str(d / "node.log")}
            d.mkdir(parents=True, exist_ok=True)
            write_private(d / "process.json", json.dumps(spec, indent=2).encode())
            pid = await asyncio.to_thread(self._spawn, spec)
        log.info("HSM node started", extra={"event": "hsm_node_started", "hsm_id": hsm_id, "pid": pid,
                                            "endpoint": endpoint})
        return Placement(endpoint, peer, {"dir": str(d), "pid": pid})

    @staticmethod
    def _spawn(spec: dict[str, Any]) -> int:
        logf = open(spec["log"], "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            proc = subprocess.Popen(spec["argv"], stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
        finally:
            logf.close()
        # Reap it when it ends, so that it never lingers as a zombie of this process.
        _REAPED.add(proc)
        return proc.pid

    def pid(self, hsm_id: str) -> int | None:
        spec = self.spec(hsm_id)
        return find_process(Path(spec["data_dir"])) if spec else None

    def running(self, hsm: HsmRecord) -> bool | None:
        _reap()
        return self.pid(hsm.hsm_id) is not None

    async def ensure_running(self, hsm: HsmRecord) -> str:
        _reap()
        spec = self.spec(hsm.hsm_id)
        if spec is None:
            raise ProvisionerError(f"HSM {hsm.hsm_id} has no process description under {self.base}; its node "
                                   "cannot be started again")
        async with self._lock:
            if await asyncio.to_thread(find_process, Path(spec["data_dir"])) is not None:
                return "adopted"
            await asyncio.to_thread(self._spawn, spec)
        log.info("HSM node started again on its data", extra={"event": "hsm_node_restarted", "hsm_id": hsm.hsm_id})
        return "started"

    async def destroy(self, hsm: HsmRecord) -> None:
        spec = self.spec(hsm.hsm_id)
        if spec is not None:
            await asyncio.to_thread(self._stop, Path(spec["data_dir"]))
        await asyncio.to_thread(shutil.rmtree, self._dir(hsm.hsm_id), True)
        log.info("HSM node stopped and its data removed", extra={"event": "hsm_node_destroyed", "hsm_id": hsm.hsm_id})

    @staticmethod
    def _stop(data_dir: Path, timeout: float = 10.0) -> None:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            pid = find_process(data_dir)
            if pid is None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)  # a paused node handles SIGTERM only once continued
                os.kill(pid, signum)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                _reap()
                if find_process(data_dir) is None:
                    return
                time.sleep(0.05)


_REAPED: set[subprocess.Popen] = set()


def _reap() -> None:
    for proc in list(_REAPED):
        if proc.poll() is not None:
            _REAPED.discard(proc)
