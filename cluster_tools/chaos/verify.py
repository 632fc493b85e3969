"""The reads after the run, once faults have stopped and every node is back: each is
recorded in the history (phase ``verify``) for the checker to judge.

* decrypt every acknowledged ciphertext again (a few attempts each, so that a
  transient error is not mistaken for a lost ciphertext: every attempt is kept);
* use every key whose CreateKey was acknowledged (Encrypt, then Decrypt);
* poll the nodes' consistency hashes (hsm-mgmt checkConsistency) until they agree
  or the deadline passes.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

from .. import history as hist
from ..traffic.clients import CallError, KmsClient
from .injectors import Injector

ATTEMPTS = 5


def acknowledged_ciphertexts(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") == "op" and r.get("ok") and r.get("phase") != "verify"
            and "ciphertext" in r.get("result", {})]


def acknowledged_keys(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") == "op" and r.get("ok") and r.get("op") == "create-key"]


async def wait_ready(client: KmsClient, store_id: str, timeout: float) -> str:
    """The frontend answers crypto calls for the store again (or why not, at the deadline)."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            await client.generate_random(8, store_id)
            return ""
        except CallError as exc:
            last = f"{exc.name}: {exc.message}"
        await asyncio.sleep(0.5)
    return last or "not ready"


class Rechecker:
    def __init__(self, client: KmsClient, history: hist.History, concurrency: int = 16) -> None:
        self.client, self.history = client, history
        self.sem = asyncio.Semaphore(concurrency)
        self._n = 0

    def _record(self, op: str, source: str, start: float, **fields: Any) -> None:
        self._n += 1
        self.history.write({"type": "op", "id": f"v-{self._n}", "worker": "verify", "op": op, "phase": "verify",
                            "source": source, "start": start, "end": time.time(), **fields})

    async def _attempts(self, op: str, source: str, call: Callable[[], Any]) -> bool:
        for attempt in range(ATTEMPTS):
            start = time.time()
            try:
                result = await call()
                self._record(op, source, start, ok=True, attempt=attempt + 1, result=result)
                return True
            except CallError as exc:
                self._record(op, source, start, ok=False, attempt=attempt + 1,
                             error={"name": exc.name, "message": exc.message[:500]})
                if exc.name in ("InvalidCiphertextException", "IncorrectKeyException", "NotFoundException"):
                    return False   # a definite answer, not a transient one
                await asyncio.sleep(0.5 * (attempt + 1))
        return False

    async def ciphertext(self, rec: dict) -> bool:
        blob, ctx = base64.b64decode(rec["result"]["ciphertext"]), rec.get("ctx") or {}

        async def call() -> dict:
            return {"plaintext_sha256": hist.sha256(await self.client.decrypt(blob, ctx))}
        async with self.sem:
            return await self._attempts("decrypt", rec["id"], call)

    async def key(self, rec: dict) -> bool:
        key_id = rec["result"]["key_id"]
        probe = f"key-check {key_id}".encode()

        async def call() -> dict:
            blob = await self.client.encrypt(key_id, probe, {"check": "key"})
            back = await self.client.decrypt(blob, {"check": "key"})
            return {"key_id": key_id, "input_sha256": hist.sha256(probe), "plaintext_sha256": hist.sha256(back)}
        async with self.sem:
            return await self._attempts("key-check", rec["id"], call)

    async def all(self, records: list[dict], progress: Callable[[], None] = lambda: None) -> tuple[int, int]:
        """Re-read every acknowledged ciphertext and use every created key; ``progress`` after each."""
        cts, keys = acknowledged_ciphertexts(records), acknowledged_keys(records)

        async def counted(check: Any) -> bool:
            try:
                return await check
            finally:
                progress()
        await asyncio.gather(*(counted(self.ciphertext(r)) for r in cts), *(counted(self.key(r)) for r in keys))
        return len(cts), len(keys)


async def poll_consistency(injector: Injector, history: hist.History, via: list[str], timeout: float,
                           interval: float = 1.0) -> dict:
    """Poll until every member reports the same consistency hash (users and keys) and the same
    replication positions (it holds every origin's writes: a node that is cut off from
    replication can still match the hash while it lacks membership changes); each poll is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        at = time.time()
        doc = await asyncio.to_thread(injector.consistency, via)
        servers = [{k: s.get(k) for k in ("endpoint", "node_id", "consistency_hash", "users", "keys", "positions",
                                          "error") if s.get(k) is not None} for s in doc.get("servers", [])]
        same_positions = len({json.dumps(s.get("positions"), sort_keys=True) for s in servers}) == 1
        rec = {"type": "consistency", "at": at, "consistent": bool(doc.get("consistent")) and same_positions,
               "hashes_agree": bool(doc.get("consistent")), "positions_agree": same_positions, "servers": servers}
        if doc.get("error"):
            rec["error"] = doc["error"]
        history.write(rec)
        if rec["consistent"] or time.monotonic() + interval > deadline:
            return rec
        await asyncio.sleep(interval)
