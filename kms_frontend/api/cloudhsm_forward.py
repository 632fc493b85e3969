"""Several frontend workers (``kms-frontend --workers N``): the CloudHSM control plane runs in the
leader only, and the other workers hand its requests over to it.

Why not share it as KMS's metadata is shared: the control plane owns things that cannot be in two
processes at once (the HSM node processes or containers it starts, the background work that
creates, initialises, replaces and deletes HSMs, an uninitialised cluster's CSR, one lock around
every change of clusters and HSMs). It is also not on a hot path (a few calls a minute), so one
local hop is cheap. What the KMS side of every worker needs from it, the cluster view that
discovery lays over its probes, it reads from the control plane's records, which followers reload
when the leader commits (:meth:`..controlplane.store.ControlPlaneStore.reload_if_changed`).

The hop: the leader also serves the CloudHSM API on a Unix socket in the data directory (mode 0600,
so only this user's processes reach it); a follower sends the client's request there unchanged
(method, path, headers, body: the leader verifies the same SigV4 signature) and returns the
leader's answer unchanged. The client's address and whether it came over TLS travel in two
headers the leader believes only on that socket. While no leader listens (one just died, the next
takes over within a second), the follower retries for ``LEADER_WAIT_S`` and then answers
CloudHsmInternalFailureException (HTTP 500, which the AWS SDKs retry).
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..controlplane import errors as e

if TYPE_CHECKING:
    from .cloudhsm_json import CloudHsmEndpoint

FORWARDED_REMOTE = "X-Kms-Worker-Remote"
FORWARDED_SECURE = "X-Kms-Worker-Secure"
LEADER_WAIT_S = 5.0
# Hop-by-hop headers (RFC 9110 7.6.1) and those the client library sets itself; never signed by SigV4 clients.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length",
                  FORWARDED_REMOTE.lower(), FORWARDED_SECURE.lower()}


class LeaderSocket:
    """The leader's side: the CloudHSM API on a Unix socket, for the other workers."""

    def __init__(self, endpoint: CloudHsmEndpoint, path: Path) -> None:
        self.endpoint, self.path = endpoint, path
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        self.path.unlink(missing_ok=True)  # a dead leader's socket
        await web.UnixSite(self.runner, str(self.path)).start()
        os.chmod(self.path, 0o600)

    async def _serve(self, request: web.Request) -> web.Response:
        return await self.endpoint.serve(request, request.headers.get(FORWARDED_REMOTE),
                                         request.headers.get(FORWARDED_SECURE) == "1")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class ToLeader:
    """A follower's side: send a request to the leader's socket, return its answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._session: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers[FORWARDED_REMOTE] = request.remote or ""
        headers[FORWARDED_SECURE] = "1" if request.secure else "0"
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(self.path)), auto_decompress=False,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=2))
            try:
                async with self._session.request(request.method, f"http://leader{request.raw_path}",
                                                 headers=headers, data=body, skip_auto_headers=("User-Agent",
                                                 "Content-Type", "Accept", "Accept-Encoding")) as answer:
                    payload = await answer.read()
                    kept = {k: v for k, v in answer.headers.items()
                            if k.lower() not in _NOT_FORWARDED and k.lower() not in ("date", "server")}
                    return web.Response(status=answer.status, body=payload, headers=kept)
            except aiohttp.ServerDisconnectedError:
                # The leader ended while it had the request: it may have run, so it is not sent again
                # here (the SDKs retry a 500 as they would for AWS's own internal failure).
                raise e.internal("The control plane's leader process ended during the request; retry it.") from None
            except aiohttp.ClientConnectorError:
                # No leader listens yet (it just ended; another takes the lock within a second).
                if time.monotonic() > deadline:
                    raise e.internal("The control plane's leader process is not reachable (it is being replaced);"
                                     " retry the request in a few seconds.") from None
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
