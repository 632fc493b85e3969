"""The replicated records of a node: users, keys, members, cluster config, and
the failed-login counts of users.

Every record is a whole-state value with a version ``(hlc, origin)``; a write
replaces the record only if its version is newer (last writer wins), and a
deletion is a tombstone with a version. The state of a node is therefore a
pure function of the set of writes it has seen, whatever their order or how
often they were delivered, which is what makes replication idempotent and
concurrent conflicting writes resolve the same way everywhere.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

Version = tuple[int, str]  # (hybrid logical clock, origin node id)
ZERO_VERSION: Version = (0, "")


@dataclass
class UserRecord:
    KIND: ClassVar[str] = "user"
    name: str
    user_id: int
    user_type: str  # "PRECO" | "CO" | "CU"
    password_hash: str
    locked: bool = False

    @property
    def entity(self) -> str:
        return self.name


@dataclass
class LoginFailuresRecord:
    """The failed logins one node counted for a user since the user's last reset.

    Only the node named here writes this record, so last-writer-wins never loses a
    count: concurrent failures on two nodes land in two records, and a user's count
    is the sum over nodes of the records that count from the current reset (see
    :class:`LoginResetRecord`), in effect a grow-only counter per node.
    """
    KIND: ClassVar[str] = "login_failures"
    name: str
    node_id: str
    count: int
    since_hlc: int = 0      # version of the LoginResetRecord these failures follow (0, "" = none)
    since_origin: str = ""

    @property
    def entity(self) -> str:
        return failures_entity(self.name, self.node_id)

    @property
    def since(self) -> Version:
        return (self.since_hlc, self.since_origin)


@dataclass
class LoginResetRecord:
    """Sets a user's failed-login count back to zero everywhere: written by a successful
    login after failures, a password change (a CO reset unlocks) and the user's creation.
    Its version is the epoch that :class:`LoginFailuresRecord` counts from."""
    KIND: ClassVar[str] = "login_reset"
    name: str

    @property
    def entity(self) -> str:
        return self.name


def failures_entity(name: str, node_id: str) -> str:
    return f"{name}@{node_id}"  # user names are [a-z0-9_]: the '@' cannot be part of one


@dataclass
class KeyRecord:
    KIND: ClassVar[str] = "key"
    handle: int
    label: str
    owner_id: int
    size: int
    material: bytes
    created_ms: int
    shared: list[int] = field(default_factory=list)
    kcv: str = ""

    @property
    def entity(self) -> str:
        return str(self.handle)


@dataclass
class MemberRecord:
    KIND: ClassVar[str] = "member"
    node_id: str
    hsm_id: str
    ordinal: int
    endpoint: str
    peer_endpoint: str

    @property
    def entity(self) -> str:
        return self.node_id


@dataclass
class ConfigRecord:
    KIND: ClassVar[str] = "config"
    backup_retention_days: int = 90

    @property
    def entity(self) -> str:
        return "cluster"


RECORD_TYPES: dict[str, type] = {cls.KIND: cls for cls in (UserRecord, KeyRecord, MemberRecord, ConfigRecord,
                                                             LoginFailuresRecord, LoginResetRecord)}
Record = UserRecord | KeyRecord | MemberRecord | ConfigRecord | LoginFailuresRecord | LoginResetRecord


_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in RECORD_TYPES.values()}
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def encode(record: Record) -> bytes:
    # The fields read directly rather than through dataclasses.asdict, which deep-copies every
    # value: a backup or a restore encodes every record, and asdict was 2/3 of that at 100k keys.
    data: dict[str, Any] = {}
    for name in _FIELDS[type(record)]:
        v = getattr(record, name)
        data[name] = {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
    return _ENCODER.encode(data).encode()


_DECODER = json.JSONDecoder()


def decode(kind: str, raw: bytes) -> Record:
    # raw_decode of a str: what json.loads(bytes) does minus guessing the encoding and the
    # trailing-whitespace check (our own output, authenticated before it gets here); a node's
    # start and a restore decode every record.
    data = _DECODER.raw_decode(raw.decode())[0]
    for k, v in data.items():
        if isinstance(v, dict) and set(v) == {"b64"}:
            data[k] = base64.b64decode(v["b64"])
    return RECORD_TYPES[kind](**data)


def record_aad(kind: str, entity: str, version: Version) -> bytes:
    return f"{kind}\x00{entity}\x00{version[0]}\x00{version[1]}".encode()
