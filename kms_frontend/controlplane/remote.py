"""The frontend's side of the ``hsm-supervisor`` service (compose): a provisioner that asks the
supervisor, over HTTP on the project network with a shared bearer token, to start, re-adopt and
remove HSM containers. The frontend itself never holds the Docker socket.

The supervisor's API (:mod:`.supervisor`): ``POST /hsms`` (create), ``POST /hsms/<id>/ensure``
(running again), ``DELETE /hsms/<id>`` (stop, remove it and its data volume). Errors come back as
``{"error": message}`` with status 409 (the node could not be placed) or 401 (token)."""
from __future__ import annotations

from typing import Any

import aiohttp

from .provisioners import Placement, Provisioner, ProvisionerError
from .records import HsmRecord


class Supervised(Provisioner):
    name = "docker"   # the HSMs it places run as containers

    def __init__(self, url: str, token: str, timeout_s: float = 120.0) -> None:
        self.url, self.token = url.rstrip("/"), token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout,
                                                  headers={"Authorization": f"Bearer {self.token}"})
        try:
            async with self._session.request(method, self.url + path, json=body) as r:
                doc = await r.json(content_type=None)
                if r.status != 200:
                    raise ProvisionerError(f"hsm-supervisor: {doc.get('error') if isinstance(doc, dict) else doc}")
                return doc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProvisionerError(f"hsm-supervisor at {self.url} does not answer ({exc or type(exc).__name__}); "
                                   "is the supervisor service up?") from None

    def choose_address(self, zone_index: int, requested: str | None, taken: set[str]) -> str:
        if requested:
            raise ProvisionerError("under compose the Docker network assigns each HSM its address; omit IpAddress")
        return ""

    async def create(self, hsm_id: str, cluster_id: str, region: str, address: str) -> Placement:
        doc = await self._call("POST", "/hsms", {"hsm_id": hsm_id, "cluster_id": cluster_id, "region": region})
        return Placement(doc["endpoint"], doc["peer_endpoint"], doc.get("handle", {}), doc.get("eni_ip", ""))

    async def ensure_running(self, hsm: HsmRecord) -> str:
        return str((await self._call("POST", f"/hsms/{hsm.hsm_id}/ensure",
                                     {"cluster_id": hsm.cluster_id}))["outcome"])

    async def destroy(self, hsm: HsmRecord) -> None:
        await self._call("DELETE", f"/hsms/{hsm.hsm_id}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
