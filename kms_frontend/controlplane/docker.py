"""HSM nodes as containers of a compose project, through the Docker Engine API (the Unix socket).

Run by the ``hsm-supervisor`` service (:mod:`.supervisor`), the one process of the stack that holds
the Docker socket; the frontend asks it over HTTP (:mod:`.remote`). It learns everything from its
own container (compose labels and mounts): the project, the image, the network, and the volumes
holding the backups and the HSMs' secrets. Each HSM is::

    container  <project>-<hsm-id>   image of the project, command hsm-node, network alias <hsm-id>
    volume     <project>_<hsm-id>-data   its data (/data)

labelled with the compose project (so ``down --remove-orphans`` removes the containers) and the HSM
id (so a restarted supervisor finds them again). It listens on ``<hsm-id>:2225`` (peer 2226);
its EniIp is the container's address on the project network.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp

from .provisioners import CLIENT_PORT, METRICS_PORT, PEER_PORT, Placement, Provisioner, ProvisionerError
from .records import HsmRecord

log = logging.getLogger("kms_frontend.controlplane.docker")
HSM_LABEL = "kms-cloudhsm.hsm-id"


class DockerContainers(Provisioner):
    name = "docker"

    def __init__(self, socket_path: str = "/var/run/docker.sock", self_id: str | None = None) -> None:
        self.socket_path = socket_path
        self.self_id = self_id or socket.gethostname()
        self._session: aiohttp.ClientSession | None = None
        self.project = self.image = self.network = self.backups = self.secrets = ""

    async def _api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204, 304)) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.socket_path))
        try:
            async with self._session.request(method, "http://docker" + path, json=body) as r:
                data = await r.json(content_type=None) if r.content_length != 0 else None
                if r.status not in ok:
                    message = data.get("message", "") if isinstance(data, dict) else str(data)
                    raise ProvisionerError(f"Docker Engine refused {method} {path.split('?')[0]}: {r.status} {message}")
                return data
        except aiohttp.ClientError as exc:
            raise ProvisionerError(f"the Docker Engine does not answer on {self.socket_path}: {exc}") from None

    async def discover(self) -> None:
        """Project, image, network and shared volumes, read from this supervisor's own container."""
        me = await self._api("GET", f"/containers/{self.self_id}/json")
        labels = me["Config"].get("Labels") or {}
        self.project = labels.get("com.docker.compose.project", "")
        self.image = me["Config"]["Image"]
        self.network = next(iter(me["NetworkSettings"]["Networks"]))
        mounts = {m["Destination"]: m.get("Name", "") for m in me.get("Mounts", []) if m.get("Type") == "volume"}
        # the HSMs' own secrets volume (compose.yaml mounts it at /hsm-secrets); a compose file from
        # before the per-service volumes had one secrets volume for all, at /secrets
        self.backups = mounts.get("/backups", "")
        self.secrets = mounts.get("/hsm-secrets") or mounts.get("/secrets", "")
        if not (self.project and self.backups and self.secrets):
            raise ProvisionerError("hsm-supervisor must run as a compose service with the backups volume at /backups "
                                   "and the HSMs' secrets volume at /hsm-secrets")
        log.info("supervising HSM containers", extra={"event": "supervisor_ready", "project": self.project,
                                                      "image": self.image, "network": self.network})

    def names(self, hsm_id: str) -> tuple[str, str]:
        return f"{self.project}-{hsm_id}", f"{self.project}_{hsm_id}-data"

    def choose_address(self, zone_index: int, requested: str | None, taken: set[str]) -> str:
        if requested:
            raise ProvisionerError("under compose the Docker network assigns each HSM its address; omit IpAddress")
        return ""  # known once the container runs

    async def create(self, hsm_id: str, cluster_id: str, region: str, address: str) -> Placement:
        container, volume = self.names(hsm_id)
        labels = {"com.docker.compose.project": self.project, "com.docker.compose.service": hsm_id,
                  "com.docker.compose.oneoff": "False", HSM_LABEL: hsm_id, "kms-cloudhsm.cluster-id": cluster_id}
        await self._api("POST", "/volumes/create", {"Name": volume, "Labels": labels})
        env = {"HSM_DATA_DIR": "/data", "HSM_LISTEN": f"0.0.0.0:{CLIENT_PORT}", "HSM_PEER_LISTEN": f"0.0.0.0:{PEER_PORT}",
               "HSM_ADVERTISE": f"{hsm_id}:{CLIENT_PORT}", "HSM_PEER_ADVERTISE": f"{hsm_id}:{PEER_PORT}",
               "HSM_ID": hsm_id, "HSM_MASTER_KEY_FILE": "/secrets/hsm-master.key", "HSM_BACKUP_DIR": "/backups",
               "HSM_APPLIANCE_KEY_FILE": "/secrets/appliance.key", "HSM_METRICS_LISTEN": f"0.0.0.0:{METRICS_PORT}"}
        body = {
            "Image": self.image, "Cmd": ["hsm-node"], "Hostname": hsm_id, "Labels": labels,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}, "Mounts": [
                {"Type": "volume", "Source": volume, "Target": "/data"},
                {"Type": "volume", "Source": self.backups, "Target": "/backups"},
                {"Type": "volume", "Source": self.secrets, "Target": "/secrets", "ReadOnly": True}]},
            "NetworkingConfig": {"EndpointsConfig": {self.network: {"Aliases": [hsm_id]}}},
        }
        await self._api("POST", f"/containers/create?name={container}", body, ok=(201, 409))
        await self._api("POST", f"/containers/{container}/start")
        ip = await self._address(container)
        log.info("HSM container started", extra={"event": "hsm_container_started", "hsm_id": hsm_id,
                                                 "container": container, "ip": ip})
        return Placement(f"{hsm_id}:{CLIENT_PORT}", f"{hsm_id}:{PEER_PORT}", {"container": container}, eni_ip=ip)

    async def _address(self, container: str) -> str:
        for _ in range(50):
            info = await self._api("GET", f"/containers/{container}/json")
            ip = (info["NetworkSettings"]["Networks"].get(self.network) or {}).get("IPAddress", "")
            if ip:
                return ip
            await asyncio.sleep(0.1)
        return ""

    async def ensure_running(self, hsm: HsmRecord) -> str:
        container, _ = self.names(hsm.hsm_id)
        info = await self._api("GET", f"/containers/{container}/json", ok=(200, 404))
        if info is None or "State" not in info:
            await self.create(hsm.hsm_id, hsm.cluster_id, "", "")  # its data volume is still there
            return "started"
        if info["State"].get("Running"):
            return "adopted"
        await self._api("POST", f"/containers/{container}/start")
        return "started"

    async def destroy(self, hsm: HsmRecord) -> None:
        container, volume = self.names(hsm.hsm_id)
        await self._api("POST", f"/containers/{container}/stop?t=10", ok=(204, 304, 404))
        await self._api("DELETE", f"/containers/{container}?force=true&v=true", ok=(204, 404))
        await self._api("DELETE", f"/volumes/{volume}", ok=(204, 404))
        log.info("HSM container removed", extra={"event": "hsm_container_removed", "hsm_id": hsm.hsm_id})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
