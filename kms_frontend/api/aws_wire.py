"""What every service on the AWS endpoint (KMS, STS, CloudHSM v2) does with a request besides its
own operation: read the body within the size limit and parse it as JSON within a nesting limit,
each failure an AWS error in ``{"__type", "message"}`` rather than aiohttp's plain-text 413 or a
500; and keep the request's record (request id, operation, outcome, principal) for the logs and
metrics."""
from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from plumbing.jsontext import MAX_DEPTH, JsonTooDeep, loads_bounded

from .. import errors, observability
from .aws_model import SerializationException
from .sigv4 import REFUSALS

MAX_BODY_BYTES = 1 << 20  # the largest request (a 128 KiB policy, JSON-escaped) fits easily


class RequestEntityTooLargeException(errors.KmsError):
    """A body over :data:`MAX_BODY_BYTES` (HTTP 413, the name AWS JSON services use for it)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413


class RequestAbandoned(errors.KmsError):
    """The sender closed the connection before its body arrived: nobody is left to answer (the
    request log says so; not an internal error)."""


class RequestRecord:
    """One request's bookkeeping: its request id (the logs' context while it runs); at the end one
    request log line and the metrics, with the operation, its outcome and the calling principal."""

    def __init__(self, request: web.Request, log: logging.Logger) -> None:
        self.started = time.perf_counter()
        self.request_id = observability.new_request_id(
            request.headers.get("X-Request-Id") or request.headers.get("X-Amzn-RequestId"))
        self._token = observability.REQUEST_ID.set(self.request_id)
        self._log = log
        self.name = observability.UNKNOWN_OPERATION
        self.outcome = observability.OK
        self.principal = ""

    def failed(self, exc: errors.KmsError, remote: str | None) -> None:
        """The request ends in an AWS error; a refused signature is logged (who tried, from where)."""
        self.outcome = exc.name
        if isinstance(exc, REFUSALS):
            self._log.info("request refused", extra={"event": "aws_auth_refused", "error": exc.name,
                                                     "remote": remote, "request_id": self.request_id})

    def finish(self) -> None:
        observability.REQUEST_ID.reset(self._token)
        observability.finish("aws", self.name, self.outcome, time.perf_counter() - self.started,
                             self.request_id, self.principal)


async def read_body(request: web.Request) -> bytes:
    """The request's body. Over the limit (aiohttp's ``client_max_size``, set to
    :data:`MAX_BODY_BYTES`): :class:`RequestEntityTooLargeException`; a body whose framing breaks
    off (chunked encoding, Content-Length): ``SerializationException``; a sender gone:
    :class:`RequestAbandoned`."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestEntityTooLargeException(
            f"The request body is larger than {MAX_BODY_BYTES} bytes, the most this endpoint accepts.") from None
    except HttpProcessingError as exc:
        raise SerializationException(f"The request body could not be read: {exc.message}.") from None
    except ConnectionResetError:
        raise RequestAbandoned("The connection closed before the request body arrived.") from None


def parse_json_body(body: bytes) -> Any:
    """The body as JSON (empty: ``{}``); :class:`SerializationException` when it is not JSON or
    nests deeper than :data:`~plumbing.jsontext.MAX_DEPTH`."""
    if not body.strip():
        return {}
    try:
        return loads_bounded(body)
    except JsonTooDeep:
        raise SerializationException(f"The request body is not valid JSON: it nests deeper than {MAX_DEPTH} "
                                     "levels.") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise SerializationException("The request body is not valid JSON.") from None

