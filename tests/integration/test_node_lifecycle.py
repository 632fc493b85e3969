"""One real hsm-node process: UNINITIALIZED -> INITIALIZED -> ACTIVE, state
across restarts, and the TLS identity the client port presents at each step."""
from __future__ import annotations

import hashlib
import re
import ssl

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm_node import certs, client
from hsm_node.mgmt import provision
from hsm_node.rules import PRECO_DEFAULT_PASSWORD
from plumbing.tls import presented_certificate
from protos.hsm.v1 import hsm_pb2 as pb
from tests.harness import CO_PASSWORD, login, refused

HSM_ID = re.compile(r"^hsm-[2-7a-z]{11}$")
CLUSTER_ID = re.compile(r"^cluster-[2-7a-z]{11}$")
_DER = Encoding.DER



def signed_cert_pem(anchor: provision.TrustAnchor, csr_pem: str) -> str:
    ca_key = certs.load_key(anchor.key_path.read_bytes())
    return certs.cert_pem(certs.sign_cluster_csr(ca_key, certs.load_cert(anchor.cert_pem), csr_pem))


async def test_lifecycle_uninitialized_initialized_active_survives_restarts(lab) -> None:
    node = await lab.start_node()
    stub = node.stub()

    # ---- UNINITIALIZED: a CSR to sign, no cluster, nothing but status and Initialize
    fresh = await stub.GetStatus(pb.Empty())
    assert fresh.state == pb.UNINITIALIZED
    assert HSM_ID.match(fresh.hsm_id) and fresh.node_id
    assert fresh.cluster_id == "" and fresh.cluster_certificate_pem == "" and fresh.trust_anchor_pem == ""
    csr = x509.load_pem_x509_csr(fresh.cluster_csr_pem.encode())
    assert csr.is_signature_valid and fresh.hsm_id in csr.subject.rfc4514_string()
    assert fresh.user_count == 0 and fresh.key_count == 0
    await refused(stub.Login(pb.LoginRequest(user_type=pb.PRECO, username="admin", password=PRECO_DEFAULT_PASSWORD)),
                  grpc.StatusCode.FAILED_PRECONDITION, "UNINITIALIZED", "initialise it first")
    assert (await stub.ListUsers(pb.Empty())).users == []

    # garbage, a certificate that does not chain to the given anchor, or not for this CSR, is refused;
    # nothing changes
    for cert_pem, anchor_pem, fragment in (
        ("garbage", lab.anchor.cert_pem, "signed cluster certificate is not a valid PEM"),
        (signed_cert_pem(lab.anchor, fresh.cluster_csr_pem), "", "trust anchor is not a valid PEM"),
        ("", "", "not a valid PEM"),
    ):
        await refused(stub.Initialize(pb.InitializeRequest(signed_cluster_certificate_pem=cert_pem,
                                                           trust_anchor_pem=anchor_pem)),
                      grpc.StatusCode.INVALID_ARGUMENT, fragment)
    signed_by_anchor = signed_cert_pem(lab.anchor, fresh.cluster_csr_pem)
    await refused(stub.Initialize(pb.InitializeRequest(  # the cluster certificate posing as the anchor
        signed_cluster_certificate_pem=signed_by_anchor, trust_anchor_pem=signed_by_anchor)),
        grpc.StatusCode.INVALID_ARGUMENT, "self-signed CA")
    other = provision.make_trust_anchor(lab.root / "other-ca")
    await refused(stub.Initialize(pb.InitializeRequest(
        signed_cluster_certificate_pem=signed_cert_pem(other, fresh.cluster_csr_pem),
        trust_anchor_pem=lab.anchor.cert_pem)), grpc.StatusCode.INVALID_ARGUMENT, "was not issued by")
    foreign_csr = certs.make_csr(certs.new_key(), "hsm-aaaaaaaaaaa")
    await refused(stub.Initialize(pb.InitializeRequest(
        signed_cluster_certificate_pem=signed_cert_pem(lab.anchor, foreign_csr),
        trust_anchor_pem=lab.anchor.cert_pem)), grpc.StatusCode.INVALID_ARGUMENT, "does not match this HSM's cluster CSR")
    assert (await stub.GetStatus(pb.Empty())).state == pb.UNINITIALIZED

    # ---- INITIALIZED
    signed = signed_cert_pem(lab.anchor, fresh.cluster_csr_pem)
    init = await stub.Initialize(pb.InitializeRequest(signed_cluster_certificate_pem=signed,
                                                      trust_anchor_pem=lab.anchor.cert_pem))
    assert init.state == pb.INITIALIZED and init.preco_username == "admin" and CLUSTER_ID.match(init.cluster_id)
    node.anchor_pem = lab.anchor.cert_pem  # from now on the node proves itself with the cluster identity
    await node.reset_channel()
    stub = node.stub()
    status = await stub.GetStatus(pb.Empty())
    assert status.state == pb.INITIALIZED and status.cluster_id == init.cluster_id
    assert status.cluster_csr_pem == ""
    assert status.cluster_certificate_pem == signed and status.trust_anchor_pem == lab.anchor.cert_pem
    der = x509.load_pem_x509_certificate(signed.encode()).public_bytes(encoding=_DER)
    assert status.cluster_certificate_sha256 == hashlib.sha256(der).hexdigest()
    assert (status.node_id, status.hsm_id) == (fresh.node_id, fresh.hsm_id)
    await refused(stub.Initialize(pb.InitializeRequest(signed_cluster_certificate_pem=signed,
                                                       trust_anchor_pem=lab.anchor.cert_pem)),
                  grpc.StatusCode.FAILED_PRECONDITION, "INITIALIZED")

    # the state survives a restart
    again = await node.restart()
    assert again.state == pb.INITIALIZED and again.cluster_id == init.cluster_id and again.node_id == fresh.node_id
    stub = node.stub()
    users = (await stub.ListUsers(pb.Empty())).users
    assert [(u.username, u.user_type, u.user_id) for u in users] == [("admin", pb.PRECO, 1)]

    # the PRECO can log in but not manage users before activation
    preco = await login(stub, pb.PRECO, "admin", PRECO_DEFAULT_PASSWORD)
    await refused(stub.CreateUser(pb.CreateUserRequest(session_token=preco, user_type=pb.CU, username="early",
                                                       password="Password1")),
                  grpc.StatusCode.FAILED_PRECONDITION, "INITIALIZED", "activate it first")

    # ---- ACTIVE: the PRECO changes its password and becomes a CO
    await stub.ChangePassword(pb.ChangePasswordRequest(session_token=preco, user_type=pb.PRECO, username="admin",
                                                       new_password=CO_PASSWORD))
    status = await stub.GetStatus(pb.Empty())
    assert status.state == pb.ACTIVE
    users = (await stub.ListUsers(pb.Empty())).users
    assert [(u.username, u.user_type, u.user_id) for u in users] == [("admin", pb.CO, 1)]
    await refused(stub.KeepAlive(pb.SessionRequest(session_token=preco)), grpc.StatusCode.UNAUTHENTICATED, "0xb9")
    await refused(stub.Login(pb.LoginRequest(user_type=pb.PRECO, username="admin", password=PRECO_DEFAULT_PASSWORD)),
                  grpc.StatusCode.UNAUTHENTICATED)
    co_token = await login(stub, pb.CO, "admin", CO_PASSWORD)
    await stub.CreateUser(pb.CreateUserRequest(session_token=co_token, user_type=pb.CU, username="later",
                                               password="Password1"))

    # ---- restart: still ACTIVE, same identity, users kept, sessions gone (an HSM reboot logs everyone out)
    after = await node.restart()
    assert after.state == pb.ACTIVE
    assert (after.node_id, after.hsm_id, after.cluster_id) == (fresh.node_id, fresh.hsm_id, init.cluster_id)
    assert after.cluster_certificate_sha256 == status.cluster_certificate_sha256
    assert after.user_count == 2
    stub = node.stub()
    await refused(stub.KeepAlive(pb.SessionRequest(session_token=co_token)), grpc.StatusCode.UNAUTHENTICATED)
    assert await login(stub, pb.CO, "admin", CO_PASSWORD)
    assert await login(stub, pb.CU, "LATER", "Password1")


async def test_tls_identity_follows_the_cluster_and_other_cas_are_refused(lab) -> None:
    node = await lab.start_node()
    anchor_pem = lab.anchor.cert_pem
    other = provision.make_trust_anchor(lab.root / "other-ca")

    async def status_with(root_pem: str | None) -> pb.NodeStatus:
        ch = client.channel(node.endpoint, root_pem)
        try:
            return await client.stub(ch).GetStatus(pb.Empty(), timeout=5)
        finally:
            await ch.close()

    # before initialisation the node only has its bootstrap certificate: the anchor does not vouch for it
    await refused(status_with(anchor_pem), grpc.StatusCode.UNAVAILABLE)
    boot = x509.load_pem_x509_certificate(presented_certificate(node.endpoint).encode())
    assert boot.issuer == boot.subject  # self-signed

    await provision.initialize(node.stub(), lab.anchor)

    # a client that verifies with the trust anchor connects (host name 127.0.0.1 is in the certificate)
    status = await status_with(anchor_pem)
    assert status.state == pb.INITIALIZED
    # ... a client trusting another CA, or the old bootstrap certificate, or speaking plaintext, does not
    await refused(status_with(other.cert_pem), grpc.StatusCode.UNAVAILABLE)
    await refused(status_with(ssl.DER_cert_to_PEM_cert(boot.public_bytes(_DER))), grpc.StatusCode.UNAVAILABLE)
    plain = grpc.aio.insecure_channel(node.endpoint)
    try:
        await refused(client.stub(plain).GetStatus(pb.Empty(), timeout=5), grpc.StatusCode.UNAVAILABLE)
    finally:
        await plain.close()

    # the presented chain is node certificate <- cluster certificate <- trust anchor
    leaf = x509.load_pem_x509_certificate(presented_certificate(node.endpoint).encode())
    cluster_cert = x509.load_pem_x509_certificate(status.cluster_certificate_pem.encode())
    leaf.verify_directly_issued_by(cluster_cert)
    cluster_cert.verify_directly_issued_by(x509.load_pem_x509_certificate(anchor_pem.encode()))
    assert leaf.issuer == cluster_cert.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]

    # and it keeps doing so after activation and a restart
    node.anchor_pem = anchor_pem
    await node.reset_channel()
    await provision.activate(node.stub(), CO_PASSWORD)
    await node.restart()
    assert (await status_with(anchor_pem)).state == pb.ACTIVE
    await refused(status_with(other.cert_pem), grpc.StatusCode.UNAVAILABLE)
