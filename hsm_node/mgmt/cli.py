"""``hsm-mgmt``: manage the users and keys of HSM nodes the CloudHSM way.

Commands carry the names of CloudHSM's cloudhsm_mgmt_util (CMU) and
key_mgmt_util (KMU): ``loginHSM``, ``createUser``, ``listUsers``,
``genSymKey``, ``findAllKeys``, ``getKeyInfo`` ... Every command opens TLS
channels verified with the cluster's trust anchor (``customerCA.crt``), logs
in, does its work and logs out again, unless a session token printed by
``loginHSM`` is reused (``--session`` / ``HSM_SESSION``).

Which nodes a command talks to:

* reads (``listUsers``, ``findAllKeys``, ``findKey``, ``getKeyInfo``,
  ``status``, ``loginHSM``) ask every endpoint and print one block per server;
* writes go to the first endpoint that answers; the cluster replicates them
  and the output says how many nodes hold the write (``WriteResult``);
* ``--node-only`` applies a user write to each given endpoint with
  replication off: CMU's partial fan-out when its config misses an HSM;
* ``initialize`` and ``activate`` act on the first endpoint (the cluster's
  first HSM); crypto commands use the first endpoint that answers.

Errors end as one line, ``hsm-mgmt: <gRPC status name>: <message>``, with exit
status 2 for usage errors and 1 for refused operations. Passwords are never
printed.
"""
from __future__ import annotations

import os

# gRPC's C core logs TLS handshake failures straight to stderr; the CLI reports
# errors itself. Must be set before grpc is imported (set GRPC_VERBOSITY to see them).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import binascii  # noqa: E402
import contextlib  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Awaitable, Callable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import grpc  # noqa: E402

from plumbing.addresses import split_endpoint  # noqa: E402
from plumbing.argv import join_option_values  # noqa: E402
from plumbing.envfile import EnvFileError, with_env_file  # noqa: E402
from plumbing.files import write_private  # noqa: E402
from plumbing.tls import presented_certificate  # noqa: E402
from protos.hsm.v1 import hsm_pb2 as pb  # noqa: E402

from .. import certs, client  # noqa: E402
from ..errors import HsmError  # noqa: E402
from ..rules import PRECO_DEFAULT_PASSWORD, PRECO_USERNAME  # noqa: E402
from . import cluster_commands as cli_cluster  # noqa: E402
from . import output as out  # noqa: E402
from . import provision  # noqa: E402
from .output import Holder, Server  # noqa: E402

PROG = "hsm-mgmt"
DEFAULT_ENDPOINT = "127.0.0.1:2225"
DEFAULT_ENV_FILE = Path(".kms-cluster/env")
DEFAULT_RPC_TIMEOUT = 30.0
DEFAULT_USERNAMES = {"CO": PRECO_USERNAME, "CU": "kmsuser", "PRECO": PRECO_USERNAME}
EXIT_REFUSED, EXIT_USAGE = 1, 2
NO_ANCHOR_NEEDED = {"initialize", "status"}          # may trust on first use (uninitialised nodes only)
NODE_ONLY_COMMANDS = {"createUser", "deleteUser", "changePswd"}
UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class CliError(Exception):
    def __init__(self, code: str, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code, self.message, self.exit_code = code, message, exit_code


def usage_error(message: str) -> CliError:
    return CliError("INVALID_ARGUMENT", message, EXIT_USAGE)


def no_trust_anchor_error(detail: str = "") -> CliError:
    return CliError("FAILED_PRECONDITION", (detail + "; " if detail else "") +
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
class Settings:
    endpoints: list[str]
    trust_anchor: str | None
    user_type: str | None
    username: str | None         # --username / --password only: the environment is read per user type
    password: str | None
    session: str | None
    json: bool
    node_only: bool
    rpc_timeout: float
    env: dict[str, str]


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
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
    return Settings(
        endpoints=list(dict.fromkeys(endpoints)),
        trust_anchor=args.trust_anchor or env.get("HSM_TRUST_ANCHOR") or None,
        user_type=user_type, username=args.login_username, password=args.login_password,
        session=args.session or env.get("HSM_SESSION"),
        json=args.json or truthy(env.get("HSM_JSON")),
        node_only=args.node_only or truthy(env.get("HSM_NODE_ONLY")),
        rpc_timeout=timeout, env=dict(env))


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


def describe(exc: BaseException, anchor: str | None = None) -> tuple[str, str]:
    """(status name, message) of an error, with a hint where one helps."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code().name, exc.details() or ""
    elif isinstance(exc, CliError):
        code, message = exc.code, exc.message
    else:
        code, message = "INTERNAL", f"unexpected {type(exc).__name__}: {exc}"
    if handshake_failed(exc) and anchor:
        message += (f" -- the HSM's certificate does not chain to the trust anchor {anchor}: wrong --trust-anchor,"
                    " or the node is not initialised yet (see `hsm-mgmt status`)")
    return code, message


def exit_code_of(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, CliError) else EXIT_REFUSED


class Cli:
    """Connections, credentials and sessions of one hsm-mgmt run."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.servers = [Server(i, e) for i, e in enumerate(s.endpoints)]
        self.any_token, self.tokens = parse_sessions(s.session)
        self.exit_code = 0
        self._anchor_pem: str | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._nodes: dict[tuple[str, bool], Node] = {}
        self._logins: list[tuple[Node, str]] = []
        self._credentials: dict[str, tuple[str, str, str]] = {}

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
                raise CliError("UNAVAILABLE", f"cannot reach {server}: {exc.strerror or exc or 'timed out'}") from None
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
            password = self.s.password or env.get(f"HSM_{user_type}_PASSWORD") or env.get("HSM_PASSWORD")
            if not password and user_type == "PRECO":
                password = PRECO_DEFAULT_PASSWORD
            if not password and sys.stdin.isatty():
                password = getpass.getpass(f"Password for {user_type} {name}: ")
            if not password:
                raise usage_error(f"no password to log in as {user_type} {name}: pass --password, set HSM_PASSWORD"
                                  f" (or HSM_{user_type}_PASSWORD), or reuse a loginHSM session (--session /"
                                  " HSM_SESSION)")
            self._credentials[user_type] = (user_type, name, password)
        return self._credentials[user_type]

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
            raise CliError(exc.code().name, f"{exc.details()} (loginHSM {user_type} {name} on {node.server})") from None
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
            except (grpc.aio.AioRpcError, CliError) as exc:
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
                code, message = describe(o.error, self.s.trust_anchor)
                print(f"{PROG}: {o.server}: {code}: {message}", file=sys.stderr)
                self.exit_code = max(self.exit_code, exit_code_of(o.error))
        return [o for o in outcomes if o.error is None]

    def error_entry(self, o: Outcome) -> dict[str, Any]:
        assert o.error is not None
        return {**o.server.as_dict(), "error": out.error_dict(*describe(o.error, self.s.trust_anchor))}

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


# ---------------------------------------------------------------- lifecycle commands

def trust_anchor_dir(directory: str | None, anchor: str | None) -> Path:
    """Where initialize keeps customerCA.key/.crt: --trust-anchor-dir, else beside --trust-anchor, else ./ca."""
    path = Path(directory or (Path(anchor).parent if anchor else "ca"))
    if anchor and Path(anchor).resolve() != (path / "customerCA.crt").resolve():
        raise usage_error(f"--trust-anchor {anchor} is not {path / 'customerCA.crt'}: initialize keeps the trust"
                          " anchor as customerCA.crt + customerCA.key in --trust-anchor-dir")
    return path


async def cmd_initialize(cli: Cli, args: argparse.Namespace) -> None:
    server = cli.servers[0]
    if len(cli.servers) > 1:
        note(f"initialize acts on the first endpoint only ({server.endpoint}): the cluster's first HSM")
    anchor_dir = trust_anchor_dir(args.trust_anchor_dir, cli.s.trust_anchor)
    cert_path, key_path = anchor_dir / "customerCA.crt", anchor_dir / "customerCA.key"
    node = await cli.connect(server, tofu=True)
    status = await node.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
    if status.state != pb.UNINITIALIZED:
        raise CliError("FAILED_PRECONDITION", f"{server} is already initialised (cluster {status.cluster_id}, state"
                       f" {out.state_name(status.state)}); nothing to do")
    created = not cert_path.exists()
    if not created and not key_path.exists():
        raise usage_error(f"{cert_path} exists but {key_path} does not: the trust anchor's key is needed to sign"
                          " the cluster CSR")
    try:
        anchor = provision.make_trust_anchor(anchor_dir)
    except OSError as exc:
        raise usage_error(f"cannot create the trust anchor in {anchor_dir}: {exc.strerror}") from None
    try:
        response = await provision.initialize(node.stub, anchor)
    except ValueError as exc:
        raise CliError("FAILED_PRECONDITION", str(exc)) from None
    cli.use_anchor(anchor.cert_path)
    verified = await cli.connect(server)   # the node now serves a certificate chained to the anchor
    status = await verified.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
    cert, key = anchor.cert_path.resolve(), anchor.key_path.resolve()
    if cli.s.json:
        emit_json({**server.as_dict(), "cluster_id": response.cluster_id, "state": out.state_name(status.state),
                   "preco_username": response.preco_username, "trust_anchor": str(cert), "trust_anchor_key": str(key),
                   "trust_anchor_created": created})
        return
    print("\n".join([
        f"Initialized {server}: cluster {response.cluster_id}, state {out.state_name(status.state)}",
        f"Trust anchor: {cert} ({'created' if created else 'existing'}; its key {key} signed the cluster CSR:"
        " keep it safe)",
        "",
        "Next steps:",
        f"  export HSM_TRUST_ANCHOR={cert}",
        f"  {PROG} activate <new-password>      # {response.preco_username}/{PRECO_DEFAULT_PASSWORD} (PRECO) becomes"
        " a crypto officer (CO)",
    ]))


async def cmd_activate(cli: Cli, args: argparse.Namespace) -> None:
    server = cli.servers[0]
    if len(cli.servers) > 1:
        note(f"activate acts on the first endpoint only ({server.endpoint}): the cluster's first HSM")
    node = await cli.connect(server)
    try:
        await provision.activate(node.stub, args.new_password, preco_password=args.preco_password)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in UNREACHABLE:
            raise
        raise CliError(exc.code().name, f"{exc.details()} (activating {server} as PRECO {PRECO_USERNAME})") from None
    status = await node.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
    if cli.s.json:
        emit_json({**server.as_dict(), "cluster_id": status.cluster_id, "state": out.state_name(status.state),
                   "username": PRECO_USERNAME, "user_type": "CO"})
        return
    print(f"Activated {server}: {PRECO_USERNAME} is now a crypto officer (CO); cluster {status.cluster_id} is"
          f" {out.state_name(status.state)}")


async def cmd_status(cli: Cli, args: argparse.Namespace) -> None:
    async def status_of(server: Server) -> tuple[pb.NodeStatus, bool]:
        if cli.s.trust_anchor:
            node = await cli.connect(server)
            try:
                return await node.stub.GetStatus(pb.Empty(), timeout=cli.timeout), True
            except grpc.aio.AioRpcError as exc:
                if not handshake_failed(exc):
                    raise
                # An uninitialised node only has its bootstrap certificate: look without trusting it.
                unverified = await cli.connect(server, tofu=True)
                status = await unverified.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
                if status.state != pb.UNINITIALIZED:
                    raise exc from None
                return status, False
        node = await cli.connect(server, tofu=True)
        status = await node.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
        if status.state != pb.UNINITIALIZED:
            raise no_trust_anchor_error(f"{server} is {out.state_name(status.state)} (cluster {status.cluster_id})")
        return status, False

    cli.show_servers(await cli.each_server(status_of), lambda s, v: out.status_text(s, *v),
                     lambda v: out.status_dict(*v))


# ---------------------------------------------------------------- sessions

async def cmd_login(cli: Cli, args: argparse.Namespace) -> None:
    async def login(node: Node, _: str) -> pb.LoginResponse:
        return await node.stub.Login(pb.LoginRequest(user_type=out.USER_TYPES[args.user_type], username=args.name,
                                                     password=args.password), timeout=cli.timeout)

    ok = cli.settle(await cli.each_node(login))
    if not ok:
        return
    if len(cli.servers) == 1:
        session = ok[0].value.session_token
    else:
        session = ",".join(f"{o.server.endpoint}={o.value.session_token}" for o in ok)
    if cli.s.json:
        emit_json({"servers": [{**o.server.as_dict(), "session_token": o.value.session_token,
                                "user_id": o.value.user_id, "user_type": out.user_type_name(o.value.user_type),
                                "node_id": o.value.node_id} for o in ok], "HSM_SESSION": session})
        return
    for o in ok:   # human lines on stderr, so that eval "$(hsm-mgmt loginHSM ...)" works
        print(f"loginHSM success on {o.server} (user id {o.value.user_id})", file=sys.stderr)
    print(f"export HSM_SESSION={session}")


async def cmd_logout(cli: Cli, args: argparse.Namespace) -> None:
    servers = [s for s in cli.servers if cli.any_token or s.endpoint in cli.tokens]
    if not servers:
        raise usage_error("no session to log out: pass --session TOKEN or set HSM_SESSION (printed by loginHSM)")

    async def logout(node: Node, _: str) -> None:
        token = cli.tokens.get(node.server.endpoint) or cli.any_token
        await node.stub.Logout(pb.SessionRequest(session_token=token), timeout=cli.timeout)

    ok = cli.settle(await cli.each_node(logout, servers=servers))
    if cli.s.json:
        emit_json({"servers": [{**o.server.as_dict(), "logged_out": True} for o in ok]})
        return
    for o in ok:
        print(f"logoutHSM success on {o.server}", file=sys.stderr)
    print("unset HSM_SESSION")


# ---------------------------------------------------------------- users

async def cmd_create_user(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, node_only: bool) -> pb.CreateUserResponse:
        return await node.stub.CreateUser(pb.CreateUserRequest(
            session_token=token, user_type=out.USER_TYPES[args.user_type], username=args.name,
            password=args.password, this_node_only=node_only), timeout=cli.timeout)

    await cli.write("createUser", f"Creating User {args.name.lower()}({args.user_type})", call, login="CO",
                    result=lambda r: r.write, details=lambda r: {"user": out.user_dict(r.user)})


async def cmd_delete_user(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()

    async def call(node: Node, token: str, node_only: bool) -> pb.WriteResult:
        users = await node.stub.ListUsers(pb.Empty(), timeout=cli.timeout)
        user = next((u for u in users.users if u.username == name), None)
        if user is not None and out.user_type_name(user.user_type) != args.user_type:
            raise CliError("INVALID_ARGUMENT", f"user {name} is a {out.user_type_name(user.user_type)},"
                           f" not a {args.user_type}; nothing deleted")
        return await node.stub.DeleteUser(pb.DeleteUserRequest(
            session_token=token, username=name, this_node_only=node_only), timeout=cli.timeout)

    await cli.write("deleteUser", f"Deleting user {name}({args.user_type})", call, login="CO",
                    details=lambda r: {"username": name})


async def cmd_change_password(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()

    async def call(node: Node, token: str, node_only: bool) -> pb.WriteResult:
        return await node.stub.ChangePassword(pb.ChangePasswordRequest(
            session_token=token, user_type=out.USER_TYPES[args.user_type], username=name,
            new_password=args.new_password, this_node_only=node_only), timeout=cli.timeout)

    login = "PRECO" if args.user_type == "PRECO" else "CO"
    await cli.write("changePswd", f"Changing password for {name}({args.user_type})", call, login=login,
                    details=lambda r: {"username": name})


async def cmd_list_users(cli: Cli, args: argparse.Namespace) -> None:
    async def list_users(node: Node, _: str) -> list[pb.User]:
        return list((await node.stub.ListUsers(pb.Empty(), timeout=cli.timeout)).users)

    cli.show_servers(await cli.each_node(list_users), out.users_text,
                     lambda users: {"users": [out.user_dict(u) for u in users]})


async def cmd_sync_user(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()

    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.SyncUser(pb.SyncUserRequest(session_token=token, username=name), timeout=cli.timeout)

    await cli.write("syncUser", f"Syncing user {name}", call, login="CO", details=lambda r: {"username": name})


# ---------------------------------------------------------------- keys

async def cmd_gen_sym_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.GenerateKeyResponse:
        timeout = max(cli.timeout, args.timeout_ms / 1000 + 5)
        return await node.stub.GenerateKey(pb.GenerateKeyRequest(
            session_token=token, key_size_bytes=args.key_size, label=args.label, share_with_user_ids=args.share,
            min_replicas=args.min_replicas, timeout_ms=args.timeout_ms, session_key=args.session_key), timeout=timeout)

    def head(r: pb.GenerateKeyResponse) -> list[str]:
        return [f"Cfm3GenerateSymmetricKey returned: {out.SUCCESS}", "",
                f"Symmetric Key Created.  Key Handle: {r.key_handle}", ""]

    what = "Session key" if args.session_key else "Key"
    await cli.write("genSymKey", lambda r: f"{what} {r.key_handle} stored", call, login="CU",
                    result=lambda r: r.write, head=head,
                    details=lambda r: {"key_handle": r.key_handle, "label": args.label})


async def cmd_find_all_keys(cli: Cli, args: argparse.Namespace) -> None:
    with_hash = args.with_hash == 1

    async def find(node: Node, token: str) -> pb.FindAllKeysResponse:
        return await node.stub.FindAllKeys(pb.FindAllKeysRequest(
            session_token=token, user_id=args.user_id, include_hash=with_hash), timeout=cli.timeout)

    outcomes = await cli.each_node(find, login="CO")
    hashes = {o.value.key_hash for o in outcomes if o.error is None}
    compare = with_hash and len(cli.servers) > 1 and all(o.error is None for o in outcomes)
    extra = {"in_sync": len(hashes) == 1} if compare else {}
    cli.show_servers(outcomes, lambda s, r: out.find_all_keys_text(s, r, with_hash),
                     lambda r: out.find_all_keys_dict(r, with_hash), extra)
    if compare and not cli.s.json:
        print(f"Key hashes match on all {len(cli.servers)} servers" if len(hashes) == 1 else
              "Key hashes differ: the HSMs are out of sync (compare listUsers; fix with syncUser / syncKey)")


async def cmd_find_key(cli: Cli, args: argparse.Namespace) -> None:
    async def find(node: Node, token: str) -> list[int]:
        r = await node.stub.FindKeys(pb.FindKeysRequest(session_token=token, label=args.label or "",
                                                        owner_user_id=args.owner or 0), timeout=cli.timeout)
        return list(r.key_handles)

    cli.show_servers(await cli.each_node(find, login="CU"), out.find_key_text, lambda h: {"key_handles": h})


async def cmd_get_key_info(cli: Cli, args: argparse.Namespace) -> None:
    async def info(node: Node, token: str) -> pb.KeyInfo:
        return await node.stub.GetKeyInfo(pb.KeyRequest(session_token=token, key_handle=args.handle),
                                          timeout=cli.timeout)

    cli.show_servers(await cli.each_node(info, login="CU"), out.key_info_text, out.key_info_dict)


async def cmd_share_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.ShareKey(pb.ShareKeyRequest(session_token=token, key_handle=args.handle,
                                                           user_ids=args.users, unshare=args.unshare),
                                        timeout=cli.timeout)

    ids = ",".join(str(u) for u in args.users)
    action = f"Unsharing key {args.handle} from user(s) {ids}" if args.unshare else \
        f"Sharing key {args.handle} with user(s) {ids}"
    await cli.write("shareKey", action, call, login="CU",
                    details=lambda r: {"key_handle": args.handle, "user_ids": args.users, "unshare": args.unshare})


async def cmd_delete_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.DeleteKey(pb.KeyRequest(session_token=token, key_handle=args.handle),
                                         timeout=cli.timeout)

    await cli.write("deleteKey", f"Key {args.handle} deleted", call, login="CU",
                    head=lambda r: [f"Cfm3DeleteKey returned: {out.SUCCESS}", ""],
                    details=lambda r: {"key_handle": args.handle})


async def cmd_sync_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.SyncKey(pb.SyncKeyRequest(session_token=token, key_handle=args.handle),
                                       timeout=cli.timeout)

    await cli.write("syncKey", f"Syncing key {args.handle}", call, login="CU",
                    details=lambda r: {"key_handle": args.handle})


# ---------------------------------------------------------------- crypto

async def cmd_encrypt(cli: Cli, args: argparse.Namespace) -> None:
    plaintext = read_input(args.input)
    node = await cli.first_node()
    r = await node.stub.Encrypt(pb.EncryptRequest(session_token=await cli.token(node, "CU"), key_handle=args.handle,
                                                  plaintext=plaintext, aad=args.aad.encode()), timeout=cli.timeout)
    doc = {"key_handle": args.handle, "algorithm": "AES-GCM", "iv": base64.b64encode(r.iv).decode(),
           "ciphertext": base64.b64encode(r.ciphertext).decode()}
    write_output(args.output, (out.to_json(doc) + "\n").encode())


def parse_encrypted(data: bytes, handle: int | None) -> tuple[int, bytes, bytes]:
    try:
        doc = json.loads(data)
        iv, ciphertext = base64.b64decode(doc["iv"], validate=True), base64.b64decode(doc["ciphertext"], validate=True)
        key_handle = handle if handle is not None else int(doc["key_handle"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise usage_error("decrypt needs the JSON that encrypt wrote: {\"key_handle\": ..., \"iv\": base64,"
                          " \"ciphertext\": base64} (or pass -k for the key handle)") from None
    return key_handle, iv, ciphertext


async def cmd_decrypt(cli: Cli, args: argparse.Namespace) -> None:
    handle, iv, ciphertext = parse_encrypted(read_input(args.input), args.handle)
    node = await cli.first_node()
    r = await node.stub.Decrypt(pb.DecryptRequest(session_token=await cli.token(node, "CU"), key_handle=handle,
                                                  iv=iv, ciphertext=ciphertext, aad=args.aad.encode()),
                                timeout=cli.timeout)
    if cli.s.json:
        emit_json({"key_handle": handle, "plaintext": base64.b64encode(r.plaintext).decode()})
    else:
        write_output(args.output, r.plaintext, private=True)


async def cmd_gen_random(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    r = await node.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=await cli.token(node, "CU"),
                                                                length=args.length), timeout=cli.timeout)
    if cli.s.json:
        emit_json({"length": len(r.random), "random": base64.b64encode(r.random).decode()})
    else:
        print(r.random.hex())


# ---------------------------------------------------------------- argument parsing

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: INVALID_ARGUMENT: {message}\n")


def upper(value: str) -> str:
    return value.upper()


def aes_key_type(value: str) -> int:
    if value.strip() != "31":
        raise argparse.ArgumentTypeError(f"{value}: only -t 31 (AES) is supported; this HSM generates AES keys")
    return 31


def id_list(value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated user ids, got {value!r}") from None
    if not ids or any(i <= 0 for i in ids):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive user ids, got {value!r}")
    return ids


def add_global_options(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """The same options before or after the command (defaults resolved from the environment later)."""
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    g = p.add_argument_group("global options (also accepted before the command)")
    g.add_argument("--endpoint", action="append", metavar="HOST:PORT", default=default(None),
                   help=f"HSM node client endpoint, repeatable [HSM_ENDPOINTS, comma separated; {DEFAULT_ENDPOINT}]")
    g.add_argument("--trust-anchor", metavar="PATH", default=default(None),
                   help="the cluster's trust anchor, customerCA.crt [HSM_TRUST_ANCHOR]")
    g.add_argument("--user-type", dest="login_type", type=upper, choices=["CO", "CU", "PRECO"], default=default(None),
                   help="log in as this type [HSM_USER_TYPE; CO for user commands, CU for key commands]")
    g.add_argument("--username", dest="login_username", metavar="NAME", default=default(None),
                   help="log in as this user [HSM_<TYPE>_USERNAME, HSM_USERNAME; admin (CO), kmsuser (CU)]")
    g.add_argument("--password", dest="login_password", metavar="PASSWORD", default=default(None),
                   help="password of --username [HSM_<TYPE>_PASSWORD, HSM_PASSWORD; prompted on a terminal]")
    g.add_argument("--session", metavar="TOKEN", default=default(None),
                   help="reuse a loginHSM session instead of logging in: TOKEN or HOST:PORT=TOKEN,... [HSM_SESSION]")
    g.add_argument("--json", action="store_true", default=default(False), help="machine output [HSM_JSON=1]")
    g.add_argument("--node-only", action="store_true", default=default(False),
                   help="createUser/deleteUser/changePswd on each given endpoint only, not replicated"
                        " [HSM_NODE_ONLY=1]")
    g.add_argument("--rpc-timeout", type=float, metavar="SECONDS", default=default(None),
                   help=f"deadline of each call [HSM_RPC_TIMEOUT; {DEFAULT_RPC_TIMEOUT:g}]")


COMMANDS: list[tuple[str, Callable[[Cli, argparse.Namespace], Awaitable[None]], str]] = [
    ("initialize", cmd_initialize, "sign the node's cluster CSR with the trust anchor (created if needed) and"
     " initialise it"),
    ("activate", cmd_activate, "change the PRECO password: admin becomes a crypto officer, the cluster ACTIVE"),
    ("loginHSM", cmd_login, "log in on every endpoint and print the session token(s) for HSM_SESSION"),
    ("logoutHSM", cmd_logout, "end the HSM_SESSION session(s)"),
    ("createUser", cmd_create_user, "create a CO or CU user (as a CO)"),
    ("deleteUser", cmd_delete_user, "delete a user (as a CO)"),
    ("changePswd", cmd_change_password, "change a user's password (a CO for anyone, or the user itself)"),
    ("listUsers", cmd_list_users, "list the users of every endpoint (no login needed)"),
    ("syncUser", cmd_sync_user, "push the first endpoint's record of a user to every cluster member (as a CO)"),
    ("genSymKey", cmd_gen_sym_key, "generate a persistent, non-extractable AES key (as a CU)"),
    ("findAllKeys", cmd_find_all_keys, "keys owned (o) or shared (s) by a user, with the ownership hash (as a CO)"),
    ("findKey", cmd_find_key, "handles of the keys you can use, by label and/or owner (as a CU)"),
    ("getKeyInfo", cmd_get_key_info, "owner, sharing and attributes of a key on every endpoint (as a CU)"),
    ("shareKey", cmd_share_key, "share (or --unshare) a key you own with other CUs"),
    ("deleteKey", cmd_delete_key, "delete a key you own"),
    ("syncKey", cmd_sync_key, "push a key you own to every cluster member"),
    ("encrypt", cmd_encrypt, "AES-GCM encrypt a file; writes JSON with base64 iv and ciphertext"),
    ("decrypt", cmd_decrypt, "decrypt the JSON written by encrypt; writes the plaintext"),
    ("genRandom", cmd_gen_random, "random bytes from the HSM, printed in hex"),
    ("status", cmd_status, "state, identity and replication position of every endpoint"),
]


def add_command_arguments(name: str, sp: argparse.ArgumentParser) -> None:
    if name == "initialize":
        sp.add_argument("--trust-anchor-dir", metavar="DIR",
                        help="where customerCA.key/customerCA.crt are kept or created"
                             " [directory of HSM_TRUST_ANCHOR, else ./ca]")
    elif name == "activate":
        sp.add_argument("new_password", metavar="new-password")
        sp.add_argument("--preco-password", default=PRECO_DEFAULT_PASSWORD,
                        help="current PRECO password (the default, 'password', until activation)")
    elif name == "loginHSM":
        sp.add_argument("user_type", type=upper, choices=["CO", "CU", "PRECO"])
        sp.add_argument("name")
        sp.add_argument("password")
    elif name in ("createUser", "deleteUser", "changePswd"):
        sp.add_argument("user_type", type=upper, choices=["CO", "CU", "PRECO"] if name == "changePswd" else ["CO", "CU"])
        sp.add_argument("name")
        if name == "createUser":
            sp.add_argument("password")
        elif name == "changePswd":
            sp.add_argument("new_password", metavar="newpassword")
    elif name == "syncUser":
        sp.add_argument("name")
    elif name == "genSymKey":
        sp.add_argument("-t", dest="key_type", type=aes_key_type, required=True, help="key type: 31 = AES")
        sp.add_argument("-s", dest="key_size", type=int, required=True, choices=[16, 32], help="key size in bytes")
        sp.add_argument("-l", dest="label", required=True, help="key label (KMS uses the key ARN)")
        sp.add_argument("-u", dest="share", type=id_list, default=[], help="share with these CU ids (comma separated)")
        sp.add_argument("--min-replicas", "-min_srv", type=int, default=0,
                        help="fail unless this many nodes hold the key")
        sp.add_argument("--timeout-ms", type=int, default=0, help="how long to wait for --min-replicas (5000)")
        sp.add_argument("--session-key", "-sess", action="store_true", help="a session key: this node only")
        sp.add_argument("-nex", action="store_true", help="non-extractable (always the case; accepted for KMU users)")
    elif name == "findAllKeys":
        sp.add_argument("user_id", type=int, help="user id (0 = every user)")
        sp.add_argument("with_hash", type=int, choices=[0, 1], help="1 = print the key hash")
    elif name == "findKey":
        sp.add_argument("-l", dest="label", help="exact label")
        sp.add_argument("-u", dest="owner", type=int, help="owner user id")
    elif name in ("getKeyInfo", "shareKey", "deleteKey", "syncKey"):
        sp.add_argument("-k", dest="handle", type=int, required=True, help="key handle")
        if name == "shareKey":
            sp.add_argument("-u", dest="users", type=id_list, required=True, help="CU ids (comma separated)")
            sp.add_argument("--unshare", action="store_true", help="take the sharing back")
    elif name in ("encrypt", "decrypt"):
        sp.add_argument("-k", dest="handle", type=int, required=name == "encrypt",
                        help="key handle" + (" (default: the one in the input JSON)" if name == "decrypt" else ""))
        sp.add_argument("--in", dest="input", required=True, metavar="FILE", help="input file, - for stdin")
        sp.add_argument("--out", dest="output", metavar="FILE", help="output file (default stdout)")
        sp.add_argument("--aad", default="", help="additional authenticated data (text)")
    elif name == "genRandom":
        sp.add_argument("length", type=int, help="number of bytes (1..4096)")


SECRET_VALUED = ("--session", "--password", "--preco-password")


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """``--session TOKEN`` -> ``--session=TOKEN``: tokens and passwords may start with '-'."""
    return join_option_values(argv, SECRET_VALUED)


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Manage HSM nodes, users and keys with CloudHSM's CMU/KMU command names.",
               epilog="Defaults are also read from the env file named by HSM_ENV_FILE or ./.kms-cluster/env"
                      " (KEY=VALUE lines; real environment variables win).")
    add_global_options(p, sub=False)
    common = Parser(add_help=False)
    add_global_options(common, sub=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name, func, help_text in COMMANDS + cli_cluster.CLUSTER_COMMANDS:
        sp = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        add_command_arguments(name, sp)
        cli_cluster.add_arguments(name, sp)
        sp.set_defaults(func=func)
    return p


# ---------------------------------------------------------------- entry point

async def dispatch(args: argparse.Namespace, s: Settings) -> int:
    cli = Cli(s)
    try:
        if s.node_only and args.command not in NODE_ONLY_COMMANDS:
            raise usage_error(f"--node-only applies to {', '.join(sorted(NODE_ONLY_COMMANDS))}")
        if args.command not in NO_ANCHOR_NEEDED | cli_cluster.NO_ANCHOR:
            cli.anchor_pem()
        await args.func(cli, args)
        return cli.exit_code
    except (grpc.aio.AioRpcError, CliError) as exc:
        code, message = describe(exc, s.trust_anchor)
        print(f"{PROG}: {code}: {message}", file=sys.stderr)
        return exit_code_of(exc)
    finally:
        await cli.close()


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        env = environment(os.environ if environ is None else environ)
        args = build_parser().parse_args(prepare_argv(sys.argv[1:] if argv is None else argv))
        return asyncio.run(dispatch(args, settings(args, env)))
    except CliError as exc:
        print(f"{PROG}: {exc.code}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:   # e.g. `hsm-mgmt listUsers | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"{PROG}: CANCELLED: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback on the console
        print(f"{PROG}: INTERNAL: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
