"""Command-line rewriting the CLIs share."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def join_option_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """``--password VALUE`` -> ``--password=VALUE`` for each of ``options``: a password or a
    token may start with '-', which argparse would otherwise take for an option."""
    joined = frozenset(options)
    args, i = [], 0
    while i < len(argv):
        if argv[i] in joined and i + 1 < len(argv):
            args.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            args.append(argv[i])
            i += 1
    return args
