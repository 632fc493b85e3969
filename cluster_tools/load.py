"""``kms-load``: drive the KMS frontend with a mix of crypto calls and report
throughput, latency percentiles and errors by exception name, per operation.

    kms-load --duration 30s --concurrency 32                       closed loop, 32 callers
    kms-load --rate 200 --duration 1m --processes 2                open loop at 200 req/s from two processes
    kms-load --protocol aws --mix encrypt=50,decrypt=50 --json-report load.json

With --json-report FILE, a self-contained page (FILE with .html, opens offline) and its PNGs
(latency of every call, throughput and errors per second) are written beside it.

Endpoints, credentials and the custom key store come from the local cluster
(``--cluster-dir``, ``KMS_CLUSTER_DIR``, default ``.kms-cluster``) unless given.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from .report.data import RunData
from .traffic import driver
from .traffic import target as tgt
from .traffic.clients import CallError, make_client
from .traffic.options import add_workload_arguments, check_workload_args, workload
from .traffic.stats import report, table


async def create_keys(t: tgt.Target, n: int, description: str) -> list[str]:
    client = make_client(t, 1)
    try:
        return [await client.create_key(t.store_id, description) for _ in range(n)]
    finally:
        await client.close()


async def run(args: argparse.Namespace, t: tgt.Target) -> tuple[dict, driver.TrafficResult]:
    keys = list(args.key_id) or await create_keys(t, args.keys, "kms-load")
    w = workload(args, t, keys, "kms-load")

    def tick(elapsed: float, total: driver.Stats, delta: driver.Stats) -> None:
        if not args.quiet:
            print(driver.progress_line(elapsed, total, delta), flush=True)
    result = await driver.run_traffic(t, w, args.processes, on_tick=tick, samples=bool(args.json_report))
    config = {"protocol": t.protocol, "endpoint": t.aws_endpoint_url if t.protocol == "aws" else t.endpoint,
              "custom_key_store_id": t.store_id, "mix": w.mix, "duration_s": args.duration,
              "concurrency": None if args.rate else args.concurrency, "rate": args.rate,
              "payload_size": args.payload_size, "keys": keys, "processes": args.processes}
    return report(result.stats, result.elapsed, config, driver.OPS), result


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
        doc, result = asyncio.run(run(args, t))
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
        if result.samples is not None:
            from .report.html import write_report  # matplotlib is imported only when a report is drawn

            data = RunData(f"kms-load ({t.protocol})", result.t0, result.t0 + result.elapsed, result.samples)
            page = write_report(args.json_report.parent, data, traffic=doc, config=doc["config"],
                                name=args.json_report.stem)
            print(f"        {page} (and its PNGs)")
    sys.exit(0)


if __name__ == "__main__":
    main()
