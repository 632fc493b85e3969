"""HSM operations (CloudHSM API Reference: CreateHsm, DeleteHsm), the work behind them, and the
automatic replacement of a failed HSM.

CreateHsm answers at once with the HSM CREATE_IN_PROGRESS; then, in the background, the provisioner
starts a fresh ``hsm-node`` and the HSM becomes part of its cluster the way CloudHSM does it:

* the cluster is UNINITIALIZED: it is the cluster's first HSM, an empty node whose cluster CSR
  DescribeClusters shows (one HSM until the cluster is initialised);
* the cluster has an active HSM: that member adds it (as the appliance user): a fresh backup seeds
  it, then it catches up from its peers (``hsm-mgmt addNode``'s path);
* the cluster has no HSM (created from a backup, or every HSM was deleted): its newest backup (or
  the backup it was created from) is restored into the node, under the cluster's id.

DeleteHsm (by HsmId, EniId or EniIp) answers at once with DELETE_IN_PROGRESS; another member
removes it (a backup is taken first), or, for the last HSM, a backup is taken on it; then the
provisioner stops its node and removes its data. Both survive a frontend restart: the work resumes.

Replacement: an HSM that has not answered for ``replace_after_s`` (the cluster tag
``kms-cloudhsm:replace-failed-hsm-after``: seconds, or ``off``, overrides the frontend's setting)
is replaced: a new HSM in the same Availability Zone (CREATE_IN_PROGRESS, its StateMessage naming
the HSM it replaces), then the failed one is deleted.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..cluster.appliance import ApplianceError
from ..service.model import Params
from . import errors as e
from . import records as r
from .clusters import _hex, new_id
from .provisioners import ProvisionerError
from .service import REPLACEMENT_TAG, ControlPlane
from .shapes import Shape, hsm_shape

log = logging.getLogger("kms_frontend.controlplane.hsms")
READY_TIMEOUT_S = 60.0
ATTEMPTS = 3


async def create_hsm(plane: ControlPlane, p: Params, region: str, replaces: str = "") -> Shape:
    cluster_id, zone = p["ClusterId"], p["AvailabilityZone"]
    async with plane.lock:
        rec = plane.cluster(cluster_id, region)
        state = plane.view.cluster_state(rec)
        if state in (r.DELETE_IN_PROGRESS, r.DELETED, r.INITIALIZE_IN_PROGRESS, r.CREATE_IN_PROGRESS):
            raise e.invalid(f"Cluster {cluster_id} is {state}; HSMs cannot be added now.")
        if zone not in rec.subnet_mapping:
            raise e.invalid(f"Availability Zone {zone} has no subnet of cluster {cluster_id}; its zones are "
                            f"{', '.join(sorted(rec.subnet_mapping))}.")
        hsms = plane.store.hsms_of(cluster_id)
        if rec.state == r.UNINITIALIZED and hsms:
            raise e.invalid(f"Cluster {cluster_id} is UNINITIALIZED and already has HSM {hsms[0].hsm_id}: initialize "
                            "the cluster (sign its ClusterCsr, InitializeCluster) and activate it before adding HSMs.")
        if rec.state == r.INITIALIZED and state != r.ACTIVE:
            raise e.invalid(f"Cluster {cluster_id} is INITIALIZED but not yet activated: log in to an HSM as the "
                            "PRECO user and change its password (hsm-mgmt activate), then add HSMs.")
        if len(hsms) >= plane.settings.max_hsms_per_cluster:
            raise e.CloudHsmServiceException(f"Cluster {cluster_id} already has {len(hsms)} HSMs, the most a cluster "
                                             "can have.")
        if state in (r.ACTIVE, r.DEGRADED) and hsms and not plane.active_members(cluster_id):
            raise e.CloudHsmServiceException(
                f"No HSM of cluster {cluster_id} answers now, so none can clone the new one. Wait until one is back "
                "(DescribeClusters), or delete them all: a new HSM is then restored from the newest backup.")
        provisioner = rec.provisioner if rec.provisioner != r.STATIC else plane.default_provisioner
        try:
            ip = plane.provisioner(provisioner).choose_address(
                sorted(rec.subnet_mapping).index(zone), p.get("IpAddress"), {h.eni_ip for h in hsms if h.eni_ip})
        except ProvisionerError as exc:
            raise e.invalid(str(exc)[:1].upper() + str(exc)[1:] + ".") from None
        hsm_id = new_id("hsm-")
        hsm = r.HsmRecord(
            hsm_id=hsm_id, cluster_id=cluster_id, availability_zone=zone, subnet_id=rec.subnet_mapping[zone],
            eni_id="eni-" + _hex(hsm_id, 17), eni_ip=ip, state=r.CREATE_IN_PROGRESS, provisioner=provisioner,
            create_timestamp_ms=plane.now_ms(), replaces=replaces,
            state_message=f"Replacing HSM {replaces}, which stopped answering." if replaces else "")
        await plane.store.put_hsm(hsm)
    log.info("HSM creation started", extra={"event": "hsm_create", "hsm_id": hsm_id, "cluster_id": cluster_id,
                                            "zone": zone, "replaces": replaces})
    plane.spawn(_create(plane, hsm_id), key=hsm_id)
    return {"Hsm": hsm_shape(plane, hsm, rec.hsm_type)}


async def _create(plane: ControlPlane, hsm_id: str) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await _create_once(plane, hsm_id)
            return
        except asyncio.CancelledError:
            raise
        except (ApplianceError, ProvisionerError, TimeoutError, OSError) as exc:
            message = exc.message if isinstance(exc, ApplianceError) else str(exc)
            log.info("HSM creation step failed", extra={"event": "hsm_create_failed", "hsm_id": hsm_id,
                                                         "attempt": attempt, "detail": message[:300]})
            hsm = plane.store.hsms.get(hsm_id)
            if hsm is None or hsm.state != r.CREATE_IN_PROGRESS:
                return
            hsm.state_message = f"Attempt {attempt} of {ATTEMPTS} failed: {message[:400]}"
            if attempt == ATTEMPTS:
                hsm.state = r.DEGRADED
                hsm.state_message = f"The HSM could not be created: {message[:400]} Delete it (DeleteHsm) and retry."
            await plane.store.put_hsm(hsm)
            await asyncio.sleep(2.0 * attempt)
        except Exception:
            log.exception("HSM creation failed", extra={"event": "hsm_create_error", "hsm_id": hsm_id})
            return


async def _create_once(plane: ControlPlane, hsm_id: str) -> None:
    hsm = plane.store.hsms[hsm_id]
    rec = plane.store.clusters[hsm.cluster_id]
    provisioner = plane.provisioner(hsm.provisioner)
    if not hsm.endpoint:
        placement = await provisioner.create(hsm_id, hsm.cluster_id, rec.region, hsm.eni_ip)
        hsm.endpoint, hsm.peer_endpoint, hsm.handle = placement.endpoint, placement.peer_endpoint, placement.handle
        hsm.eni_ip = placement.eni_ip or hsm.eni_ip
        await plane.store.put_hsm(hsm)
    else:
        await provisioner.ensure_running(hsm)
    facts = await _wait_answer(plane, hsm.endpoint)
    hsm.node_id = facts.node_id
    if facts.state == "UNINITIALIZED":
        members = plane.active_members(hsm.cluster_id, exclude=hsm.endpoint) if rec.state != r.UNINITIALIZED else []
        if rec.state == r.UNINITIALIZED:
            pass  # the cluster's first HSM: its CSR waits for InitializeCluster
        elif members:
            await plane.appliance.add_node(members[0], plane.anchor(hsm.cluster_id), hsm.endpoint, hsm.peer_endpoint)
        else:
            backup = _seed_backup(plane, rec)
            await plane.appliance.restore(hsm.endpoint, backup, hsm.cluster_id)
        await _wait_member(plane, hsm.endpoint, hsm.cluster_id, rec.state == r.UNINITIALIZED)
    elif facts.cluster_id != hsm.cluster_id:
        raise ProvisionerError(f"the node at {hsm.endpoint} belongs to {facts.cluster_id or 'no cluster'}, not "
                               f"{hsm.cluster_id}")
    facts = await plane.appliance.status(hsm.endpoint)
    async with plane.lock:
        hsm = plane.store.hsms[hsm_id]
        if hsm.state != r.CREATE_IN_PROGRESS:
            return
        hsm.state, hsm.state_message = r.ACTIVE, ""
        hsm.node_id = facts.node_id
        await plane.store.put_hsm(hsm)
        rec = plane.store.clusters[hsm.cluster_id]
        if facts.cluster_certificate_pem and rec.certificate_sha256 != facts.certificate_sha256 \
                or facts.cluster_certificate_pem and not rec.certificate_pem:
            rec.certificate_pem, rec.certificate_sha256 = facts.cluster_certificate_pem, facts.certificate_sha256
            rec.trust_anchor_pem = facts.trust_anchor_pem
            await plane.store.put_cluster(rec)
    log.info("HSM active", extra={"event": "hsm_active", "hsm_id": hsm_id, "cluster_id": hsm.cluster_id,
                                  "endpoint": hsm.endpoint})
    await plane.refresh()


def _seed_backup(plane: ControlPlane, rec: r.ClusterRecord) -> str:
    store = plane.regions.store(rec.region)
    latest = store.latest(rec.cluster_id)
    if latest is not None:
        return latest.backup_id
    if rec.source_backup_id:
        return rec.source_backup_id
    raise ProvisionerError(f"cluster {rec.cluster_id} has no HSM to clone and no READY backup to restore")


async def _wait_answer(plane: ControlPlane, endpoint: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            return await plane.appliance.status(endpoint, timeout=2.0)
        except ApplianceError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the node at {endpoint} did not answer within {READY_TIMEOUT_S:.0f}s") from None
            await asyncio.sleep(0.2)


async def _wait_member(plane: ControlPlane, endpoint: str, cluster_id: str, uninitialized: bool) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        facts = await plane.node_status(endpoint)
        if facts is not None and (uninitialized and facts.state == "UNINITIALIZED" or
                                  facts.cluster_id == cluster_id and facts.state == "ACTIVE"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the node at {endpoint} did not become an active member of {cluster_id} within "
                               f"{READY_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.2)


async def delete_hsm(plane: ControlPlane, p: Params, region: str) -> Shape:
    cluster_id = p["ClusterId"]
    given = [(m, p[m]) for m in ("HsmId", "EniId", "EniIp") if p.get(m)]
    if not given:
        raise e.invalid("DeleteHsm needs the HSM's HsmId, EniId or EniIp.")
    async with plane.lock:
        plane.cluster(cluster_id, region)
        field_of = {"HsmId": "hsm_id", "EniId": "eni_id", "EniIp": "eni_ip"}
        found = [h for h in plane.store.hsms_of(cluster_id)
                 if all(getattr(h, field_of[m]) == v for m, v in given)]
        if not found:
            raise e.hsm_not_found(cluster_id, " and ".join(f"{m} {v}" for m, v in given))
        if len(found) > 1:
            raise e.invalid(f"{len(found)} HSMs of cluster {cluster_id} match; name the one to delete by HsmId.")
        hsm = found[0]
        if hsm.state != r.DELETE_IN_PROGRESS:
            hsm.state, hsm.state_message = r.DELETE_IN_PROGRESS, ""
            await plane.store.put_hsm(hsm)
    log.info("HSM deletion started", extra={"event": "hsm_delete", "hsm_id": hsm.hsm_id, "cluster_id": cluster_id})
    if not plane.busy("delete-" + hsm.hsm_id):
        plane.spawn(_delete(plane, hsm.hsm_id), key="delete-" + hsm.hsm_id)
    return {"HsmId": hsm.hsm_id}


async def _delete(plane: ControlPlane, hsm_id: str) -> None:
    creating = plane._workers.get(hsm_id)
    if creating is not None and not creating.done():
        creating.cancel()
    for attempt in range(1, 100):
        hsm = plane.store.hsms.get(hsm_id)
        if hsm is None:
            return
        try:
            await _delete_once(plane, hsm)
            return
        except asyncio.CancelledError:
            raise
        except (ApplianceError, ProvisionerError, OSError) as exc:
            message = exc.message if isinstance(exc, ApplianceError) else str(exc)
            log.info("HSM deletion step failed", extra={"event": "hsm_delete_failed", "hsm_id": hsm_id,
                                                         "attempt": attempt, "detail": message[:300]})
            hsm.state_message = f"Deletion is waiting: {message[:400]}"
            await plane.store.put_hsm(hsm)
            await asyncio.sleep(min(30.0, 1.0 * attempt))


async def _delete_once(plane: ControlPlane, hsm: r.HsmRecord) -> None:
    cluster_id = hsm.cluster_id
    anchor = plane.anchor(cluster_id)
    probe = plane.directory.probes.get(hsm.endpoint)
    member = probe is not None and probe.reachable and probe.cluster_id == cluster_id and probe.state == "ACTIVE"
    others = plane.active_members(cluster_id, exclude=hsm.endpoint)
    if hsm.node_id and others and (member or hsm.endpoint in _members(plane, cluster_id)):
        await plane.appliance.remove_node(others[0], anchor, hsm.node_id)  # a backup is taken first
    elif member and not others:
        await plane.appliance.take_backup(hsm.endpoint, anchor)  # the last HSM: keep its latest state
    await plane.provisioner(hsm.provisioner).destroy(hsm)
    async with plane.lock:
        await plane.store.delete_hsm(hsm.hsm_id)
        plane.forget_csr(cluster_id)  # an uninitialised cluster's next HSM has a CSR of its own
    log.info("HSM deleted", extra={"event": "hsm_deleted", "hsm_id": hsm.hsm_id, "cluster_id": cluster_id})
    await plane.refresh()


def _members(plane: ControlPlane, cluster_id: str) -> list[str]:
    info = plane.directory.clusters.get(cluster_id)
    return list(info.member_endpoints) if info is not None else []


# ------------------------------------------------------------------ restart and replacement


async def resume_all(plane: ControlPlane) -> None:
    """At start: every node runs again (adopted, or started on its data), and half-done work goes on."""
    for hsm in list(plane.store.hsms.values()):
        if hsm.state == r.CREATE_IN_PROGRESS:
            plane.spawn(_create(plane, hsm.hsm_id), key=hsm.hsm_id)
        elif hsm.state == r.DELETE_IN_PROGRESS:
            plane.spawn(_delete(plane, hsm.hsm_id), key="delete-" + hsm.hsm_id)
        elif hsm.endpoint:
            try:
                outcome = await plane.provisioner(hsm.provisioner).ensure_running(hsm)
            except ProvisionerError as exc:
                log.warning("HSM node could not be started again", extra={
                    "event": "hsm_readopt_failed", "hsm_id": hsm.hsm_id, "detail": str(exc)[:300]})
                continue
            if outcome != "unmanaged":
                log.info(f"HSM node {outcome}", extra={"event": "hsm_readopted", "hsm_id": hsm.hsm_id,
                                                       "outcome": outcome})
    for rec in list(plane.store.clusters.values()):
        if rec.state == r.CREATE_IN_PROGRESS:
            from .clusters import finish_create
            await finish_create(plane, rec.cluster_id)
        if rec.state == r.INITIALIZE_IN_PROGRESS:
            # The node knows whether it was initialised: the next sync records what it says.
            rec.state = r.UNINITIALIZED
            for h in plane.store.hsms_of(rec.cluster_id):
                facts = await plane.node_status(h.endpoint) if h.endpoint else None
                if facts is not None and facts.cluster_id == rec.cluster_id:
                    rec.state = r.INITIALIZED
                    rec.certificate_pem, rec.certificate_sha256 = facts.cluster_certificate_pem, facts.certificate_sha256
                    rec.trust_anchor_pem = facts.trust_anchor_pem
            await plane.store.put_cluster(rec)


def replace_after(plane: ControlPlane, rec: r.ClusterRecord) -> float:
    """Seconds an HSM may be down before it is replaced (0: never), for this cluster."""
    tag = rec.tags.get(REPLACEMENT_TAG, "").strip().lower()
    if tag in ("off", "no", "false", "0", "never"):
        return 0.0
    if tag:
        try:
            return max(0.0, float(tag.removesuffix("s")))
        except ValueError:
            pass
    return plane.settings.replace_after_s


async def run_replacement(plane: ControlPlane, interval_s: float = 1.0) -> None:
    """Watch ACTIVE HSMs; replace one that stayed DEGRADED longer than its cluster allows."""
    down_since: dict[str, float] = {}
    while True:
        await asyncio.sleep(interval_s)
        try:
            now = time.monotonic()
            for hsm in list(plane.store.hsms.values()):
                rec = plane.store.clusters.get(hsm.cluster_id)
                if rec is None or rec.region != plane.regions.home or hsm.state != r.ACTIVE:
                    down_since.pop(hsm.hsm_id, None)
                    continue
                if plane.view.hsm_state(hsm)[0] != r.DEGRADED or rec.state != r.ACTIVE:
                    down_since.pop(hsm.hsm_id, None)
                    continue
                since = down_since.setdefault(hsm.hsm_id, now)
                limit = replace_after(plane, rec)
                if not limit or now - since < limit or hsm.provisioner == r.STATIC:
                    continue
                if any(h.replaces == hsm.hsm_id for h in plane.store.hsms.values()):
                    continue
                if not plane.active_members(hsm.cluster_id, exclude=hsm.endpoint):
                    continue  # nothing to clone from: wait
                log.warning("replacing an HSM that stopped answering", extra={
                    "event": "hsm_replace", "hsm_id": hsm.hsm_id, "cluster_id": hsm.cluster_id,
                    "down_s": round(now - since, 1)})
                down_since.pop(hsm.hsm_id, None)
                await create_hsm(plane, {"ClusterId": hsm.cluster_id, "AvailabilityZone": hsm.availability_zone},
                                 rec.region, replaces=hsm.hsm_id)
                await delete_hsm(plane, {"ClusterId": hsm.cluster_id, "HsmId": hsm.hsm_id}, rec.region)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("HSM replacement check failed", extra={"event": "hsm_replace_error"})
