"""``kms-load``: drive the KMS frontend with a mix of crypto calls and report
throughput, latency percentiles and errors by exception name, per operation.

    kms-load --duration 30s --concurrency 32                       closed loop, 32 callers
    kms-load --rate 2000 --duration 1m --processes 2               open loop at 2000 req/s from two processes
    kms-load --protocol aws --mix encrypt=50,decrypt=50 --json-report load.json

Endpoints, credentials and the custom key store come from the local cluster
(``--cluster-dir``, ``KMS_CLUSTER_DIR``, default ``.kms-cluster``) unless given.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

from . import target as tgt
from . import traffic
from .clients import CallError, make_client
from .stats import report, table


def add_workload_arguments(p: argparse.ArgumentParser, *, concurrency: int, payload: int, keys: int) -> None:
    g = p.add_argument_group("workload")
    g.add_argument("--mix", default=traffic.DEFAULT_MIX, help=f"op=weight,... (default {traffic.DEFAULT_MIX})")
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


def workload(args: argparse.Namespace, t: tgt.Target, keys: list[str], tool: str) -> traffic.Workload:
    return traffic.Workload(
        mix=traffic.parse_mix(args.mix), keys=keys, store_id=t.store_id, duration=args.duration,
        concurrency=args.concurrency, rate=args.rate, max_in_flight=args.max_in_flight,
        payload_size=args.payload_size, seed=args.seed,
        context={"tool": tool, "run": uuid.uuid4().hex[:12]})


def check_workload_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        traffic.parse_mix(args.mix)
    except ValueError as exc:
        p.error(str(exc))
    if not 1 <= args.payload_size <= 4096:
        p.error("--payload-size must be 1..4096 (the Encrypt limit)")
    if args.concurrency < 1 or args.processes < 1 or (args.rate is not None and args.rate <= 0):
        p.error("--concurrency and --processes must be at least 1, --rate positive")
    if not args.key_id and args.keys < 1:
        p.error("--keys must be at least 1 (or give --key-id)")


async def create_keys(t: tgt.Target, n: int, description: str) -> list[str]:
    client = make_client(t, 1)
    try:
        return [await client.create_key(t.store_id, description) for _ in range(n)]
    finally:
        await client.close()


async def run(args: argparse.Namespace, t: tgt.Target) -> dict:
    keys = list(args.key_id) or await create_keys(t, args.keys, "kms-load")
    w = workload(args, t, keys, "kms-load")

    def tick(elapsed: float, total: traffic.Stats, delta: traffic.Stats) -> None:
        if not args.quiet:
            print(traffic.progress_line(elapsed, total, delta), flush=True)
    result = await traffic.run_traffic(t, w, args.processes, on_tick=tick)
    config = {"protocol": t.protocol, "endpoint": t.aws_endpoint_url if t.protocol == "aws" else t.endpoint,
              "custom_key_store_id": t.store_id, "mix": w.mix, "duration_s": args.duration,
              "concurrency": None if args.rate else args.concurrency, "rate": args.rate,
              "payload_size": args.payload_size, "keys": keys, "processes": args.processes}
    return report(result.stats, result.elapsed, config, traffic.OPS)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kms-load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tgt.add_target_arguments(p)
    p.add_argument("--duration", type=tgt.parse_duration, default=10.0, help="how long to drive load (default 10s)")
    add_workload_arguments(p, concurrency=16, payload=256, keys=1)
    p.add_argument("--json-report", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    check_workload_args(p, args)
    try:
        t = tgt.resolve(args)
    except tgt.TargetError as exc:
        print(f"kms-load: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        doc = asyncio.run(run(args, t))
    except CallError as exc:
        print(f"kms-load: setup failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    print()
    print(table(doc))
    if args.json_report:
        args.json_report.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json_report.with_suffix(args.json_report.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, args.json_report)
        print(f"\nreport: {args.json_report}")
    sys.exit(0)


if __name__ == "__main__":
    main()
