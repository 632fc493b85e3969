"""The CloudHSM v2 API on the frontend's AWS endpoint (AWS JSON 1.1): the second service model the
endpoint serves beside KMS, so boto3's ``cloudhsmv2`` client and ``aws cloudhsmv2`` work with the
same endpoint URL and credentials.

A request whose ``X-Amz-Target`` is ``BaldrApiService.<Operation>`` comes here
(:meth:`CloudHsmEndpoint.claims`); it must be signed (SigV4) for signing name ``cloudhsm`` in one
of the Regions the control plane serves (the credential scope's Region picks the Region, as AWS's
regional endpoints do). The body is decoded by botocore's ``cloudhsmv2`` model and handed to
:meth:`ControlPlane.call <kms_frontend.controlplane.service.ControlPlane.call>`; errors are the
``CloudHsm*Exception`` names in ``{"__type", "message"}``. Transport only: no rule here.

Who may call what: the verifier tells which principal signed (the same access keys, principals
and temporary credentials as KMS); ``ControlPlane.call`` hands that caller to the frontend's one
evaluator, as IAM decides ``cloudhsm:<Operation>`` (identity-based policies; the account root may).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import errors, observability
from ..controlplane.service import ControlPlane
from ..service.authorization import Caller
from .aws_model import AwsJsonCodec
from .aws_wire import RequestRecord, parse_json_body, read_body
from .cloudhsm_forward import ToLeader
from .sigv4 import CredentialLookup, SigV4Verifier

log = logging.getLogger("kms_frontend.aws.cloudhsm")

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0")
SIGNING_NAME = "cloudhsm"
_SCOPE_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")


class CloudHsmUnknownOperationException(errors.KmsError):
    """A BaldrApiService target that is not an operation of the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.name = "UnknownOperationException"


class CloudHsmEndpoint:
    def __init__(self, plane: ControlPlane, credentials: CredentialLookup, to_leader: ToLeader | None = None) -> None:
        self.plane = plane
        self.to_leader = to_leader  # several workers: a follower hands requests to the leader's control plane
        self.codec = AwsJsonCodec(plane.model)
        self.verifiers = {region: SigV4Verifier(credentials, region, services=(SIGNING_NAME,))
                          for region in plane.regions.stores}

    @property
    def target_prefix(self) -> str:
        return self.plane.model.target_prefix  # "BaldrApiService"

    def claims(self, request: web.Request) -> bool:
        return request.headers.get("X-Amz-Target", "").startswith(self.target_prefix + ".")

    def _verifier(self, headers: Mapping[str, str]) -> SigV4Verifier:
        m = _SCOPE_REGION.search(headers.get("Authorization", ""))
        region = m.group(1) if m else ""
        return self.verifiers.get(region) or self.verifiers[self.plane.regions.home]

    async def handle(self, request: web.Request) -> web.Response:
        if self.to_leader is not None and self.plane.following:
            try:
                return await self.to_leader.forward(request)
            except errors.KmsError as exc:
                request_id = observability.new_request_id(None)
                return _response(exc.http_status, exc.aws_json_body(), request_id)
        return await self.serve(request, request.remote, request.secure)

    async def serve(self, request: web.Request, remote: str | None, secure: bool) -> web.Response:
        """One request, from a client (``handle``) or handed over by another worker (its client's
        address and transport in ``remote``, ``secure``)."""
        record = RequestRecord(request, log)
        try:
            body = await read_body(request)
            verifier = self._verifier(request.headers)
            found = verifier.verify(request.method, request.raw_path, request.headers.items(), body)
            caller = Caller(found.principal, remote, "aws", secure)
            record.principal = found.principal.arn
            operation = record.name = self._operation(request)
            result = await self.plane.call(operation, self.codec.decode(operation, parse_json_body(body)), verifier.region,
                                           caller)
            return _response(200, self.codec.encode(operation, result), record.request_id)
        except asyncio.CancelledError:
            record.outcome = "Cancelled"
            raise
        except errors.KmsError as exc:
            record.failed(exc, remote)
            return _response(exc.http_status, exc.aws_json_body(), record.request_id)
        except Exception:
            errors.unexpected(log, record.name, record.request_id)  # the traceback goes to the log under an incident id
            record.outcome = "CloudHsmInternalFailureException"
            return _response(500, {"__type": record.outcome, "message": "An internal error occurred. Retry the request; "
                                                                        f"request id {record.request_id}."},
                             record.request_id)
        finally:
            record.finish()

    def _operation(self, request: web.Request) -> str:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        target = request.headers.get("X-Amz-Target", "")
        _, _, name = target.partition(".")
        if request.method != "POST" or content_type not in ACCEPTED_CONTENT_TYPES or not self.plane.offers(name):
            raise CloudHsmUnknownOperationException(
                f"Unknown operation: expected POST with Content-Type {CONTENT_TYPE} and X-Amz-Target "
                f"{self.target_prefix}.<Operation>, got {request.method} with Content-Type {content_type or '(none)'!r}"
                f" and X-Amz-Target {target!r}.")
        return name


def _response(status: int, document: Any, request_id: str) -> web.Response:
    body = b"" if document is None else json.dumps(document).encode()
    return web.Response(status=status, body=body, content_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id})
