"""Backup operations (CloudHSM API Reference: DescribeBackups, DeleteBackup, RestoreBackup,
ModifyBackupAttributes, CopyBackupToRegion, Get/Put/DeleteResourcePolicy).

Backups are taken by the HSMs (at activation, when an HSM is added or removed, periodically) into
their Region's backup store; the control plane reads and manages that store directly, so backups
outlive their cluster: DeleteBackup makes one PENDING_DELETION for 7 days (RestoreBackup brings it
back), a cluster's retention (ModifyCluster, 7..379 days) never removes its newest backup nor a
NeverExpires one, and CopyBackupToRegion puts the same sealed backup in another Region's store,
where a cluster created from it shares the original's backup history (same cluster certificate).
No backup can be opened outside an HSM.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from backup_store import (
    BackupInvalidStateError,
    BackupMeta,
    BackupNotFoundError,
    BackupState,
    BackupStore,
    BackupStoreError,
)
from plumbing.jsontext import loads_bounded

from ..service.model import Params
from . import errors as e
from .clusters import validate_tags
from .service import ControlPlane, page
from .shapes import Shape, backup_shape

log = logging.getLogger("kms_frontend.controlplane.backups")

BACKUP_FILTERS = ("backupIds", "sourceBackupIds", "clusterIds", "states", "sourceRegions", "neverExpires")
ARN_RE = re.compile(r"arn:aws(?:-us-gov)?:cloudhsm:([^:]+):(\d{12}):(backup|cluster|hsm)/((?:backup|cluster|hsm)-"
                    r"[2-7a-zA-Z]{11,16})")


def _meta(plane: ControlPlane, region: str, backup_id: str) -> BackupMeta:
    try:
        return plane.regions.store(region).describe(backup_id)
    except (BackupNotFoundError, ValueError):
        raise e.backup_not_found(backup_id) from None


def _state_error(exc: BackupStoreError) -> e.CloudHsmInvalidRequestException:
    return e.invalid(str(exc)[:1].upper() + str(exc)[1:] + ".")


async def describe_backups(plane: ControlPlane, p: Params, region: str) -> Shape:
    filters = p.get("Filters") or {}
    unknown = [k for k in filters if k not in BACKUP_FILTERS]
    if unknown:
        raise e.invalid(f"Unknown filter {unknown[0]!r}: DescribeBackups filters by {', '.join(BACKUP_FILTERS)}.")
    if p.get("Shared"):
        return {"Backups": []}  # backups other accounts share with this one: there is one account here
    metas = plane.regions.store(region).list(include_deleted="states" in filters and "DELETED" in filters["states"])
    for name, attr in (("backupIds", "backup_id"), ("sourceBackupIds", "source_backup_id"),
                       ("clusterIds", "cluster_id"), ("sourceRegions", "source_region")):
        if name in filters:
            metas = [m for m in metas if getattr(m, attr) in filters[name]]
    if "states" in filters:
        metas = [m for m in metas if str(m.state) in filters["states"]]
    if "neverExpires" in filters:
        wanted = {v.strip().lower() for v in filters["neverExpires"]}
        bad = wanted - {"true", "false"}
        if bad:
            raise e.invalid(f"The neverExpires filter takes true or false, not {sorted(bad)[0]!r}.")
        metas = [m for m in metas if ("true" if m.never_expires else "false") in wanted]
    metas.sort(key=BackupMeta.sort_key, reverse=not p.get("SortAscending"))
    chunk, token = page(metas, p.get("NextToken"), p.get("MaxResults"), 50)
    out: Shape = {"Backups": [backup_shape(plane, m, region) for m in chunk]}
    if token:
        out["NextToken"] = token
    return out


async def delete_backup(plane: ControlPlane, p: Params, region: str) -> Shape:
    return _change_backup(plane, region, p["BackupId"], lambda store: store.delete(p["BackupId"], plane.now_ms()))


async def restore_backup(plane: ControlPlane, p: Params, region: str) -> Shape:
    return _change_backup(plane, region, p["BackupId"], lambda store: store.restore(p["BackupId"], plane.now_ms()))


async def modify_backup_attributes(plane: ControlPlane, p: Params, region: str) -> Shape:
    return _change_backup(plane, region, p["BackupId"],
                          lambda store: store.set_never_expires(p["BackupId"], p["NeverExpires"]))


def _change_backup(plane: ControlPlane, region: str, backup_id: str,
                   change: Callable[[BackupStore], BackupMeta]) -> Shape:
    """One change of a backup's state: the backup must exist, and a change its state does not allow
    is CloudHSM's invalid-state error; the answer is the backup as it is now."""
    _meta(plane, region, backup_id)
    try:
        meta = change(plane.regions.store(region))
    except BackupInvalidStateError as exc:
        raise _state_error(exc) from None
    return {"Backup": backup_shape(plane, meta, region)}


async def copy_backup_to_region(plane: ControlPlane, p: Params, region: str) -> Shape:
    destination = p["DestinationRegion"]
    if destination == region:
        raise e.invalid(f"The destination Region must differ from the backup's Region ({region}).")
    target = plane.regions.store(destination)
    tags = validate_tags(p.get("TagList"))
    _meta(plane, region, p["BackupId"])
    try:
        copy = plane.regions.store(region).copy_to(p["BackupId"], target, region, plane.now_ms())
    except BackupInvalidStateError as exc:
        raise _state_error(exc) from None
    if tags:
        attrs = plane.store.backup(copy.backup_id)
        attrs.tags = tags
        await plane.store.put_backup(attrs)
    plane.spawn(_finish_copy(plane, destination, copy.backup_id))
    return {"DestinationBackup": {"CreateTimestamp": copy.create_timestamp_ms, "SourceRegion": region,
                                  "SourceBackup": p["BackupId"], "SourceCluster": copy.source_cluster_id or None}}


async def _finish_copy(plane: ControlPlane, region: str, backup_id: str) -> None:
    """The copy's CREATE_IN_PROGRESS -> READY after ``backup_copy_s`` (its blob is whole already)."""
    await asyncio.sleep(plane.settings.backup_copy_s)
    try:
        plane.regions.store(region).finish_create(backup_id)
    except (BackupStoreError, OSError) as exc:  # the next start finishes it
        log.warning("backup copy not finished", extra={"event": "backup_copy_unfinished", "backup_id": backup_id,
                                                       "region": region, "error": str(exc)[:300]})


def finish_copies(plane: ControlPlane) -> None:
    """At start: copies a previous run left CREATE_IN_PROGRESS become READY (the blob is written
    and synced before the record, so a copy that has a record is whole)."""
    for region in plane.regions.stores:
        try:
            store = plane.regions.store(region)
            for meta in store.list():
                if meta.state == BackupState.CREATE_IN_PROGRESS:
                    store.finish_create(meta.backup_id)
        except (BackupStoreError, OSError) as exc:
            log.warning("backup copies not checked", extra={"event": "backup_copy_unfinished", "region": region,
                                                            "error": str(exc)[:300]})


# ------------------------------------------------------------------ resource policies (backups)


def _backup_arn(plane: ControlPlane, arn: str | None, region: str) -> str:
    if not arn:
        raise e.invalid("ResourceArn is required: the ARN of a backup.")
    m = ARN_RE.fullmatch(arn)
    if m is None:
        raise e.invalid(f"ResourceArn {arn!r} is not a CloudHSM ARN.")
    arn_region, account, kind, resource_id = m.groups()
    if kind != "backup":
        raise e.invalid("Resource policies are supported for backups only (arn:aws:cloudhsm:<region>:<account>:"
                        "backup/<backup-id>).")
    if arn_region != region or account != plane.settings.account_id:
        raise e.resource_not_found(arn)
    _meta(plane, region, resource_id)
    return resource_id


async def get_resource_policy(plane: ControlPlane, p: Params, region: str) -> Shape:
    backup_id = _backup_arn(plane, p.get("ResourceArn"), region)
    policy = plane.store.backup(backup_id).policy
    return {"Policy": policy} if policy else {}


async def put_resource_policy(plane: ControlPlane, p: Params, region: str) -> Shape:
    backup_id = _backup_arn(plane, p.get("ResourceArn"), region)
    policy = p.get("Policy")
    if not policy:
        raise e.invalid("Policy is required: a JSON policy document.")
    try:
        doc = loads_bounded(policy)
    except ValueError as exc:
        raise e.invalid(f"Policy is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise e.invalid("Policy must be a JSON object with a Statement.")
    meta = _meta(plane, region, backup_id)
    if meta.state != BackupState.READY:
        raise e.invalid(f"Backup {backup_id} is {meta.state}; only a READY backup can be shared.")
    attrs = plane.store.backup(backup_id)
    attrs.policy = policy
    await plane.store.put_backup(attrs)
    return {"ResourceArn": p["ResourceArn"], "Policy": policy}


async def delete_resource_policy(plane: ControlPlane, p: Params, region: str) -> Shape:
    backup_id = _backup_arn(plane, p.get("ResourceArn"), region)
    attrs = plane.store.backup(backup_id)
    old, attrs.policy = attrs.policy, ""
    await plane.store.put_backup(attrs)
    out: Shape = {"ResourceArn": p["ResourceArn"]}
    if old:
        out["Policy"] = old
    return out
