"""What the CloudHSM control plane remembers: clusters, HSMs, and the attributes it adds to
backups (tags, resource policies). Backups themselves live in each Region's backup store.

States are AWS's names (botocore ``cloudhsmv2``: ClusterState, HsmState). The state a cluster
or HSM is *shown* in also depends on what its nodes say now (an ACTIVE cluster whose HSM does not
answer is DEGRADED): :mod:`.view` works that out; records hold the lifecycle the control plane
drives.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# ClusterState
CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
UNINITIALIZED = "UNINITIALIZED"
INITIALIZE_IN_PROGRESS = "INITIALIZE_IN_PROGRESS"
INITIALIZED = "INITIALIZED"
ACTIVE = "ACTIVE"
DEGRADED = "DEGRADED"
DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
DELETED = "DELETED"
# HsmState: CREATE_IN_PROGRESS, ACTIVE, DEGRADED, DELETE_IN_PROGRESS, DELETED (same spellings)

# Who starts an HSM's node: the control plane's provisioner ("local" processes, "docker"
# containers), or someone else ("static": started by an operator, found by discovery).
STATIC = "static"


@dataclass
class ClusterRecord:
    cluster_id: str
    region: str
    state: str
    hsm_type: str = "hsm1.medium"
    mode: str = "FIPS"
    network_type: str = "IPV4"
    subnet_mapping: dict[str, str] = field(default_factory=dict)  # Availability Zone -> subnet id
    vpc_id: str = ""
    security_group: str = ""
    create_timestamp_ms: int = 0
    source_backup_id: str = ""
    backup_retention_days: int = 90
    state_message: str = ""
    provisioner: str = ""               # the provisioner its new HSMs get
    adopted: bool = False               # found by discovery (nodes started elsewhere), not created here
    certificate_sha256: str = ""        # the cluster certificate, once known
    certificate_pem: str = ""
    trust_anchor_pem: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    deleted_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClusterRecord:
        return cls(**_known(cls, json.loads(text)))


@dataclass
class HsmRecord:
    hsm_id: str
    cluster_id: str
    availability_zone: str
    subnet_id: str
    eni_id: str
    eni_ip: str                          # the HSM's address in its subnet (a name here: see view.py)
    state: str
    provisioner: str
    endpoint: str = ""                   # client host:port, once placed
    peer_endpoint: str = ""
    handle: dict[str, Any] = field(default_factory=dict)  # the provisioner's own (data dir, container)
    node_id: str = ""                    # the node's id, once it answered
    state_message: str = ""
    create_timestamp_ms: int = 0
    unhealthy_since_ms: int = 0          # first time it did not answer, while ACTIVE (replacement clock)
    replaces: str = ""                   # the failed HSM this one replaces

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HsmRecord:
        return cls(**_known(cls, json.loads(text)))


@dataclass
class BackupAttributes:
    """What the control plane adds to a backup of the store: tags, and its resource policy."""
    backup_id: str
    tags: dict[str, str] = field(default_factory=dict)
    policy: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BackupAttributes:
        return cls(**_known(cls, json.loads(text)))


def _known(cls: Any, doc: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in doc.items() if k in names}
