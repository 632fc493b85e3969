"""What ``kms`` prints, the way the AWS CLI v2 prints it: responses in the AWS JSON shape
(PascalCase members in AWS order, timestamps as epoch seconds, binary as base64), an optional
``--query`` (a small subset of JMESPath: ``A``, ``A.B``, ``A[]``, ``A[0]``), then ``--output
json`` (4-space indent) or ``--output text`` (the AWS CLI's tab-separated layout)."""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .args import TIMESTAMP_FIELDS, KmsCliError

# ---------------------------------------------------------------- responses in the AWS shape

AWS_NAMES = {"aws_account_id": "AWSAccountId"}
# plain strings and lists AWS leaves out when they have no value (keys outside a custom key store ...)
OMIT_EMPTY = frozenset({("KeyMetadata", "custom_key_store_id"), ("KeyMetadata", "cloud_hsm_cluster_id"),
                        ("KeyMetadata", "signing_algorithms"), ("AuditEventEntry", "key_id"),
                        ("AuditEventEntry", "custom_key_store_id"), ("AuditEventEntry", "principal")})


def aws_name(field: str) -> str:
    return AWS_NAMES.get(field) or "".join(p.capitalize() for p in field.split("_"))


def epoch_seconds(ms: int) -> float:
    return ms / 1000


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return to_aws(value)
    if fd.name in TIMESTAMP_FIELDS:
        return epoch_seconds(value)
    return value


def to_aws(msg: Message) -> dict[str, Any]:
    """A kms.v1 message -> the AWS JSON structure (members in AWS order, which the proto follows)."""
    out: dict[str, Any] = {}
    type_name = msg.DESCRIPTOR.name
    for fd in msg.DESCRIPTOR.fields:
        if fd.has_presence and not msg.HasField(fd.name):
            continue
        value = getattr(msg, fd.name)
        if fd.is_repeated:
            if fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
                converted: Any = dict(value)
            else:
                converted = [_scalar(fd, v) for v in value]
        else:
            converted = _scalar(fd, value)
        if (type_name, fd.name) in OMIT_EMPTY and converted in ("", []):
            continue
        out[aws_name(fd.name)] = converted
    return out


# ---------------------------------------------------------------- --query (a small JMESPath subset)

_SEGMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)?(?P<brackets>(\[(\d*|-\d+)\])*)$")


def parse_query(expression: str) -> list[tuple[str, Any]]:
    """``A.B[].C[0]`` -> ``[("field", "A"), ("field", "B"), ("flatten", None), ("field", "C"), ("index", 0)]``."""
    steps: list[tuple[str, Any]] = []
    text = expression.strip()
    if not text:
        raise KmsCliError(f"Bad value for --query {expression}: empty expression")
    for part in text.split("."):
        m = _SEGMENT.match(part.strip())
        if not m or (not m.group("name") and not m.group("brackets")):
            raise KmsCliError(f"Bad value for --query {expression}: this kms CLI supports field names, "
                           "dotted paths and [] / [N] only (e.g. KeyMetadata.KeyId, Keys[].KeyId, Aliases[0])")
        if m.group("name"):
            steps.append(("field", m.group("name")))
        for b in re.findall(r"\[(\d*|-\d+)\]", m.group("brackets")):
            steps.append(("flatten", None) if b == "" else ("index", int(b)))
    return steps


def apply_query(steps: list[tuple[str, Any]], data: Any) -> Any:
    """JMESPath semantics for the subset: a missing member is null; after ``[]`` the rest projects."""
    for i, (op, arg) in enumerate(steps):
        if op == "field":
            data = data.get(arg) if isinstance(data, dict) else None
        elif op == "index":
            data = data[arg] if isinstance(data, list) and -len(data) <= arg < len(data) else None
        else:  # flatten, then project the remaining steps over the elements
            if not isinstance(data, list):
                return None
            flat: list[Any] = []
            for item in data:
                flat.extend(item if isinstance(item, list) else [item])
            projected = [apply_query(steps[i + 1:], item) for item in flat]
            return [p for p in projected if p is not None]
        if data is None:
            return None
    return data


# ---------------------------------------------------------------- output formats


def format_json(data: Any) -> str:
    """``--output json``: nothing for an empty response, as the AWS CLI."""
    if data == {}:
        return ""
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


def _text_scalar(value: Any) -> str:
    return str(value)


def format_text(data: Any) -> str:
    """``--output text``: the AWS CLI's layout (awscli/text.py)."""
    lines: list[str] = []
    _text(data, lines, None, None)
    return "".join(line + "\n" for line in lines)


def _text(item: Any, lines: list[str], identifier: str | None, scalar_keys: list[str] | None) -> None:
    if isinstance(item, dict):
        _text_dict(item, lines, identifier, scalar_keys)
    elif isinstance(item, list):
        _text_list(item, lines, identifier)
    else:
        lines.append(_text_scalar(item))


def _text_list(item: list[Any], lines: list[str], identifier: str | None) -> None:
    if not item:
        return
    if any(isinstance(e, dict) for e in item):
        keys = sorted({k for e in item if isinstance(e, dict) for k, v in e.items() if not isinstance(v, dict | list)})
        for element in item:
            _text(element, lines, identifier, keys)
    elif any(isinstance(e, list) for e in item):
        scalars = [e for e in item if not isinstance(e, dict | list)]
        if scalars:
            _text_scalars(scalars, lines, identifier)
        for e in item:
            if isinstance(e, dict | list):
                _text(e, lines, identifier, None)
    else:
        _text_scalars(item, lines, identifier)


def _text_scalars(elements: list[Any], lines: list[str], identifier: str | None) -> None:
    if identifier is not None:
        lines.extend(f"{identifier.upper()}\t{_text_scalar(e)}" for e in elements)
    else:
        lines.append("\t".join(_text_scalar(e) for e in elements))


def _text_dict(item: dict[str, Any], lines: list[str], identifier: str | None, scalar_keys: list[str] | None) -> None:
    if scalar_keys is None:
        scalars = [_text_scalar(v) for k, v in sorted(item.items()) if not isinstance(v, dict | list)]
        others = [(k, v) for k, v in sorted(item.items()) if isinstance(v, dict | list)]
    else:
        scalars = [_text_scalar(item.get(k, "")) for k in scalar_keys]
        others = [(k, item[k]) for k in sorted(set(item) - set(scalar_keys))]
    if scalars:
        lines.append("\t".join(([identifier.upper()] if identifier is not None else []) + scalars))
    for key, value in others:
        _text(value, lines, key, None)


def render(data: Any, output: str, query: list[tuple[str, Any]] | None) -> str:
    if query is not None:
        data = apply_query(query, data)
    if output == "text":
        return "" if data == {} else format_text(data)
    return format_json(data)
