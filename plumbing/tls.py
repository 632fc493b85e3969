"""The certificate a TLS server presents, read without verifying it.

For the first contact with a server whose certificate cannot be verified yet (an
uninitialised HSM node has only a self-signed bootstrap certificate: trust on first
use, like SSH), and for reading public facts before a verified channel exists. The
result is then pinned: the channel that follows trusts exactly this certificate.
"""
from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .addresses import split_endpoint


def presented_certificate(endpoint: str, timeout: float = 5.0, *, what: str = "endpoint") -> str:
    """The PEM certificate the server at ``endpoint`` presents (HTTP/2 ALPN, as gRPC). ``what``
    names the endpoint in the error when it is not host:port."""
    host, port = split_endpoint(endpoint, what)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as sock, ctx.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{endpoint} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Signed by ``ca``'s key, not only naming it (two CAs may share a name)."""
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _who(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "an empty subject"


def _names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in sans.get_values_for_type(x509.DNSName)] + \
        [str(n) for n in sans.get_values_for_type(x509.IPAddress)]


def explain_verify_failure(endpoint: str, ca_file: str, server_name: str = "", timeout: float = 3.0) -> str:
    """Why a TLS client could not verify ``endpoint`` against ``ca_file``, in words: which CA was
    used, what the server presented (subject, issuer, self-signed, names), and which of the two
    does not fit. For a CLI's one-line error; the raw OpenSSL text ("self signed certificate: OK")
    says none of it."""
    try:
        presented = x509.load_pem_x509_certificate(presented_certificate(endpoint, timeout).encode())
    except (OSError, ValueError) as exc:
        return f"the TLS handshake with {endpoint} failed and its certificate could not be read ({exc})"
    try:
        cas = x509.load_pem_x509_certificates(Path(ca_file).expanduser().read_bytes()) if ca_file else []
    except (OSError, ValueError):
        cas = []
    ca_text = f"{ca_file} ({', '.join(_who(c) for c in cas[:3]) or 'no certificate'})" if ca_file else \
        "the system's trusted CAs (no CA file given)"
    shown = f"subject {_who(presented)}, issued by {presented.issuer.rfc4514_string()}"
    if presented.issuer == presented.subject:
        shown += ", self-signed"
    if not ca_file:
        return f"{endpoint} presented a certificate ({shown}) that {ca_text} did not accept"
    if not any(_issued_by(presented, c) for c in cas):
        return f"{endpoint} presented a certificate ({shown}) that the CA in {ca_text} did not issue"
    host = server_name or split_endpoint(endpoint)[0]
    names = _names(presented)
    if host not in names:
        return (f"{endpoint} presented a certificate ({shown}) issued by the CA in {ca_text}, but for"
                f" {', '.join(names) or 'no name'}, not {host}")
    return f"{endpoint} presented a certificate ({shown}) that did not verify against the CA in {ca_text}" \
        " (expired, or not valid for a TLS server?)"
