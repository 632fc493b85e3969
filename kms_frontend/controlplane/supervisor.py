"""``hsm-supervisor``: the compose service that starts and removes HSM containers for the CloudHSM
control plane (CreateHsm, DeleteHsm, the replacement of a failed HSM). The only process of the stack
with the Docker socket; it serves the frontend's :class:`~.remote.Supervised` provisioner on the
project network, with a bearer token from the secrets volume, and nothing else.

    POST   /hsms               {"hsm_id", "cluster_id", "region"} -> {"endpoint", "peer_endpoint", "eni_ip"}
    POST   /hsms/<id>/ensure   {"cluster_id"} -> {"outcome": "adopted" | "started"}
    DELETE /hsms/<id>          -> {}
    GET    /healthz
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import re
from pathlib import Path

from aiohttp import web

from plumbing.addresses import split_listen
from plumbing.drain import run_main, serve_until_signalled
from plumbing.http_log import HttpServerLog
from plumbing.options import add_process_options

from .docker import DockerContainers
from .provisioners import ProvisionerError
from .records import HsmRecord

log = logging.getLogger("kms_frontend.controlplane.supervisor")
HSM_ID = re.compile(r"hsm-[2-7a-zA-Z]{11,16}")
CLUSTER_ID = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")


class Supervisor:
    def __init__(self, listen: str, token: str, docker: DockerContainers) -> None:
        self.host, self.port = split_listen(listen, "--listen")
        self.token, self.docker = token, docker
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_post("/hsms", self.create)
        self.app.router.add_post("/hsms/{hsm_id}/ensure", self.ensure)
        self.app.router.add_delete("/hsms/{hsm_id}", self.destroy)
        self.runner: web.AppRunner | None = None
        self.stopped = asyncio.Event()

    @web.middleware
    async def _auth(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
            if not self.token or not hmac.compare_digest(given, self.token.encode()):
                return web.json_response({"error": "a valid supervisor token is required"}, status=401)
        try:
            return await handler(request)
        except ProvisionerError as exc:
            log.info("request refused", extra={"event": "supervisor_refused", "detail": str(exc)[:300]})
            return web.json_response({"error": str(exc)}, status=409)

    @staticmethod
    async def _body(request: web.Request) -> dict:
        """The request's JSON object; anything else is a 400 (the middleware's ProvisionerError path
        answers 409 for what Docker refuses, this is what the caller sent wrong)."""
        try:
            doc = await request.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}',
                                     content_type="application/json")
        return doc

    @staticmethod
    def _ids(hsm_id: str, cluster_id: str) -> None:
        if not HSM_ID.fullmatch(hsm_id) or not CLUSTER_ID.fullmatch(cluster_id or "cluster-aaaaaaaaaaa"):
            raise ProvisionerError("bad HSM or cluster id")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def create(self, request: web.Request) -> web.Response:
        doc = await self._body(request)
        hsm_id, cluster_id = str(doc.get("hsm_id", "")), str(doc.get("cluster_id", ""))
        self._ids(hsm_id, cluster_id)
        placement = await self.docker.create(hsm_id, cluster_id, str(doc.get("region", "")), "")
        return web.json_response({"endpoint": placement.endpoint, "peer_endpoint": placement.peer_endpoint,
                                  "eni_ip": placement.eni_ip, "handle": placement.handle})

    def _record(self, hsm_id: str, cluster_id: str) -> HsmRecord:
        self._ids(hsm_id, cluster_id)
        return HsmRecord(hsm_id, cluster_id, "", "", "", "", "", self.docker.name)

    async def ensure(self, request: web.Request) -> web.Response:
        doc = await self._body(request)
        outcome = await self.docker.ensure_running(self._record(request.match_info["hsm_id"],
                                                                str(doc.get("cluster_id", ""))))
        return web.json_response({"outcome": outcome})

    async def destroy(self, request: web.Request) -> web.Response:
        await self.docker.destroy(self._record(request.match_info["hsm_id"], ""))
        return web.json_response({})

    async def start(self) -> None:
        await self.docker.discover()
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, logger=HttpServerLog(log))
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info("listening", extra={"event": "listening", "listen": f"{self.host}:{self.port}"})

    async def stop(self, grace: float = 5.0) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.docker.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="hsm-supervisor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default=env("SUPERVISOR_LISTEN", "0.0.0.0:8080"), help="[SUPERVISOR_LISTEN]")
    p.add_argument("--token-file", default=env("SUPERVISOR_TOKEN_FILE", "/secrets/supervisor.token"),
                   help="bearer token the frontend sends [SUPERVISOR_TOKEN_FILE]")
    p.add_argument("--docker-socket", default=env("DOCKER_SOCKET", "/var/run/docker.sock"), help="[DOCKER_SOCKET]")
    add_process_options(p, "SUPERVISOR", grace_s=5, in_flight="requests")
    return p.parse_args(argv)


def read_token(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the supervisor token {path}: {exc.strerror or exc}") from None


async def run(args: argparse.Namespace) -> None:
    await serve_until_signalled(Supervisor(args.listen, read_token(args.token_file),
                                           DockerContainers(args.docker_socket)), args.shutdown_grace, log)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_main("hsm-supervisor", args.log_level, run(args), (ValueError, OSError, ProvisionerError), log,
             args.log_file, args.event_loop)


if __name__ == "__main__":
    main()
