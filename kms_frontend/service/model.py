"""The request model of the KMS API as botocore ships it, and the one validator of requests.

AWS checks every modelled constraint of a request (required members, lengths, enum sets, value
ranges, patterns) before the operation runs, and reports every violation at once::

    1 validation error detected: Value 'x' at 'keySpec' failed to satisfy constraint: Member must ...

:meth:`ServiceModel.validate` does that for every entry point: the AWS JSON adapter hands it the
decoded body, the gRPC adapter the request converted to the same shape (member names as AWS
spells them, blobs as bytes, timestamps as ms). Member paths are printed the way AWS prints them:
lowerCamelCase member names, list items as ``tags.1.member.tagKey``; sensitive strings show as
``'***'`` and blobs without a value.

The constraints come from ``botocore.loaders.Loader().load_service_model("kms", "service-2")``
(and ``"sts"`` for the STS operations the AWS endpoint serves, :data:`STS_OPERATIONS`); nothing
here is written per operation. The frontend's own admin operations (orphaned key material, the
audit log) are described in the same format in :data:`ADMIN_MODEL`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.loaders import Loader

from .. import errors

Params = dict[str, Any]
STS_OPERATIONS = ("GetCallerIdentity", "AssumeRole")

ADMIN_MODEL: Mapping[str, Any] = {
    "metadata": {"targetPrefix": "KmsAdmin"},
    "operations": {
        "ListOrphanedKeyMaterial": {"input": {"shape": "ListOrphanedKeyMaterialRequest"},
                                    "output": {"shape": "ListOrphanedKeyMaterialResponse"}},
        "ListAuditEvents": {"input": {"shape": "ListAuditEventsRequest"},
                            "output": {"shape": "ListAuditEventsResponse"}},
    },
    "shapes": {
        "ListOrphanedKeyMaterialRequest": {"type": "structure", "required": ["CustomKeyStoreId"], "members": {
            "CustomKeyStoreId": {"shape": "CustomKeyStoreIdType"}, "Delete": {"shape": "BooleanType"}}},
        "ListOrphanedKeyMaterialResponse": {"type": "structure", "members": {
            "Orphans": {"shape": "OrphanList"}}},
        "OrphanList": {"type": "list", "member": {"shape": "OrphanedKeyMaterial"}},
        "OrphanedKeyMaterial": {"type": "structure", "members": {
            "KeyHandle": {"shape": "LongType"}, "Label": {"shape": "String"}, "Outcome": {"shape": "String"}}},
        "ListAuditEventsRequest": {"type": "structure", "members": {
            "AfterId": {"shape": "AuditEventIdType"}, "Limit": {"shape": "LimitType"},
            "Event": {"shape": "String"}, "KeyId": {"shape": "String"}, "Principal": {"shape": "String"}}},
        "ListAuditEventsResponse": {"type": "structure", "members": {"Events": {"shape": "AuditEventList"}}},
        "AuditEventList": {"type": "list", "member": {"shape": "AuditEventEntry"}},
        "AuditEventEntry": {"type": "structure", "members": {
            "EventId": {"shape": "LongType"}, "Timestamp": {"shape": "LongType"}, "Event": {"shape": "String"},
            "KeyId": {"shape": "String"}, "CustomKeyStoreId": {"shape": "String"},
            "DetailsJson": {"shape": "String"}, "Principal": {"shape": "String"}}},
        "AuditEventIdType": {"type": "long", "min": 0},
        "LongType": {"type": "long"},
        "String": {"type": "string"},
    },
}


def camel(member: str) -> str:
    """``CustomKeyStoreId`` -> ``customKeyStoreId`` (AWS's path spelling)."""
    return member[:1].lower() + member[1:]


class ServiceModel:
    """Operations, shapes and the constraint checks of the KMS API (plus the admin operations and
    the STS operations of the AWS endpoint, whose shapes are kept apart: the two models share
    shape names)."""

    def __init__(self, model: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = ADMIN_MODEL,
                 sts: Mapping[str, Any] | None = None) -> None:
        """``model``: a botocore service model (default: KMS, which also serves STS's operations on the
        same endpoint); ``extra``: operations of our own in the same format (default: the KMS admin
        operations; None for another service's model alone)."""
        kms = model is None
        model = model if model is not None else Loader().load_service_model("kms", "service-2")
        extra = extra if extra is not None else {"shapes": {}, "operations": {}}
        if sts is None:
            sts = Loader().load_service_model("sts", "service-2") if kms else {"shapes": {}, "operations": {}}
        self.target_prefix: str = model["metadata"]["targetPrefix"]  # "TrentService"
        self.shapes: dict[str, Any] = {**extra["shapes"], **model["shapes"]}
        self.kms_operations: Mapping[str, Any] = model["operations"]
        self.sts_shapes: dict[str, Any] = dict(sts["shapes"])
        self.sts_operations: dict[str, Any] = {name: sts["operations"][name] for name in STS_OPERATIONS
                                               if name in sts["operations"]}
        self.operations: dict[str, Any] = {**extra["operations"], **model["operations"], **self.sts_operations}
        self._patterns: dict[str, re.Pattern[str] | None] = {}

    def shapes_of(self, operation: str) -> dict[str, Any]:
        return self.sts_shapes if operation in self.sts_operations else self.shapes

    def input_shape(self, operation: str) -> str:
        return self.operations[operation]["input"]["shape"]

    def output_shape(self, operation: str) -> str | None:
        output = self.operations[operation].get("output")
        return output["shape"] if output else None

    def validate(self, operation: str, params: Params) -> None:
        """Raise one ValidationException listing every modelled constraint ``params`` violates."""
        failures: list[str] = []
        shapes = self.shapes_of(operation)
        self._structure(shapes, shapes[self.input_shape(operation)], params, "", failures)
        if failures:
            raise errors.validation_error(failures)

    # ------------------------------------------------------------ shapes

    def _value(self, shapes: Mapping[str, Any], shape_name: str, value: Any, path: str, failures: list[str]) -> None:
        shape = shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            self._structure(shapes, shape, value, path, failures)
        elif kind == "list":
            self._length(shape, value, path, failures, "[" + ", ".join(map(str, value)) + "]", "value")
            for n, item in enumerate(value, start=1):
                self._value(shapes, shape["member"]["shape"], item, f"{path}.{n}.member", failures)
        elif kind == "map":
            self._length(shape, value, path, failures, None, "omitted")
            for k, v in value.items():
                self._value(shapes, shape["key"]["shape"], k, f"{path}.key", failures)
                self._value(shapes, shape["value"]["shape"], v, f"{path}.{k}", failures)
        elif kind == "string":
            shown = "masked" if shape.get("sensitive") else "value"
            self._length(shape, value, path, failures, value, shown)
            pattern = self._regex(shape)
            if pattern is not None and pattern.fullmatch(value) is None:
                failures.append(errors.validation_failure(
                    path, f"Member must satisfy regular expression pattern: {shape['pattern']}", value, shown=shown))
            if "enum" in shape and value not in shape["enum"]:
                failures.append(errors.validation_failure(
                    path, "Member must satisfy enum value set: [" + ", ".join(shape["enum"]) + "]", value, shown=shown))
        elif kind == "blob":
            self._length(shape, value, path, failures, None, "omitted")
        elif kind in ("integer", "long"):
            if "min" in shape and value < shape["min"]:
                failures.append(errors.validation_failure(
                    path, f"Member must have value greater than or equal to {shape['min']}", value))
            elif "max" in shape and value > shape["max"]:
                failures.append(errors.validation_failure(
                    path, f"Member must have value less than or equal to {shape['max']}", value))

    def _structure(self, shapes: Mapping[str, Any], shape: Mapping[str, Any], value: Params, path: str,
                   failures: list[str]) -> None:
        required = shape.get("required", ())
        for name, member in shape.get("members", {}).items():
            member_path = f"{path}.{camel(name)}" if path else camel(name)
            item = value.get(name)
            if item is None:
                if name in required:
                    failures.append(errors.validation_failure(member_path, "Member must not be null"))
                continue
            self._value(shapes, member["shape"], item, member_path, failures)

    # ------------------------------------------------------------ constraints

    @staticmethod
    def _length(shape: Mapping[str, Any], value: Any, path: str, failures: list[str], shown_value: Any,
                shown: str) -> None:
        if "min" in shape and len(value) < shape["min"]:
            failures.append(errors.validation_failure(
                path, f"Member must have length greater than or equal to {shape['min']}", shown_value, shown=shown))
        elif "max" in shape and len(value) > shape["max"]:
            failures.append(errors.validation_failure(
                path, f"Member must have length less than or equal to {shape['max']}", shown_value, shown=shown))

    def _regex(self, shape: Mapping[str, Any]) -> re.Pattern[str] | None:
        pattern = shape.get("pattern")
        if pattern is None:
            return None
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(pattern)
            except re.error:  # a Java-only construct: left to the service's own rules
                self._patterns[pattern] = None
        return self._patterns[pattern]
