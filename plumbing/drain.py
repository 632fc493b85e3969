"""A server process's graceful stop, and its life from start to SIGTERM.

gRPC's own shutdown cancels (CANCELLED) every call that reached the server but was not
yet handed to a handler. So on SIGTERM a server first closes its :class:`Gate`: calls in
flight finish, new ones are refused (UNAVAILABLE: retry elsewhere), and gRPC is stopped
only once gRPC's core holds no call of that server, neither one in a handler nor one
waiting to be handed to one (:class:`CoreCalls`, :meth:`Gate.quiesce`).

Why the core's own count: grpc.aio hands calls to handlers one at a time, from the event
loop. On a busy machine calls wait in the core for that loop, invisible to any handler, for
longer than any fixed quiet period; a stop then cancelled them (kms-frontend under two CPU
hogs: a dozen CANCELLED calls, all accepted after SIGTERM and cancelled at the stop).
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import grpc
from grpc._cython import cygrpc  # channelz: the only view of calls not yet handed to a handler

from . import files, logs
from .options import EVENT_LOOPS

T = TypeVar("T")


class Gate:
    """Admission of calls. A handler counts itself in ``in_flight`` while it runs; once the
    gate is ``closed`` it refuses the call instead and notes when (``last_refused``)."""

    QUIET_S = 0.2
    # With the core's count: a caller whose call just ended OK sends its next one at once; if the
    # stop came between the two, gRPC cancelled it (CANCELLED; test_shutdown.py, 1 run in ~15).
    # So the stop also waits until none was refused for FOLLOW_UP_QUIET_S (that next call is
    # refused, and its caller goes), but for no longer than FOLLOW_UP_MAX_S once all else is done
    # (counted from then, not from the signal: a call that ends after a long lame duck has a
    # follow-up too): callers that keep coming must not hold every drain for the whole grace.
    FOLLOW_UP_QUIET_S = 0.1
    FOLLOW_UP_MAX_S = 1.0

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self.last_refused = 0.0

    def close(self) -> None:
        self.closed = True

    async def quiesce(self, timeout: float, idle: Callable[[], bool] = lambda: True,
                      core: CoreCalls | None = None) -> bool:
        """Wait (at most ``timeout``) until no call is in flight, ``idle()`` holds (e.g. no
        stream open), and the server's calls in gRPC's core are all finished (``core``);
        without a view into the core, until none was refused for QUIET_S instead."""
        deadline = time.monotonic() + timeout
        done_since: float | None = None  # since when nothing is in flight, in the core or in handlers
        while (now := time.monotonic()) < deadline:
            settled = self.in_flight == 0 and idle()
            # the core's count of unfinished calls: None when it cannot tell; -1 while handlers still run
            unfinished = (core.unfinished() if core is not None else None) if settled else -1
            quiet_for = now - self.last_refused
            if unfinished == 0:
                done_since = now if done_since is None else done_since
                if quiet_for >= self.FOLLOW_UP_QUIET_S or now - done_since >= self.FOLLOW_UP_MAX_S:
                    return True
            else:
                done_since = None
                if unfinished is None and quiet_for >= self.QUIET_S:
                    return True
            await asyncio.sleep(0.02)
        return False


class CoreCalls:
    """The calls gRPC's core holds for one server: started and not finished, from channelz.
    That counts the calls its handlers run and those that reached it but wait for the event
    loop to be handed to a handler, which no handler can count and which a stop cancels."""

    def __init__(self, server_id: int | None) -> None:
        self.server_id = server_id

    def unfinished(self) -> int | None:
        """None when the core cannot say (channelz off, or the server unknown)."""
        if self.server_id is None:
            return None
        try:
            data = json.loads(cygrpc.channelz_get_server(self.server_id))["server"]["data"]
        except (ValueError, KeyError, TypeError):
            return None
        return int(data.get("callsStarted", 0)) - int(data.get("callsSucceeded", 0)) - int(data.get("callsFailed", 0))


def new_server(**kwargs: Any) -> tuple[grpc.aio.Server, CoreCalls]:
    """``grpc.aio.server(**kwargs)`` and the view of its calls in the core (the one server
    channelz gained meanwhile; none if it cannot tell which)."""
    before = _server_ids()
    server = grpc.aio.server(**kwargs)
    new = _server_ids() - before
    return server, CoreCalls(new.pop() if len(new) == 1 else None)


def _server_ids() -> set[int]:
    try:
        servers = json.loads(cygrpc.channelz_get_servers(0)).get("server", [])
        return {int(s["ref"]["serverId"]) for s in servers}
    except (ValueError, KeyError, TypeError):
        return set()


class Server(Protocol):
    stopped: asyncio.Event

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


async def serve_until_signalled(server: Server, grace: float, log: logging.Logger) -> None:
    """Start ``server``, run until SIGTERM or SIGINT (or ``server.stopped`` is set), then stop
    it, giving calls in flight ``grace`` seconds."""
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopped.set)
    await server.stopped.wait()
    log.info("shutting down", extra={"event": "shutdown", "grace_s": grace})
    await server.stop(grace)


def run_main(prog: str, log_level: str, main: Coroutine[Any, Any, None],
             startup_errors: tuple[type[BaseException], ...], log: logging.Logger, log_file: str = "",
             event_loop: str = "auto") -> None:
    """Run a server process: no core dumps and private files (:func:`files.harden_process`, first,
    so that a log file it opens is born private), JSON logs at ``log_level`` under the service name
    ``prog``, then its main coroutine. An error it cannot start past (bad configuration, a port
    taken, a locked data directory, a data file it may not make private) ends the process with one
    log line, one line on stderr (``<prog>: <message>``) and exit status 2; never a traceback.
    ``log_file``: the log lines go there instead of stderr; ``event_loop``: see :func:`run_on_loop`."""
    files.harden_process()
    try:
        logs.setup(prog, log_level, log_file)
    except OSError as exc:
        print(f"{prog}: cannot open the log file {log_file} (--log-file): {exc.strerror or exc}", file=sys.stderr)
        main.close()
        sys.exit(2)
    try:
        run_on_loop(main, event_loop)
    except startup_errors as exc:
        log.error(str(exc), extra={"event": "startup_failed"})
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(2)


def add_port(server: Any, address: str, credentials: Any = None, what: str = "") -> int:
    """Bind a gRPC server (``credentials`` None: plaintext) to ``address``; a port that is taken or
    an address that is not local is an ``OSError`` saying which, not grpc's RuntimeError (the
    servers turn SO_REUSEPORT off, so a second server on a taken port fails here)."""
    try:
        port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address,
                                                                                                    credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {what or 'address'} {address}: it is in use (another process holds it?)"
                      " or not an address of this machine")
    return int(port)


def run_on_loop(main: Coroutine[Any, Any, T], event_loop: str = "auto") -> T:
    """Run ``main`` on uvloop (``"uvloop"``, or ``"auto"`` where it is installed) or on asyncio's
    own loop (``"asyncio"``). Why uvloop: a frontend on it spends 0.87x the CPU per Encrypt and
    serves 1.11x the calls (bench/frontend_ab.py; docs/performance.md "The event loop"); gRPC's
    poller and the HTTP server run on it unchanged. A choice it cannot honour is a ValueError
    (a startup error: one line, exit status 2)."""
    if event_loop not in EVENT_LOOPS:
        main.close()
        raise ValueError(f"--event-loop must be one of {', '.join(EVENT_LOOPS)}, not {event_loop!r}")
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                raise ValueError("--event-loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def running_loop_name() -> str:
    """"uvloop" or "asyncio": the loop this process runs on (its "listening" log line says which)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
