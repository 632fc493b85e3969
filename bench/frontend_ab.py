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


def frontend_of(tree: str) -> type[bench.FrontendProcess]:
    class TreeFrontend(bench.FrontendProcess):
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


async def stack_of(tree: str) -> bench.KmsStack:
    root = Path(tempfile.mkdtemp(prefix="ab-"))
    cert = bench.write_cert(root)
    bench.FrontendProcess = frontend_of(str(Path(tree).resolve()))  # start_kms uses it
    return await bench.start_kms(root, cert, False)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tree_a")
    p.add_argument("tree_b")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--unsigned-a", action="store_true", help="tree A does not authenticate calls (before issue 13)")
    args = p.parse_args()
    stacks: dict[str, Any] = {}
    clients = None
    try:
        stacks["A"] = await stack_of(args.tree_a)
        stacks["B"] = await stack_of(args.tree_b)
        targets = {name: bench.encrypt_target(stack, None) for name, stack in stacks.items()}
        if args.unsigned_a:
            targets["A"] = targets["A"][:4] + (None,)
        clients = bench.Clients(2, targets)
        for name in stacks:
            await clients.run(name, args.callers, 2.0)  # warm up
        results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        nodes: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                m = await clients.run(name, args.callers, args.seconds, bench.encrypt_watch(stacks[name]))
                if m["errors"]:
                    raise RuntimeError(f"stack {name}: {m['error_codes']}")
                results[name].append((m["rps"], m["cpu_us_per_req"]["frontend"]))
                nodes[name].append(m["cpu_us_per_req"]["nodes"])
            print(f"round {r + 1}: A {results['A'][-1][1]:.0f} us/req, B {results['B'][-1][1]:.0f} us/req", flush=True)
        cpu = [b[1] / a[1] for a, b in zip(results["A"], results["B"], strict=True)]
        rps = [b[0] / a[0] for a, b in zip(results["A"], results["B"], strict=True)]
        for name in ("A", "B"):
            print(f"{name}: frontend CPU per Encrypt, median {statistics.median(c for _, c in results[name]):.0f} us;"
                  f" median {statistics.median(r for r, _ in results[name]):.0f} req/s")
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
