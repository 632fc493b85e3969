"""AWS JSON 1.1 wire format of the KMS API: JSON documents to request parameters and results back.

Decoding is AWS's deserialisation step: JSON types must fit the model (base64 text for blobs,
numbers for integers...; numbers and booleans given for a string member are read as their text,
so an encryption context value ``1`` is ``"1"``). A misfit stops at once with
``SerializationException``. Constraints (lengths, patterns, required members) are not checked
here: that is the service layer's one validator (:mod:`kms_frontend.service.model`).

Encoding walks the operation's output shape: blobs become base64 text, timestamps (milliseconds in
the service's results) epoch seconds, absent members are left out.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import grpc

from .. import errors
from ..service.model import Params, ServiceModel


class SerializationException(errors.KmsError):
    """The request body is not JSON, or a value's JSON type does not fit its member."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


def _token(value: Any) -> str:
    """The name of a JSON value's kind, as AWS's deserialiser reports it."""
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int | float):
        return "VALUE_NUMBER_INT" if isinstance(value, int) else "VALUE_NUMBER_FLOAT"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"


def _misfit(value: Any, kind: str, path: str) -> SerializationException:
    where = f" (at '{path}')" if path else ""
    return SerializationException(f"{_token(value)} can not be converted to {kind}{where}")


class AwsJsonCodec:
    """Decode request bodies and encode results of one AWS JSON service model."""

    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.shapes = model.shapes

    def decode(self, operation: str, body: Any) -> Params:
        """``body`` (parsed JSON) as the operation's parameters: blobs as bytes, scalars as text
        where the model wants text, members the model does not know dropped (AWS ignores them)."""
        if not isinstance(body, dict):
            raise _misfit(body, "a structure", "")
        return self._structure(self.shapes[self.model.input_shape(operation)], body, "")

    def encode(self, operation: str, result: Params | None) -> Any:
        shape = self.model.output_shape(operation)
        if shape is None:
            return None
        return self._out(shape, result or {})

    # ------------------------------------------------------------ decoding

    def _value(self, shape_name: str, value: Any, path: str) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                raise _misfit(value, "a structure", path)
            return self._structure(shape, value, path)
        if kind == "list":
            if not isinstance(value, list):
                raise _misfit(value, "a list", path)
            return [self._value(shape["member"]["shape"], item, f"{path}.{n}.member")
                    for n, item in enumerate(value, start=1) if item is not None]
        if kind == "map":
            if not isinstance(value, dict):
                raise _misfit(value, "a map", path)
            return {self._value(shape["key"]["shape"], k, f"{path}.key"): self._value(shape["value"]["shape"], v,
                                                                                      f"{path}.{k}")
                    for k, v in value.items() if v is not None}
        if kind == "string":
            if isinstance(value, bool):  # scalars read as their text, as AWS reads them
                return "true" if value else "false"
            if isinstance(value, int | float):
                return json.dumps(value)
            if not isinstance(value, str):
                raise _misfit(value, "a String", path)
            return value
        if kind == "blob":
            if not isinstance(value, str):
                raise _misfit(value, "a Blob", path)
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SerializationException(f"Base64 encoded value at '{path}' is not valid base64.") from None
        if kind in ("integer", "long"):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or (isinstance(value, float) and not value.is_integer())):
                raise _misfit(value, "an Integer" if kind == "integer" else "a Long", path)
            return int(value)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _misfit(value, "a Boolean", path)
            return value
        if kind == "timestamp":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _misfit(value, "a Timestamp", path)
            return value
        if kind in ("double", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _misfit(value, "a Double", path)
            return value
        return value

    def _structure(self, shape: Mapping[str, Any], value: dict[str, Any], path: str) -> Params:
        out: Params = {}
        for name, member in shape.get("members", {}).items():
            raw = value.get(name)
            if raw is not None:
                member_path = f"{path}.{name[:1].lower()}{name[1:]}" if path else name[:1].lower() + name[1:]
                out[name] = self._value(member["shape"], raw, member_path)
        return out

    # ------------------------------------------------------------ encoding

    def _out(self, shape_name: str, value: Any) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            members = shape.get("members", {})
            return {k: self._out(members[k]["shape"], v) for k, v in value.items() if v is not None and k in members}
        if kind == "list":
            return [self._out(shape["member"]["shape"], v) for v in value]
        if kind == "map":
            return {k: self._out(shape["value"]["shape"], v) for k, v in value.items()}
        if kind == "blob":
            return base64.b64encode(value).decode()
        if kind == "timestamp":
            return value / 1000  # ms in the service's results, epoch seconds on the wire
        return value
