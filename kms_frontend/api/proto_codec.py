"""``kms.v1`` messages to the service's parameters and its results back, by name.

A proto field is the model member of the same name without underscores and case
(``custom_key_store_id`` is ``CustomKeyStoreId``, ``aws_account_id`` is ``AWSAccountId``), so no
operation needs code of its own. Requests: a field is passed when it is set (``optional`` fields,
messages), non-empty (repeated fields, maps), always for plain strings and bytes (kms.proto marks
every member a caller may leave out ``optional``, so a plain one is always given: an empty
ciphertext blob is an empty blob, not a missing one), and for plain booleans and numbers when the
model requires the member or the value is not the default (``dry_run: false`` is "not given").
Results: every member is copied into the response message; timestamps are milliseconds on both
sides.

Converters are compiled once per (message type, model shape) on first use.
"""
from __future__ import annotations

from collections.abc import Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ..service.model import Params, ServiceModel

_Reader = Callable[[Message, Params], None]


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _repeated(field: FieldDescriptor) -> bool:
    # ``is_repeated`` in newer protobuf; ``label`` in older ones
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


class ProtoCodec:
    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self._readers: dict[tuple[str, str], list[_Reader]] = {}

    # ------------------------------------------------------------ requests

    def params(self, message: Message, shape_name: str) -> Params:
        readers = self._readers.get((message.DESCRIPTOR.full_name, shape_name))
        if readers is None:
            readers = self._readers[(message.DESCRIPTOR.full_name, shape_name)] = self._compile(
                message.DESCRIPTOR, shape_name)
        out: Params = {}
        for read in readers:
            read(message, out)
        return out

    def _compile(self, descriptor: Descriptor, shape_name: str) -> list[_Reader]:
        shape = self.model.shapes[shape_name]
        members = {_key(m): m for m in shape.get("members", {})}
        required = set(shape.get("required", ()))
        readers = []
        for field in descriptor.fields:
            member = members.get(_key(field.name))
            if member is None:
                raise ValueError(f"{descriptor.full_name}.{field.name} has no member in the model's {shape_name}")
            readers.append(self._reader(field, member, shape["members"][member]["shape"], member in required))
        return readers

    def _reader(self, field: FieldDescriptor, member: str, member_shape: str, required: bool) -> _Reader:
        name = field.name
        if _is_map(field):
            def read_map(m: Message, out: Params) -> None:
                value = getattr(m, name)
                if value:
                    out[member] = dict(value)
            return read_map
        if _repeated(field) and field.message_type is not None:
            item_shape = self.model.shapes[member_shape]["member"]["shape"]

            def read_messages(m: Message, out: Params) -> None:
                items = getattr(m, name)
                if items:
                    out[member] = [self.params(item, item_shape) for item in items]
            return read_messages
        if _repeated(field):
            def read_list(m: Message, out: Params) -> None:
                items = getattr(m, name)
                if items:
                    out[member] = list(items)
            return read_list
        if field.message_type is not None:
            def read_message(m: Message, out: Params) -> None:
                if m.HasField(name):
                    out[member] = self.params(getattr(m, name), member_shape)
            return read_message
        if field.has_presence:
            def read_optional(m: Message, out: Params) -> None:
                if m.HasField(name):
                    out[member] = getattr(m, name)
            return read_optional

        if required or field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            def read_given(m: Message, out: Params) -> None:
                out[member] = getattr(m, name)
            return read_given

        def read_unless_default(m: Message, out: Params) -> None:
            value = getattr(m, name)
            if value:
                out[member] = value
        return read_unless_default

    # ------------------------------------------------------------ results

    def fill(self, message: Message, result: Params | None) -> Message:
        """Copy a result into ``message`` (a fresh response message), member by member."""
        if result:
            fields = _fields(message.DESCRIPTOR)
            for member, value in result.items():
                field = fields.get(_key(member))
                if field is None or value is None:
                    continue
                target = getattr(message, field.name)
                if _is_map(field):
                    target.update(value)
                elif _repeated(field) and field.message_type is not None:
                    for item in value:
                        self.fill(target.add(), item)
                elif _repeated(field):
                    target.extend(value)
                elif field.message_type is not None:
                    target.SetInParent()
                    self.fill(target, value)
                else:
                    setattr(message, field.name, value)
        return message


_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}


def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    fields = _FIELDS.get(descriptor.full_name)
    if fields is None:
        fields = _FIELDS[descriptor.full_name] = {_key(f.name): f for f in descriptor.fields}
    return fields
