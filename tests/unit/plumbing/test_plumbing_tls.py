"""Reading the certificate a TLS server presents, unverified (plumbing/tls.py)."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plumbing.tls import presented_certificate


def self_signed(tmp_path: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bootstrap")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "c.pem").write_text(pem)
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return tmp_path / "c.pem", tmp_path / "k.pem", pem


def test_reads_a_self_signed_certificate(tmp_path: Path) -> None:
    cert_path, key_path, pem = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        shown = presented_certificate(f"127.0.0.1:{port}", timeout=5)
    finally:
        t.join(5)
        listener.close()
    assert x509.load_pem_x509_certificate(shown.encode()) == x509.load_pem_x509_certificate(pem.encode())


def test_a_bad_endpoint_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        presented_certificate("no-port")


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(OSError):
            presented_certificate(f"127.0.0.1:{port}", timeout=2)


def serve_once(cert_pem: str, key_pem: bytes, tmp_path: Path) -> tuple[str, threading.Thread, socket.socket]:
    (tmp_path / "s.pem").write_text(cert_pem)
    (tmp_path / "s.key").write_bytes(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return f"127.0.0.1:{listener.getsockname()[1]}", t, listener


def test_a_verification_failure_is_explained_in_words(tmp_path: Path) -> None:
    """What a CLI prints instead of OpenSSL's "self signed certificate: OK": the CA file used, what
    the server presented, and which of the two does not fit."""
    from hsm_node import certs
    from plumbing.tls import explain_verify_failure

    ca_key, ca_cert = certs.make_trust_anchor("customerCA")
    (tmp_path / "ca.pem").write_text(certs.cert_pem(ca_cert))
    node_key = certs.new_key()
    cases = [
        (certs.self_signed(node_key, "bootstrap", ["127.0.0.1"]), str(tmp_path / "ca.pem"),
         ["presented a certificate (subject CN=bootstrap", "self-signed", f"the CA in {tmp_path / 'ca.pem'}"
          " (CN=customerCA", "did not issue"]),
        (certs.issue_node_cert(ca_key, ca_cert, node_key, "n1", ["other.example"]), str(tmp_path / "ca.pem"),
         ["issued by the CA in", "but for other.example, not 127.0.0.1"]),
        (certs.issue_node_cert(ca_key, ca_cert, node_key, "n1", ["127.0.0.1"]), "",
         ["the system's trusted CAs (no CA file given) did not accept"]),
    ]
    for cert, ca_file, expected in cases:
        endpoint, t, listener = serve_once(certs.cert_pem(cert), certs.key_pem(node_key), tmp_path)
        try:
            text = explain_verify_failure(endpoint, ca_file)
        finally:
            t.join(5)
            listener.close()
        for fragment in expected:
            assert fragment in text, text
    with socket.create_server(("127.0.0.1", 0)) as closed:
        gone = f"127.0.0.1:{closed.getsockname()[1]}"
    assert "its certificate could not be read" in explain_verify_failure(gone, "", timeout=1)   # nothing there now
