"""What a fault does to one HSM node: injectors for the local process cluster
(``kms-cluster``'s state directory, signals and :class:`cluster_tools.launcher.Cluster`)
and for a compose project (docker kill / pause / unpause / restart, hsm-mgmt in the
project's network). Blocking: the fault runner calls them in a thread.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from plumbing.addresses import split_listen

from ..cloudhsm_api import REPLACEMENT_TAG
from ..launcher import Cluster, LauncherError, NodeSpec


class FaultError(Exception):
    pass


def _index(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


class Injector:
    """What a fault does. ``via`` names nodes believed up, for the hsm-mgmt calls."""
    nodes: list[str]

    def resolve(self, name: str) -> str:
        """``hsm2`` and ``node2`` both name the second node."""
        if name in self.nodes:
            return name
        i = _index(name)
        for n in self.nodes:
            if i is not None and _index(n) == i:
                return n
        raise FaultError(f"no node {name!r} (nodes: {', '.join(self.nodes)})")

    def running(self, node: str) -> bool: raise NotImplementedError
    def describe(self, node: str) -> str: raise NotImplementedError
    def endpoint(self, node: str) -> str: raise NotImplementedError
    def kill(self, node: str) -> str: raise NotImplementedError
    def pause(self, node: str) -> str: raise NotImplementedError
    def resume(self, node: str) -> str: raise NotImplementedError
    def restart(self, node: str) -> str: raise NotImplementedError
    def stop(self, node: str) -> None: raise NotImplementedError
    def start_fresh(self, node: str) -> str: raise NotImplementedError
    def wait_active(self, node: str, timeout: float = 60.0) -> None: raise NotImplementedError
    def mgmt(self, args: list[str], via: list[str]) -> tuple[int, Any, str]: raise NotImplementedError

    def observable(self) -> tuple[dict[str, str], bytes] | None:
        """Node endpoints this tool can reach itself, and the trust anchor to verify them (for the
        per-node samples in the report); None when the nodes are out of reach (compose network)."""
        return None

    def mgmt_ok(self, args: list[str], via: list[str]) -> Any:
        rc, doc, err = self.mgmt(args, via)
        if rc != 0:
            raise FaultError(f"hsm-mgmt {args[0]} failed: {err or doc}")
        return doc

    def node_id(self, node: str, via: list[str]) -> str:
        desc = self.mgmt_ok(["describeCluster"], via)
        for m in desc.get("members", []):
            if m.get("endpoint") == self.endpoint(node):
                return m["node_id"]
        raise FaultError(f"{node} ({self.endpoint(node)}) is not a member of the cluster")

    remove_linger = 0.0   # seconds a removed node keeps running before it is stopped

    def remove(self, node: str, via: list[str]) -> str:
        node_id = self.node_id(node, via)
        self.mgmt_ok(["removeNode", node_id], via)
        time.sleep(self.remove_linger)   # an operator stops the instance some time after removeNode
        self.stop(node)
        return f"removed {node_id}" + (f", stopped {self.remove_linger:g}s later" if self.remove_linger else "")

    def add(self, node: str, via: list[str]) -> str:
        detail = self.start_fresh(node)
        doc = self.mgmt_ok(["addNode", self.endpoint(node), self.peer_endpoint(node)], via)
        self.wait_active(node)
        member = doc.get("member", {}) if isinstance(doc, dict) else {}
        return f"{detail}; joined as {member.get('node_id', '?')} from backup {doc.get('backup_id', '?')}"

    def peer_endpoint(self, node: str) -> str: raise NotImplementedError

    def delete_hsm(self, node: str, via: list[str]) -> str:
        raise FaultError("delete-hsm needs a cluster created through the CloudHSM control plane (kms-cluster up)")

    def create_hsm(self, node: str, via: list[str]) -> str:
        raise FaultError("create-hsm needs a cluster created through the CloudHSM control plane (kms-cluster up)")

    def hsm_state(self, node: str) -> str:
        """After a failed delete-hsm/create-hsm: is the node's HSM there ("up") or not ("removed")?"""
        return "up" if self.running(node) else "removed"

    def close(self) -> None:
        pass

    def consistency(self, via: list[str]) -> dict:
        rc, doc, err = self.mgmt(["checkConsistency"], via)
        if not isinstance(doc, dict):
            return {"consistent": False, "error": err or str(doc)}
        return doc


class LocalInjector(Injector):
    """The ``kms-cluster`` process cluster: signals to the pids in state.json, and
    :class:`cluster_tools.launcher.Cluster` to start nodes."""

    def __init__(self, directory: Path, rpc_timeout: float = 10.0) -> None:
        self.c = Cluster(directory)
        if not self.c.state.nodes:
            raise FaultError(f"no local cluster in {self.c.dir} (kms-cluster up --detach --dir {directory})")
        self.nodes = [n.name for n in self.c.state.nodes]
        self.rpc_timeout = rpc_timeout
        self._zones: dict[str, str] = {}        # node -> the Availability Zone of the HSM delete-hsm removed
        self._replacement: str | None = None    # the cluster's replacement tag before this run
        self.managed = all(n.hsm_id for n in self.c.state.nodes)
        if self.managed:
            # Raw kills are this run's faults: the control plane must not replace a killed HSM meanwhile.
            api = self.c.api()
            self._replacement = api.tags(self.c.state.cluster_id).get(REPLACEMENT_TAG, "")
            api.tag(self.c.state.cluster_id, REPLACEMENT_TAG, "off")

    def close(self) -> None:
        if self.managed:
            api, cluster_id = self.c.api(), self.c.state.cluster_id
            if self._replacement:
                api.tag(cluster_id, REPLACEMENT_TAG, self._replacement)
            else:
                api.untag(cluster_id, REPLACEMENT_TAG)

    def _pid(self, node: str) -> int | None:
        return self.c.node_pid(node)

    # ------------------------------------------------------------ through the CloudHSM control plane

    def delete_hsm(self, node: str, via: list[str]) -> str:
        spec, api, cluster_id = self.c.node_spec(node), self.c.api(), self.c.state.cluster_id
        if not spec.hsm_id:
            return super().delete_hsm(node, via)
        hsm = next((h for h in api.cluster(cluster_id)["Hsms"] if h["HsmId"] == spec.hsm_id), None)
        if hsm is None:
            raise FaultError(f"{node} ({spec.hsm_id}) is not an HSM of {cluster_id}")
        self._zones[node] = hsm["AvailabilityZone"]
        api.delete_hsm(cluster_id, spec.hsm_id)
        deadline = time.monotonic() + 120
        while any(h["HsmId"] == spec.hsm_id for h in api.cluster(cluster_id)["Hsms"]):
            if time.monotonic() > deadline:
                raise FaultError(f"{spec.hsm_id} is still in {cluster_id} 120s after DeleteHsm")
            time.sleep(0.2)
        return f"DeleteHsm {spec.hsm_id} ({hsm['AvailabilityZone']}, {hsm['EniIp']}): node stopped, data removed"

    def create_hsm(self, node: str, via: list[str]) -> str:
        spec, api, cluster_id = self.c.node_spec(node), self.c.api(), self.c.state.cluster_id
        zone = self._zones.get(node) or api.zone(cluster_id, self.nodes.index(node))
        hsm_id = api.create_hsm(cluster_id, zone=zone)
        deadline = time.monotonic() + 120
        while True:
            hsm = next((h for h in api.cluster(cluster_id)["Hsms"] if h["HsmId"] == hsm_id), None)
            if hsm is not None and hsm["State"] == "ACTIVE":
                break
            if hsm is None or time.monotonic() > deadline:
                raise FaultError(f"CreateHsm {hsm_id}: {hsm['State'] + ' ' + hsm.get('StateMessage', '') if hsm else 'gone'}")
            time.sleep(0.2)
        self.c.state.nodes[self.nodes.index(node)] = NodeSpec(node, 2225, 2226, hsm["EniIp"], 9100, hsm_id)
        self.c.state.save(self.c.state_path)
        self.c.write_env()  # hsm-mgmt's endpoints follow
        self.wait_active(node)
        return f"CreateHsm {hsm_id} in {zone} at {hsm['EniIp']} (was {spec.hsm_id})"

    def hsm_state(self, node: str) -> str:
        spec = self.c.node_spec(node)
        hsms = {h["HsmId"] for h in self.c.api().cluster(self.c.state.cluster_id)["Hsms"]}
        return "up" if spec.hsm_id in hsms and self.running(node) else "removed"

    def running(self, node: str) -> bool:
        return self.c.node_running(node)

    def describe(self, node: str) -> str:
        return f"{node} pid {self._pid(node)} {self.endpoint(node)}"

    def endpoint(self, node: str) -> str:
        return self.c.node_spec(node).endpoint

    def peer_endpoint(self, node: str) -> str:
        return self.c.node_spec(node).peer_endpoint

    def observable(self) -> tuple[dict[str, str], bytes] | None:
        if not self.c.anchor.exists():
            return None
        return {n: self.endpoint(n) for n in self.nodes}, self.c.anchor.read_bytes()

    def _signal(self, node: str, signum: int) -> int:
        pid = self._pid(node)
        if pid is None or not self.running(node):
            raise FaultError(f"{node} is not running")
        os.kill(pid, signum)
        return pid

    def kill(self, node: str) -> str:
        pid = self._signal(node, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.running(node) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.c.state.pids.pop(node, None)   # gone: its pid may be reused by anything
        self.c.state.save(self.c.state_path)
        return f"SIGKILL pid {pid}"

    def pause(self, node: str) -> str:
        return f"SIGSTOP pid {self._signal(node, signal.SIGSTOP)}"

    def resume(self, node: str) -> str:
        return f"SIGCONT pid {self._signal(node, signal.SIGCONT)}"

    def restart(self, node: str) -> str:
        was = self._pid(node) if self.running(node) else None
        self.c.restart_node(node)
        self.wait_active(node)
        return f"pid {was or '-'} -> {self._pid(node)}"

    def stop(self, node: str) -> None:
        self.c.stop_node(node)

    def start_fresh(self, node: str) -> str:
        self.stop(node)
        spec = self.c.node_spec(node)
        if spec.hsm_id:  # a node of the control plane: its data directory is the provisioner's
            data = Path(self.c.hsms.local.spec(spec.hsm_id)["data_dir"])  # type: ignore[index]
            n = 1
            while data.with_name(f"data.removed-{n}").exists():
                n += 1
            data.rename(data.with_name(f"data.removed-{n}"))
            self.c.start_node(spec)
            self.c.wait_node(spec)
            return f"fresh {node} pid {self._pid(node)} (old data kept as data.removed-{n})"
        data = self.c.dir / "nodes" / node
        aside = ""
        if data.exists():
            n = 1
            while (self.c.dir / "nodes" / f"{node}.removed-{n}").exists():
                n += 1
            aside = f"{node}.removed-{n}"
            data.rename(self.c.dir / "nodes" / aside)
        spec = self.c.node_spec(node)
        self.c.start_node(spec, None)
        self.c.state.save(self.c.state_path)
        self.c.wait_node(spec)
        return f"fresh {node} pid {self._pid(node)}" + (f" (old data kept as nodes/{aside})" if aside else "")

    def wait_active(self, node: str, timeout: float = 60.0) -> None:
        spec, deadline = self.c.node_spec(node), time.monotonic() + timeout
        while True:
            try:
                state = self.c.node_status(spec).get("state")
            except LauncherError as exc:
                state = str(exc)
            if state == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise FaultError(f"{node} is not ACTIVE after {timeout:.0f}s ({state})")
            time.sleep(0.2)

    def mgmt(self, args: list[str], via: list[str]) -> tuple[int, Any, str]:
        cmd = [sys.executable, "-m", "hsm_node.mgmt", "--json", "--rpc-timeout", str(self.rpc_timeout),
               "--trust-anchor", str(self.c.anchor)]
        for n in via:
            cmd += ["--endpoint", self.endpoint(n)]
        env = {**os.environ, "HSM_ENV_FILE": os.devnull, "HSM_CO_USERNAME": "admin",
               "HSM_CO_PASSWORD": self.c.co_password}  # the environment, never argv
        return _run_json([*cmd, *args], env)


def _run_json(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, Any, str]:
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, None, f"timed out after {timeout:.0f}s"
    out = r.stdout.strip()
    start = out.find("{")  # compose may print its own lines first
    try:
        doc = json.loads(out[start:]) if start >= 0 else out
    except ValueError:
        doc = out
    return r.returncode, doc, r.stderr.strip()[-2000:]


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise FaultError("neither `docker compose` nor `docker-compose` is available")


class ComposeInjector(Injector):
    """A compose project from ``compose.yaml``: docker kill / pause / unpause / restart of the
    hsmN containers; hsm-mgmt runs in the project's network from the init service (its
    /state volume holds the trust anchor and CO credentials)."""

    def __init__(self, project: str, compose_file: Path, rpc_timeout: float = 10.0) -> None:
        self.project, self.rpc_timeout = project, rpc_timeout
        self._mgmt_container = ""
        self.base = [*compose_command(), "-p", project, "-f", str(compose_file)]
        self.cwd = compose_file.resolve().parent
        r = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                            "--format", '{{.Label "com.docker.compose.service"}}'], capture_output=True, text=True)
        self.nodes = sorted({s for s in r.stdout.split() if re.fullmatch(r"hsm\d+", s)}, key=lambda s: _index(s) or 0)
        if not self.nodes:
            raise FaultError(f"no hsmN containers in compose project {project!r} (docker compose -p {project} up -d)")

    def _compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *args], cwd=self.cwd, capture_output=True, text=True, timeout=timeout)

    def container(self, node: str) -> str:
        r = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                            "--filter", f"label=com.docker.compose.service={node}"], capture_output=True, text=True)
        return (r.stdout.split() or [""])[0]

    def _docker(self, *args: str) -> str:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise FaultError(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def _status(self, node: str) -> str:
        cid = self.container(node)
        if not cid:
            return "missing"
        return subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", cid], capture_output=True,
                              text=True).stdout.strip()

    def running(self, node: str) -> bool:
        return self._status(node) == "running"

    def describe(self, node: str) -> str:
        return f"{node} container {self.container(node)[:12]}"

    def endpoint(self, node: str) -> str:
        return f"{node}:2225"

    def peer_endpoint(self, node: str) -> str:
        return f"{node}:2226"

    def kill(self, node: str) -> str:
        cid = self.container(node)
        if self._status(node) == "paused":   # docker refuses to kill a paused container
            self._docker("unpause", cid)
        return f"docker kill {self._docker('kill', cid)[:12]}"

    def pause(self, node: str) -> str:
        return f"docker pause {self._docker('pause', self.container(node))[:12]}"

    def resume(self, node: str) -> str:
        return f"docker unpause {self._docker('unpause', self.container(node))[:12]}"

    def restart(self, node: str) -> str:
        cid = self.container(node)
        if self._status(node) == "paused":
            self._docker("unpause", cid)
        self._docker("restart", "-t", "10", cid)
        self.wait_active(node)
        return f"docker restart {cid[:12]}"

    def stop(self, node: str) -> None:
        cid = self.container(node)
        if cid:
            self._docker("rm", "-f", "-v", cid)

    def start_fresh(self, node: str) -> str:
        self.stop(node)
        volume = f"{self.project}_{node}-data"
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, text=True)
        r = self._compose("up", "-d", "--no-deps", node)
        if r.returncode != 0:
            raise FaultError(f"compose up {node} failed: {r.stderr.strip()[-500:]}")
        self._wait_health(node)
        return f"fresh {node} container {self.container(node)[:12]} (volume {volume} recreated)"

    def _wait_health(self, node: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cid = self.container(node)
            health = subprocess.run(["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                                     cid], capture_output=True, text=True).stdout.strip() if cid else ""
            if health in ("healthy", ""):
                if cid and self.running(node):
                    return
            time.sleep(0.5)
        raise FaultError(f"{node} did not become healthy within {timeout:.0f}s")

    def wait_active(self, node: str, timeout: float = 90.0) -> None:
        self._wait_health(node, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc, doc, _ = self.mgmt(["status"], [node])
            servers = doc.get("servers", []) if isinstance(doc, dict) else []
            if rc == 0 and servers and servers[0].get("state") == "ACTIVE":
                return
            time.sleep(1.0)
        raise FaultError(f"{node} is not ACTIVE after {timeout:.0f}s")

    def _helper(self) -> str:
        """One long-lived container of the init service (its /state volume, the project's network)
        that every hsm-mgmt call execs into: a `run` per call costs seconds."""
        if self._mgmt_container:
            return self._mgmt_container
        name = f"{self.project}-kms-chaos-mgmt"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)   # a leftover of an interrupted run
        r = self._compose("run", "-d", "--no-deps", "--name", name, "-e", "HSM_ENV_FILE=/state/env", "init",
                          "sleep", "infinity", timeout=300)
        if r.returncode != 0:
            raise FaultError(f"cannot start the hsm-mgmt helper container: {r.stderr.strip()[-500:]}")
        self._mgmt_container = name
        return name

    def mgmt(self, args: list[str], via: list[str]) -> tuple[int, Any, str]:
        cmd = ["docker", "exec", self._helper(), "hsm-mgmt", "--json", "--rpc-timeout", str(self.rpc_timeout)]
        for n in via:
            cmd += ["--endpoint", self.endpoint(n)]
        return _run_json([*cmd, *args])

    def close(self) -> None:
        if self._mgmt_container:
            subprocess.run(["docker", "rm", "-f", self._mgmt_container], capture_output=True)
            self._mgmt_container = ""

    def target_defaults(self) -> dict:
        """The frontend's published ports and the store id that init recorded."""
        found: dict[str, Any] = {}
        for key, port in (("endpoint", "7800"), ("aws_endpoint_url", "4599")):
            r = self._compose("port", "frontend", port, timeout=60)
            hostport = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
            if hostport:
                addr = f"127.0.0.1:{split_listen(hostport, 'docker compose port')[1]}"
                found[key] = addr if key == "endpoint" else f"http://{addr}"
        rc, doc, _ = _run_json(["docker", "exec", self._helper(), "cat", "/state/state.json"])
        if rc == 0 and isinstance(doc, dict):
            found.update(store_id=doc.get("store_id", ""), region=doc.get("region", "us-east-1"),
                         access_key_id=doc.get("aws_access_key_id", ""))
        env = subprocess.run(["docker", "exec", self._helper(), "cat", "/state/env"], capture_output=True, text=True,
                             timeout=60)
        if env.returncode == 0:  # the secret key is kept in the env file only (not in state.json)
            for line in env.stdout.splitlines():
                key, _, value = line.partition("=")
                if key == "AWS_SECRET_ACCESS_KEY":
                    found["secret_access_key"] = value
        return found
