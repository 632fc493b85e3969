"""What the tools (``kms-cluster``, ``kms-chaos``) do with the CloudHSM control plane: its API as a
customer calls it (botocore's ``cloudhsmv2`` client against the frontend's AWS endpoint), and the
HSM node processes of the ``local`` provisioner (``<dir>/hsms/<hsm-id>/process.json``: how each
was started), to signal, stop and start them again the way the frontend would.

Blocking (the launcher and the fault injectors run in threads)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hsm_node import certs
from hsm_node.mgmt import provision
from kms_frontend.controlplane.provisioners import LocalProcesses, find_process

HSM_TYPE = "hsm1.medium"
REPLACEMENT_TAG = "kms-cloudhsm:replace-failed-hsm-after"  # the control plane reads it (controlplane/hsms.py)
SUBNETS = ["subnet-0a0a0a0a", "subnet-0b0b0b0b", "subnet-0c0c0c0c"]  # zones a, b, c of the Region


class ApiError(Exception):
    pass


def endpoint(hsm: dict) -> str:
    """Where an HSM of the local provisioner listens: its EniIp, CloudHSM's port 2225."""
    return f"{hsm['EniIp']}:2225"


class Api:
    def __init__(self, url: str, region: str, key_id: str, secret: str, ca_bundle: str | None = None) -> None:
        """``ca_bundle``: the CA to trust for an https ``url`` (None: botocore's default)."""
        self.region = region
        self.client = botocore.session.get_session().create_client(
            "cloudhsmv2", endpoint_url=url, region_name=region, aws_access_key_id=key_id,
            aws_secret_access_key=secret, verify=ca_bundle,
            config=Config(retries={"max_attempts": 2}, read_timeout=60))

    def _call(self, name: str, **params: Any) -> dict:
        try:
            return getattr(self.client, name)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise ApiError(f"cloudhsmv2 {name}: {exc}") from None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.describe_clusters(MaxResults=1)
                return
            except (ClientError, BotoCoreError) as exc:
                if time.monotonic() > deadline:
                    raise ApiError(f"the control plane does not answer: {exc}") from None
                time.sleep(0.2)

    def create_cluster(self, subnets: int = 3) -> str:
        return self._call("create_cluster", HsmType=HSM_TYPE, SubnetIds=SUBNETS[:subnets])["Cluster"]["ClusterId"]

    def cluster(self, cluster_id: str) -> dict:
        found = self._call("describe_clusters", Filters={"clusterIds": [cluster_id]})["Clusters"]
        if not found:
            raise ApiError(f"cluster {cluster_id} is not in DescribeClusters")
        return found[0]

    def zone(self, cluster_id: str, i: int) -> str:
        zones = sorted(self.cluster(cluster_id)["SubnetMapping"])
        return zones[i % len(zones)]

    def create_hsm(self, cluster_id: str, i: int = 0, zone: str = "") -> str:
        return self._call("create_hsm", ClusterId=cluster_id,
                          AvailabilityZone=zone or self.zone(cluster_id, i))["Hsm"]["HsmId"]

    def delete_hsm(self, cluster_id: str, hsm_id: str) -> None:
        self._call("delete_hsm", ClusterId=cluster_id, HsmId=hsm_id)

    def initialize(self, cluster_id: str, signed: str, anchor: str) -> None:
        self._call("initialize_cluster", ClusterId=cluster_id, SignedCert=signed, TrustAnchor=anchor)

    def tag(self, resource_id: str, key: str, value: str) -> None:
        self._call("tag_resource", ResourceId=resource_id, TagList=[{"Key": key, "Value": value}])

    def untag(self, resource_id: str, key: str) -> None:
        self._call("untag_resource", ResourceId=resource_id, TagKeyList=[key])

    def tags(self, resource_id: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._call("list_tags", ResourceId=resource_id)["TagList"]}

    def _wait(self, cluster_id: str, ok: Any, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            cluster = self.cluster(cluster_id)
            if ok(cluster):
                return cluster
            if time.monotonic() > deadline:
                hsms = ", ".join(f"{h['HsmId']} {h['State']} {h.get('StateMessage', '')}".strip()
                                 for h in cluster["Hsms"])
                raise ApiError(f"cluster {cluster_id} is {cluster['State']} ({hsms or 'no HSM'}) after {timeout:.0f}s "
                               f"waiting for {what}")
            time.sleep(0.25)

    def wait_state(self, cluster_id: str, states: tuple[str, ...], timeout: float) -> dict:
        return self._wait(cluster_id, lambda c: c["State"] in states, timeout, " or ".join(states))

    def wait_hsms(self, cluster_id: str, n: int, timeout: float) -> dict:
        return self._wait(cluster_id, lambda c: len(c["Hsms"]) >= n and all(h["State"] == "ACTIVE" for h in c["Hsms"]),
                          timeout, f"{n} ACTIVE HSMs")

    def wait_settled(self, cluster_id: str, timeout: float) -> dict:
        """No HSM being created or deleted."""
        return self._wait(cluster_id, lambda c: all(h["State"] in ("ACTIVE", "DEGRADED") for h in c["Hsms"]),
                          timeout, "no HSM in progress")

    def wait_csr(self, cluster_id: str, timeout: float) -> str:
        return self._wait(cluster_id, lambda c: c.get("Certificates", {}).get("ClusterCsr"), timeout,
                          "the cluster CSR")["Certificates"]["ClusterCsr"]


def sign_cluster_csr(ca_dir: Path, csr_pem: str) -> tuple[str, str]:
    """The customer's step: their CA (customerCA.crt/.key in ``ca_dir``, made if missing) signs the
    cluster CSR. Returns (signed certificate, trust anchor) PEM."""
    anchor = provision.make_trust_anchor(ca_dir)
    signed = certs.sign_cluster_csr(certs.load_key(anchor.key_path.read_bytes()), certs.load_cert(anchor.cert_pem),
                                    csr_pem)
    return certs.cert_pem(signed), anchor.cert_pem


class LocalHsms:
    """The node processes of the ``local`` provisioner under ``base``."""

    def __init__(self, base: Path) -> None:
        self.local = LocalProcesses(base, master_key_file="", appliance_key_file="", backup_dirs={})

    def ids(self) -> list[str]:
        return list(self.local.specs())

    def pid(self, hsm_id: str) -> int | None:
        return self.local.pid(hsm_id) if hsm_id else None

    def log(self, hsm_id: str) -> str:
        spec = self.local.spec(hsm_id) if hsm_id else None
        return spec["log"] if spec else ""

    def start(self, hsm_id: str) -> None:
        spec = self.local.spec(hsm_id)
        if spec is None:
            raise ApiError(f"HSM {hsm_id} has no process description in {self.local.base}")
        if find_process(Path(spec["data_dir"])) is None:
            LocalProcesses._spawn(spec)

    def stop(self, hsm_id: str, timeout: float = 10.0) -> None:
        spec = self.local.spec(hsm_id)
        if spec is not None:
            LocalProcesses._stop(Path(spec["data_dir"]), timeout)
