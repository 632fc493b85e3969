"""The workload flags ``kms-load`` and ``kms-chaos`` share (mix, concurrency or rate, payload,
keys, worker processes, seed), their checks, and the :class:`~.driver.Workload` they make."""
from __future__ import annotations

import argparse
import uuid

from . import driver
from . import target as tgt


def add_workload_arguments(p: argparse.ArgumentParser, *, concurrency: int, payload: int, keys: int) -> None:
    g = p.add_argument_group("workload")
    g.add_argument("--mix", default=driver.DEFAULT_MIX, help=f"op=weight,... (default {driver.DEFAULT_MIX})")
    g.add_argument("--concurrency", type=int, default=concurrency,
                   help=f"closed loop: callers (default {concurrency}); open loop: ignored")
    g.add_argument("--rate", type=float, help="open loop: starts per second to hold (default: closed loop)")
    g.add_argument("--max-in-flight", type=int, default=1000,
                   help="open loop: calls outstanding at most; starts beyond it are dropped (default 1000)")
    g.add_argument("--payload-size", type=int, default=payload, help=f"Encrypt plaintext bytes, 1..4096 (default {payload})")
    g.add_argument("--keys", type=int, default=keys, help=f"KMS keys to create in the store first (default {keys})")
    g.add_argument("--key-id", action="append", default=[], help="use this key (repeatable) instead of creating keys")
    g.add_argument("--processes", type=int, default=1, help="client worker processes (default 1)")
    g.add_argument("--seed", type=int, help="seed of the operation choices and payloads (kms-chaos: and of the"
                   " random faults; printed when not given)")
    g.add_argument("--quiet", action="store_true", help="no progress line every second")


def workload(args: argparse.Namespace, t: tgt.Target, keys: list[str], tool: str) -> driver.Workload:
    return driver.Workload(
        mix=driver.parse_mix(args.mix), keys=keys, store_id=t.store_id, duration=args.duration,
        concurrency=args.concurrency, rate=args.rate, max_in_flight=args.max_in_flight,
        payload_size=args.payload_size, seed=args.seed,
        context={"tool": tool, "run": uuid.uuid4().hex[:12]})


def check_workload_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        driver.parse_mix(args.mix)
    except ValueError as exc:
        p.error(str(exc))
    if not 1 <= args.payload_size <= 4096:
        p.error("--payload-size must be 1..4096 (the Encrypt limit)")
    if args.concurrency < 1 or args.processes < 1 or (args.rate is not None and args.rate <= 0):
        p.error("--concurrency and --processes must be at least 1, --rate positive")
    if not args.key_id and args.keys < 1:
        p.error("--keys must be at least 1 (or give --key-id)")
