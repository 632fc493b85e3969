"""The drain gate, argv rewriting, JSON logs and the metrics server (plumbing/drain.py,
argv.py, logs.py, metrics.py)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.core import GaugeMetricFamily

from plumbing import logs
from plumbing.argv import join_option_values
from plumbing.drain import Gate, new_server
from plumbing.metrics import MetricsServer


async def test_quiesce_waits_for_calls_in_flight() -> None:
    gate = Gate()
    gate.in_flight = 1
    assert await gate.quiesce(0.1) is False
    gate.in_flight = 0
    assert await gate.quiesce(0.5) is True


async def test_quiesce_waits_until_callers_go_quiet() -> None:
    gate = Gate()
    gate.close()
    gate.last_refused = time.monotonic()  # a caller was just refused
    assert await gate.quiesce(Gate.QUIET_S / 2) is False
    assert await gate.quiesce(Gate.QUIET_S * 5) is True


class IdleCore:
    """The core's count of a server with no call left."""

    def unfinished(self) -> int:
        return 0


async def test_with_the_cores_count_quiesce_still_waits_for_a_follow_up_call_to_be_refused() -> None:
    """A caller whose call ended OK sends its next at once: stopping between the two cancelled it."""
    gate = Gate()
    gate.close()
    gate.last_refused = time.monotonic()  # that next call, just refused
    started = time.monotonic()
    assert await gate.quiesce(5, core=IdleCore()) is True  # type: ignore[arg-type]
    assert time.monotonic() - started >= Gate.FOLLOW_UP_QUIET_S * 0.9
    gate.last_refused = time.monotonic() + 60  # refused again and again: not held past the bound
    started = time.monotonic()
    assert await gate.quiesce(5, core=IdleCore()) is True  # type: ignore[arg-type]
    assert Gate.FOLLOW_UP_MAX_S * 0.9 <= time.monotonic() - started < 4


async def test_the_follow_up_wait_counts_from_when_the_last_call_ended_not_from_the_signal() -> None:
    """A call that ends after a lame duck longer than the bound still has its follow-up refused."""
    gate = Gate()
    gate.close()
    gate.in_flight = 1  # a slow call (a CreateKey) still running

    async def ends_later() -> None:
        await asyncio.sleep(Gate.FOLLOW_UP_MAX_S * 1.5)
        gate.in_flight = 0
        gate.last_refused = time.monotonic()  # its caller's next call, refused at once
    ending = asyncio.create_task(ends_later())
    assert await gate.quiesce(10, core=IdleCore()) is True  # type: ignore[arg-type]
    await ending
    assert time.monotonic() - gate.last_refused >= Gate.FOLLOW_UP_QUIET_S * 0.9


async def test_quiesce_waits_for_what_the_server_adds() -> None:
    gate, streams = Gate(), {"open"}
    assert await gate.quiesce(0.1, idle=lambda: not streams) is False
    streams.clear()
    assert await gate.quiesce(0.5, idle=lambda: not streams) is True


class GatedServer:
    """A real grpc.aio server whose one method goes through a Gate, as both servers' do."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.server, self.core = new_server()

        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if self.gate.closed:
                self.gate.last_refused = time.monotonic()
                await context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down; retry elsewhere")
            self.gate.in_flight += 1
            try:
                return request
            finally:
                self.gate.in_flight -= 1

        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")


def send(port: int, n: int) -> list[grpc.StatusCode]:
    """n calls at once from another thread's channel (its own gRPC threads send them)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        calls = [channel.unary_unary("/t.Echo/Echo").future(b"x", timeout=30) for _ in range(n)]
        out = []
        for call in calls:
            try:
                call.result()
                out.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                out.append(exc.code())
        return out


async def test_a_stop_never_cancels_calls_that_wait_in_the_core_for_a_busy_event_loop() -> None:
    # What a busy machine did to kms-frontend: calls arrived after SIGTERM while the event loop
    # was not running, so no handler saw them; the quiet period passed and gRPC's stop
    # cancelled them (CANCELLED). The core's count sees them; the drain waits for them.
    s = GatedServer()
    await s.server.start()
    assert s.core.server_id is not None
    s.gate.close()  # SIGTERM
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = pool.submit(send, s.port, 40)
        time.sleep(1.0)  # the event loop is busy elsewhere meanwhile (the calls wait in the core)
        assert s.core.unfinished() == 40
        assert await s.gate.quiesce(10, core=s.core) is True
        assert s.core.unfinished() == 0
        await s.server.stop(1)
        codes = await asyncio.wrap_future(sent)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 40


async def test_the_core_counts_calls_in_handlers_too() -> None:
    s = GatedServer()
    await s.server.start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert await asyncio.wrap_future(pool.submit(send, s.port, 3)) == [grpc.StatusCode.OK] * 3
    assert s.core.unfinished() == 0
    await s.server.stop(None)


def test_secret_values_are_joined_to_their_option() -> None:
    argv = ["--password", "-x", "listUsers", "--session", "--tok", "--json", "--password"]
    assert join_option_values(argv, ("--password", "--session")) == [
        "--password=-x", "listUsers", "--session=--tok", "--json", "--password"]


def test_json_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.setup("unit-test", "debug")
        logging.getLogger("unit.logger").info("hello %s", "there", extra={"event": "greeting", "n": 2})
    finally:
        root.handlers[:], root.level = handlers, level
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "unit-test" and line["logger"] == "unit.logger" and line["level"] == "info"
    assert line["msg"] == "hello there" and line["event"] == "greeting" and line["n"] == 2
    assert line["ts"].endswith("Z")


class _OneGauge:
    def collect(self):
        yield GaugeMetricFamily("plumbing_unit_gauge", "A gauge computed on scrape.", value=7)


def test_metrics_server_serves_collectors_and_the_default_registry() -> None:
    server = MetricsServer("127.0.0.1:0", _OneGauge())
    assert (server.host, server.port) == ("127.0.0.1", 0)
    server.start()
    try:
        port = server._server.server_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.stop()
    assert "plumbing_unit_gauge 7.0" in text
    assert "python_info" in text  # the process-wide default registry


def test_metrics_listen_is_checked() -> None:
    with pytest.raises(ValueError, match="--metrics-listen wants HOST:PORT, got 'localhost'"):
        MetricsServer("localhost")


def test_process_options_and_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from plumbing.options import add_process_options

    def parse(*argv: str) -> argparse.Namespace:
        p = argparse.ArgumentParser()
        add_process_options(p, "UNIT", grace_s=5, in_flight="calls")
        return p.parse_args(list(argv))
    assert vars(parse()) == {"metrics_listen": "", "shutdown_grace": 5.0, "log_level": "info", "log_file": "",
                             "event_loop": "auto"}
    monkeypatch.setenv("UNIT_SHUTDOWN_GRACE", "2.5")
    monkeypatch.setenv("UNIT_METRICS_LISTEN", ":9100")
    monkeypatch.setenv("UNIT_EVENT_LOOP", "asyncio")
    assert vars(parse()) == {"metrics_listen": ":9100", "shutdown_grace": 2.5, "log_level": "info", "log_file": "",
                             "event_loop": "asyncio"}
    assert parse("--log-level", "debug", "--shutdown-grace", "1").shutdown_grace == 1.0
    assert parse("--event-loop", "uvloop").event_loop == "uvloop"


@pytest.mark.parametrize("bad", ["abc", "-1", "nan", "inf", ""])
def test_a_bad_number_of_seconds_from_the_environment_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    """The servers' numeric defaults come from the environment; a bad one was a ValueError
    traceback before argparse ran (the default was converted when the parser was built)."""
    from hsm_node.server import parse_args as node_args
    from kms_frontend.server import parse_args as frontend_args

    for name, parse in (("KMS_CLOUDHSM_BACKUP_COPY_SECONDS", frontend_args), ("KMS_SHUTDOWN_GRACE", frontend_args),
                        ("HSM_SESSION_IDLE_TIMEOUT", node_args)):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SystemExit) as exit_:
            parse([])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err
        assert f"{bad!r} is not a number of seconds (0 or more)" in err.strip().splitlines()[-1]
        monkeypatch.delenv(name)
    monkeypatch.setenv("KMS_CLOUDHSM_BACKUP_COPY_SECONDS", "0.5")
    assert frontend_args([]).cloudhsm_backup_copy_seconds == 0.5


@pytest.mark.parametrize("name", ["KMS_SWEEP_INTERVAL", "HSM_BACKUP_INTERVAL", "HSM_SESSION_IDLE_TIMEOUT"])
def test_an_interval_or_a_timeout_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], name: str) -> None:
    """0 between two sweeps is a busy loop; 0 of idle time ends every session at once."""
    from hsm_node.server import parse_args as node_args
    from kms_frontend.server import parse_args as frontend_args

    parse = frontend_args if name.startswith("KMS") else node_args
    monkeypatch.setenv(name, "0")
    with pytest.raises(SystemExit) as exit_:
        parse([])
    assert exit_.value.code == 2 and "'0' must be more than 0 seconds" in capsys.readouterr().err
    monkeypatch.setenv(name, "0.25")
    assert parse([]) is not None


def test_the_event_loop_is_uvloop_unless_asked_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from plumbing.drain import run_on_loop, running_loop_name

    seen = []

    async def which() -> None:
        seen.append(running_loop_name())
    for choice in ("auto", "uvloop", "asyncio"):
        run_on_loop(which(), choice)
    assert seen == ["uvloop", "uvloop", "asyncio"]
    with pytest.raises(ValueError, match="--event-loop must be one of auto, uvloop, asyncio, not 'libuv'"):
        run_on_loop(which(), "libuv")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: importing it fails
    run_on_loop(which(), "auto")
    assert seen[-1] == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        run_on_loop(which(), "uvloop")
    assert len(seen) == 4  # the coroutines refused were closed, never run


def test_run_main_turns_a_startup_error_into_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from plumbing.drain import run_main

    async def cannot_start() -> None:
        raise ValueError("--listen wants HOST:PORT, got 'x'")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exc:
            run_main("unit-server", "info", cannot_start(), (ValueError, OSError), logging.getLogger("unit.server"))
    finally:
        root.handlers[:], root.level = handlers, level
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "unit-server: --listen wants HOST:PORT, got 'x'"
    assert json.loads(err[-2])["event"] == "startup_failed"


def test_run_main_with_a_log_file_keeps_stderr_for_the_error_that_stops_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--log-file``: log lines go to the file (a node in the background of an operator's shell
    stays quiet); the one line saying why it could not start still reaches stderr."""
    from plumbing.drain import run_main

    async def cannot_start() -> None:
        logging.getLogger("unit.server").info("starting", extra={"event": "starting"})
        raise ValueError("the data directory is locked")
    log_file = tmp_path / "node.log"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exc:
            run_main("unit-server", "info", cannot_start(), (ValueError,), logging.getLogger("unit.server"),
                     str(log_file))
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = handlers, level
    assert exc.value.code == 2
    assert capsys.readouterr().err == "unit-server: the data directory is locked\n"
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
    assert events == ["starting", "startup_failed"]
    with pytest.raises(SystemExit) as exc:
        run_main("unit-server", "info", cannot_start(), (ValueError,), logging.getLogger("unit.server"),
                 str(tmp_path / "missing" / "node.log"))
    assert exc.value.code == 2 and "cannot open the log file" in capsys.readouterr().err


async def test_add_port_refuses_a_port_another_server_holds() -> None:
    """With SO_REUSEPORT off, a second server on a taken port fails with an OSError naming it (gRPC
    would otherwise let both bind and split the connections between them)."""
    import grpc

    from plumbing.drain import add_port
    first = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    port = add_port(first, "127.0.0.1:0")
    await first.start()
    try:
        second = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        with pytest.raises(OSError, match=f"cannot listen on --listen 127.0.0.1:{port}: it is in use"):
            add_port(second, f"127.0.0.1:{port}", None, "--listen")
    finally:
        await first.stop(None)
