"""The certificate a TLS server presents, read without verifying it.

For the first contact with a server whose certificate cannot be verified yet (an
uninitialised HSM node has only a self-signed bootstrap certificate: trust on first
use, like SSH), and for reading public facts before a verified channel exists. The
result is then pinned: the channel that follows trusts exactly this certificate.
"""
from __future__ import annotations

import socket
import ssl

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
