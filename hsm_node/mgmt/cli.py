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

Passwords never need to be on the command line (where every user sees them in
``ps``): a login password comes from ``--password-fd``, ``HSM_<TYPE>_PASSWORD`` /
``HSM_PASSWORD`` or a prompt; a new password (``activate``, ``createUser``,
``changePswd``) from ``--new-password-fd``, ``HSM_NEW_PASSWORD`` or a prompt (typed
twice), or ``-hpswd`` in its place, as CloudHSM's tools take it. A password given as
an argument still works, for scripts written for CMU.

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
import sys  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import grpc  # noqa: E402

from plumbing.argv import join_option_values  # noqa: E402
from plumbing.files import harden_process  # noqa: E402

from . import cluster_commands, key_commands, node_commands, user_commands  # noqa: E402
from .context import (  # noqa: E402
    DEFAULT_ENDPOINT,
    DEFAULT_RPC_TIMEOUT,
    EXIT_REFUSED,
    EXIT_USAGE,
    HIDDEN_PASSWORD,
    HPSWD_FLAG,
    PROG,
    Cli,
    HsmMgmtError,
    HsmMgmtSettings,
    describe,
    environment,
    exit_code_of,
    settings,
    upper,
    usage_error,
)

# Each module holds its commands' names, help, arguments and implementation.
COMMAND_MODULES = (node_commands, user_commands, key_commands, cluster_commands)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: INVALID_ARGUMENT: {message}\n")


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
                   help="password of --username, visible to every user in `ps`: prefer --password-fd, the"
                        " environment or the prompt [HSM_<TYPE>_PASSWORD, HSM_PASSWORD; prompted on a terminal]")
    g.add_argument("--password-fd", dest="login_password_fd", type=int, metavar="FD", default=default(None),
                   help="read the password of --username from this open file descriptor (to its end)")
    g.add_argument("--session", metavar="TOKEN", default=default(None),
                   help="reuse a loginHSM session instead of logging in: TOKEN or HOST:PORT=TOKEN,... [HSM_SESSION]")
    g.add_argument("--json", action="store_true", default=default(False), help="machine output [HSM_JSON=1]")
    g.add_argument("--node-only", action="store_true", default=default(False),
                   help="createUser/deleteUser/changePswd on each given endpoint only, not replicated"
                        " [HSM_NODE_ONLY=1]")
    g.add_argument("--rpc-timeout", type=float, metavar="SECONDS", default=default(None),
                   help=f"deadline of each call [HSM_RPC_TIMEOUT; {DEFAULT_RPC_TIMEOUT:g}]")
    g.add_argument("--wait", type=float, metavar="SECONDS", default=default(None),
                   help="first wait up to SECONDS until every endpoint the command names serves TLS (a node"
                        " just started in the background); then run the command [HSM_WAIT; 0: do not wait]")


SECRET_VALUED = ("--session", "--password", "--preco-password")


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """``--session TOKEN`` -> ``--session=TOKEN``: tokens and passwords may start with '-'; and
    CMU's ``-hpswd`` (in place of a password: prompt for it) -> ``--hpswd``, which argparse
    would otherwise read as ``-h``."""
    return [HPSWD_FLAG if a == HIDDEN_PASSWORD else a for a in join_option_values(argv, SECRET_VALUED)]


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Manage HSM nodes, users and keys with CloudHSM's CMU/KMU command names.",
               epilog="Defaults are also read from the env file named by HSM_ENV_FILE or ./.kms-cluster/env"
                      " (KEY=VALUE lines; real environment variables win).")
    add_global_options(p, sub=False)
    common = Parser(add_help=False)
    add_global_options(common, sub=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        for name, func, help_text in module.COMMANDS:
            sp = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
            module.add_arguments(name, sp)
            sp.set_defaults(func=func)
    return p


# ---------------------------------------------------------------- entry point

async def dispatch(args: argparse.Namespace, s: HsmMgmtSettings) -> int:
    cli = Cli(s)
    try:
        if s.node_only and args.command not in user_commands.NODE_ONLY:
            raise usage_error(f"--node-only applies to {', '.join(sorted(user_commands.NODE_ONLY))}")
        if args.command not in node_commands.NO_ANCHOR | cluster_commands.NO_ANCHOR:
            cli.anchor_pem()
        if s.wait > 0:
            await cli.wait_until_serving(s.wait, getattr(args, "new_endpoint", None))
        await args.func(cli, args)
        return cli.exit_code
    except (grpc.aio.AioRpcError, HsmMgmtError) as exc:
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
    except HsmMgmtError as exc:
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
    harden_process()  # it handles passwords and the trust anchor's private key
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
