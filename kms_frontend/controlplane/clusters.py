"""Cluster operations (CloudHSM API Reference: CreateCluster, DescribeClusters, InitializeCluster,
ModifyCluster, DeleteCluster) and the records that follow discovery.

Lifecycle: CreateCluster -> UNINITIALIZED (no HSM yet; the first CreateHsm gives it a node, whose
cluster CSR DescribeClusters shows) -> InitializeCluster (the customer signs the CSR with their own
CA) -> INITIALIZE_IN_PROGRESS -> INITIALIZED -> the customer activates it on the HSM
(``hsm-mgmt activate``: the PRECO password change) -> ACTIVE (DEGRADED while an HSM is missing).
A cluster created from a backup (SourceBackupId) is ACTIVE at once: its first HSM restores the
backup (same cluster certificate, users and keys). DeleteCluster needs every HSM deleted first.

Subnets stand for Availability Zones: a cluster's SubnetIds are taken, in the order given, to be in
its Region's zones ``a``, ``b``, ``c``...; an HSM is created in one of those zones.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import secrets
import socket

from cryptography import x509

from backup_store import BackupState, validate_retention_days

from ..cluster.appliance import ApplianceError
from ..service.model import Params
from . import errors as e
from . import records as r
from .service import ControlPlane, page
from .shapes import Shape, cluster_shape

log = logging.getLogger("kms_frontend.controlplane.clusters")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
CLUSTER_FILTERS = ("clusterIds", "states", "vpcIds")
BACKUP_ARN_RE = re.compile(r"arn:aws(?:-us-gov)?:cloudhsm:([^:]+):(\d{12}):backup/(backup-[2-7a-zA-Z]{11,16})")


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(11))


def zones_of(region: str, subnet_ids: list[str]) -> dict[str, str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    if len(set(subnet_ids)) != len(subnet_ids):
        raise e.invalid("SubnetIds lists a subnet more than once; give one subnet per Availability Zone.")
    return {f"{region}{letters[i]}": subnet for i, subnet in enumerate(subnet_ids)}


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def validate_tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags or []:
        key = tag["Key"]
        if key.lower().startswith("aws:"):
            raise e.CloudHsmTagException(f"Tag key {key!r} uses the reserved prefix 'aws:'.")
        out[key] = tag["Value"]
    if len(out) > 50:
        raise e.CloudHsmTagException(f"A resource can have at most 50 tags; {len(out)} were given.")
    return out


def _retention(policy: dict[str, str] | None) -> int | None:
    if policy is None:
        return None
    if policy.get("Type", "DAYS") != "DAYS":
        raise e.invalid("BackupRetentionPolicy Type must be DAYS.")
    value = policy.get("Value")
    if value is None:
        raise e.invalid("BackupRetentionPolicy needs a Value: the number of days (7 to 379) backups are kept.")
    try:
        return validate_retention_days(int(value))
    except ValueError:
        raise e.invalid(f"BackupRetentionPolicy Value {value!r} is out of range: backups are kept from 7 to 379 "
                        "days.") from None


async def create_cluster(plane: ControlPlane, p: Params, region: str) -> Shape:
    subnets = zones_of(region, p["SubnetIds"])
    retention = _retention(p.get("BackupRetentionPolicy")) or 90
    tags = validate_tags(p.get("TagList"))
    source = ""
    if p.get("SourceBackupId"):
        source = p["SourceBackupId"]
        m = BACKUP_ARN_RE.fullmatch(source)
        if m:
            if m.group(1) != region:
                raise e.invalid(f"Backup {m.group(3)} is in Region {m.group(1)}; create the cluster in that Region, or "
                                f"copy the backup here first (CopyBackupToRegion).")
            source = m.group(3)
        try:
            meta = plane.regions.store(region).describe(source)
        except (KeyError, ValueError):
            raise e.backup_not_found(source) from None
        if meta.state != BackupState.READY:
            raise e.invalid(f"Backup {source} is {meta.state}; a cluster can be created only from a READY backup "
                            "(RestoreBackup brings back one that is PENDING_DELETION).")
    cluster_id = new_id("cluster-")
    rec = r.ClusterRecord(
        cluster_id=cluster_id, region=region, state=r.CREATE_IN_PROGRESS,
        hsm_type=p["HsmType"], mode=p.get("Mode") or "FIPS", network_type=p.get("NetworkType") or "IPV4",
        subnet_mapping=subnets, vpc_id="vpc-" + _hex(region + ",".join(p["SubnetIds"]), 17),
        security_group="sg-" + _hex(cluster_id, 17), create_timestamp_ms=plane.now_ms(), source_backup_id=source,
        backup_retention_days=retention, provisioner=plane.default_provisioner, tags=tags)
    if source:
        meta = plane.regions.store(region).describe(source)
        rec.certificate_sha256 = meta.cluster_certificate_sha256
    async with plane.lock:
        await plane.store.put_cluster(rec)
    log.info("cluster created", extra={"event": "cluster_created", "cluster_id": cluster_id, "region": region,
                                       "source_backup_id": source})
    shape = cluster_shape(plane, rec)
    plane.spawn(finish_create(plane, cluster_id), key=cluster_id)
    return {"Cluster": shape}


async def finish_create(plane: ControlPlane, cluster_id: str) -> None:
    """CREATE_IN_PROGRESS -> UNINITIALIZED (waiting for its first HSM), or ACTIVE for a cluster
    created from a backup (it is initialised and activated already: its HSMs restore the backup).
    Nothing here is slow (there is no network to build), but the state is AWS's."""
    async with plane.lock:
        rec = plane.store.clusters.get(cluster_id)
        if rec is None or rec.state != r.CREATE_IN_PROGRESS:
            return
        rec.state = r.ACTIVE if rec.source_backup_id else r.UNINITIALIZED
        await plane.store.put_cluster(rec)


async def describe_clusters(plane: ControlPlane, p: Params, region: str) -> Shape:
    filters = p.get("Filters") or {}
    unknown = [k for k in filters if k not in CLUSTER_FILTERS]
    if unknown:
        raise e.invalid(f"Unknown filter {unknown[0]!r}: DescribeClusters filters by {', '.join(CLUSTER_FILTERS)}.")
    await plane.refresh(max_age_s=0.5)  # what the nodes say now, as fresh as KMS's own checks
    clusters = [c for c in plane.store.clusters.values() if c.region == region]
    if "clusterIds" in filters:
        clusters = [c for c in clusters if c.cluster_id in filters["clusterIds"]]
    if "vpcIds" in filters:
        clusters = [c for c in clusters if c.vpc_id in filters["vpcIds"]]
    shapes = [cluster_shape(plane, c) for c in sorted(clusters, key=lambda c: (c.create_timestamp_ms, c.cluster_id))]
    if "states" in filters:
        shapes = [s for s in shapes if s["State"] in filters["states"]]
    else:
        shapes = [s for s in shapes if s["State"] != r.DELETED]
    chunk, token = page(shapes, p.get("NextToken"), p.get("MaxResults"), 25)
    out: Shape = {"Clusters": chunk}
    if token:
        out["NextToken"] = token
    return out


def _check_cert(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise e.invalid(f"{what} is not a PEM certificate. Pass the certificate file's content, "
                        "-----BEGIN CERTIFICATE----- included.") from None


async def initialize_cluster(plane: ControlPlane, p: Params, region: str) -> Shape:
    cluster_id = p["ClusterId"]
    signed, anchor = p["SignedCert"], p["TrustAnchor"]
    _check_cert(signed, "SignedCert")
    _check_cert(anchor, "TrustAnchor")
    async with plane.lock:
        rec = plane.cluster(cluster_id, region)
        if rec.state != r.UNINITIALIZED:
            raise e.invalid(f"Cluster {cluster_id} is {plane.view.cluster_state(rec)}; only an UNINITIALIZED "
                            "cluster can be initialized.")
        hsms = [h for h in plane.store.hsms_of(cluster_id) if h.state == r.ACTIVE]
        if not hsms:
            raise e.invalid(f"Cluster {cluster_id} has no active HSM yet: create one (CreateHsm), wait until it is "
                            "ACTIVE, sign the ClusterCsr that DescribeClusters then shows, and initialize again.")
        rec.state, rec.state_message = r.INITIALIZE_IN_PROGRESS, \
            "Cluster is initializing. State will change to INITIALIZED upon completion."
        await plane.store.put_cluster(rec)
    plane.spawn(_initialize(plane, cluster_id, hsms[0].endpoint, signed, anchor), key=cluster_id)
    return {"State": rec.state, "StateMessage": rec.state_message}


async def _initialize(plane: ControlPlane, cluster_id: str, endpoint: str, signed: str, anchor: str) -> None:
    try:
        await plane.appliance.initialize(endpoint, signed, anchor, cluster_id)
        facts = await plane.appliance.status(endpoint)
    except ApplianceError as exc:
        async with plane.lock:
            rec = plane.store.clusters[cluster_id]
            rec.state = r.UNINITIALIZED
            rec.state_message = f"Initialization failed: {exc.message}"
            await plane.store.put_cluster(rec)
        log.info("cluster initialization refused", extra={"event": "cluster_initialize_failed",
                                                          "cluster_id": cluster_id, "detail": exc.message[:300]})
        return
    async with plane.lock:
        rec = plane.store.clusters[cluster_id]
        rec.state, rec.state_message = r.INITIALIZED, ""
        rec.certificate_pem, rec.certificate_sha256 = facts.cluster_certificate_pem, facts.certificate_sha256
        rec.trust_anchor_pem = facts.trust_anchor_pem
        await plane.store.put_cluster(rec)
    log.info("cluster initialized", extra={"event": "cluster_initialized", "cluster_id": cluster_id})
    asyncio.get_running_loop().create_task(plane.directory.refresh())


async def modify_cluster(plane: ControlPlane, p: Params, region: str) -> Shape:
    cluster_id = p["ClusterId"]
    days = _retention(p.get("BackupRetentionPolicy"))
    async with plane.lock:
        rec = plane.cluster(cluster_id, region)
        if p.get("HsmType") and p["HsmType"] != rec.hsm_type:
            raise e.invalid(f"Changing the HSM type is not supported here; cluster {cluster_id} stays {rec.hsm_type}.")
        if days is None and not p.get("HsmType"):
            raise e.invalid("ModifyCluster needs BackupRetentionPolicy (or HsmType).")
        if days is not None:
            rec.backup_retention_days = days
            await plane.store.put_cluster(rec)
    if days is not None:
        # The nodes purge expired backups by the cluster's retention: tell one active member.
        for endpoint in plane.active_members(cluster_id):
            try:
                await plane.appliance.set_retention(endpoint, plane.anchor(cluster_id), days)
                break
            except ApplianceError as exc:
                log.info("could not pass the backup retention to an HSM", extra={
                    "event": "retention_push_failed", "cluster_id": cluster_id, "detail": exc.message[:300]})
    return {"Cluster": cluster_shape(plane, rec)}


async def delete_cluster(plane: ControlPlane, p: Params, region: str) -> Shape:
    cluster_id = p["ClusterId"]
    async with plane.lock:
        rec = plane.cluster(cluster_id, region)
        if rec.state in (r.DELETED, r.DELETE_IN_PROGRESS):
            raise e.invalid(f"Cluster {cluster_id} is already {rec.state}.")
        hsms = plane.store.hsms_of(cluster_id)
        if hsms:
            raise e.invalid(f"Cluster {cluster_id} still has {len(hsms)} HSM(s) ({', '.join(h.hsm_id for h in hsms)}); "
                            "delete every HSM (DeleteHsm) before deleting the cluster. Its backups are kept.")
        rec.state, rec.deleted_ms, rec.state_message = r.DELETED, plane.now_ms(), ""
        await plane.store.put_cluster(rec)
    log.info("cluster deleted", extra={"event": "cluster_deleted", "cluster_id": cluster_id})
    shape = cluster_shape(plane, rec)
    shape["State"] = r.DELETE_IN_PROGRESS  # what AWS answers; DescribeClusters shows DELETED
    return {"Cluster": shape}


# ------------------------------------------------------------------ records follow discovery


async def sync_from_discovery(plane: ControlPlane) -> None:
    """After a probe round: adopt clusters and members that nodes report and the records lack;
    drop members of the ``static`` provisioner that left; record activation; fetch the CSR of an
    uninitialised cluster's HSM."""
    directory, store, home = plane.directory, plane.store, plane.regions.home
    probes = directory.probes
    async with plane.lock:
        for cid, info in list(directory.clusters.items()):
            rec = store.clusters.get(cid)
            members = [m for m in info.member_endpoints if (p := probes.get(m)) is not None and p.reachable
                       and p.cluster_id == cid and p.hsm_id]
            if rec is None:
                await _adopt(plane, cid, info.state, info.certificate_pem, info.certificate_sha256,
                             info.trust_anchor_pem, members)
                continue
            if rec.region != home or rec.state == r.DELETED:
                continue
            changed = False
            if not rec.certificate_pem and info.certificate_pem:
                rec.certificate_pem, rec.certificate_sha256 = info.certificate_pem, info.certificate_sha256
                rec.trust_anchor_pem = info.trust_anchor_pem
                changed = True
            if rec.state == r.INITIALIZED and plane.view.cluster_state(rec, probes) == r.ACTIVE:
                rec.state, changed = r.ACTIVE, True
                log.info("cluster activated", extra={"event": "cluster_active", "cluster_id": cid})
            if changed:
                await store.put_cluster(rec)
            known = {h.endpoint for h in store.hsms_of(cid)}
            new = [m for m in members if m not in known]
            if new and rec.state in (r.ACTIVE, r.INITIALIZED):
                await store.put_cluster_and_hsms(rec, _static_hsms(rec, new, probes, len(known)))
            reported = set(info.member_endpoints)
            answering = any((p := probes.get(m)) is not None and p.reachable and p.cluster_id == cid
                            for m in reported)
            for h in store.hsms_of(cid):
                if h.provisioner == r.STATIC and answering and h.endpoint not in reported and h.state == r.ACTIVE:
                    await store.delete_hsm(h.hsm_id)  # removed by hand (hsm-mgmt removeNode)
                    log.info("HSM left its cluster", extra={"event": "hsm_gone", "hsm_id": h.hsm_id, "cluster_id": cid})
    for rec in list(store.clusters.values()):
        if rec.state == r.UNINITIALIZED and rec.cluster_id not in plane._csr:
            for h in store.hsms_of(rec.cluster_id):
                if h.state == r.ACTIVE and h.endpoint:
                    facts = await plane.node_status(h.endpoint)
                    if facts is not None and facts.cluster_csr_pem:
                        plane._csr[rec.cluster_id] = facts.cluster_csr_pem
                        break


async def _adopt(plane: ControlPlane, cid: str, state: str, cert_pem: str, sha: str, anchor: str,
                 members: list[str]) -> None:
    """A cluster whose nodes were started elsewhere: record it as the control plane's, in the home
    Region, one subnet per Availability Zone of its HSMs."""
    region = plane.regions.home
    letters = "abc"
    subnets = {f"{region}{x}": "subnet-" + _hex(cid + x, 17) for x in letters}
    rec = r.ClusterRecord(
        cluster_id=cid, region=region, state=r.ACTIVE if state in ("ACTIVE", "DEGRADED") else r.INITIALIZED,
        subnet_mapping=subnets, vpc_id="vpc-" + _hex(region, 17), security_group="sg-" + _hex(cid, 17),
        create_timestamp_ms=plane.now_ms(), provisioner=r.STATIC, adopted=True, certificate_pem=cert_pem,
        certificate_sha256=sha, trust_anchor_pem=anchor)
    hsms = _static_hsms(rec, members, plane.directory.probes, 0)
    await plane.store.put_cluster_and_hsms(rec, hsms)
    log.info("cluster found by discovery, adopted", extra={"event": "cluster_adopted", "cluster_id": cid,
                                                           "hsms": [h.hsm_id for h in hsms]})


def _static_hsms(rec: r.ClusterRecord, endpoints: list[str], probes: dict, start: int) -> list[r.HsmRecord]:
    zones = sorted(rec.subnet_mapping)
    out = []
    for i, endpoint in enumerate(sorted(endpoints), start=start):
        probe = probes[endpoint]
        zone = zones[i % len(zones)]
        out.append(r.HsmRecord(
            hsm_id=probe.hsm_id, cluster_id=rec.cluster_id, availability_zone=zone, subnet_id=rec.subnet_mapping[zone],
            eni_id="eni-" + _hex(probe.hsm_id, 17), eni_ip=address_of(endpoint), state=r.ACTIVE,
            provisioner=r.STATIC, endpoint=endpoint, node_id=probe.node_id, create_timestamp_ms=rec.create_timestamp_ms))
    return out


def address_of(endpoint: str) -> str:
    """The IPv4 address of a node's endpoint (its EniIp): the host itself, or what its name resolves to."""
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError:
        return "0.0.0.0"
