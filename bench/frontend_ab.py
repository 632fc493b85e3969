"""Benchmark: the frontend's CPU per Encrypt of two code trees, side by side, measurements interleaved.

    python bench/frontend_ab.py TREE_A TREE_B [--rounds 12] [--seconds 8] [--callers 16]

Starts two stacks as ``bench/crypto_path.py`` does (three hsm-nodes and a kms-frontend each), the
frontend of stack A importing TREE_A and that of stack B importing TREE_B (their ``PYTHONPATH``),
then measures Encrypt (256 B) on A and on B alternately (the order flips every round), so both
see the same neighbours on a shared machine; reports, per round and as medians, each frontend's
CPU per request and the B/A ratios. Calls to a tree that authenticates kms.v1 calls are signed
(once per measurement, as crypto_path.py does); a tree from before authentication (give
``--unsigned-a``) gets them unsigned. Compare a tree with itself to see the noise floor.

Example (before/after a change, from the after tree)::

    git archive fc35ece | tar -x -C /tmp/before
    python bench/frontend_ab.py /tmp/before . --unsigned-a

Or one tree under two settings (the whole stack's environment)::

    python bench/frontend_ab.py . . --env-a KMS_EVENT_LOOP=asyncio --env-a HSM_EVENT_LOOP=asyncio
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import crypto_path as bench  # noqa: E402

_BASE_FRONTEND = bench.FrontendProcess  # the harness's class: stack_of replaces bench.FrontendProcess


def frontend_of(tree: str) -> type[bench.FrontendProcess]:
    # Subclass the harness's class, never the current bench.FrontendProcess: that is the previous
    # stack's TreeFrontend, whose start() would run last and start tree A for every stack (until this
    # fix, every B/A here compared tree A with itself).
    class TreeFrontend(_BASE_FRONTEND):  # type: ignore[valid-type,misc]
        def start(self) -> None:
            # `python -m` puts the working directory first on sys.path: start in the tree itself
            self.env = {**self.env, "PYTHONPATH": tree}
            here = os.getcwd()
            os.chdir(tree)
            try:
                super().start()
            finally:
                os.chdir(here)
    return TreeFrontend


async def stack_of(tree: str, env: list[str]) -> bench.KmsStack:
    """A stack whose frontend imports ``tree``; ``env`` ("NAME=VALUE"s) is the environment of its
    frontend and nodes alike (e.g. KMS_EVENT_LOOP=asyncio HSM_EVENT_LOOP=asyncio)."""
    root = Path(tempfile.mkdtemp(prefix="ab-"))
    cert = bench.write_cert(root)
    bench.FrontendProcess = frontend_of(str(Path(tree).resolve()))  # start_kms uses it
    saved = dict(os.environ)
    os.environ.update(item.split("=", 1) for item in env)  # the processes it starts inherit it
    try:
        return await bench.start_kms(root, cert, False)
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tree_a")
    p.add_argument("tree_b")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--unsigned-a", action="store_true", help="tree A does not authenticate calls (before issue 13)")
    for name in ("a", "b"):
        p.add_argument(f"--env-{name}", action="append", default=[], metavar="NAME=VALUE",
                       help=f"environment of stack {name.upper()}'s frontend and nodes (repeatable)")
    args = p.parse_args()
    stacks: dict[str, Any] = {}
    clients = None
    try:
        stacks["A"] = await stack_of(args.tree_a, args.env_a)
        stacks["B"] = await stack_of(args.tree_b, args.env_b)
        targets = {name: bench.encrypt_target(stack, None) for name, stack in stacks.items()}
        if args.unsigned_a:
            targets["A"] = targets["A"][:4] + (None,)
        clients = bench.Clients(2, targets)
        for name in stacks:
            await clients.run(name, args.callers, 2.0)  # warm up
        results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        nodes: dict[str, list[float]] = {"A": [], "B": []}
        batches: dict[str, list[float]] = {"A": [], "B": []}
        p99: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                m = await bench.measure_encrypt(clients, name, stacks[name], args.callers, args.seconds)
                if m["errors"]:
                    raise RuntimeError(f"stack {name}: {m['error_codes']}")
                results[name].append((m["rps"], m["cpu_us_per_req"]["frontend"]))
                nodes[name].append(m["cpu_us_per_req"]["nodes"])
                batches[name].append(m["ops_per_message"])
                p99[name].append(m["p99_ms"])
            print(f"round {r + 1}: A {results['A'][-1][1]:.0f} us/req, B {results['B'][-1][1]:.0f} us/req", flush=True)
        cpu = [b[1] / a[1] for a, b in zip(results["A"], results["B"], strict=True)]
        rps = [b[0] / a[0] for a, b in zip(results["A"], results["B"], strict=True)]
        for name in ("A", "B"):
            print(f"{name}: frontend CPU per Encrypt, median {statistics.median(c for _, c in results[name]):.0f} us;"
                  f" median {statistics.median(r for r, _ in results[name]):.0f} req/s;"
                  f" p99 {statistics.median(p99[name]):.1f} ms; {statistics.median(batches[name]):.2f} operations"
                  " per stream message")
        print(f"B/A frontend CPU per request: median {statistics.median(cpu):.3f} (rounds: "
              + ", ".join(f"{x:.2f}" for x in cpu) + ")")
        node_ratio = [b / a for a, b in zip(nodes["A"], nodes["B"], strict=True) if a]
        print(f"B/A nodes' CPU per request: median {statistics.median(node_ratio):.3f}")
        print(f"B/A req/s: median {statistics.median(rps):.3f} (rounds: " + ", ".join(f"{x:.2f}" for x in rps) + ")")
    finally:
        if clients is not None:
            clients.close()
        for stack in stacks.values():
            await stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
