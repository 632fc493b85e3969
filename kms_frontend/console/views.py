"""What each console page shows, read as the signed-in principal through ``Services.call`` (KMS) or
``ControlPlane.call`` (CloudHSM), and the actions it offers. A read the principal may not make shows
the AccessDeniedException in its place."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import errors
from ..controlplane.service import ControlPlane
from ..service.authorization import Caller
from ..service.frontend import Services
from ..service.model import Params
from .hsm import with_health

PAGE_SIZE = 50
MAX_CLUSTERS = 100  # DescribeClusters read for one view (25 a page)
BACKUPS_SHOWN = 20  # the newest


@dataclass(frozen=True)
class Action:
    operation: str
    params: Callable[[dict[str, str]], Params]
    done: Callable[[Params, Any], str]


def _days(form: dict[str, str]) -> Params:
    params: Params = {"KeyId": form["key_id"]}
    days = form.get("days", "").strip()
    if days:
        if not days.isdigit():
            raise ValueError(f"The waiting period must be a number of days, not {days!r}.")
        params["PendingWindowInDays"] = int(days)
    return params


def _create_key(form: dict[str, str]) -> Params:
    params: Params = {"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": form["store_id"]}
    if form.get("description"):
        params["Description"] = form["description"]
    tags = []
    for pair in filter(None, (p.strip() for p in form.get("tags", "").split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Tags are written Key=Value, separated by commas; {pair!r} is not.")
        tags.append({"TagKey": key.strip(), "TagValue": value.strip()})
    if tags:
        params["Tags"] = tags
    return params


ACTIONS: dict[str, Action] = {
    "ConnectCustomKeyStore": Action("ConnectCustomKeyStore", lambda f: {"CustomKeyStoreId": f["store_id"]},
                                    lambda p, r: f"Connecting {p['CustomKeyStoreId']}."),
    "DisconnectCustomKeyStore": Action("DisconnectCustomKeyStore", lambda f: {"CustomKeyStoreId": f["store_id"]},
                                       lambda p, r: f"Disconnected {p['CustomKeyStoreId']}."),
    "CreateKey": Action("CreateKey", _create_key,
                        lambda p, r: f"Created key {r['KeyMetadata']['KeyId']} in {p['CustomKeyStoreId']}."),
    "EnableKey": Action("EnableKey", lambda f: {"KeyId": f["key_id"]}, lambda p, r: f"Enabled {p['KeyId']}."),
    "DisableKey": Action("DisableKey", lambda f: {"KeyId": f["key_id"]}, lambda p, r: f"Disabled {p['KeyId']}."),
    "ScheduleKeyDeletion": Action("ScheduleKeyDeletion", _days,
                                  lambda p, r: f"{p['KeyId']} will be deleted after {r['PendingWindowInDays']} days."),
    "CancelKeyDeletion": Action("CancelKeyDeletion", lambda f: {"KeyId": f["key_id"]},
                                lambda p, r: f"Deletion of {p['KeyId']} cancelled; the key is Disabled."),
    "CreateAlias": Action("CreateAlias", lambda f: {"AliasName": f["alias_name"].strip(), "TargetKeyId": f["key_id"]},
                          lambda p, r: f"Created {p['AliasName']} for {p['TargetKeyId']}."),
}


@dataclass
class Denied:
    """A read the principal may not make (or that failed): shown in place of the data."""

    error: str


class Views:
    def __init__(self, services: Services, plane: ControlPlane | None) -> None:
        self.services, self.plane = services, plane

    async def _call(self, caller: Caller, operation: str, params: Params) -> Any:
        try:
            return await self.services.call(operation, params, caller)
        except errors.KmsError as exc:
            return Denied(f"{exc.name}: {exc.message}")

    async def stores(self, caller: Caller, request: web.Request) -> dict[str, Any]:
        result = await self._call(caller, "DescribeCustomKeyStores", {})
        stores = [] if isinstance(result, Denied) else result["CustomKeyStores"]
        for s in stores:
            info = self.services.directory.clusters.get(s["CloudHsmClusterId"])
            s["ActiveHsms"] = info.active_hsms if info is not None else 0
        return {"stores": stores, "denied": result if isinstance(result, Denied) else None}

    async def keys(self, caller: Caller, request: web.Request) -> dict[str, Any]:
        params: Params = {"Limit": PAGE_SIZE}
        if request.query.get("marker"):
            params["Marker"] = request.query["marker"]
        listed = await self._call(caller, "ListKeys", params)
        if isinstance(listed, Denied):
            return {"keys": [], "denied": listed, "next_marker": None, "stores": [], "aliases": {}}
        aliases = await self._aliases(caller)
        keys = []
        for entry in listed["Keys"]:
            described = await self._call(caller, "DescribeKey", {"KeyId": entry["KeyId"]})
            if isinstance(described, Denied):
                keys.append({"KeyId": entry["KeyId"], "Arn": entry["KeyArn"], "Denied": described.error})
                continue
            tags = await self._call(caller, "ListResourceTags", {"KeyId": entry["KeyId"]})
            keys.append({**described["KeyMetadata"], "Tags": [] if isinstance(tags, Denied) else tags["Tags"]})
        stores = await self._call(caller, "DescribeCustomKeyStores", {})
        return {"keys": keys, "denied": None, "next_marker": listed.get("NextMarker"), "aliases": aliases,
                "stores": [] if isinstance(stores, Denied) else stores["CustomKeyStores"]}

    async def _aliases(self, caller: Caller, key_id: str | None = None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        params: Params = {"Limit": 100, **({"KeyId": key_id} if key_id else {})}
        while True:
            page = await self._call(caller, "ListAliases", params)
            if isinstance(page, Denied):
                return out
            for a in page["Aliases"]:
                if a.get("TargetKeyId"):
                    out.setdefault(a["TargetKeyId"], []).append(a["AliasName"])
            if not page.get("NextMarker"):
                return out
            params["Marker"] = page["NextMarker"]

    async def key(self, caller: Caller, request: web.Request) -> dict[str, Any]:
        key_id = request.match_info["key_id"]
        described = await self._call(caller, "DescribeKey", {"KeyId": key_id})
        if isinstance(described, Denied):
            return {"key": None, "denied": described, "key_id": key_id}
        metadata = described["KeyMetadata"]
        tags = await self._call(caller, "ListResourceTags", {"KeyId": metadata["KeyId"]})
        policy = await self._call(caller, "GetKeyPolicy", {"KeyId": metadata["KeyId"], "PolicyName": "default"})
        grants = await self._call(caller, "ListGrants", {"KeyId": metadata["KeyId"]})
        return {"key": metadata, "denied": None, "key_id": key_id,
                "aliases": (await self._aliases(caller, metadata["KeyId"])).get(metadata["KeyId"], []),
                "tags": tags, "policy": policy, "grants": grants}

    async def _describe(self, caller: Caller, operation: str, params: Params, member: str,
                        limit: int) -> list[dict[str, Any]] | Denied:
        """Pages of a CloudHSM Describe* operation, authorized like the API's (``cloudhsm:<Operation>``)."""
        assert self.plane is not None
        out: list[dict[str, Any]] = []
        try:
            while len(out) < limit:
                page = await self.plane.call(operation, dict(params), self.plane.regions.home, caller)
                out.extend(page[member])
                if not page.get("NextToken"):
                    break
                params = {**params, "NextToken": page["NextToken"]}
        except errors.KmsError as exc:
            return Denied(f"{exc.name}: {exc.message}")
        return out[:limit]

    async def hsm(self, caller: Caller, request: web.Request) -> dict[str, Any]:
        if self.plane is None:
            denied = Denied("This frontend runs no CloudHSM control plane.")
            return {"clusters": [], "clusters_denied": denied, "backups": [], "backups_denied": denied}
        clusters = await self._describe(caller, "DescribeClusters", {}, "Clusters", MAX_CLUSTERS)
        backups = await self._describe(caller, "DescribeBackups", {"MaxResults": BACKUPS_SHOWN}, "Backups",
                                       BACKUPS_SHOWN)
        return {"clusters": [] if isinstance(clusters, Denied) else with_health(self.plane, clusters),
                "clusters_denied": clusters if isinstance(clusters, Denied) else None,
                "backups": [] if isinstance(backups, Denied) else backups,
                "backups_denied": backups if isinstance(backups, Denied) else None}

    async def activity(self, caller: Caller, request: web.Request) -> dict[str, Any]:
        return {}
