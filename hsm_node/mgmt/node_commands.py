"""``hsm-mgmt`` commands for a node's life and for sessions: ``initialize``, ``activate``,
``status``, ``loginHSM``, ``logoutHSM``."""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

import grpc

from protos.hsm.v1 import hsm_pb2 as pb

from ..rules import PRECO_DEFAULT_PASSWORD, PRECO_USERNAME
from . import output as out
from . import provision
from .context import (
    NEW_PASSWORD_HELP,
    PROG,
    UNREACHABLE,
    Cli,
    HsmMgmtError,
    Node,
    add_password_sources,
    emit_json,
    handshake_failed,
    no_trust_anchor_error,
    note,
    upper,
    usage_error,
)
from .output import Server

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
    # An explicit --trust-anchor-dir is what this run asked for: only a --trust-anchor flag can
    # contradict it, not HSM_TRUST_ANCHOR from the environment or ./.kms-cluster/env (another cluster's).
    given = args.trust_anchor if args.trust_anchor_dir else cli.s.trust_anchor
    anchor_dir = trust_anchor_dir(args.trust_anchor_dir, given)
    cert_path, key_path = anchor_dir / "customerCA.crt", anchor_dir / "customerCA.key"
    node = await cli.connect(server, tofu=True)
    status = await node.stub.GetStatus(pb.Empty(), timeout=cli.timeout)
    if status.state != pb.UNINITIALIZED:
        raise HsmMgmtError("FAILED_PRECONDITION", f"{server} is already initialised (cluster {status.cluster_id}, state"
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
        raise HsmMgmtError("FAILED_PRECONDITION", str(exc)) from None
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
        new_password = cli.new_password(args, args.new_password, "the new crypto officer password",
                                        login="PRECO")
        await provision.activate(node.stub, new_password, preco_password=args.preco_password)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in UNREACHABLE:
            raise
        raise HsmMgmtError(exc.code().name, f"{exc.details()} (activating {server} as PRECO {PRECO_USERNAME})") from None
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
    if args.hpswd:  # CMU's way to be asked
        if not sys.stdin.isatty():
            raise usage_error("-hpswd prompts for the password, and there is no terminal to prompt on")
        password = getpass.getpass(f"Password for {args.user_type} {args.name.lower()}: ")
    else:
        password = args.password or cli.login_password(args.user_type, args.name.lower())

    async def login(node: Node, _: str) -> pb.LoginResponse:
        return await node.stub.Login(pb.LoginRequest(user_type=out.USER_TYPES[args.user_type], username=args.name,
                                                     password=password), timeout=cli.timeout)

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


COMMANDS = [
    ("initialize", cmd_initialize, "sign the node's cluster CSR with the trust anchor (created if needed) and"
     " initialise it"),
    ("activate", cmd_activate, "change the PRECO password: admin becomes a crypto officer, the cluster ACTIVE"),
    ("loginHSM", cmd_login, "log in on every endpoint and print the session token(s) for HSM_SESSION"),
    ("logoutHSM", cmd_logout, "end the HSM_SESSION session(s)"),
    ("status", cmd_status, "state, identity and replication position of every endpoint"),
]
NO_ANCHOR = {"initialize", "status"}          # may trust on first use (uninitialised nodes only)


def add_arguments(name: str, sp: argparse.ArgumentParser) -> None:
    if name == "initialize":
        sp.add_argument("--trust-anchor-dir", metavar="DIR",
                        help="where customerCA.key/customerCA.crt are kept or created"
                             " [directory of HSM_TRUST_ANCHOR, else ./ca]")
    elif name == "activate":
        sp.add_argument("new_password", metavar="new-password", nargs="?", help=NEW_PASSWORD_HELP)
        add_password_sources(sp)
        sp.add_argument("--preco-password", default=PRECO_DEFAULT_PASSWORD,
                        help="current PRECO password (the default, 'password', until activation)")
    elif name == "loginHSM":
        sp.add_argument("user_type", type=upper, choices=["CO", "CU", "PRECO"])
        sp.add_argument("name")
        sp.add_argument("password", nargs="?",
                        help="omit it (or write -hpswd) and it comes from --password-fd, HSM_<TYPE>_PASSWORD,"
                             " HSM_PASSWORD or a prompt: an argument is visible to every user in `ps`")
        add_password_sources(sp, new=False)
