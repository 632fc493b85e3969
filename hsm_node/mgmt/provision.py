"""Operator steps that several tools share (hsm-mgmt, kms-cluster, tests):
make a trust anchor, sign a node's cluster CSR, initialise and activate."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plumbing.files import write_private
from protos.hsm.v1 import hsm_pb2 as pb
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc

from .. import certs
from ..rules import PRECO_DEFAULT_PASSWORD, PRECO_USERNAME


@dataclass
class TrustAnchor:
    key_path: Path
    cert_path: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()


def make_trust_anchor(directory: str | Path) -> TrustAnchor:
    """customerCA.key / customerCA.crt in ``directory`` (kept if they exist)."""
    d = Path(directory)
    anchor = TrustAnchor(d / "customerCA.key", d / "customerCA.crt")
    if not anchor.cert_path.exists():
        key, cert = certs.make_trust_anchor()
        write_private(anchor.key_path, certs.key_pem(key))
        write_private(anchor.cert_path, certs.cert_pem(cert).encode())
    return anchor


async def initialize(stub: pb_grpc.HsmStub, anchor: TrustAnchor) -> pb.InitializeResponse:
    status = await stub.GetStatus(pb.Empty())
    if status.state != pb.UNINITIALIZED:
        raise ValueError(f"node {status.node_id} is already initialised (cluster {status.cluster_id})")
    ca_key = certs.load_key(anchor.key_path.read_bytes())
    ca_cert = certs.load_cert(anchor.cert_pem)
    signed = certs.sign_cluster_csr(ca_key, ca_cert, status.cluster_csr_pem)
    return await stub.Initialize(pb.InitializeRequest(
        signed_cluster_certificate_pem=certs.cert_pem(signed), trust_anchor_pem=anchor.cert_pem))


async def activate(stub: pb_grpc.HsmStub, new_password: str, *, username: str = PRECO_USERNAME,
                   preco_password: str = PRECO_DEFAULT_PASSWORD) -> None:
    login = await stub.Login(pb.LoginRequest(user_type=pb.PRECO, username=username, password=preco_password))
    await stub.ChangePassword(pb.ChangePasswordRequest(
        session_token=login.session_token, user_type=pb.PRECO, username=username, new_password=new_password))
