"""The cluster's identity: trust anchor, cluster certificate and node certificates.

As in CloudHSM, an uninitialised node holds the cluster key pair and offers a
CSR; the operator signs it with their own CA (the trust anchor, customerCA.crt)
and hands both back with Initialize. The cluster certificate is itself a CA
(path length 0) that issues the node TLS certificates, so every node
certificate chains node -> cluster -> trust anchor. Clusters restored from a
backup keep the cluster key and certificate: that is what makes them "related".
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import InvalidArgument

B32_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
VALID_DAYS_CA = 3650
VALID_DAYS_NODE = 825


def random_id(prefix: str, n: int = 11) -> str:
    """CloudHSM-style identifiers: cluster-/hsm-/backup- + [2-7a-z]{11}."""
    return prefix + "".join(secrets.choice(B32_ALPHABET) for _ in range(n))


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str | bytes, what: str = "certificate") -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not a valid PEM X.509 certificate") from exc


@functools.lru_cache(maxsize=64)
def fingerprint(pem: str | bytes) -> str:
    # asked for the cluster's certificate on every GetStatus (the frontend's probes): parsed once (7 us)
    return hashlib.sha256(load_cert(pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(cn: str, org: str = "CloudHSM simulator") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def _sans(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def make_trust_anchor(common_name: str = "customerCA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The operator's CA (customerCA.key / customerCA.crt)."""
    key = new_key()
    name = _name(common_name, "Customer")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=VALID_DAYS_CA))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_csr(key: ec.EllipticCurvePrivateKey, hsm_id: str) -> str:
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(f"HSM:{hsm_id}:cluster")).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def sign_cluster_csr(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, csr_pem: str) -> x509.Certificate:
    """What the operator does with the cluster CSR (openssl x509 -req ... in the AWS guide)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject).issuer_name(ca_cert.subject).public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=VALID_DAYS_CA))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def issue_node_cert(
    cluster_key: ec.EllipticCurvePrivateKey, cluster_cert: x509.Certificate,
    node_key: ec.EllipticCurvePrivateKey, node_id: str, hosts: list[str],
) -> x509.Certificate:
    """A node's TLS certificate, good as server (client port) and client (peer port)."""
    return issue_tls_cert(cluster_key, cluster_cert, node_key, f"hsm-node {node_id}", hosts,
                          [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def issue_tls_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
    cn: str, hosts: list[str], usages: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    """A leaf TLS certificate for ``hosts`` (IP addresses or names) issued by ``ca_cert``. It names
    its issuer's key (authority key identifier), which strict verifiers (Python 3.13's default
    context, for one) require."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=VALID_DAYS_NODE))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_sans(hosts), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def self_signed(key: ec.EllipticCurvePrivateKey, cn: str, hosts: list[str]) -> x509.Certificate:
    """The bootstrap certificate an uninitialised node serves until it has a cluster identity."""
    name = _name(cn)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=VALID_DAYS_NODE))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_sans(hosts), critical=False)
        .sign(key, hashes.SHA256())
    )


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
        raise InvalidArgument(f"{what} was not issued by the given certificate") from exc


SIGN_AS_CA = ("openssl x509 -req -days 3652 -in <cluster>_ClusterCsr.csr -CA customerCA.crt -CAkey customerCA.key "
              "-CAcreateserial -extfile <(printf 'basicConstraints=critical,CA:TRUE') -out <cluster>_CustomerHsmCertificate.crt")


def require_ca(cert: x509.Certificate, what: str) -> None:
    """The signed cluster certificate issues each HSM's TLS certificate, so it must be a CA."""
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        ca = ca and usage.key_cert_sign
    except x509.ExtensionNotFound:
        pass
    if not ca:
        raise InvalidArgument(f"{what} is not a CA certificate (basicConstraints CA:TRUE): here it issues each HSM's "
                              f"TLS certificate. Sign the CSR as a CA, e.g.: {SIGN_AS_CA}")


def public_key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)
