"""Client connections to HSM nodes: the node itself uses them to reach a node it adds
(``membership``), as do its container health check, ``hsm-mgmt``, the tools and the tests.

A node with a cluster identity is verified against the trust anchor. An
uninitialised node only has its bootstrap self-signed certificate, so the
first contact (to read its CSR and initialise it, or to join/restore it) trusts
the certificate it is shown, like SSH's first connection; that certificate is
pinned for the rest of the channel's life.
"""
from __future__ import annotations

import grpc

from plumbing.tls import presented_certificate
from protos.hsm.v1 import hsm_pb2_grpc as pb_grpc

MAX_MESSAGE = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


def channel(endpoint: str, trust_anchor_pem: str | bytes | None, *, client_key: bytes | None = None,
            client_chain: bytes | None = None) -> grpc.aio.Channel:
    """An aio channel to a node. ``trust_anchor_pem=None`` means trust-on-first-use."""
    root = trust_anchor_pem if trust_anchor_pem is not None else presented_certificate(endpoint)
    if isinstance(root, str):
        root = root.encode()
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=client_key, certificate_chain=client_chain)
    return grpc.aio.secure_channel(endpoint, creds, options=OPTIONS)


def stub(ch: grpc.aio.Channel) -> pb_grpc.HsmStub:
    return pb_grpc.HsmStub(ch)
