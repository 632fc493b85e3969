"""How a ``kms.v1`` call is authenticated (hand-written half of the contract; the messages are
generated from kms.proto): AWS Signature Version 4 over the call, with the same credentials as the
frontend's AWS endpoint, temporary (AssumeRole) credentials included.

A call of ``/kms.v1.Kms/Encrypt`` (or any method of ``kms.v1.Kms`` / ``kms.v1.KmsAdmin``) whose
serialized request is ``payload`` is signed as the HTTP request::

    POST /kms.v1.Kms/Encrypt
    host: <the target the client dialled>
    content-type: application/grpc
    x-amz-date: <now>
    [x-amz-security-token: <session token>]

    <payload>

for service ``kms`` in the frontend's Region (botocore's SigV4 signer does it here), and the
``authorization``, ``x-amz-date``, ``host`` and ``x-amz-security-token`` headers travel as the
call's metadata. The frontend verifies it with the same verifier as its AWS endpoint; a call
without a valid signature ends with ``UNAUTHENTICATED`` (the AWS exception name, such as
``MissingAuthenticationTokenException``, in the ``x-aws-exception`` trailing metadata) and
changes nothing.
"""
from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "kms"
CONTENT_TYPE = "application/grpc"
DEFAULT_REGION = "us-east-1"
Metadata = tuple[tuple[str, str], ...]


def sign(method_path: str, payload: bytes, credentials: Credentials, region: str, host: str) -> Metadata:
    """The metadata that authenticates one call of ``method_path`` with ``payload``."""
    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    request = AWSRequest(method="POST", url=f"https://{host}{method_path}", data=payload,
                         headers={"host": host, "content-type": CONTENT_TYPE})
    SigV4Auth(frozen, SERVICE, region).add_auth(request)
    metadata = [("authorization", request.headers["Authorization"]), ("x-amz-date", request.headers["X-Amz-Date"]),
                ("host", host)]
    if frozen.token:
        metadata.append(("x-amz-security-token", frozen.token))
    return tuple(metadata)


def credentials_from(env: Mapping[str, str]) -> Credentials | None:
    """The AWS SDKs' environment variables: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
    ``AWS_SESSION_TOKEN`` (the local cluster's env file sets the first two)."""
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None
    return Credentials(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)


def region_from(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def _method_name(method: Any) -> str:
    return method.decode() if isinstance(method, bytes) else str(method)


def _payload(request: Any) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


class SigningInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Signs every unary call of a ``grpc.aio`` channel (``interceptors=[SigningInterceptor(...)]``)."""

    def __init__(self, credentials: Credentials, region: str, host: str) -> None:
        self.credentials, self.region, self.host = credentials, region, host

    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        for key, value in sign(_method_name(details.method), _payload(request), self.credentials, self.region,
                               self.host):
            metadata.add(key, value)
        signed = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                            details.wait_for_ready)
        return await continuation(signed, request)


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class SyncSigningInterceptor(grpc.UnaryUnaryClientInterceptor):
    """The same for a blocking channel (``grpc.intercept_channel(channel, SyncSigningInterceptor(...))``)."""

    def __init__(self, credentials: Credentials, region: str, host: str) -> None:
        self.credentials, self.region, self.host = credentials, region, host

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        metadata = list(details.metadata or ()) + list(
            sign(_method_name(details.method), _payload(request), self.credentials, self.region, self.host))
        signed = _Details(details.method, details.timeout, metadata, details.credentials,
                          getattr(details, "wait_for_ready", None), getattr(details, "compression", None))
        return continuation(signed, request)


def aio_channel(target: str, credentials: Credentials | None, region: str, *,
                channel_credentials: grpc.ChannelCredentials | None = None,
                options: Sequence[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to the frontend whose calls are signed (unsigned without credentials:
    the frontend then refuses them with UNAUTHENTICATED)."""
    interceptors = [SigningInterceptor(credentials, region, target)] if credentials is not None else None
    if channel_credentials is not None:
        return grpc.aio.secure_channel(target, channel_credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
