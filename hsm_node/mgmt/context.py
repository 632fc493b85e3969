"""What every ``hsm-mgmt`` command works with: its settings (flags over the environment over the
env file), its errors, and :class:`Cli`, the connections, credentials and sessions of one run
(which nodes a command talks to, how a replicated write is reported). The command modules
(``node_commands``, ``user_commands``, ``key_commands``, ``cluster_commands``) and the entry
point (``cli``) import this; it imports none of them.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from plumbing.addresses import split_endpoint
from plumbing.envfile import EnvFileError, with_env_file
from plumbing.files import write_private
from plumbing.tls import explain_verify_failure, presented_certificate
from protos.hsm.v1 import hsm_pb2 as pb

from .. import certs, client
from ..errors import HsmError
from ..rules import PRECO_DEFAULT_PASSWORD, PRECO_USERNAME
from . import output as out
from .output import Holder, Server

PROG = "hsm-mgmt"
DEFAULT_ENDPOINT = "127.0.0.1:2225"
DEFAULT_ENV_FILE = Path(".kms-cluster/env")
DEFAULT_RPC_TIMEOUT = 30.0
DEFAULT_USERNAMES = {"CO": PRECO_USERNAME, "CU": "kmsuser", "PRECO": PRECO_USERNAME}
EXIT_REFUSED, EXIT_USAGE = 1, 2
HIDDEN_PASSWORD = "-hpswd"   # CMU: in place of a password, prompt for it
HPSWD_FLAG = "--hpswd"       # what the command line turns it into (argparse would read -hpswd as -h)
UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class HsmMgmtError(Exception):
    def __init__(self, code: str, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code, self.message, self.exit_code = code, message, exit_code


def usage_error(message: str) -> HsmMgmtError:
    return HsmMgmtError("INVALID_ARGUMENT", message, EXIT_USAGE)


def no_trust_anchor_error(detail: str = "") -> HsmMgmtError:
    return HsmMgmtError("FAILED_PRECONDITION", (detail + "; " if detail else "") +
                    "pass --trust-anchor PATH (the cluster's customerCA.crt, written by `hsm-mgmt initialize`)"
                    " or set HSM_TRUST_ANCHOR, so that hsm-mgmt can verify the HSM it talks to. Without it, only"
                    " `initialize` and `status` of an UNINITIALIZED node are allowed (trust on first use)",
                    EXIT_USAGE)


# ---------------------------------------------------------------- environment & settings

def environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Real environment over the env file (``HSM_ENV_FILE`` or ``./.kms-cluster/env``)."""
    try:
        return with_env_file(environ, "HSM_ENV_FILE", DEFAULT_ENV_FILE)
    except EnvFileError as exc:
        raise usage_error(str(exc)) from None
    except OSError as exc:
        raise usage_error(f"cannot read the environment file {exc.filename} (HSM_ENV_FILE): {exc.strerror}") from None


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class HsmMgmtSettings:
    endpoints: list[str]
    trust_anchor: str | None
    user_type: str | None
    username: str | None         # --username / --password only: the environment is read per user type
    password: str | None
    password_fd: int | None
    session: str | None
    json: bool
    node_only: bool
    rpc_timeout: float
    env: dict[str, str]
    wait: float = 0.0            # --wait: seconds to wait for the endpoints to serve before the command


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> HsmMgmtSettings:
    endpoints = args.endpoint or [e.strip() for e in env.get("HSM_ENDPOINTS", "").split(",") if e.strip()] \
        or [DEFAULT_ENDPOINT]
    for e in endpoints:
        try:
            split_endpoint(e)
        except ValueError as exc:
            raise usage_error(str(exc)) from None
    user_type = (args.login_type or env.get("HSM_USER_TYPE") or "").upper() or None
    if user_type not in (None, "CO", "CU", "PRECO"):
        raise usage_error(f"user type must be CO, CU or PRECO (got {user_type})")
    try:
        timeout = float(args.rpc_timeout or env.get("HSM_RPC_TIMEOUT") or DEFAULT_RPC_TIMEOUT)
    except ValueError:
        raise usage_error("HSM_RPC_TIMEOUT must be a number of seconds") from None
    try:
        wait = float(args.wait if args.wait is not None else env.get("HSM_WAIT") or 0)
    except ValueError:
        raise usage_error("HSM_WAIT must be a number of seconds") from None
    if wait < 0:
        raise usage_error(f"--wait must be 0 or more seconds (got {wait:g})")
    return HsmMgmtSettings(
        endpoints=list(dict.fromkeys(endpoints)),
        trust_anchor=args.trust_anchor or env.get("HSM_TRUST_ANCHOR") or None,
        user_type=user_type, username=args.login_username, password=args.login_password,
        password_fd=args.login_password_fd,
        session=args.session or env.get("HSM_SESSION"),
        json=args.json or truthy(env.get("HSM_JSON")),
        node_only=args.node_only or truthy(env.get("HSM_NODE_ONLY")),
        rpc_timeout=timeout, env=dict(env), wait=wait)


def parse_sessions(value: str | None) -> tuple[str, dict[str, str]]:
    """``HSM_SESSION``: one token for every endpoint, or ``host:port=token,...``."""
    if not value:
        return "", {}
    if "=" not in value:
        return value.strip(), {}
    tokens = {}
    for part in value.split(","):
        endpoint, sep, token = part.strip().partition("=")
        if not sep or not endpoint or not token:
            raise usage_error("HSM_SESSION must be a token or host:port=token pairs separated by commas")
        tokens[endpoint] = token
    return "", tokens


# ---------------------------------------------------------------- connections & sessions

@dataclass
class Node:
    server: Server
    stub: Any            # hsm_pb2_grpc.HsmStub
    verified: bool       # False: trust on first use


@dataclass
class Outcome:
    server: Server
    value: Any = None
    error: BaseException | None = None


WriteCall = Callable[[Node, str, bool], Awaitable[Any]]   # (node, session token, this_node_only) -> response
Action = str | Callable[[Any], str]                       # "Creating User x(CU)", or made from the response


def handshake_failed(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE \
        and "handshake" in (exc.details() or "").lower()


_PEER = re.compile(r"ipv[46]:(\[[^\]]+\]:\d+|[^:\s]+:\d+)")   # the peer in gRPC's "failed to connect" details


def describe(exc: BaseException, anchor: str | None = None, endpoint: str = "") -> tuple[str, str]:
    """(status name, message) of an error, with a hint where one helps."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code().name, exc.details() or ""
    elif isinstance(exc, HsmMgmtError):
        code, message = exc.code, exc.message
    else:
        code, message = "INTERNAL", f"unexpected {type(exc).__name__}: {exc}"
    if handshake_failed(exc) and anchor:
        # one sentence instead of OpenSSL's ("CERTIFICATE_VERIFY_FAILED: self signed certificate: OK")
        m = _PEER.search(message)
        where = endpoint or (m.group(1) if m else "")
        seen = explain_verify_failure(where, anchor) if where else "the TLS handshake failed"
        message = (f"cannot verify the HSM: {seen}, so the certificate does not chain to the trust anchor."
                   " Pass the cluster's customerCA.crt with --trust-anchor or HSM_TRUST_ANCHOR; a self-signed"
                   " certificate is a node not initialised yet (`hsm-mgmt status` shows its state)")
    return code, message


def exit_code_of(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, HsmMgmtError) else EXIT_REFUSED


class Cli:
    """Connections, credentials and sessions of one hsm-mgmt run."""

    def __init__(self, s: HsmMgmtSettings) -> None:
        self.s = s
        self.servers = [Server(i, e) for i, e in enumerate(s.endpoints)]
        self.any_token, self.tokens = parse_sessions(s.session)
        self.exit_code = 0
        self._anchor_pem: str | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._nodes: dict[tuple[str, bool], Node] = {}
        self._logins: list[tuple[Node, str]] = []
        self._credentials: dict[str, tuple[str, str, str]] = {}
        self._fd_values: dict[int, str] = {}

    @property
    def timeout(self) -> float:
        return self.s.rpc_timeout

    def anchor_pem(self) -> str:
        if self._anchor_pem is None:
            path = self.s.trust_anchor
            if not path:
                raise no_trust_anchor_error()
            try:
                pem = Path(path).expanduser().read_text()
                certs.load_cert(pem, "trust anchor")
            except OSError as exc:
                raise usage_error(f"cannot read the trust anchor {path}: {exc.strerror}") from None
            except (HsmError, UnicodeDecodeError):
                raise usage_error(f"the trust anchor {path} is not a PEM certificate") from None
            self._anchor_pem = pem
        return self._anchor_pem

    async def wait_until_serving(self, seconds: float, *extra: str | None) -> None:
        """``--wait``: until every endpoint of the command (and ``extra`` ones, such as the node
        addNode adds) completes a TLS handshake, at most ``seconds``. A TLS handshake, not just
        an open port: the node's gRPC server is up and answers."""
        deadline = asyncio.get_running_loop().time() + seconds
        for endpoint in dict.fromkeys([*(srv.endpoint for srv in self.servers), *(e for e in extra if e)]):
            while True:
                try:
                    await asyncio.to_thread(presented_certificate, endpoint, 2.0)
                    break
                except OSError as exc:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise HsmMgmtError("UNAVAILABLE", f"{endpoint} did not answer within {seconds:g} s (--wait):"
                                           f" {exc.strerror or exc or 'timed out'}; is the node running? Its log"
                                           " says why it stopped") from None
                    await asyncio.sleep(0.2)

    def use_anchor(self, path: Path) -> None:
        self.s.trust_anchor, self._anchor_pem = str(path), path.read_text()

    async def connect(self, server: Server, *, tofu: bool = False) -> Node:
        """A channel to ``server`` (one per endpoint and trust mode for the whole run)."""
        if (server.endpoint, tofu) in self._nodes:
            return self._nodes[server.endpoint, tofu]
        if tofu:
            try:
                shown = await asyncio.to_thread(presented_certificate, server.endpoint)
            except OSError as exc:
                raise HsmMgmtError("UNAVAILABLE", f"cannot reach {server}: {exc.strerror or exc or 'timed out'}") from None
            ch = client.channel(server.endpoint, shown)   # pinned: the certificate it just showed
        else:
            ch = client.channel(server.endpoint, self.anchor_pem())
        self._channels.append(ch)
        node = self._nodes[server.endpoint, tofu] = Node(server, client.stub(ch), verified=not tofu)
        return node

    def credentials(self, default_type: str) -> tuple[str, str, str]:
        """(type, name, password): flags > HSM_<TYPE>_* > HSM_* > defaults; a prompt on a terminal."""
        user_type = self.s.user_type or default_type
        if user_type not in self._credentials:
            env = self.s.env
            name = self.s.username or env.get(f"HSM_{user_type}_USERNAME") or env.get("HSM_USERNAME") \
                or DEFAULT_USERNAMES[user_type]
            self._credentials[user_type] = (user_type, name, self.login_password(user_type, name))
        return self._credentials[user_type]

    def login_password(self, user_type: str, name: str) -> str:
        """--password > --password-fd > HSM_<TYPE>_PASSWORD > HSM_PASSWORD > (PRECO's default) > a prompt."""
        env = self.s.env
        password = self.s.password
        if not password and self.s.password_fd is not None:
            password = self._from_fd(self.s.password_fd, "--password-fd")
        password = password or env.get(f"HSM_{user_type}_PASSWORD") or env.get("HSM_PASSWORD")
        if not password and user_type == "PRECO":
            password = PRECO_DEFAULT_PASSWORD
        if not password and sys.stdin.isatty():
            password = getpass.getpass(f"Password for {user_type} {name}: ")
        if not password:
            raise usage_error(f"no password to log in as {user_type} {name}: pass --password-fd, set HSM_PASSWORD"
                              f" (or HSM_{user_type}_PASSWORD), run on a terminal to be prompted, or reuse a"
                              " loginHSM session (--session / HSM_SESSION)")
        return password

    def new_password(self, args: argparse.Namespace, given: str | None, what: str, *, login: str) -> str:
        """A password to set: the argument (CMU's way; ``-hpswd`` prompts) > --new-password-fd >
        HSM_NEW_PASSWORD > a prompt on a terminal, typed twice. Who logs in (``login``) is
        settled first, so that a terminal asks for the login password before the new one."""
        if not (self.any_token or self.tokens):
            self.credentials(login)
        if given and not args.hpswd:
            return given
        fd = args.new_password_fd
        if not args.hpswd:
            if fd is not None:
                return self._from_fd(fd, "--new-password-fd")
            if self.s.env.get("HSM_NEW_PASSWORD"):
                return self.s.env["HSM_NEW_PASSWORD"]
        if not sys.stdin.isatty():
            raise usage_error(f"no {what}: pass --new-password-fd FD, set HSM_NEW_PASSWORD, or run on a terminal to"
                              " be prompted")
        first = getpass.getpass(f"Enter {what}: ")
        if getpass.getpass(f"Confirm {what}: ") != first:
            raise usage_error("the two passwords typed differ; nothing was changed")
        return first

    def _from_fd(self, fd: int, option: str) -> str:
        """The first line a file descriptor holds (a pipe the caller wrote and closed)."""
        if fd not in self._fd_values:
            try:
                with os.fdopen(fd, "rb", closefd=True) as f:
                    data = f.read(4096)
            except OSError as exc:
                raise usage_error(f"cannot read {option} {fd}: {exc.strerror}") from None
            self._fd_values[fd] = data.decode(errors="replace").split("\n", 1)[0].rstrip("\r")
        return self._fd_values[fd]

    async def token(self, node: Node, default_type: str) -> str:
        """A session on ``node``: the one supplied, or a login that close() ends."""
        supplied = self.tokens.get(node.server.endpoint) or self.any_token
        if supplied:
            return supplied
        user_type, name, password = self.credentials(default_type)
        try:
            r = await node.stub.Login(pb.LoginRequest(user_type=out.USER_TYPES[user_type], username=name,
                                                      password=password), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE:
                raise
            raise HsmMgmtError(exc.code().name, f"{exc.details()} (loginHSM {user_type} {name} on {node.server})") from None
        self._logins.append((node, r.session_token))
        return r.session_token

    async def close(self) -> None:
        for node, token in self._logins:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await node.stub.Logout(pb.SessionRequest(session_token=token), timeout=5)
        for ch in self._channels:
            await ch.close()

    # ------------------------------------------------------------ choosing nodes

    async def first_node(self) -> Node:
        """The first endpoint that answers (a write or crypto goes to one node)."""
        if len(self.servers) == 1:
            return await self.connect(self.servers[0])
        last: BaseException | None = None
        for server in self.servers:
            node = await self.connect(server)
            try:
                await node.stub.GetStatus(pb.Empty(), timeout=min(self.timeout, 5.0))
                return node
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in UNREACHABLE:
                    raise
                last = exc
                note(f"{server} does not answer ({exc.code().name}); trying the next endpoint")
        assert last is not None
        raise last

    async def each_server(self, fn: Callable[[Server], Awaitable[Any]],
                          servers: Sequence[Server] | None = None) -> list[Outcome]:
        async def one(server: Server) -> Outcome:
            try:
                return Outcome(server, await fn(server))
            except (grpc.aio.AioRpcError, HsmMgmtError) as exc:
                return Outcome(server, error=exc)
        return list(await asyncio.gather(*(one(s) for s in (self.servers if servers is None else servers))))

    async def each_node(self, fn: Callable[[Node, str], Awaitable[Any]], *, login: str | None = None,
                        servers: Sequence[Server] | None = None) -> list[Outcome]:
        """Run ``fn(node, session token)`` on every endpoint (logged in when ``login`` names a type)."""
        async def on(server: Server) -> Any:
            node = await self.connect(server)
            return await fn(node, await self.token(node, login) if login else "")
        return await self.each_server(on, servers)

    def settle(self, outcomes: list[Outcome]) -> list[Outcome]:
        """One endpoint: its error is the command's error. Several: report each
        failure on stderr, go on with the others, and exit 1 at the end."""
        if len(outcomes) == 1 and outcomes[0].error is not None:
            raise outcomes[0].error
        for o in outcomes:
            if o.error is not None:
                code, message = describe(o.error, self.s.trust_anchor, o.server.endpoint)
                print(f"{PROG}: {o.server}: {code}: {message}", file=sys.stderr)
                self.exit_code = max(self.exit_code, exit_code_of(o.error))
        return [o for o in outcomes if o.error is None]

    def error_entry(self, o: Outcome) -> dict[str, Any]:
        assert o.error is not None
        return {**o.server.as_dict(), "error": out.error_dict(*describe(o.error, self.s.trust_anchor,
                                                                            o.server.endpoint))}

    def show_servers(self, outcomes: list[Outcome], text: Callable[[Server, Any], list[str]],
                     data: Callable[[Any], dict[str, Any]], extra: dict[str, Any] | None = None) -> list[Outcome]:
        """Per-server blocks (text) or ``{"servers": [...]}`` (JSON)."""
        ok = self.settle(outcomes)
        if self.s.json:
            servers = [{**o.server.as_dict(), **data(o.value)} if o.error is None else self.error_entry(o)
                       for o in outcomes]
            emit_json({"servers": servers, **(extra or {})})
        else:
            for o in ok:
                print("\n".join(text(o.server, o.value)))
        return ok

    # ------------------------------------------------------------ replicated writes

    async def holders(self) -> list[Holder]:
        """Which node (and cluster) each endpoint is, to say where a write landed."""
        async def status(server: Server) -> pb.NodeStatus:
            node = await self.connect(server)
            return await node.stub.GetStatus(pb.Empty(), timeout=min(self.timeout, 5.0))
        return [Holder(o.server, o.value.node_id, o.value.cluster_id) if o.error is None else
                Holder(o.server, error="{}: {}".format(*describe(o.error))) for o in await self.each_server(status)]

    async def write(self, op: str, action: Action, call: WriteCall, *, login: str,
                    result: Callable[[Any], pb.WriteResult] = lambda r: r,
                    head: Callable[[Any], list[str]] = lambda r: [],
                    details: Callable[[Any], dict[str, Any]] = lambda r: {}) -> None:
        """A replicated write on one node, reported as CMU does:
        ``<action> on N nodes`` then ``<op> success on server i(endpoint)``."""
        if self.s.node_only:
            return await self._write_each_node_only(op, action, call, login=login, result=result, details=details)
        node = await self.first_node()
        r = await call(node, await self.token(node, login), False)
        w = result(r)
        holders = await self.holders()
        if self.s.json:
            emit_json({"operation": op, **details(r), "write": out.write_dict(w),
                       "servers": [h.as_dict(w) for h in holders]})
        else:
            headline = out.write_headline(action if isinstance(action, str) else action(r), w)
            print("\n".join([*head(r), headline, *out.holder_lines(op, holders, w)]))

    async def _write_each_node_only(self, op: str, action: Action, call: WriteCall, *, login: str,
                                    result: Callable[[Any], pb.WriteResult],
                                    details: Callable[[Any], dict[str, Any]]) -> None:
        outcomes = await self.each_node(lambda node, token: call(node, token, True), login=login)
        ok = self.settle(outcomes)
        if self.s.json:
            emit_json({"operation": op, "node_only": True, "servers": [
                {**o.server.as_dict(), **details(o.value), "write": out.write_dict(result(o.value))}
                if o.error is None else self.error_entry(o) for o in outcomes]})
            return
        what = action if isinstance(action, str) else "Writing"
        print(f"{what} on {out.plural(len(ok), 'node')} (--node-only: each node by itself, not replicated)")
        for o in ok:
            print(f"{op} success on {o.server}")


def note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def emit_json(data: Any) -> None:
    print(out.to_json(data))


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror}") from None


def write_output(path: str | None, data: bytes, *, private: bool = False) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        if private:
            write_private(path, data)
        else:
            Path(path).write_bytes(data)
    except OSError as exc:
        raise usage_error(f"cannot write {path}: {exc.strerror}") from None


NEW_PASSWORD_HELP = ("the password to set; omit it (or write -hpswd) to be prompted, or give it with"
                     " --new-password-fd / HSM_NEW_PASSWORD: an argument is visible to every user in `ps`")


def add_password_sources(sp: argparse.ArgumentParser, *, new: bool = True) -> None:
    if new:
        sp.add_argument("--new-password-fd", type=int, metavar="FD",
                        help="read the password to set from this open file descriptor (its first line)")
    sp.add_argument(HPSWD_FLAG, action="store_true",
                    help=f"prompt for the password (also written {HIDDEN_PASSWORD} in its place, as CMU takes it)")


def upper(value: str) -> str:
    """argparse type of user types: ``cu`` -> ``CU``."""
    return value.upper()
