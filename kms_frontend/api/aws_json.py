"""The AWS endpoint of the frontend: the KMS API as AWS serves it (AWS JSON 1.1), and STS (the
query protocol), so boto3, the AWS CLI and the AWS Encryption SDK work against this frontend with
only the endpoint URL changed.

A request is routed by its shape and authenticated for that service's signing name: a
form-encoded body (or a query string) with ``Action=...`` is STS (:mod:`.sts_query`, signed for
``sts``); anything else is KMS: ``POST /`` with ``X-Amz-Target: TrentService.<Operation>`` and
``Content-Type: application/x-amz-json-1.1`` (signed for ``kms``). The signature (:mod:`.sigv4`)
gives the caller's principal; the body is decoded by the model botocore ships (:mod:`.aws_model`)
and handed to :meth:`Services.call <kms_frontend.service.frontend.Services.call>` by operation name
with the caller, the same entry point the gRPC adapter uses. Binary fields travel base64,
timestamps as epoch seconds. A :class:`~kms_frontend.errors.KmsError` becomes HTTP
``err.http_status`` (400, 500 internal) with ``{"__type": name, "message": ...}``, which is what
botocore turns into ``client.exceptions.<Name>``. No rules here.

The same endpoint serves the CloudHSM v2 control plane (``X-Amz-Target: BaldrApiService.*``, signed
for ``cloudhsm``): :mod:`.cloudhsm_json`.

Operations of the KMS model this service does not offer (asymmetric keys, multi-Region...) answer
``UnsupportedOperationException``; a target outside the model ``UnknownOperationException``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl as ssl_
from typing import Any

import grpc
from aiohttp import web

from plumbing.addresses import split_listen
from plumbing.http_log import HttpServerLog

from .. import errors
from ..service.authorization import Caller
from ..service.frontend import Services
from . import sts_query
from .aws_model import AwsJsonCodec
from .aws_wire import MAX_BODY_BYTES, RequestRecord, parse_json_body, read_body
from .cloudhsm_json import CloudHsmEndpoint
from .sigv4 import SigV4Verifier
from .sts_query import StsQueryCodec

log = logging.getLogger("kms_frontend.aws")

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class UnknownOperationException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class AwsJsonEndpoint:
    """The aiohttp application serving the KMS API in the frontend's event loop."""

    def __init__(self, services: Services, verifier: SigV4Verifier, listen: str, *, grace: float = 10.0,
                 cloudhsm: CloudHsmEndpoint | None = None, reuse_port: bool = False,
                 ssl: ssl_.SSLContext | None = None) -> None:
        self.services = services
        self.cloudhsm = cloudhsm  # the CloudHSM v2 control plane, a second service on this endpoint
        self.reuse_port = reuse_port  # several workers share the port (SO_REUSEPORT)
        self.listen, self.grace = listen, grace
        self.ssl = ssl  # HTTPS (kms-frontend --aws-tls-cert/--aws-tls-key), else plain HTTP
        self.host, self.port = split_listen(listen, "--aws-listen")
        self.model = services.model
        self.codec = AwsJsonCodec(services.model)
        self.sts = StsQueryCodec(services.model)
        self.verifier = verifier
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Requests being handled now (read by /metrics)."""
        return self._in_flight

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl is not None else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=self.grace,
                                    logger=HttpServerLog(log))
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl,
                                reuse_port=self.reuse_port or None)
        await self.site.start()
        log.info("AWS JSON endpoint listening", extra={
            "event": "aws_listening", "endpoint_url": self.url, "region": self.services.ctx.settings.region,
            "account_id": self.services.ctx.settings.account_id})

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` seconds), then close.

        The listening socket closes first and open connections stay up until the handlers running
        on them are done: aiohttp's own shutdown stops reading from a connection at once, which
        would strand a request whose body is still arriving.
        """
        if self.site is not None:
            await self.site.stop()
            self.site = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.grace)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # ------------------------------------------------------------ one request

    async def handle(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self._idle.clear()
        try:
            if self.cloudhsm is not None and self.cloudhsm.claims(request):  # X-Amz-Target BaldrApiService.*
                return await self.cloudhsm.handle(request)
            return await self._handle(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _handle(self, request: web.Request) -> web.Response:
        record = RequestRecord(request, log)
        request_id = record.request_id
        query = _is_query(request)
        try:
            body = await read_body(request)
            found = self.verifier.verify(request.method, request.raw_path, request.headers.items(), body,
                                         services=("sts",) if query else ("kms",))
            caller = Caller(found.principal, request.remote, "aws", request.secure)
            record.principal = found.principal.arn
            if query:
                form = self.sts.form(body, request.query)
                name = record.name = self.sts.operation(form)
                result = await self.services.call(name, self.sts.decode(name, form), caller)
                return self._response(200, self.sts.encode(name, result, request_id), request_id, sts_query.CONTENT_TYPE)
            name = record.name = self._operation(request)
            if not self.services.offers(name):
                raise errors.UnsupportedOperationException(
                    f"{name} is not supported by this KMS endpoint, which serves custom key stores backed by "
                    "CloudHSM clusters and symmetric encryption keys in them.")
            result = await self.services.call(name, self.codec.decode(name, parse_json_body(body)), caller)
            return self._response(200, _json(self.codec.encode(name, result)), request_id)
        except web.HTTPException as exc:
            record.outcome = f"HTTP{exc.status}"
            raise
        except asyncio.CancelledError:
            record.outcome = "Cancelled"
            raise
        except errors.KmsError as exc:
            record.failed(exc, request.remote)
            return self._error(exc, request_id, query)
        except Exception:
            internal = errors.unexpected(log, record.name, request_id)
            record.outcome = internal.name
            return self._error(internal, request_id, query)
        finally:
            record.finish()

    def _error(self, exc: errors.KmsError, request_id: str, query: bool) -> web.Response:
        if query:
            status, body = self.sts.error(exc, request_id)
            return self._response(status, body, request_id, sts_query.CONTENT_TYPE)
        return self._response(exc.http_status, _json(exc.aws_json_body()), request_id)

    def _operation(self, request: web.Request) -> str:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, name = target.partition(".")
        if (request.method != "POST" or content_type not in ACCEPTED_CONTENT_TYPES
                or prefix != self.model.target_prefix or name not in self.model.kms_operations):
            raise UnknownOperationException(
                f"Unknown operation: expected POST with Content-Type {CONTENT_TYPE} and "
                f"X-Amz-Target {self.model.target_prefix}.<Operation>, got {request.method} with "
                f"Content-Type {content_type or '(none)'!r} and X-Amz-Target {target or '(none)'!r}.")
        return name

    @staticmethod
    def _response(status: int, body: bytes, request_id: str, content_type: str = CONTENT_TYPE) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type,
                            headers={"x-amzn-RequestId": request_id})


def _json(document: Any) -> bytes:
    return b"" if document is None else json.dumps(document).encode()


def _is_query(request: web.Request) -> bool:
    """An AWS query-protocol request (STS): form-encoded, or a GET/POST whose query names the Action."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == FORM_CONTENT_TYPE or "Action" in request.query
