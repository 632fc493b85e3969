"""Tags of clusters and backups (CloudHSM API Reference: TagResource, UntagResource, ListTags).
At most 50 per resource; keys starting with ``aws:`` are reserved."""
from __future__ import annotations

from backup_store import BackupNotFoundError

from ..service.model import Params
from . import errors as e
from .clusters import validate_tags
from .service import ControlPlane, page
from .shapes import Shape, tag_list


def _current(plane: ControlPlane, resource_id: str, region: str) -> dict[str, str]:
    if resource_id.startswith("cluster-"):
        return dict(plane.cluster(resource_id, region).tags)
    try:
        plane.regions.store(region).describe(resource_id)
    except (BackupNotFoundError, ValueError):
        raise e.backup_not_found(resource_id) from None
    return dict(plane.store.backup(resource_id).tags)


async def _save(plane: ControlPlane, resource_id: str, region: str, tags: dict[str, str]) -> None:
    if len(tags) > 50:
        raise e.CloudHsmTagException(f"{resource_id} would have {len(tags)} tags; a resource can have at most 50.")
    if resource_id.startswith("cluster-"):
        async with plane.lock:
            rec = plane.cluster(resource_id, region)
            rec.tags = tags
            await plane.store.put_cluster(rec)
    else:
        attrs = plane.store.backup(resource_id)
        attrs.tags = tags
        await plane.store.put_backup(attrs)


async def tag_resource(plane: ControlPlane, p: Params, region: str) -> Shape:
    tags = _current(plane, p["ResourceId"], region)
    tags.update(validate_tags(p["TagList"]))
    await _save(plane, p["ResourceId"], region, tags)
    return {}


async def untag_resource(plane: ControlPlane, p: Params, region: str) -> Shape:
    tags = _current(plane, p["ResourceId"], region)
    for key in p["TagKeyList"]:
        tags.pop(key, None)
    await _save(plane, p["ResourceId"], region, tags)
    return {}


async def list_tags(plane: ControlPlane, p: Params, region: str) -> Shape:
    tags = tag_list(_current(plane, p["ResourceId"], region))
    chunk, token = page(tags, p.get("NextToken"), p.get("MaxResults"), 50)
    out: Shape = {"TagList": chunk}
    if token:
        out["NextToken"] = token
    return out
