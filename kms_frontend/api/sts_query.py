"""The AWS query protocol of STS, as boto3's ``sts`` client speaks it: a form-encoded ``POST /``
(``Action=AssumeRole&Version=2011-06-15&RoleArn=...``), SigV4-signed for service ``sts``, answered
in XML (``<AssumeRoleResponse><AssumeRoleResult>...``; errors as ``<ErrorResponse><Error><Code>``).

Decoding and encoding walk botocore's STS model (lists as ``Name.member.N``, structures as
``Name.Member``, timestamps as ISO 8601); the service layer sees the same parameters as from any
adapter. No rules here.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from .. import errors
from ..service.model import STS_OPERATIONS, Params, ServiceModel
from .aws_model import SerializationException

CONTENT_TYPE = "text/xml"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
VERSION = "2011-06-15"

# AWS's STS codes for the refusals KMS names differently (the STS model holds the rest).
_CODES = {
    "AccessDeniedException": ("AccessDenied", 403),
    "ValidationException": ("ValidationError", 400),
    "MissingAuthenticationTokenException": ("MissingAuthenticationToken", 403),
    "UnrecognizedClientException": ("InvalidClientTokenId", 403),
    "InvalidSignatureException": ("SignatureDoesNotMatch", 403),
    "IncompleteSignatureException": ("IncompleteSignature", 400),
    "ExpiredTokenException": ("ExpiredToken", 400),
    "SerializationException": ("MalformedQueryString", 400),
    "KMSInternalException": ("InternalFailure", 500),
}


class InvalidAction(errors.KmsError):
    """An Action STS does not have, or this endpoint does not serve."""


class StsQueryCodec:
    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.shapes = model.sts_shapes

    # ------------------------------------------------------------ requests

    @staticmethod
    def form(body: bytes, query: Mapping[str, str]) -> dict[str, str]:
        """The request's parameters: the form-encoded body, else the query string."""
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False) if body else []
        except UnicodeDecodeError:
            raise SerializationException("The request body is not UTF-8 form data.") from None
        out = dict(query)
        out.update(pairs)
        return out

    def operation(self, form: Mapping[str, str]) -> str:
        action = form.get("Action", "")
        if action not in STS_OPERATIONS:
            raise InvalidAction(f"Could not find operation {action or '(none)'} for version {VERSION}: this endpoint"
                                f" serves STS {', '.join(STS_OPERATIONS)}.")
        return action

    def decode(self, operation: str, form: Mapping[str, str]) -> Params:
        return self._value(self.model.input_shape(operation), form, "") or {}

    def _value(self, shape_name: str, form: Mapping[str, str], prefix: str) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            out = {}
            for name, member in shape.get("members", {}).items():
                key = member.get("locationName", name)
                value = self._value(member["shape"], form, f"{prefix}.{key}" if prefix else key)
                if value is not None:
                    out[name] = value
            return out if out or not prefix else None
        if kind == "list":
            items, n = [], 1
            while True:
                item = self._value(shape["member"]["shape"], form,
                                   f"{prefix}.{n}" if shape.get("flattened") else f"{prefix}.member.{n}")
                if item is None:
                    break
                items.append(item)
                n += 1
            if not items and form.get(prefix) == "":
                return []
            return items or None
        if kind == "map":
            out, n = {}, 1
            while (key := form.get(f"{prefix}.entry.{n}.key")) is not None:
                out[key] = self._value(shape["value"]["shape"], form, f"{prefix}.entry.{n}.value")
                n += 1
            return out or None
        raw = form.get(prefix)
        if raw is None:
            return None
        try:
            if kind in ("integer", "long"):
                return int(raw)
            if kind == "boolean":
                return raw.lower() == "true"
            if kind == "blob":
                return base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error):
            raise SerializationException(f"Value '{raw}' at '{prefix}' is not a valid {kind}.") from None
        return raw

    # ------------------------------------------------------------ responses

    def encode(self, operation: str, result: Params | None, request_id: str) -> bytes:
        wrapper = self.model.operations[operation]["output"].get("resultWrapper", f"{operation}Result")
        inner = self._xml(self.model.output_shape(operation) or "", result or {})
        return (f'<{operation}Response xmlns="{NAMESPACE}"><{wrapper}>{inner}</{wrapper}>'
                f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
                f"</{operation}Response>").encode()

    def _xml(self, shape_name: str, value: Any) -> str:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            parts = []
            for name, member in shape.get("members", {}).items():
                if value.get(name) is not None:
                    tag = member.get("locationName", name)
                    parts.append(f"<{tag}>{self._xml(member['shape'], value[name])}</{tag}>")
            return "".join(parts)
        if kind == "list":
            return "".join(f"<member>{self._xml(shape['member']['shape'], v)}</member>" for v in value)
        if kind == "timestamp":  # milliseconds in the service's results
            when = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
            return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        if kind == "boolean":
            return "true" if value else "false"
        if kind == "blob":
            return base64.b64encode(value).decode()
        return escape(str(value))

    def error(self, exc: errors.KmsError, request_id: str) -> tuple[int, bytes]:
        code, status = _CODES.get(exc.name, (exc.name, exc.http_status))
        shape = self.shapes.get(exc.name)
        if exc.name not in _CODES and shape is not None and "error" in shape:
            code, status = shape["error"]["code"], shape["error"].get("httpStatusCode", status)
        if isinstance(exc, InvalidAction):
            code = "InvalidAction"
        kind = "Receiver" if status >= 500 else "Sender"
        body = (f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
                f"<Message>{escape(exc.message)}</Message></Error><RequestId>{escape(request_id)}</RequestId>"
                "</ErrorResponse>")
        return status, body.encode()
