"""The web console: custom key stores, KMS keys and the HSM side, refreshed live, with the actions
an operator takes most. Server-rendered pages (Jinja2) and a little JavaScript; the chart library
(uPlot) is vendored, so the console works offline.

Everything a page shows and every action it takes goes through ``Services.call`` (or, for the
CloudHSM page, ``ControlPlane.call``) as the signed-in principal (``api="console"`` in the audit trail): a caller the API would refuse sees the same
AccessDeniedException here. The console has its own port (``--console-listen``), off unless asked.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from plumbing.addresses import split_listen
from plumbing.http_log import HttpServerLog

from .. import errors
from ..controlplane.service import ControlPlane
from ..service.authorization import Caller
from ..service.frontend import Services
from .activity import Activity
from .sessions import ConsoleSession, ConsoleSessions, SignInRefused
from .views import ACTIONS, Views

log = logging.getLogger("kms_frontend.console")
HERE = Path(__file__).resolve().parent
COOKIE = "kms_console"
REFRESH_MS = 2000
BACK = re.compile(r"/(stores|keys|hsm|activity)(/[A-Za-z0-9-]{1,64})?")  # where an action may return

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.scheme}://{request.host}"


def _pretty_json(text: str) -> str:
    """A key policy indented for reading (as stored when it is not JSON: it is shown, not judged)."""
    try:
        return json.dumps(json.loads(text), indent=2)
    except (TypeError, ValueError):
        return text


def _when(ms: int | float | None) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


class Console:
    def __init__(self, services: Services, listen: str, plane: ControlPlane | None = None,
                 activity: Activity | None = None) -> None:
        self.services, self.listen = services, listen
        self.host, self.port = split_listen(listen, "--console-listen")
        self.sessions = ConsoleSessions(services.identities)
        self.activity = activity or Activity()  # several workers: every worker's traffic (shared_totals)
        self.views = Views(services, plane)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=jinja2.ChainableUndefined)  # an absent optional member renders as nothing
        self.templates.filters["when"] = _when
        self.templates.filters["pretty_json"] = _pretty_json
        self.app = web.Application(middlewares=[self._security_headers], client_max_size=64 << 10)
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/signin", self._signin_page)
        self.app.router.add_post("/signin", self._signin)
        self.app.router.add_post("/signout", self._signout)
        for path, view in (("/stores", "stores"), ("/keys", "keys"), ("/keys/{key_id}", "key"), ("/hsm", "hsm"),
                           ("/activity", "activity")):
            self.app.router.add_get(path, self._page(view))
        self.app.router.add_post("/action", self._action)
        self.app.router.add_get("/api/activity", self._activity_json)
        self.app.router.add_static("/static", HERE / "static", show_index=False)
        self.runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, logger=HttpServerLog(log))
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        self._task = asyncio.get_running_loop().create_task(self.activity.run(), name="console-activity")
        log.info("console listening", extra={"event": "console_listening", "url": self.url})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # ------------------------------------------------------------ plumbing of a request

    @web.middleware
    async def _security_headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.method == "POST" and _cross_site(request):
                # Another site's page posting here (sign-in CSRF, or an action before the CSRF token is
                # even looked at): browsers say where a form comes from; refuse what is not this origin.
                raise web.HTTPForbidden(text="The form was not sent from a page of this console.")
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # never a traceback to the browser: an incident id, the details in the log
            internal = errors.unexpected(log, f"console {request.path}", "")
            response = web.Response(status=500, text=internal.message, content_type="text/plain")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                                    " frame-ancestors 'none'; form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with the console's
        # own forms, and the Origin is what tells them from another site's (_cross_site)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _session(self, request: web.Request) -> ConsoleSession | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _caller(self, request: web.Request, session: ConsoleSession) -> Caller:
        return Caller(session.principal, request.remote, api="console")

    def _render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        body = self.templates.get_template(name).render(refresh_ms=REFRESH_MS, **context)
        return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")

    # ------------------------------------------------------------ sign in and out

    async def _index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/stores" if self._session(request) else "/signin")

    async def _signin_page(self, request: web.Request) -> web.StreamResponse:
        return self._render("signin.html", error=None, session=None)

    async def _signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        try:
            session = self.sessions.sign_in(str(form.get("access_key_id", "")), str(form.get("secret_access_key", "")),
                                            str(form.get("session_token", "")) or None, request.remote or "")
        except SignInRefused as exc:
            log.info("console sign-in refused", extra={"event": "console_signin_refused", "remote": request.remote})
            return self._render("signin.html", status=403, error=str(exc), session=None)
        log.info("console sign-in", extra={"event": "console_signin", "principal": session.principal.arn,
                                           "remote": request.remote})
        response = web.HTTPFound("/stores")
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/")
        raise response

    async def _signout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        form = await request.post()
        if session is not None and hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
            self.sessions.sign_out(session.token)
        response = web.HTTPFound("/signin")
        response.del_cookie(COOKIE, path="/")
        raise response

    # ------------------------------------------------------------ pages

    def _page(self, view: str) -> Handler:
        async def page(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                raise web.HTTPFound("/signin")
            data = await getattr(self.views, view)(self._caller(request, session), request)
            flash, session.flash = session.flash, []
            template = f"{view}.html" if request.query.get("partial") != "1" else f"{view}_main.html"
            return self._render(template, session=session, flash=flash, page=view, **data)
        return page

    async def _activity_json(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            raise web.HTTPUnauthorized(text="sign in first")
        return web.json_response(self.activity.series())

    # ------------------------------------------------------------ actions

    async def _action(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            raise web.HTTPFound("/signin")
        form = await request.post()
        back = str(form.get("back", "/stores"))
        if not BACK.fullmatch(back):
            back = "/stores"  # only pages of this console ("/\\evil.example" is another site to a browser)
        if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
            raise web.HTTPForbidden(text="The form is stale or was not sent by this console: reload the page.")
        name = str(form.get("operation", ""))
        action = ACTIONS.get(name)
        if action is None:
            raise web.HTTPBadRequest(text=f"unknown action {name!r}")
        try:
            params = action.params({k: str(v) for k, v in form.items()})
            result = await self.services.call(action.operation, params, self._caller(request, session))
            session.flash.append(("ok", action.done(params, result)))
        except errors.KmsError as exc:
            session.flash.append(("error", f"{exc.name}: {exc.message}"))
        except ValueError as exc:
            session.flash.append(("error", str(exc)))
        except KeyError as exc:
            session.flash.append(("error", f"The form lacks the field {exc.args[0]!r}: reload the page."))
        raise web.HTTPSeeOther(back)
