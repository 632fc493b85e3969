"""Records as the ``cloudhsmv2`` API returns them (Cluster, Hsm, Backup: botocore's shapes).
Timestamps are milliseconds here; the AWS JSON codec writes epoch seconds."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backup_store import BackupMeta

from . import records as r

if TYPE_CHECKING:
    from .service import ControlPlane

Shape = dict[str, Any]


def tag_list(tags: dict[str, str]) -> list[Shape]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def hsm_shape(plane: ControlPlane, hsm: r.HsmRecord, hsm_type: str) -> Shape:
    state, message = plane.view.hsm_state(hsm)
    shape: Shape = {
        "HsmId": hsm.hsm_id, "ClusterId": hsm.cluster_id, "AvailabilityZone": hsm.availability_zone,
        "SubnetId": hsm.subnet_id, "EniId": hsm.eni_id, "EniIp": hsm.eni_ip, "HsmType": hsm_type, "State": state,
    }
    if message:
        shape["StateMessage"] = message
    if not hsm.eni_ip:
        del shape["EniIp"]  # a container's address is known once it runs
    return shape


def cluster_shape(plane: ControlPlane, rec: r.ClusterRecord) -> Shape:
    hsms = plane.store.hsms_of(rec.cluster_id)
    state = plane.view.cluster_state(rec)
    certificates: Shape = {}
    if rec.certificate_pem:
        certificates["ClusterCertificate"] = rec.certificate_pem
    csr = plane.csr_of(rec)
    if csr:
        certificates["ClusterCsr"] = csr
    shape: Shape = {
        "BackupPolicy": "DEFAULT",
        "BackupRetentionPolicy": {"Type": "DAYS", "Value": str(rec.backup_retention_days)},
        "ClusterId": rec.cluster_id, "CreateTimestamp": rec.create_timestamp_ms,
        "Hsms": [hsm_shape(plane, h, rec.hsm_type) for h in hsms if h.state != r.DELETED],
        "HsmType": rec.hsm_type, "SecurityGroup": rec.security_group, "State": state,
        "SubnetMapping": dict(rec.subnet_mapping), "VpcId": rec.vpc_id, "NetworkType": rec.network_type,
        "Certificates": certificates, "TagList": tag_list(rec.tags), "Mode": rec.mode,
    }
    if rec.source_backup_id:
        shape["SourceBackupId"] = rec.source_backup_id
    if rec.state_message or state == r.DEGRADED:
        shape["StateMessage"] = rec.state_message or "An HSM of the cluster does not answer; see its StateMessage."
    if not rec.tags:
        del shape["TagList"]
    return shape


def backup_shape(plane: ControlPlane, meta: BackupMeta, region: str) -> Shape:
    shape: Shape = {
        "BackupId": meta.backup_id, "BackupArn": plane.arn(region, "backup", meta.backup_id),
        "BackupState": str(meta.state), "CreateTimestamp": meta.create_timestamp_ms,
        "NeverExpires": meta.never_expires, "HsmType": "hsm1.medium", "Mode": "FIPS",
    }
    if meta.cluster_id:
        shape["ClusterId"] = meta.cluster_id
    if meta.delete_timestamp_ms:
        shape["DeleteTimestamp"] = meta.delete_timestamp_ms
    if meta.copy_timestamp_ms:
        shape["CopyTimestamp"] = meta.copy_timestamp_ms
    if meta.source_region:
        shape["SourceRegion"] = meta.source_region
    if meta.source_backup_id:
        shape["SourceBackup"] = meta.source_backup_id
    if meta.source_cluster_id:
        shape["SourceCluster"] = meta.source_cluster_id
    tags = plane.store.backup(meta.backup_id).tags
    if tags:
        shape["TagList"] = tag_list(tags)
    return shape
