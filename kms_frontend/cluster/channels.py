"""TLS channels from the frontend to HSM nodes.

Discovery reads only public facts (cluster id, state, certificates), so it may
pin whatever certificate a node shows. Anything that carries a secret (the
kmsuser password, crypto) goes over a channel verified against the custom key
store's trust anchor.

Every channel sends the current request id (:data:`..observability.REQUEST_ID`) as
``x-request-id`` metadata on its unary calls, so a node's log lines carry the id of
the frontend request that caused them. Crypto travels on streams and carries the id
in each ``CryptoOp`` instead (streams are not intercepted: no cost on that path).
"""
from __future__ import annotations

from typing import Any

import grpc

from plumbing import tls

from ..observability import REQUEST_ID, REQUEST_ID_KEY

OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20),
    ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
]


class RequestIdInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        request_id = REQUEST_ID.get()
        if request_id:
            metadata = grpc.aio.Metadata(*(details.metadata or ()))
            metadata.add(REQUEST_ID_KEY, request_id)
            details = details._replace(metadata=metadata)
        return await continuation(details, request)


_INTERCEPTORS = [RequestIdInterceptor()]


def presented_certificate(endpoint: str, timeout: float = 3.0) -> str:
    """The certificate a node presents (unverified), PEM."""
    return tls.presented_certificate(endpoint, timeout, what="HSM endpoint")


def secure(endpoint: str, root_pem: bytes | str) -> grpc.aio.Channel:
    root = root_pem.encode() if isinstance(root_pem, str) else root_pem
    return grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials(root_certificates=root), options=OPTIONS,
                                   interceptors=_INTERCEPTORS)
