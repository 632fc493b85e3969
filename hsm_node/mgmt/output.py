"""Output of ``hsm-mgmt``: CMU/KMU-style text and ``--json`` documents.

Pure functions from API messages to lines or JSON-ready dicts, so the command
functions (``*_commands``) only decide what to show. Nothing here ever receives a
password; session tokens appear only where ``loginHSM`` prints them on purpose.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.hsm.v1 import hsm_pb2 as pb

USER_TYPE_NAMES = {pb.PRECO: "PRECO", pb.CO: "CO", pb.CU: "CU", pb.AU: "AU"}
USER_TYPES = {name: value for value, name in USER_TYPE_NAMES.items()}
STATE_NAMES = {pb.UNINITIALIZED: "UNINITIALIZED", pb.INITIALIZED: "INITIALIZED", pb.ACTIVE: "ACTIVE",
               pb.DELETED: "DELETED"}
SUCCESS = "0x00 : HSM Return: SUCCESS"


@dataclass(frozen=True)
class Server:
    """One endpoint as CMU names it: ``server 0(127.0.0.1:2225)``."""
    index: int
    endpoint: str

    def __str__(self) -> str:
        return f"server {self.index}({self.endpoint})"

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.index, "endpoint": self.endpoint}


# ---------------------------------------------------------------- generic helpers

def message_dict(msg: Message) -> dict[str, Any]:
    """A protobuf message as plain JSON types: enum names, native ints (uint64
    too, unlike MessageToDict), base64 for bytes, every field present."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        value = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            out[f.name] = {k: _plain(f.message_type.fields_by_name["value"], v) for k, v in value.items()}
        elif f.is_repeated:
            out[f.name] = [_plain(f, v) for v in value]
        else:
            out[f.name] = _plain(f, value)
    return out


def _plain(f: Any, value: Any) -> Any:
    if isinstance(value, Message):
        return message_dict(value)
    if f.enum_type is not None:
        return f.enum_type.values_by_number[value].name if value in f.enum_type.values_by_number else value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "    ") -> list[str]:
    """Columns padded to their widest cell, numbers right-aligned (CMU's look)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int) and not isinstance(r[i], bool) for r in rows)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "    ".join(parts)).rstrip()

    return [line(list(headers)), *(line(r) for r in cells)]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def yes_no(flag: bool) -> str:
    return "YES" if flag else "NO"


def user_type_name(value: int) -> str:
    return USER_TYPE_NAMES.get(value, str(value))


def state_name(value: int) -> str:
    return STATE_NAMES.get(value, str(value))


def error_dict(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


# ---------------------------------------------------------------- users

def user_dict(u: pb.User) -> dict[str, Any]:
    return {"user_id": u.user_id, "user_type": user_type_name(u.user_type), "username": u.username,
            "login_failure_count": u.login_failure_count, "locked": u.locked, "two_factor": u.two_factor}


def users_text(server: Server, users: Sequence[pb.User]) -> list[str]:
    rows = [[u.user_id, user_type_name(u.user_type), u.username, "NO", u.login_failure_count,
             yes_no(u.two_factor), "YES" if u.locked else ""] for u in users]
    return [f"Users on {server}:", f"Number of users found:{len(users)}", "",
            *table(["User Id", "User Type", "User Name", "MofnPubKey", "LoginFailureCnt", "2FA", "Locked"], rows),
            ""]


# ---------------------------------------------------------------- writes

def write_dict(w: pb.WriteResult) -> dict[str, Any]:
    return {"replicas": w.replicas, "members": w.members, "node_ids": list(w.node_ids)}


def write_headline(action: str, w: pb.WriteResult) -> str:
    """``Creating User kmsuser(CU) on 3 nodes`` (+ how many members still miss it)."""
    line = f"{action} on {plural(w.replicas, 'node')}"
    if w.members > w.replicas:
        line += f" ({w.members - w.replicas} of {w.members} cluster members not confirmed yet;" \
                " they catch up when reachable)"
    return line


@dataclass
class Holder:
    """Whether the node behind one endpoint holds a replicated write."""
    server: Server
    node_id: str = ""
    cluster_id: str = ""
    error: str = ""       # why we could not tell (unreachable ...)

    def holds(self, w: pb.WriteResult) -> bool:
        return bool(self.node_id) and self.node_id in w.node_ids

    def as_dict(self, w: pb.WriteResult) -> dict[str, Any]:
        d: dict[str, Any] = {**self.server.as_dict(), "node_id": self.node_id, "cluster_id": self.cluster_id,
                             "holds_write": self.holds(w)}
        if self.error:
            d["error"] = self.error
        return d


def holder_lines(op: str, holders: Sequence[Holder], w: pb.WriteResult) -> list[str]:
    cluster = next((h.cluster_id for h in holders if h.holds(w)), "")
    lines = []
    for h in holders:
        if h.holds(w):
            lines.append(f"{op} success on {h.server}")
        elif h.error:
            lines.append(f"{op} status unknown on {h.server}: {h.error}")
        elif cluster and h.cluster_id != cluster:
            lines.append(f"{op} not applied on {h.server}: it belongs to {h.cluster_id or 'no cluster'},"
                         f" not {cluster}")
        else:
            lines.append(f"{op} not confirmed yet on {h.server} (replication pending; it catches up from its peers)")
    return lines


# ---------------------------------------------------------------- keys

def key_info_dict(k: pb.KeyInfo) -> dict[str, Any]:
    return message_dict(k)


def key_info_text(server: Server, k: pb.KeyInfo) -> list[str]:
    owner = f"{k.owner_user_id} ({k.owner_username})" if k.owner_username else str(k.owner_user_id)
    lines = [f"Key Info on {server}:", "",
             "\tToken/Flash Key," if k.token else "\tSession Key (this HSM only, gone on restart),", "",
             f"\tOwned by user {owner}", ""]
    if k.shared_user_ids:
        lines += [f"\talso, shared to following {len(k.shared_user_ids)} user(s):", "",
                  *(f"\t\t {uid}" for uid in k.shared_user_ids), ""]
    lines += [f"\tKey Handle: {k.key_handle}",
              f"\tLabel: {k.label}",
              f"\tKey Type: {k.key_type}-{k.key_size_bytes * 8} ({k.key_size_bytes} bytes),"
              f" {'extractable' if k.extractable else 'non-extractable'}",
              f"\tKCV: {k.kcv}", ""]
    return lines


def handles_text(handles: Sequence[int]) -> str:
    return ", ".join(str(h) for h in handles)


def find_key_text(server: Server, handles: Sequence[int]) -> list[str]:
    return [f"Keys on {server}:", f"Total number of keys present: {len(handles)}", "",
            f" number of keys matched from start index 0::{len(handles)}", handles_text(handles), ""]


def find_all_keys_text(server: Server, r: pb.FindAllKeysResponse, with_hash: bool) -> list[str]:
    marks = ",".join(f"{k.key_handle}({'o' if k.owned else 's'})" for k in r.keys)
    lines = [f"Keys on {server}:", f"Number of keys found {len(r.keys)}",
             f"number of keys matched from start index 0::{len(r.keys)}", marks]
    if with_hash:
        lines.append(f"Key Hash:{r.key_hash}")
    return [*lines, f"findAllKeys success on {server}", ""]


def find_all_keys_dict(r: pb.FindAllKeysResponse, with_hash: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"node_id": r.node_id,
                         "keys": [{"key_handle": k.key_handle, "owned": k.owned} for k in r.keys]}
    if with_hash:
        d["key_hash"] = r.key_hash
    return d


# ---------------------------------------------------------------- status

def status_dict(s: pb.NodeStatus, verified: bool) -> dict[str, Any]:
    d = message_dict(s)
    d["tls_verified"] = verified
    return d


def status_text(server: Server, s: pb.NodeStatus, verified: bool) -> list[str]:
    rows: list[tuple[str, Any]] = [("State", state_name(s.state)), ("Node Id", s.node_id), ("HSM Id", s.hsm_id)]
    if s.state == pb.UNINITIALIZED:
        rows.append(("Cluster CSR", "available: sign it and initialise with `hsm-mgmt initialize`"))
    else:
        rows += [("Cluster Id", s.cluster_id), ("Ordinal", s.ordinal), ("Users", s.user_count),
                 ("Keys", s.key_count), ("Cluster Cert SHA256", s.cluster_certificate_sha256),
                 ("Consistency Hash", s.consistency_hash),
                 ("Positions", ", ".join(f"{k}:{v}" for k, v in sorted(s.positions.items())) or "-")]
    rows += [("Endpoint", s.endpoint), ("Peer Endpoint", s.peer_endpoint), ("Version", s.version),
             ("TLS", "verified with the trust anchor" if verified else "trust on first use (unverified)")]
    width = max(len(k) for k, _ in rows)
    return [f"Status of {server}:", *(f"\t{k.ljust(width)}  {v}" for k, v in rows), ""]
