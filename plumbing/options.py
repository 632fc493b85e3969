"""The flags every server process takes for its plumbing (metrics server, drain, logs), each
with its environment variable (``<PREFIX>_METRICS_LISTEN``, ``_SHUTDOWN_GRACE``, ``_LOG_LEVEL``)."""
from __future__ import annotations

import argparse
import math
import os

EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def seconds(text: str) -> float:
    """An argparse ``type``: a finite number of seconds, 0 or more. A default read from the
    environment is a string, so argparse checks it too: a bad value there is one line and exit
    status 2, not a traceback."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def positive_seconds(text: str) -> float:
    """An argparse ``type``: seconds that must be more than 0 (an interval of periodic work, where 0
    would run it back to back; a timeout, where 0 would end everything at once)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def add_process_options(p: argparse.ArgumentParser, env_prefix: str, *, grace_s: float, in_flight: str) -> None:
    """``--metrics-listen``, ``--shutdown-grace`` (default ``grace_s``), ``--log-level``, ``--log-file``
    and ``--event-loop``.
    ``in_flight`` names what a drain lets finish ("calls", "requests")."""
    env = os.environ.get
    p.add_argument("--metrics-listen", default=env(f"{env_prefix}_METRICS_LISTEN", ""),
                   help=f"serve Prometheus /metrics on HOST:PORT; empty disables it [{env_prefix}_METRICS_LISTEN]")
    p.add_argument("--shutdown-grace", type=seconds, default=env(f"{env_prefix}_SHUTDOWN_GRACE", f"{grace_s:g}"),
                   help=f"seconds in-flight {in_flight} get to finish after SIGTERM [{env_prefix}_SHUTDOWN_GRACE]")
    p.add_argument("--log-level", default=env(f"{env_prefix}_LOG_LEVEL", "info"))
    p.add_argument("--log-file", metavar="PATH", default=env(f"{env_prefix}_LOG_FILE", ""),
                   help=f"append the JSON log lines to PATH instead of stderr; errors that stop the process"
                        f" are also printed on stderr [{env_prefix}_LOG_FILE]")
    p.add_argument("--event-loop", choices=EVENT_LOOPS, default=env(f"{env_prefix}_EVENT_LOOP", "auto"),
                   help="the asyncio event loop: uvloop (less CPU per call), asyncio's own, or auto (uvloop"
                        f" where it is installed) [{env_prefix}_EVENT_LOOP]")
