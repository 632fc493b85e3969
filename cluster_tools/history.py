"""The history of a run, one JSON object per line (like etcd's robustness histories).

Record types (``type``):

* ``run``          header: start time ``t0`` (epoch seconds), nodes, target (no secrets), configuration
* ``op``           one KMS call: ``id``, ``worker``, ``op``, ``phase`` (setup | run | verify), ``start`` and
                   ``end`` (epoch seconds), ``ok``; its input (``key_id``, ``ctx``, ``input``: length, SHA-256
                   and, for small payloads, the plaintext itself), ``source`` (the op whose ciphertext it
                   used), ``result`` (ciphertext, plaintext hash, key id) or ``error`` (AWS exception
                   name and message)
* ``fault``        one injected fault: ``kind``, ``node``, ``start``, ``end``, ``ok``, the node's state
                   ``after`` it (up | down | paused | removed), ``detail`` or ``error``; ``skipped`` when
                   the safety rule refused it
* ``consistency``  one poll of the nodes' consistency hashes
* ``node``         one sample of a node during the run: ``at``, ``node``, ``state`` (or ``unreachable``)
                   and ``lag`` (writes it misses compared with the most advanced node)
* ``phase``        markers (``traffic_end``, ``healed``, ``verify_start`` ...)

Plaintext data keys (GenerateDataKey) are never written, only their SHA-256.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INLINE_PLAINTEXT_MAX = 64   # payloads up to this size are kept in the history as they are


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(data: bytes, inline: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {"len": len(data), "sha256": sha256(data)}
    if inline and len(data) <= INLINE_PLAINTEXT_MAX:
        d["b64"] = b64(data)
    return d


class History:
    """Append-only JSON lines; flushed at least once a second and on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", buffering=1 << 16)  # noqa: SIM115 - closed by close()
        self._flushed = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        now = time.monotonic()
        if now - self._flushed > 1.0:
            self._f.flush()
            self._flushed = now

    def flush(self) -> None:
        self._f.flush()
        self._flushed = time.monotonic()

    def phase(self, name: str, **extra: Any) -> None:
        self.write({"type": "phase", "name": name, "at": time.time(), **extra})

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for p in paths:
        if p.exists():
            with open(p) as f:
                records += [json.loads(line) for line in f if line.strip()]
    return records


def when(record: dict[str, Any]) -> float:
    return float(record.get("start", record.get("at", record.get("t0", 0.0))))


def merge(parts: list[Path], dest: Path) -> list[dict[str, Any]]:
    """One history, ordered by time (header first), from the per-process files; the parts go."""
    records = read(parts)
    records.sort(key=lambda r: (r.get("type") != "run", when(r)))
    tmp = dest.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, dest)
    for p in parts:
        if p != dest and p.exists():
            p.unlink()
    return records
