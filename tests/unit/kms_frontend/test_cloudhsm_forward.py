"""Several workers: a follower hands CloudHSM requests to the leader's socket unchanged
(kms_frontend/api/cloudhsm_forward.py). What the leader sees is what the client sent, except the
client's address, which the follower states and a client cannot; with no leader the caller gets
AWS's internal failure after a short wait, never a hang."""
from __future__ import annotations

import contextlib
import json
import time
from types import SimpleNamespace

import aiohttp
from aiohttp import web

from kms_frontend.api import cloudhsm_forward
from kms_frontend.api.cloudhsm_forward import FORWARDED_REMOTE, LeaderSocket, ToLeader
from kms_frontend.api.cloudhsm_json import CloudHsmEndpoint
from kms_frontend.controlplane.service import cloudhsm_model
from tests.harness import free_port


@contextlib.asynccontextmanager
async def serving(handler):  # type: ignore[no-untyped-def]
    """``handler`` for every path on a loopback port: the port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


class FakeLeaderEndpoint:
    """Stands for the leader's CloudHsmEndpoint: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    async def serve(self, request: web.Request, remote: str | None, secure: bool) -> web.Response:
        self.seen.append({"remote": remote, "secure": secure, "path": request.raw_path, "method": request.method,
                          "headers": dict(request.headers), "body": await request.read()})
        return web.Response(status=400, body=b'{"__type":"CloudHsmInvalidRequestException"}',
                            headers={"x-amzn-RequestId": "rid-1", "Content-Type": "application/x-amz-json-1.1"})


async def test_a_request_reaches_the_leader_unchanged_but_for_the_stated_address(tmp_path):
    leader = FakeLeaderEndpoint()
    socket = LeaderSocket(leader, tmp_path / "cp.sock")  # type: ignore[arg-type]
    await socket.start()
    assert (tmp_path / "cp.sock").stat().st_mode & 0o077 == 0  # only this user's processes reach it
    to_leader = ToLeader(tmp_path / "cp.sock")
    try:
        signed = {"X-Amz-Target": "BaldrApiService.DescribeClusters", "Content-Type": "application/x-amz-json-1.1",
                  "Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/cloudhsm/aws4_request, x",
                  "X-Amz-Date": "20260101T000000Z", FORWARDED_REMOTE: "203.0.113.9"}  # a client's lie
        async with serving(to_leader.forward) as port, aiohttp.ClientSession() as client, client.post(
                f"http://127.0.0.1:{port}/?x=1", data=b'{"Filters":{}}', headers=signed) as answer:
            assert answer.status == 400
            assert answer.headers["x-amzn-RequestId"] == "rid-1"
            assert json.loads(await answer.read()) == {"__type": "CloudHsmInvalidRequestException"}
        (seen,) = leader.seen
        assert seen["remote"] == "127.0.0.1" and seen["secure"] is False
        assert seen["method"] == "POST" and seen["path"] == "/?x=1" and seen["body"] == b'{"Filters":{}}'
        for name in ("X-Amz-Target", "Content-Type", "Authorization", "X-Amz-Date"):
            assert seen["headers"][name] == signed[name]
        assert seen["headers"]["Host"] == f"127.0.0.1:{port}"  # signed by SigV4 clients: kept
    finally:
        await to_leader.close()
        await socket.stop()


async def test_with_no_leader_the_caller_gets_an_internal_failure_soon(tmp_path, monkeypatch):
    monkeypatch.setattr(cloudhsm_forward, "LEADER_WAIT_S", 0.5)
    plane = SimpleNamespace(model=cloudhsm_model(), regions=SimpleNamespace(stores={"us-east-1": ""}, home="us-east-1"),
                            following=True)
    endpoint = CloudHsmEndpoint(plane, lambda *_: None, ToLeader(tmp_path / "nobody.sock"))  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        async with serving(endpoint.handle) as port, aiohttp.ClientSession() as client, client.post(
                f"http://127.0.0.1:{port}/", data=b"{}", headers={"X-Amz-Target": "BaldrApiService.DescribeClusters"}) \
                as answer:
            body = json.loads(await answer.read())
        assert answer.status == 500 and body["__type"] == "CloudHsmInternalFailureException", body
        assert "retry" in body["message"].lower()
        assert time.monotonic() - started < 5
    finally:
        await endpoint.to_leader.close()  # type: ignore[union-attr]

