"""Parameter values for ``kms``, the way the AWS CLI v2 reads them. Pure, except for
reading ``file://`` / ``fileb://`` parameter files and the environment file.

* any parameter may be ``file://PATH`` (the file's text is the value) or
  ``fileb://PATH`` (its bytes); ``~`` and ``$VARS`` in PATH are expanded;
* blobs (``--plaintext``, ``--ciphertext-blob`` ...): ``fileb://`` gives raw
  bytes; any other value (including ``file://`` text) is base64, unless
  ``--cli-binary-format raw-in-base64-out`` makes it UTF-8 text;
* maps (``--encryption-context``): ``k1=v1,k2=v2`` shorthand or a JSON object;
* lists of structures (``--tags``): one ``TagKey=k,TagValue=v`` per argument,
  or a JSON list of objects; lists of strings: one string per argument, or a
  JSON list.

Also here: the CLI's errors and exit codes, the environment file, ``--endpoint-url``
forms, the AWS CLI's ``NextToken`` pagination tokens, and keeping passwords out of
error messages. What is printed lives in :mod:`.output`.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from plumbing.addresses import split_endpoint
from plumbing.envfile import EnvFileError, with_env_file

EXIT_OK, EXIT_USAGE, EXIT_CONFIG, EXIT_SERVICE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 252, 253, 254, 255, 130
BINARY_FORMATS = ("base64", "raw-in-base64-out")
SECRET_OPTIONS = ("--key-store-password",)


class KmsCliError(Exception):
    """Printed as is (after a blank line, as the AWS CLI does), then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def param_error(option: str, message: str) -> KmsCliError:
    return KmsCliError(f"Error parsing parameter '{option}': {message}", EXIT_USAGE)


# ---------------------------------------------------------------- environment file


def environment(environ: Mapping[str, str], cwd: Path | None = None) -> dict[str, str]:
    """The real environment over the env file (``KMS_ENV_FILE``, else ``./.kms-cluster/env`` if present)."""
    try:
        return with_env_file(environ, "KMS_ENV_FILE", (cwd or Path.cwd()) / ".kms-cluster" / "env")
    except EnvFileError as exc:
        raise KmsCliError(f"Unable to parse the environment file {exc.path}: line {exc.line}: expected KEY=VALUE",
                       EXIT_CONFIG) from None
    except OSError as exc:
        raise KmsCliError(f"Unable to read the environment file {exc.filename} (KMS_ENV_FILE): {exc.strerror}",
                       EXIT_CONFIG) from None


# ---------------------------------------------------------------- parameter files and values


def load_paramfile(option: str, value: str) -> str | bytes:
    """``file://PATH`` -> text, ``fileb://PATH`` -> bytes, anything else unchanged."""
    for prefix, mode in (("fileb://", "rb"), ("file://", "r")):
        if value.startswith(prefix):
            path = os.path.expandvars(os.path.expanduser(value[len(prefix):]))
            try:
                if mode == "rb":
                    return Path(path).read_bytes()
                return Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise param_error(option, f"Unable to load paramfile ({path}), text contents could not be decoded. "
                                          "If this is a binary file, please use the fileb:// prefix instead of the "
                                          "file:// prefix.") from None
            except OSError as exc:
                raise param_error(option, f"Unable to load paramfile {value}: {exc}") from None
    return value


def as_text(option: str, value: str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise param_error(option, "expected text, but the fileb:// file is not UTF-8") from None
    return value


def string_value(option: str, raw: str) -> str:
    return as_text(option, load_paramfile(option, raw))


def blob_value(option: str, raw: str, binary_format: str = "base64") -> bytes:
    """A blob parameter as the AWS CLI v2 reads it."""
    value = load_paramfile(option, raw)
    if isinstance(value, bytes):           # fileb:// : the bytes themselves
        return value
    if binary_format == "raw-in-base64-out":
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KmsCliError(f'Invalid base64: "{value}"', EXIT_USAGE) from None


def int_value(option: str, raw: str) -> int:
    text = string_value(option, raw).strip()
    try:
        return int(text)
    except ValueError:
        raise param_error(option, f"expected an integer, received: '{text}'") from None


def timestamp_ms(option: str, raw: str) -> int:
    """Epoch seconds (``1700000000``, ``1700000000.5``) or ISO 8601 -> ms since the epoch."""
    text = string_value(option, raw).strip()
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise param_error(option, f"Unable to parse timestamp '{text}': expected epoch seconds or ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def looks_like_json(value: str) -> bool:
    return value.lstrip().startswith(("{", "["))


def json_value(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise param_error(option, f"Invalid JSON: {exc}\nJSON received: {text}") from None


def split_shorthand(option: str, text: str) -> list[tuple[str, str]]:
    """``k1=v1,k2='v,2'`` -> ``[("k1", "v1"), ("k2", "v,2")]`` (AWS shorthand for one structure or map)."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        comma = text.find(",", i)
        if eq < 0 or (0 <= comma < eq):
            got = "EOF" if eq < 0 and comma < 0 else "','"
            raise param_error(option, f"Expected: '=', received: {got} for input:\n{text}\n{' ' * i}^")
        key = text[i:eq].strip()
        if not key:
            raise param_error(option, f"Expected a key before '=' for input:\n{text}\n{' ' * i}^")
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] in "'\"":
            quote, start = text[i], i + 1
            end = text.find(quote, start)
            if end < 0:
                raise param_error(option, f"Expected: {quote}, received: 'EOF' for input:\n{text}\n{' ' * i}^")
            value, i = text[start:end], end + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                raise param_error(option, f"Expected: ',', received: '{text[i]}' for input:\n{text}\n{' ' * i}^")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value, i = text[i:end].strip(), end
            nxt_comma, nxt_eq = text.find(",", end + 1), text.find("=", end + 1)
            if end < n and (nxt_eq < 0 or 0 <= nxt_comma < nxt_eq):
                # "k=a,b": a list value, which a string member cannot take
                raise param_error(option, f"Expected: '=', received: ',' for input:\n{text}\n{' ' * (end + 1)}^"
                                          f"\n(quote values that contain commas: {key}='a,b')")
        pairs.append((key, value))
        i += 1  # past the comma
    return pairs


def map_value(option: str, raw: str) -> dict[str, str]:
    """A string -> string map: ``k=v,k2=v2`` or a JSON object (also from ``file://``)."""
    text = string_value(option, raw)
    if looks_like_json(text):
        data = json_value(option, text)
        if not isinstance(data, dict):
            raise param_error(option, f"expected a JSON object, received: {text}")
        bad = [k for k, v in data.items() if not isinstance(v, str)]
        if bad:
            raise KmsCliError(f"Parameter validation failed:\nInvalid type for parameter {option_member(option)}.{bad[0]},"
                           f" value: {data[bad[0]]!r}, type: {type(data[bad[0]]).__name__}, valid types: str")
        return dict(data)
    if not text.strip():
        return {}
    result: dict[str, str] = {}
    for key, value in split_shorthand(option, text):
        result[key] = value
    return result


CONSTRAINT_MEMBERS = ("EncryptionContextSubset", "EncryptionContextEquals")


def constraints_value(option: str, raw: str) -> dict[str, dict[str, str]]:
    """Grant constraints, as the AWS CLI takes them: ``EncryptionContextSubset={k=v,k2=v2}`` or a
    JSON object ``{"EncryptionContextEquals": {"k": "v"}}``."""
    text = string_value(option, raw).strip()
    if looks_like_json(text):
        data = json_value(option, text)
    else:
        member, sep, rest = text.partition("=")
        if not sep or not (rest.startswith("{") and rest.endswith("}")):
            raise param_error(option, f"expected EncryptionContextSubset={{k=v,...}}, EncryptionContextEquals="
                                      f"{{k=v,...}} or a JSON object, received: {text}")
        data = {member.strip(): map_value(option, rest[1:-1])}
    if not isinstance(data, dict) or not data or any(k not in CONSTRAINT_MEMBERS or not isinstance(v, dict)
                                                   for k, v in data.items()):
        raise param_error(option, f"expected {' or '.join(CONSTRAINT_MEMBERS)} mapping to key=value pairs,"
                                  f" received: {text}")
    return {k: {str(a): str(b) for a, b in v.items()} for k, v in data.items()}


def option_member(option: str) -> str:
    """``--encryption-context`` -> ``EncryptionContext``."""
    return "".join(p.capitalize() for p in option.lstrip("-").split("-"))


TAG_MEMBERS = ("TagKey", "TagValue")


def tags_value(option: str, raws: Sequence[str]) -> list[tuple[str, str]]:
    """``TagKey=k,TagValue=v ...`` or a JSON list of ``{"TagKey": .., "TagValue": ..}``."""
    items: list[Any] = []
    for raw in raws:
        text = string_value(option, raw)
        if looks_like_json(text):
            data = json_value(option, text)
            items.extend(data if isinstance(data, list) else [data])
        else:
            items.append(dict(split_shorthand(option, text)))
    member = option_member(option)
    tags: list[tuple[str, str]] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        where = f"{member}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"Invalid type for parameter {where}, value: {item!r}, type: {type(item).__name__}, "
                            "valid types: dict")
            continue
        for name in item:
            if name not in TAG_MEMBERS:
                problems.append(f'Unknown parameter in {where}: "{name}", must be one of: {", ".join(TAG_MEMBERS)}')
        for name in TAG_MEMBERS:
            if name not in item:
                problems.append(f'Missing required parameter in {where}: "{name}"')
            elif not isinstance(item[name], str):
                problems.append(f"Invalid type for parameter {where}.{name}, value: {item[name]!r}, "
                                f"type: {type(item[name]).__name__}, valid types: str")
        if not problems:
            tags.append((item["TagKey"], item["TagValue"]))
    if problems:
        raise KmsCliError("Parameter validation failed:\n" + "\n".join(problems))
    return tags


def strings_value(option: str, raws: Sequence[str]) -> list[str]:
    """One string per argument, or one JSON list."""
    if len(raws) == 1:
        text = string_value(option, raws[0])
        if text.lstrip().startswith("["):
            data = json_value(option, text)
            if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
                raise param_error(option, f"expected a JSON list of strings, received: {text}")
            return data
        return [text]
    return [string_value(option, raw) for raw in raws]


# ---------------------------------------------------------------- request fields from the proto


@dataclass(frozen=True)
class Param:
    """One command option, derived from a request message field."""

    option: str        # --key-id
    field: str         # key_id
    kind: str          # string | int | bool | blob | map | tags | strings | timestamp | constraints
    required: bool = False

    @property
    def nargs(self) -> str | None:
        return "+" if self.kind in ("tags", "strings") else None

    @property
    def metavar(self) -> str:
        return {"string": "<value>", "int": "<integer>", "blob": "<blob>", "map": "k=v,...",
                "tags": "TagKey=k,TagValue=v", "strings": "<value>", "timestamp": "<timestamp>",
                "constraints": "EncryptionContextSubset={k=v,...}"}.get(self.kind, "")


TIMESTAMP_FIELDS = frozenset({"creation_date", "deletion_date", "valid_to", "last_updated_date", "timestamp",
                              "next_rotation_date", "on_demand_rotation_start_date", "parameters_valid_to"})
_INTS = frozenset({FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
                   FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64})


def field_kind(fd: FieldDescriptor) -> str:
    if fd.is_repeated:
        if fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
            return "map"
        if fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.name == "Tag":
            return "tags"
        if fd.type == FieldDescriptor.TYPE_STRING:
            return "strings"
    elif fd.type == FieldDescriptor.TYPE_STRING:
        return "string"
    elif fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.name == "GrantConstraints":
        return "constraints"
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        return "blob"
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        return "bool"
    elif fd.type in _INTS:
        return "timestamp" if fd.name in TIMESTAMP_FIELDS else "int"
    raise TypeError(f"no CLI form for field {fd.full_name}")


def params_of(request_type: type[Message], required: Sequence[str] = ()) -> list[Param]:
    """Every field of the request becomes ``--field-name`` (the AWS CLI option of that member)."""
    fields = request_type.DESCRIPTOR.fields
    names = {fd.name for fd in fields}
    unknown = [r for r in required if r not in names]
    if unknown:
        raise ValueError(f"{request_type.__name__} has no field(s) {unknown}")
    return [Param("--" + fd.name.replace("_", "-"), fd.name, field_kind(fd), fd.name in required) for fd in fields]


def convert(param: Param, raw: Any, binary_format: str) -> Any:
    """The value of an option as given on the command line -> the value for the request field."""
    o = param.option
    if param.kind == "bool":
        return bool(raw)
    if param.kind == "string":
        return string_value(o, raw)
    if param.kind == "int":
        return int_value(o, raw)
    if param.kind == "timestamp":
        return timestamp_ms(o, raw)
    if param.kind == "blob":
        return blob_value(o, raw, binary_format)
    if param.kind == "map":
        return map_value(o, raw)
    if param.kind == "tags":
        return tags_value(o, raw)
    if param.kind == "strings":
        return strings_value(o, raw)
    if param.kind == "constraints":
        return constraints_value(o, raw)
    raise TypeError(param.kind)


def set_field(request: Message, param: Param, value: Any) -> None:
    if param.kind == "map":
        getattr(request, param.field).update(value)
    elif param.kind == "tags":
        for k, v in value:
            getattr(request, param.field).add(tag_key=k, tag_value=v)
    elif param.kind == "strings":
        getattr(request, param.field).extend(value)
    elif param.kind == "constraints":
        target = getattr(request, param.field)
        target.SetInParent()
        for member, pairs in value.items():
            getattr(target, "encryption_context_" + member.removeprefix("EncryptionContext").lower()).update(pairs)
    else:
        setattr(request, param.field, value)


# ---------------------------------------------------------------- endpoint, pagination tokens, secrets in argv


def parse_endpoint(value: str) -> tuple[str, bool | None]:
    """``host:port`` / ``grpc://host:port`` / ``grpcs://host:port`` -> (host:port, TLS or None if unsaid)."""
    text, tls = value.strip(), None
    for scheme, is_tls in (("grpc://", False), ("grpcs://", True)):
        if text.startswith(scheme):
            text, tls = text[len(scheme):], is_tls
    text = text.rstrip("/")
    try:
        if "://" in text or "/" in text:
            raise ValueError(text)
        split_endpoint(text)
    except ValueError:
        raise KmsCliError(f"Bad value for --endpoint-url: '{value}': expected host:port, grpc://host:port or "
                       "grpcs://host:port") from None
    return text, tls


def encode_token(token: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(token).encode()).decode()


def decode_token(value: str) -> tuple[str | None, int]:
    try:
        token = json.loads(base64.b64decode(value, validate=True))
        marker, skip = token.get("Marker"), int(token.get("boto_truncate_amount", 0))
        if marker is not None and not isinstance(marker, str):
            raise ValueError(marker)
    except (binascii.Error, ValueError, AttributeError, TypeError):
        raise param_error("--starting-token", f"Invalid token: {value}") from None
    return marker, skip


def secret_values(argv: Sequence[str]) -> list[str]:
    found = []
    for i, arg in enumerate(argv):
        for option in SECRET_OPTIONS:
            if arg == option and i + 1 < len(argv):
                found.append(argv[i + 1])
            elif arg.startswith(option + "="):
                found.append(arg[len(option) + 1:])
    return [v for v in found if len(v) >= 3]


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
