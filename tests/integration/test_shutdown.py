"""SIGTERM drains: a process that is told to stop finishes what it accepted, then exits 0.

* kms-frontend under concurrent Encrypt (and CreateKey) load: every call ends OK, or
  UNAVAILABLE once the server no longer takes new calls; never CANCELLED or anything else;
  calls in flight at the signal complete; exit code 0 within the grace period.
* hsm-node under a stream of GenerateKey calls: same outcomes, and every acknowledged key is
  there after a restart (durable), exit 0 within the grace period.
* hsm-node serving a frontend's crypto streams: it ends them at once (no wait for the grace
  period) and the frontend's callers see no error (their operations move to the other node).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as h
from protos.kms.v1 import kms_pb2 as k
from tests.harness import CU_PASSWORD, login, three_node_cluster, wait_until
from tests.integration.test_keys_common import start_env

FRONTEND_GRACE_S = 10.0
NODE_GRACE_S = 5.0


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    code: str  # "OK" or a gRPC status name
    detail: str = ""


@dataclass
class Recorder:
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def loop(self, kind: str, call) -> None:  # noqa: ANN001
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await call()
                code, detail = "OK", ""
            except grpc.aio.AioRpcError as exc:
                code, detail = exc.code().name, exc.details() or ""
            self.outcomes.append(Outcome(kind, started, time.monotonic(), code, detail))
            if code == "UNAVAILABLE":
                return  # refused: this server is going away; a real caller moves to another one

    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.code == "OK")

    def unexpected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.code not in ("OK", "UNAVAILABLE")]


async def wait_exit(proc, timeout: float) -> float:
    started = time.monotonic()
    await wait_until(lambda: proc.poll() is not None, timeout=timeout, interval=0.02, what="the process to exit")
    return time.monotonic() - started


def log_events(path, **match) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if all(e.get(key) == value for key, value in match.items()):
            out.append(e)
    return out


async def test_frontend_sigterm_drains_in_flight_requests(tmp_path):
    env = await start_env(tmp_path, nodes=2)
    try:
        key = await env.create_key()
        rec = Recorder()
        stub = env.kms

        def encrypt():
            return stub.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=os.urandom(32)), timeout=30)

        def create_key():
            return stub.CreateKey(k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=env.store_id),
                                  timeout=30)

        tasks = [asyncio.create_task(rec.loop("Encrypt", encrypt)) for _ in range(24)]
        tasks += [asyncio.create_task(rec.loop("CreateKey", create_key)) for _ in range(2)]
        try:
            await wait_until(lambda: rec.ok() >= 300, timeout=60, interval=0.01, what="load to get going")
            signalled = time.monotonic()
            env.fe.proc.send_signal(signal.SIGTERM)
            took = await wait_exit(env.fe.proc, FRONTEND_GRACE_S + 10)
        finally:
            rec.stop.set()
            await asyncio.gather(*tasks)
        assert env.fe.proc.returncode == 0, env.frontend_log()
        assert took < FRONTEND_GRACE_S + 5, took
        bad = rec.unexpected()
        assert not bad, [(o.kind, o.code, o.detail) for o in bad[:10]]
        # the drain was real: calls in flight when the signal came completed afterwards
        straddling = [o for o in rec.outcomes if o.started < signalled < o.ended and o.code == "OK"]
        assert straddling, "no call was in flight at SIGTERM"
        # new calls after the shutdown are refused as UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await encrypt()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert log_events(env.fe.log_path, event="shutdown") and log_events(env.fe.log_path, event="stopped")
    finally:
        await env.close()


async def test_node_sigterm_keeps_every_acknowledged_key(lab):
    nodes = await three_node_cluster(lab, n=2)
    target = nodes[0]
    token = await login(target.stub(), h.CU, "kmsuser", CU_PASSWORD)
    rec = Recorder()
    acked: list[int] = []
    stub = target.stub()

    async def generate():
        r = await stub.GenerateKey(h.GenerateKeyRequest(session_token=token, key_size_bytes=32, label="drain"),
                                   timeout=30)
        acked.append(r.key_handle)

    tasks = [asyncio.create_task(rec.loop("GenerateKey", generate)) for _ in range(8)]
    try:
        await wait_until(lambda: rec.ok() >= 30, timeout=60, interval=0.01, what="key generations to get going")
        signalled = time.monotonic()
        target.proc.send_signal(signal.SIGTERM)
        took = await wait_exit(target.proc, NODE_GRACE_S + 10)
    finally:
        rec.stop.set()
        await asyncio.gather(*tasks)
    assert target.proc.returncode == 0, target.log_path.read_text()[-3000:]
    assert took < NODE_GRACE_S + 3, took
    bad = rec.unexpected()
    assert not bad, [(o.kind, o.code, o.detail) for o in bad[:10]]
    assert [o for o in rec.outcomes if o.started < signalled < o.ended and o.code == "OK"], \
        "no key generation was in flight at SIGTERM"
    assert len(acked) == rec.ok()

    # every acknowledged key survived, on the node that acknowledged it
    await target.restart()
    token = await login(target.stub(), h.CU, "kmsuser", CU_PASSWORD)
    found = await target.stub().FindKeys(h.FindKeysRequest(session_token=token, label="drain"), timeout=30)
    missing = set(acked) - set(found.key_handles)
    assert not missing, sorted(missing)[:10]


async def test_node_sigterm_ends_crypto_streams_without_errors(tmp_path):
    env = await start_env(tmp_path, nodes=2)
    try:
        key = await env.create_key()
        rec = Recorder()
        stub = env.kms

        async def round_trip():
            data = os.urandom(32)
            blob = (await stub.Encrypt(k.EncryptRequest(key_id=key.key_id, plaintext=data), timeout=30)).ciphertext_blob
            assert (await stub.Decrypt(k.DecryptRequest(ciphertext_blob=blob), timeout=30)).plaintext == data

        tasks = [asyncio.create_task(rec.loop("RoundTrip", round_trip)) for _ in range(16)]
        victim = env.nodes[1]
        try:
            await wait_until(lambda: rec.ok() >= 200, timeout=60, interval=0.01, what="load to get going")
            victim.proc.send_signal(signal.SIGTERM)
            took = await wait_exit(victim.proc, NODE_GRACE_S + 10)
            after = rec.ok()
            await wait_until(lambda: rec.ok() >= after + 200, timeout=30, interval=0.01,
                             what="load to go on with one node")
        finally:
            rec.stop.set()
            await asyncio.gather(*tasks)
        assert victim.proc.returncode == 0
        # the node did not sit out its grace period waiting for the frontend to close the streams
        assert took < NODE_GRACE_S - 1, took
        assert rec.outcomes and all(o.code == "OK" for o in rec.outcomes), \
            [(o.code, o.detail) for o in rec.outcomes if o.code != "OK"][:10]
    finally:
        await env.close()
