"""``kms-chaos``: break HSM nodes while load runs, then check that nothing acknowledged was lost.

    kms-chaos --duration 30s --fault kill:hsm2@5s,restart:hsm2@10s,pause:hsm3@15s
    kms-chaos --duration 300 --random --seed 7 --interval 5s
    kms-chaos --target compose --project kms --random --seed 1

The run: create keys, drive load (``kms-load``'s driver; keys are also created during
the run), inject the faults (kill -9, pause, restart, remove/add a node; never all
nodes at once unless --allow-total-outage), then heal every node, poll the nodes'
consistency hashes, decrypt every acknowledged ciphertext again and use every created
key. The checker judges the recorded history and prints PASS or FAIL with the
evidence; the exit status is 0 for PASS, 1 for FAIL, 2 when the run could not start.
Every run leaves ``report.json``, ``report.html`` (self-contained: open it in a browser, offline)
and its PNGs in --out; the history (JSON lines, large) stays for a failed run, or with --keep.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import history as hist
from ..progress import Progress
from ..report.data import CallSamples, NodeSample, RunData, fault_windows
from ..report.html import write_report
from ..traffic import driver
from ..traffic import target as tgt
from ..traffic.clients import make_client
from ..traffic.options import add_workload_arguments, check_workload_args, workload
from ..traffic.stats import report, table
from . import checker, faults, verify
from .observe import NodeSampler

ROOT_COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kms-chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("cluster")
    g.add_argument("--target", choices=("local", "compose"), default="local",
                   help="local: kms-cluster processes (--cluster-dir); compose: a compose project (--project)")
    g.add_argument("--project", help="compose project name (--target compose; default COMPOSE_PROJECT_NAME, else the"
                                     " compose file's directory name, as docker compose names it)")
    g.add_argument("--compose-file", type=Path, help="compose file (default ./compose.yaml, else the repository's)")
    tgt.add_target_arguments(p)
    f = p.add_argument_group("faults")
    f.add_argument("--duration", type=tgt.parse_duration, default=60.0, help="traffic and faults (default 60s)")
    f.add_argument("--fault", action="append", default=[], metavar="KIND:NODE@TIME,...",
                   help=f"scheduled faults, KIND among {', '.join(faults.KINDS)}; NODE hsm2 or node2 (repeatable)")
    f.add_argument("--random", action="store_true", help="random faults, seeded (--seed), every --interval on average")
    f.add_argument("--interval", type=tgt.parse_duration, default=3.0, help="mean time between random faults (3s)")
    f.add_argument("--kinds", default=",".join(faults.RANDOM_KINDS),
                   help=f"random fault kinds among {','.join(faults.RANDOM_CHOICES)} (default "
                        f"{','.join(faults.RANDOM_KINDS)}; a deleted HSM comes back by create-hsm)")
    f.add_argument("--pause-for", type=tgt.parse_duration, default=2.0,
                   help="a paused node is continued after this (default 2s; 0: only by resume: or at the end)")
    f.add_argument("--remove-linger", type=tgt.parse_duration, default=0.0,
                   help="a removed node keeps running this long before it is stopped (default 0)")
    f.add_argument("--allow-total-outage", action="store_true", help="let faults take every node down at once")
    add_workload_arguments(p, concurrency=4, payload=64, keys=2)
    c = p.add_argument_group("checks")
    c.add_argument("--create-key-every", type=tgt.parse_duration, default=5.0,
                   help="create a key this often during the run (default 5s; 0: never)")
    c.add_argument("--grace", type=tgt.parse_duration, default=5.0,
                   help="after a node returns, how long the frontend may take to use it again (default 5s)")
    c.add_argument("--tolerate", action="append", default=None, metavar="EXCEPTION",
                   help=f"exception names that do not fail the run (default {', '.join(checker.DEFAULT_TOLERATED)})")
    c.add_argument("--consistency-timeout", type=tgt.parse_duration, default=60.0,
                   help="how long the nodes may take to converge after the faults (default 60s)")
    c.add_argument("--ready-timeout", type=tgt.parse_duration, default=60.0,
                   help="how long the frontend may take to serve the store again after healing (default 60s)")
    c.add_argument("--out", type=Path, help="history and report directory (default chaos-runs/<time>)")
    c.add_argument("--keep", action="store_true", help="keep the history and report of a passed run too")
    return p


def compose_project(compose_file: Path, environ: Mapping[str, str] = os.environ) -> str:
    """The project name docker compose gives ``compose_file`` without ``-p``: COMPOSE_PROJECT_NAME,
    else the file's directory name lowercased, keeping letters, digits, '-' and '_'."""
    given = environ.get("COMPOSE_PROJECT_NAME", "").strip()
    if given:
        return given
    name = "".join(ch for ch in compose_file.resolve().parent.name.lower() if ch.isascii() and (ch.isalnum() or ch in "-_"))
    return name.lstrip("-_") or "default"


def name_faults(args: argparse.Namespace, inj: faults.Injector) -> None:
    """Check every --fault node before the run, and say once when a name given is another
    target's (hsm2 on a local cluster): the run and its report use the target's own names."""
    renamed = {}
    for spec in faults.parse_schedule(args.fault):
        name = inj.resolve(spec.node)
        if name != spec.node:
            renamed[spec.node] = name
    if renamed:
        print(f"kms-chaos: {', '.join(f'{a} is {b}' for a, b in renamed.items())} on this target (nodes"
              f" {', '.join(inj.nodes)}); faults and the report use these names")


def make_injector(args: argparse.Namespace) -> faults.Injector:
    inj: faults.Injector
    if args.target == "compose":
        compose_file = args.compose_file or (Path("compose.yaml") if Path("compose.yaml").exists() else ROOT_COMPOSE)
        args.project = args.project or compose_project(compose_file)
        inj = faults.ComposeInjector(args.project, compose_file)
    else:
        inj = faults.LocalInjector(tgt.cluster_dir(args))
    inj.remove_linger = args.remove_linger
    return inj


def say(text: str) -> None:
    print(text, flush=True)


class Run:
    def __init__(self, args: argparse.Namespace, injector: faults.Injector, t: tgt.Target, out: Path) -> None:
        self.args, self.inj, self.t, self.out = args, injector, t, out
        self.main = hist.History(out / "history.main.jsonl")
        self.runner: faults.FaultRunner | None = None
        self.fault_task: asyncio.Task | None = None
        self.sampler_task: asyncio.Task | None = None
        # the nodes under the names this target gives them (hsm2 on a local cluster is node2)
        self.schedule = [faults.FaultSpec(s.kind, injector.resolve(s.node), s.at) for s in faults.parse_schedule(args.fault)]
        self.kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())

    def header(self, t0: float, runner: faults.FaultRunner) -> dict[str, Any]:
        a = self.args
        return {"type": "run", "t0": t0, "nodes": dict(runner.state), "target": {
            "kind": a.target, "protocol": self.t.protocol, "endpoint": self.t.endpoint,
            "aws_endpoint_url": self.t.aws_endpoint_url, "custom_key_store_id": self.t.store_id},
            "config": {"duration_s": a.duration, "schedule": [s.__dict__ for s in self.schedule],
                       "random": a.random, "seed": a.seed, "interval_s": a.interval, "kinds": self.kinds,
                       "pause_for_s": a.pause_for, "remove_linger_s": a.remove_linger,
                       "allow_total_outage": a.allow_total_outage, "grace_s": a.grace,
                       "mix": driver.parse_mix(a.mix), "concurrency": a.concurrency, "rate": a.rate,
                       "processes": a.processes, "payload_size": a.payload_size}}

    def start_faults(self, t0: float) -> None:
        a = self.args
        self.runner = faults.FaultRunner(self.inj, self.main, t0, pause_for=a.pause_for,
                                         allow_total_outage=a.allow_total_outage, say=say)
        self.main.write(self.header(t0, self.runner))
        until = t0 + a.duration
        if a.random:
            coro = self.runner.run_random(random.Random(f"faults/{a.seed}"), a.interval, self.kinds, until)
        else:
            coro = self.runner.run_schedule(self.schedule, until)
        self.fault_task = asyncio.create_task(coro)
        observable = self.inj.observable()
        if observable is not None:
            self.sampler_task = asyncio.create_task(NodeSampler(*observable, self.main).run())

    async def stop_faults(self) -> None:
        for task in (self.fault_task, self.sampler_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.runner is not None:
            self.main.phase("heal_start")
            await self.runner.heal()
            self.main.phase("healed", nodes=dict(self.runner.state))

    async def setup_keys(self) -> list[str]:
        if self.args.key_id:
            return list(self.args.key_id)
        client = make_client(self.t, 1)
        try:
            w = driver.Workload(mix={"encrypt": 1}, keys=[], store_id=self.t.store_id, duration=0,
                                 context={"tool": "kms-chaos"})
            d = driver.Driver(client, w, "setup", self.main)
            d.phase = "setup"
            for _ in range(self.args.keys):
                await d.one("create-key")
            if not d.keys:
                raise RuntimeError(f"could not create any key: {dict(d.stats.total().first_error)}")
            return d.keys
        finally:
            await client.close()

    async def traffic(self, keys: list[str]) -> driver.TrafficResult:
        a = self.args
        w = workload(a, self.t, keys, "kms-chaos")
        w.create_key_every = a.create_key_every or None

        def tick(elapsed: float, total: driver.Stats, delta: driver.Stats) -> None:
            if not a.quiet:
                down = self.runner.down_now() if self.runner else []
                say(driver.progress_line(elapsed, total, delta) + (f"  [{', '.join(down)}]" if down else ""))
        return await driver.run_traffic(self.t, w, a.processes, history_dir=self.out, on_tick=tick,
                                         on_start=self.start_faults)

    async def verify(self) -> None:
        a = self.args
        client = make_client(self.t, 16)
        try:
            self.main.phase("verify_start")
            not_ready = await verify.wait_ready(client, self.t.store_id, a.ready_timeout)
            if not_ready:
                self.main.phase("not_ready", error=not_ready)
                say(f"the frontend does not serve the store after healing: {not_ready}")
            say("checking consistency across nodes ...")
            via = self.runner.up() if self.runner else self.inj.nodes
            c = await verify.poll_consistency(self.inj, self.main, via or self.inj.nodes, a.consistency_timeout)
            say(f"  {'consistent' if c['consistent'] else 'NOT consistent'}")
            self.main.flush()
            records = hist.read(sorted(self.out.glob("history.*.jsonl")))
            ciphertexts, keys = len(verify.acknowledged_ciphertexts(records)), len(verify.acknowledged_keys(records))
            say(f"re-reading {ciphertexts} acknowledged ciphertexts and {keys} created keys ...")
            progress = Progress(ciphertexts + keys, "re-read")
            try:
                await verify.Rechecker(client, self.main).all(records, progress.update)
            finally:
                progress.close()
        finally:
            await client.close()


async def execute(args: argparse.Namespace, injector: faults.Injector, t: tgt.Target,
                  out: Path) -> driver.TrafficResult | None:
    run = Run(args, injector, t, out)
    result: driver.TrafficResult | None = None
    main_task = asyncio.current_task()
    if main_task is not None:   # SIGTERM like Ctrl-C: stop, heal the nodes, keep the history
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        keys = await run.setup_keys()
        where = t.endpoint if t.protocol == "grpc" else t.aws_endpoint_url
        say(f"kms-chaos: {len(keys)} keys, {args.duration:g}s of load on {where} ({t.protocol}),"
            f" nodes {', '.join(injector.nodes)}; results in {out}")
        try:
            result = await run.traffic(keys)
            run.main.phase("traffic_end")
        finally:
            await run.stop_faults()
        await run.verify()
    finally:
        run.main.close()
    return result


def run_data(records: list[dict], t0: float) -> RunData:
    """What the report draws: the run's calls, its fault windows, the node samples."""
    header = next((r for r in records if r.get("type") == "run"), {})
    end = next((r["at"] for r in records if r.get("type") == "phase" and r.get("name") == "traffic_end"),
               max((r.get("end", t0) for r in records if r.get("type") == "op" and r.get("phase") == "run"),
                   default=t0))
    samples = [NodeSample(r["at"], r["node"], r["state"], r.get("lag")) for r in records if r.get("type") == "node"]
    seed = header.get("config", {}).get("seed")
    return RunData(f"kms-chaos run (seed {seed})" if seed is not None else "kms-chaos run", t0, end,
                   CallSamples.from_history(records), fault_windows(records, end), samples,
                   list(header.get("nodes", {})))


def finish(args: argparse.Namespace, out: Path, result: driver.TrafficResult | None) -> int:
    """Merge the history, judge it, write the reports, print the verdict."""
    records = hist.merge(sorted(out.glob("history.*.jsonl")), out / "history.jsonl")
    verdict = checker.check(records, grace=args.grace, tolerated=tuple(args.tolerate or checker.DEFAULT_TOLERATED))
    load = report(result.stats, result.elapsed, {"rate": args.rate}, driver.OPS) if result else {}
    keep_history = args.keep or not verdict.passed
    doc = {**verdict.to_dict(), "traffic": load, "records": len(records),
           "history": str(out / "history.jsonl") if keep_history else None}
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    header = next((r for r in records if r.get("type") == "run"), {})
    html = write_report(out, run_data(records, verdict.t0), verdict=doc, traffic=load, config=header.get("config"))
    if load:
        say("\n" + table(load))
    say("\n" + verdict.render())
    if not keep_history:
        (out / "history.jsonl").unlink(missing_ok=True)
        say("(the history is not kept for a passed run: --keep keeps it)")
    else:
        say(f"history: {out / 'history.jsonl'}")
    say(f"report:  {html}  (and report.json, PNGs in {out})")
    return 0 if verdict.passed else 1


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    check_workload_args(p, args)
    try:
        faults.parse_schedule(args.fault)
    except ValueError as exc:
        p.error(str(exc))
    if args.random and args.fault:
        p.error("give either --fault schedules or --random, not both")
    bad = [k for k in args.kinds.split(",") if k.strip() and k.strip() not in faults.RANDOM_CHOICES]
    if bad:
        p.error(f"--kinds takes {', '.join(faults.RANDOM_CHOICES)}; not {', '.join(bad)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(10_000)
        print(f"kms-chaos: seed {args.seed} (repeat the run with --seed {args.seed})")
    if not args.random and not args.fault:
        print("kms-chaos: no --fault and no --random: load and checks only (a baseline)")
    try:
        injector = make_injector(args)
        name_faults(args, injector)
        defaults = injector.target_defaults() if isinstance(injector, faults.ComposeInjector) else None
        t = tgt.resolve(args, defaults)
    except (faults.FaultError, tgt.TargetError) as exc:
        print(f"kms-chaos: {exc}", file=sys.stderr)
        sys.exit(2)
    out = args.out or Path("chaos-runs") / time.strftime("%Y%m%d-%H%M%S")
    if out.exists() and any(out.glob("history*.jsonl")):
        print(f"kms-chaos: {out} already holds a history; choose another --out", file=sys.stderr)
        sys.exit(2)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)   # histories hold ciphertexts and small plaintexts
    try:
        code = finish(args, out, asyncio.run(execute(args, injector, t, out)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"kms-chaos: interrupted; nodes were healed, partial history in {out / 'history.jsonl'}",
              file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"kms-chaos: the run could not complete: {type(exc).__name__}: {exc}\n"
              f"history so far: {out / 'history.jsonl'}", file=sys.stderr)
        code = 2
    finally:
        injector.close()
    if code != 0 and code != 1:
        hist.merge(sorted(out.glob("history.*.jsonl")), out / "history.jsonl")
    sys.exit(code)


if __name__ == "__main__":
    main()
