"""The load driver shared by ``kms-load`` and ``kms-chaos``.

A :class:`Driver` issues a mix of Encrypt, Decrypt, GenerateDataKey, ReEncrypt and
GenerateRandom calls, closed loop (N callers, each waiting for its answer) or open
loop (starts at a target rate, whatever the answers do; starts that cannot be held
are counted as late or dropped). Decrypt and ReEncrypt use ciphertexts this driver
got acknowledged earlier. Every call goes into the stats and, when a history is
given, into the history with its input and result.

Several worker processes (``processes``) each run a driver; the parent merges the
per-second stats they send (histograms merge exactly) and prints progress.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing as mp
import queue as queue_mod
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing.drain import run_on_loop

from .. import history as hist
from ..report.data import OK, CallSamples
from .clients import CallError, KmsClient, make_client
from .stats import Stats
from .target import Target

OPS = ("encrypt", "decrypt", "generate-data-key", "re-encrypt", "generate-random")
DEFAULT_MIX = "encrypt=40,decrypt=40,generate-data-key=10,re-encrypt=5,generate-random=5"
LATE_S = 0.010         # open loop: a start this far behind its schedule is late
BEHIND_DROP_S = 1.0    # open loop: a start this far behind is dropped rather than sent in a burst


def parse_mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        name = name.strip().lower().replace("_", "-")
        if name not in OPS or not sep or not weight.strip().isdigit():
            raise ValueError(f"--mix expects op=weight,... with ops among {', '.join(OPS)}; got {part!r}")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise ValueError("--mix needs at least one operation with a positive weight")
    return mix


@dataclass
class Workload:
    mix: dict[str, int]
    keys: list[str]
    store_id: str
    duration: float
    concurrency: int = 16
    rate: float | None = None
    max_in_flight: int = 1000
    payload_size: int = 256
    data_key_bytes: int = 32
    random_bytes: int = 32
    pool_size: int = 4096
    seed: int | None = None
    create_key_every: float | None = None   # create keys during the run (chaos), in worker 0
    context: dict[str, str] = field(default_factory=lambda: {"tool": "kms-load"})


@dataclass
class Sealed:
    """An acknowledged ciphertext and what it must decrypt to."""
    op_id: str
    blob: bytes
    plaintext: bytes


class Driver:
    def __init__(self, client: KmsClient, w: Workload, worker: int | str = 0, history: hist.History | None = None,
                 samples: CallSamples | None = None) -> None:
        self.client, self.w, self.worker, self.history = client, w, worker, history
        self.samples = samples   # every call of the run phase, for the report's plots
        self.stats = Stats()
        self.keys = list(w.keys)
        self.created_keys: list[str] = []
        self.pool: list[Sealed] = []
        self.rng = random.Random(None if w.seed is None else f"{w.seed}/{worker}")
        self.phase = "run"
        self._ids = itertools.count(1)
        names = [n for n in OPS if w.mix.get(n)]
        self._names, self._weights = names, [w.mix[n] for n in names]
        self._handlers = {"encrypt": self._encrypt, "decrypt": self._decrypt, "generate-data-key": self._data_key,
                          "re-encrypt": self._re_encrypt, "generate-random": self._random,
                          "create-key": self._create_key}

    def take_stats(self) -> Stats:
        s, self.stats = self.stats, Stats()
        return s

    def choose(self) -> str:
        return self.rng.choices(self._names, self._weights)[0]

    # ------------------------------------------------------------ one call

    async def one(self, op: str) -> bool:
        if op in ("decrypt", "re-encrypt") and not self.pool:
            op = "encrypt"   # nothing acknowledged yet to decrypt
        rec: dict[str, Any] = {"type": "op", "id": f"w{self.worker}-{next(self._ids)}", "worker": self.worker,
                               "op": op, "phase": self.phase}
        started = time.perf_counter()
        rec["start"] = time.time()
        try:
            await self._handlers[op](rec)
            rec["ok"] = True
        except CallError as exc:
            rec["ok"], rec["error"] = False, {"name": exc.name, "message": exc.message[:500]}
        rec["end"] = time.time()
        took = time.perf_counter() - started
        if rec["ok"]:
            self.stats.op(op).ok(took)
        else:
            self.stats.op(op).failed(rec["error"]["name"], rec["error"]["message"])
        if self.samples is not None and self.phase == "run":
            self.samples.add(rec["start"], took, op, OK if rec["ok"] else rec["error"]["name"])
        if self.history is not None:
            self.history.write(rec)
        return rec["ok"]

    def _keep(self, sealed: Sealed) -> None:
        if len(self.pool) < self.w.pool_size:
            self.pool.append(sealed)
        else:
            self.pool[self.rng.randrange(len(self.pool))] = sealed

    def _acknowledged(self, rec: dict[str, Any], blob: bytes, plaintext: bytes) -> None:
        self._keep(Sealed(rec["id"], blob, plaintext))
        if self.history is not None:
            rec["result"] = {"ciphertext": hist.b64(blob), "plaintext_sha256": hist.sha256(plaintext)}

    def _key(self) -> str:
        return self.keys[self.rng.randrange(len(self.keys))]

    async def _encrypt(self, rec: dict[str, Any]) -> None:
        plaintext = self.rng.randbytes(self.w.payload_size)
        key, ctx = self._key(), self.w.context
        rec["key_id"], rec["ctx"] = key, ctx
        if self.history is not None:
            rec["input"] = hist.payload(plaintext)
        blob = await self.client.encrypt(key, plaintext, ctx)
        self._acknowledged(rec, blob, plaintext)

    async def _data_key(self, rec: dict[str, Any]) -> None:
        key, ctx = self._key(), self.w.context
        rec["key_id"], rec["ctx"] = key, ctx
        blob, plaintext = await self.client.generate_data_key(key, ctx, self.w.data_key_bytes)
        self._acknowledged(rec, blob, plaintext)   # the data key itself is never written

    async def _decrypt(self, rec: dict[str, Any]) -> None:
        sealed = self.pool[self.rng.randrange(len(self.pool))]
        rec["source"], rec["ctx"] = sealed.op_id, self.w.context
        plaintext = await self.client.decrypt(sealed.blob, self.w.context)
        if self.history is not None:
            rec["result"] = {"plaintext_sha256": hist.sha256(plaintext)}
        if plaintext != sealed.plaintext:   # the checker finds it in the history too
            raise CallError("WrongPlaintext", f"decrypt of {sealed.op_id} returned other bytes")

    async def _re_encrypt(self, rec: dict[str, Any]) -> None:
        sealed = self.pool[self.rng.randrange(len(self.pool))]
        key, ctx = self._key(), self.w.context
        rec["source"], rec["key_id"], rec["ctx"] = sealed.op_id, key, ctx
        blob = await self.client.re_encrypt(sealed.blob, ctx, key, ctx)
        self._acknowledged(rec, blob, sealed.plaintext)

    async def _random(self, rec: dict[str, Any]) -> None:
        rec["store_id"] = self.w.store_id
        data = await self.client.generate_random(self.w.random_bytes, self.w.store_id)
        rec["result"] = {"len": len(data)}
        if len(data) != self.w.random_bytes:
            raise CallError("WrongLength", f"asked for {self.w.random_bytes} random bytes, got {len(data)}")

    async def _create_key(self, rec: dict[str, Any]) -> None:
        rec["store_id"] = self.w.store_id
        key_id = await self.client.create_key(self.w.store_id, f"{self.w.context.get('tool')} {rec['id']}")
        rec["result"] = {"key_id": key_id}
        self.keys.append(key_id)
        self.created_keys.append(key_id)

    # ------------------------------------------------------------ the loops

    async def prime(self, per_key: int = 2) -> None:
        """A few ciphertexts per key before the clock starts, so that Decrypt has something to open."""
        if not (self.w.mix.get("decrypt") or self.w.mix.get("re-encrypt")):
            return
        self.phase = "setup"
        for _ in range(per_key * len(self.keys)):
            await self.one("encrypt")
        self.phase = "run"
        self.take_stats()   # setup calls are in the history, not in the load figures

    async def run(self, deadline: float) -> None:
        """Until ``deadline`` (event-loop time)."""
        extra = [asyncio.create_task(self._keys_loop(deadline))] if self.w.create_key_every else []
        try:
            if self.w.rate:
                await self._open(self.w.rate, deadline)
            else:
                await asyncio.gather(*(self._caller(deadline) for _ in range(max(1, self.w.concurrency))))
        finally:
            for t in extra:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _caller(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await self.one(self.choose())

    async def _open(self, rate: float, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        interval, due = 1.0 / rate, loop.time()
        in_flight: set[asyncio.Task] = set()
        while due < deadline:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            behind = now - due
            if behind > BEHIND_DROP_S or len(in_flight) >= self.w.max_in_flight:
                self.stats.dropped += 1
            else:
                if behind > LATE_S:
                    self.stats.late += 1
                task = asyncio.create_task(self.one(self.choose()))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            due += interval
        if in_flight:
            await asyncio.wait(in_flight)

    async def _keys_loop(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        every = float(self.w.create_key_every or 0)
        while loop.time() + every < deadline:
            await asyncio.sleep(every)
            await self.one("create-key")


# ------------------------------------------------------------------ running it (in-process or in workers)


@dataclass
class TrafficResult:
    stats: Stats
    elapsed: float
    t0: float                      # epoch seconds the clock started
    created_keys: list[str]
    samples: CallSamples | None = None   # every call, when asked for (kms-load's report)


Tick = Callable[[float, Stats, Stats], None]   # (elapsed, cumulative, last second)


def split(w: Workload, worker: int, processes: int) -> Workload:
    share = dict(w.__dict__)
    share["concurrency"] = w.concurrency // processes + (1 if worker < w.concurrency % processes else 0)
    share["rate"] = w.rate / processes if w.rate else None
    share["max_in_flight"] = max(1, math.ceil(w.max_in_flight / processes))
    share["create_key_every"] = w.create_key_every if worker == 0 else None
    return Workload(**share)


async def run_traffic(target: Target, w: Workload, processes: int = 1, history_dir: Path | None = None,
                      on_tick: Tick | None = None, on_start: Callable[[float], None] | None = None,
                      samples: bool = False) -> TrafficResult:
    """Run the workload for ``w.duration``; ``on_start(t0)`` when the clock starts (after priming),
    ``on_tick`` once a second; with ``samples``, every call is kept for plots."""
    if processes <= 1:
        return await _in_process(target, w, history_dir, on_tick, on_start, samples)
    return await _in_workers(target, w, processes, history_dir, on_tick, on_start, samples)


def history_path(history_dir: Path, worker: int) -> Path:
    return history_dir / f"history.w{worker}.jsonl"


async def _in_process(target: Target, w: Workload, history_dir: Path | None, on_tick: Tick | None,
                      on_start: Callable[[float], None] | None, samples: bool) -> TrafficResult:
    h = hist.History(history_path(history_dir, 0)) if history_dir else None
    client = make_client(target, w.concurrency)
    driver = Driver(client, w, 0, h, CallSamples() if samples else None)
    try:
        await driver.prime()
        total = Stats()
        loop = asyncio.get_running_loop()
        t0, start = time.time(), loop.time()
        if on_start:
            on_start(t0)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1.0)
                delta = driver.take_stats()
                total.merge(delta)
                if on_tick:
                    on_tick(loop.time() - start, total, delta)
        tick = asyncio.create_task(ticker())
        try:
            await driver.run(start + w.duration)
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
        total.merge(driver.take_stats())
        return TrafficResult(total, loop.time() - start, t0, driver.created_keys, driver.samples)
    finally:
        await client.close()
        if h is not None:
            h.close()


def _worker_main(target: Target, w: Workload, worker: int, history_file: str | None, out: Any, go: Any,
                 samples: bool) -> None:
    # uvloop where installed, as the servers: a load process's CPU is taken from them on one machine
    run_on_loop(_worker(target, w, worker, history_file, out, go, samples))


async def _worker(target: Target, w: Workload, worker: int, history_file: str | None, out: Any, go: Any,
                  samples: bool) -> None:
    h = hist.History(Path(history_file)) if history_file else None
    client = make_client(target, w.concurrency)
    driver = Driver(client, w, worker, h, CallSamples() if samples else None)
    try:
        await driver.prime()
        out.put(("ready", worker, None))
        while not await asyncio.to_thread(go.wait, 0.5):
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + w.duration

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1.0)
                out.put(("tick", worker, driver.take_stats().to_dict()))
        tick = asyncio.create_task(ticker())
        try:
            await driver.run(deadline)
        finally:
            tick.cancel()
        out.put(("done", worker, {"stats": driver.take_stats().to_dict(), "created_keys": driver.created_keys,
                                  "samples": driver.samples.to_dict() if driver.samples is not None else None}))
    except BaseException as exc:
        out.put(("failed", worker, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        await client.close()
        if h is not None:
            h.close()


async def _in_workers(target: Target, w: Workload, processes: int, history_dir: Path | None, on_tick: Tick | None,
                      on_start: Callable[[float], None] | None, samples: bool) -> TrafficResult:
    ctx = mp.get_context("spawn")   # never fork a process that has gRPC threads
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker_main, name=f"kms-load-w{i}", daemon=True, args=(
        target, split(w, i, processes), i, str(history_path(history_dir, i)) if history_dir else None, out, go,
        samples)) for i in range(processes)]
    for p in procs:
        p.start()
    total, created = Stats(), []
    calls = CallSamples() if samples else None
    loop = asyncio.get_running_loop()

    def get(timeout: float) -> tuple | None:
        try:
            return out.get(timeout=timeout)
        except queue_mod.Empty:
            return None
    try:
        ready = 0
        while ready < processes:
            msg = await asyncio.to_thread(get, 1.0)
            if msg is None:
                if any(not p.is_alive() for p in procs):
                    raise RuntimeError("a load worker exited before it was ready")
                continue
            if msg[0] == "failed":
                raise RuntimeError(f"load worker {msg[1]} failed: {msg[2]}")
            ready += msg[0] == "ready"
        t0, start = time.time(), loop.time()
        go.set()
        if on_start:
            on_start(t0)
        done, delta, next_tick = 0, Stats(), start + 1.0
        while done < processes:
            msg = await asyncio.to_thread(get, max(0.01, next_tick - loop.time()))
            if msg is not None:
                kind, worker, body = msg
                if kind == "failed":
                    raise RuntimeError(f"load worker {worker} failed: {body}")
                if kind == "tick":
                    delta.merge(Stats.from_dict(body))
                elif kind == "done":
                    delta.merge(Stats.from_dict(body["stats"]))
                    created += body["created_keys"]
                    if calls is not None and body.get("samples"):
                        calls.merge(CallSamples.from_dict(body["samples"]))
                    done += 1
            if loop.time() >= next_tick:
                total.merge(delta)
                if on_tick:
                    on_tick(loop.time() - start, total, delta)
                delta, next_tick = Stats(), next_tick + 1.0
            if done < processes and loop.time() > start + w.duration + w.concurrency + 120:
                raise RuntimeError("load workers did not finish")
        total.merge(delta)
        return TrafficResult(total, loop.time() - start, t0, created, calls)
    finally:
        for p in procs:
            await asyncio.to_thread(p.join, 5.0)
            if p.is_alive():
                p.terminate()


def progress_line(elapsed: float, total: Stats, delta: Stats, interval: float = 1.0) -> str:
    t, d = total.total(), delta.total()
    line = (f"[{elapsed:6.1f}s] {d.calls / interval:8.1f} req/s  calls {t.calls:>8}  errors {sum(t.errors.values()):>5}"
            f"  p99 {t.latency.percentile(0.99) * 1000:7.2f} ms")
    if total.late or total.dropped:
        line += f"  late {total.late} dropped {total.dropped}"
    return line
