"""The KMS request model as botocore ships it: AWS JSON 1.1 input checks and decoding.

AWS reads a request in two steps before the operation runs, and so does this module:

1. Deserialise: JSON types must fit the model (base64 text for blobs, numbers for integers...;
   numbers and booleans given for a string member are read as their text, so an encryption
   context value ``1`` is ``"1"``). A misfit stops at once with ``SerializationException``.
2. Validate: every modelled constraint (required members, lengths, enum sets, value ranges,
   patterns) is checked and all violations are reported together as one ``ValidationException``
   in AWS's shape::

       1 validation error detected: Value 'x' at 'keySpec' failed to satisfy constraint: Member must ...

Member paths are printed the way AWS prints them: lowerCamelCase member names, list items as
``tags.1.member.tagKey``. Sensitive strings show as ``'***'`` and blobs without a value (the
same conventions as :mod:`kms_frontend.validation`, which the service layer uses).

The constraints come from ``botocore.loaders.Loader().load_service_model("kms", "service-2")``;
nothing here is hand-written per operation. Members the model knows but this service ignores
(XKS settings, Recipient...) are checked and passed through; the adapter decides what to read.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import grpc
from botocore.loaders import Loader

from .. import errors


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


def camel(member: str) -> str:
    """``CustomKeyStoreId`` -> ``customKeyStoreId`` (AWS's path spelling)."""
    return member[:1].lower() + member[1:]


class KmsModel:
    """The KMS service model: operation names, input checks and decoding."""

    def __init__(self, model: Mapping[str, Any] | None = None) -> None:
        model = model if model is not None else Loader().load_service_model("kms", "service-2")
        self.shapes: Mapping[str, Any] = model["shapes"]
        self.operations: Mapping[str, Any] = model["operations"]
        self.target_prefix: str = model["metadata"]["targetPrefix"]  # "TrentService"
        self._patterns: dict[str, re.Pattern[str] | None] = {}

    def has_output(self, operation: str) -> bool:
        return "output" in self.operations[operation]

    def parse(self, operation: str, body: Any) -> dict[str, Any]:
        """Check ``body`` (decoded JSON) against the operation's input; return it with blobs decoded."""
        if not isinstance(body, dict):
            raise _misfit(body, "a structure", "")
        failures: list[str] = []
        shape = self.operations[operation]["input"]["shape"]
        params = self._structure(self.shapes[shape], body, "", failures)
        if failures:
            raise errors.validation_error(failures)
        return params

    # ------------------------------------------------------------ shapes

    def _value(self, shape_name: str, value: Any, path: str, failures: list[str]) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                raise _misfit(value, "a structure", path)
            return self._structure(shape, value, path, failures)
        if kind == "list":
            if not isinstance(value, list):
                raise _misfit(value, "a list", path)
            self._length(shape, value, path, failures, shown="[" + ", ".join(map(str, value)) + "]")
            return [self._value(shape["member"]["shape"], item, f"{path}.{n}.member", failures)
                    for n, item in enumerate(value, start=1) if item is not None]
        if kind == "map":
            if not isinstance(value, dict):
                raise _misfit(value, "a map", path)
            self._length(shape, value, path, failures, shown=None)
            return {self._value(shape["key"]["shape"], k, f"{path}.key", failures):
                    self._value(shape["value"]["shape"], v, f"{path}.{k}", failures)
                    for k, v in value.items() if v is not None}
        if kind == "string":
            if isinstance(value, bool):  # scalars read as their text, as AWS reads them
                value = "true" if value else "false"
            elif isinstance(value, int | float):
                value = json.dumps(value)
            elif not isinstance(value, str):
                raise _misfit(value, "a String", path)
            shown = "'***'" if shape.get("sensitive") else f"'{value}'"
            self._length(shape, value, path, failures, shown=shown)
            self._pattern(shape, value, path, failures, shown=shown)
            if "enum" in shape and value not in shape["enum"]:
                failures.append(self._failure(shown, path, "Member must satisfy enum value set: ["
                                              + ", ".join(shape["enum"]) + "]"))
            return value
        if kind == "blob":
            if not isinstance(value, str):
                raise _misfit(value, "a Blob", path)
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SerializationException(f"Base64 encoded value at '{path}' is not valid base64.") from None
            self._length(shape, data, path, failures, shown=None)
            return data
        if kind in ("integer", "long"):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or (isinstance(value, float) and not value.is_integer())):
                raise _misfit(value, "an Integer" if kind == "integer" else "a Long", path)
            number = int(value)
            if "min" in shape and number < shape["min"]:
                failures.append(self._failure(f"'{number}'", path,
                                              f"Member must have value greater than or equal to {shape['min']}"))
            elif "max" in shape and number > shape["max"]:
                failures.append(self._failure(f"'{number}'", path,
                                              f"Member must have value less than or equal to {shape['max']}"))
            return number
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

    def _structure(self, shape: Mapping[str, Any], value: dict[str, Any], path: str,
                   failures: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        members = shape.get("members", {})
        required = set(shape.get("required", ()))
        for name, member in members.items():
            member_path = f"{path}.{camel(name)}" if path else camel(name)
            raw = value.get(name)
            if raw is None:
                if name in required:
                    failures.append(self._failure("null", member_path, "Member must not be null"))
                continue
            out[name] = self._value(member["shape"], raw, member_path, failures)
        return out  # members the model does not know are dropped, as AWS ignores them

    # ------------------------------------------------------------ constraints

    @staticmethod
    def _failure(shown: str | None, path: str, constraint: str) -> str:
        subject = "Value" if shown is None else f"Value {shown}"
        return f"{subject} at '{path}' failed to satisfy constraint: {constraint}"

    def _length(self, shape: Mapping[str, Any], value: Any, path: str, failures: list[str],
                shown: str | None) -> None:
        if "min" in shape and len(value) < shape["min"]:
            failures.append(self._failure(shown, path,
                                          f"Member must have length greater than or equal to {shape['min']}"))
        elif "max" in shape and len(value) > shape["max"]:
            failures.append(self._failure(shown, path,
                                          f"Member must have length less than or equal to {shape['max']}"))

    def _pattern(self, shape: Mapping[str, Any], value: str, path: str, failures: list[str],
                 shown: str) -> None:
        pattern = shape.get("pattern")
        if pattern is None:
            return
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(pattern)
            except re.error:  # a Java-only construct: leave it to the service layer
                self._patterns[pattern] = None
        regex = self._patterns[pattern]
        if regex is not None and regex.fullmatch(value) is None:
            failures.append(self._failure(shown, path,
                                          f"Member must satisfy regular expression pattern: {pattern}"))
