"""Authentication of every row a node keeps, and of the set of rows as a whole.

Each row carries an HMAC-SHA256 (under a key derived from the node storage key) of its
table and all its columns, so no column of any row (the oplog, meta, positions, records,
tombstones included) can be changed without the node noticing. The sum of all row MACs
(modulo 2**256) is kept in one more row and updated with every change: a row removed,
duplicated or brought back from an earlier state changes the sum, which nobody without
the key can recompute. At start the node checks every row and the sum; reads check the
rows they return.
"""
from __future__ import annotations

import hashlib
import hmac
import struct

from .storage_sealing import derive

MODULUS = 1 << 256
Value = int | str | bytes | None

# table -> (key columns, other columns), in the order the MAC covers them
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "meta": (("name",), ("value",)),
    "records": (("kind", "entity"), ("hlc", "origin", "sealed")),
    "oplog": (("origin", "seq"), ("hlc", "kind", "entity", "sealed")),
    "positions": (("origin",), ("seq",)),
}


def columns(table: str) -> tuple[str, ...]:
    keys, rest = TABLES[table]
    return keys + rest


class RowAuthenticator:
    def __init__(self, storage_key: bytes) -> None:
        self._key = derive(storage_key, info=b"hsm-node row mac v1")

    def mac(self, table: str, row: tuple[Value, ...]) -> bytes:
        h = hmac.new(self._key, table.encode() + b"\x00", hashlib.sha256)
        for value in row:
            h.update(_encode(value))
        return h.digest()

    def check(self, table: str, row: tuple[Value, ...], mac: object) -> bool:
        return isinstance(mac, bytes) and hmac.compare_digest(self.mac(table, row), mac)


def _encode(value: Value) -> bytes:
    """Type-tagged and length-prefixed, so no two different rows encode alike."""
    if value is None:
        return b"n"
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        raise TypeError(f"cannot authenticate a {type(value).__name__}")
    if isinstance(value, int):
        data, tag = str(value).encode(), b"i"
    elif isinstance(value, str):
        data, tag = value.encode(), b"s"
    else:
        data, tag = value, b"b"
    return tag + struct.pack(">Q", len(data)) + data


def add(digest: int, mac: bytes) -> int:
    return (digest + int.from_bytes(mac, "big")) % MODULUS


def remove(digest: int, mac: bytes) -> int:
    return (digest - int.from_bytes(mac, "big")) % MODULUS


def to_bytes(digest: int) -> bytes:
    return digest.to_bytes(32, "big")
