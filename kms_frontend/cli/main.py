"""``kms``: the ``aws kms`` command line for this frontend, over its gRPC API.

    kms [global options] <command> [parameters]
    kms wait custom-key-store-connected --custom-key-store-id cks-... [--timeout 300]

Commands, options and output are those of ``aws kms`` (AWS CLI v2): kebab-case
operation names, one ``--member-name`` option per request member, JSON output
with the AWS member names. ``list-orphaned-key-material`` and
``list-audit-events`` are operator extensions (the KmsAdmin service).

Global options (also accepted after the command), each with its environment
variable; ``KMS_ENV_FILE`` (or ``./.kms-cluster/env``, written by the cluster
launcher) supplies defaults, real environment variables win:

=====================  =====================  =================================
``--endpoint-url``     ``KMS_ENDPOINT``       ``127.0.0.1:7800``; ``host:port``,
                                              ``grpc://host:port`` or
                                              ``grpcs://host:port`` (TLS)
``--ca-file``          ``KMS_CA_FILE``        TLS to the frontend, verified with
                                              this CA (plaintext without it)
``--tls-server-name``  ``KMS_TLS_SERVER_NAME``  name to verify instead of host
``--output``           ``KMS_OUTPUT``         ``json`` (default) or ``text``
``--query``                                   ``A``, ``A.B``, ``A[].B``, ``A[0]``
``--cli-binary-format`` ``KMS_CLI_BINARY_FORMAT``  ``base64`` | ``raw-in-base64-out``
``--cli-read-timeout`` ``KMS_CLI_READ_TIMEOUT``  seconds per call, 0 = none; 60
``--no-paginate``                             one page of list commands
``--region``           ``AWS_REGION``         the Region calls are signed for
``--profile``                                 ``~/.aws`` profile to sign with
=====================  =====================  =================================

Every call is signed with AWS Signature Version 4 (:mod:`protos.kms.v1.auth`) with the
credentials the AWS CLI would use: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN`` (the environment, then the env file: ``kms-cluster``'s sets the account
root's pair), else ``--profile`` or the default profile of ``~/.aws``.

Exit status as the AWS CLI's: 0 ok, 252 usage or parameter errors, 253 a bad
environment file, 254 the service returned an error, 255 other failures (no
connection, waiter failure), 130 interrupted. Errors print like the AWS CLI
(``An error occurred (<Exception>) when calling the <Operation> operation:
<message>``) on stderr, never with a traceback. Passwords are never printed.
"""
from __future__ import annotations

import os

# gRPC's C core logs connection failures straight to stderr; the CLI reports errors itself.
# Must be set before grpc is imported (set GRPC_VERBOSITY to see them).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from plumbing.argv import join_option_values  # noqa: E402

from . import args as ca  # noqa: E402
from .args import EXIT_FAILED, EXIT_USAGE, SECRET_OPTIONS, KmsCliError, redact, secret_values  # noqa: E402
from .client import Client, run_command, run_wait  # noqa: E402
from .commands import COMMANDS, COMMANDS_BY_NAME, WAITERS, Command  # noqa: E402
from .output import render  # noqa: E402
from .settings import DEFAULT_ENDPOINT, DEFAULT_READ_TIMEOUT, resolve  # noqa: E402

PROG = "kms"


# ---------------------------------------------------------------- argument parsing

USAGE = (f"usage: {PROG} [options] <command> [parameters]\n"
         "To see help text, you can run:\n\n"
         f"  {PROG} help\n"
         f"  {PROG} <command> help\n")


class UsageError(KmsCliError):
    """An argparse error, printed after the AWS CLI's usage block."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{USAGE}\n{PROG}: error: {message}", EXIT_USAGE)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        head, sep, rest = message.partition(": invalid choice: ")
        if sep and "(choose from " in rest:        # the AWS CLI's wording, choices on their own lines
            given, _, choices = rest.partition(" (choose from ")
            names = re.findall(r"'([^']+)'", choices)
            listing = textwrap.fill(" | ".join(names), width=78, break_on_hyphens=False)
            message = f"{head.replace('<', '').replace('>', '')}: Invalid choice {given}, valid choices are:\n\n{listing}"
        raise UsageError(message)


def add_global_options(p: argparse.ArgumentParser) -> None:
    """The same options before or after the command; defaults are resolved later (env, env file)."""
    g = p.add_argument_group("global options (before or after the command)")
    s = argparse.SUPPRESS
    g.add_argument("--endpoint-url", metavar="URL", default=s,
                   help=f"host:port, grpc://host:port or grpcs://host:port [KMS_ENDPOINT; {DEFAULT_ENDPOINT}]")
    g.add_argument("--ca-file", metavar="PATH", default=s,
                   help="use TLS, verifying the frontend with this CA bundle [KMS_CA_FILE; plaintext without it]")
    g.add_argument("--tls-server-name", metavar="NAME", default=s,
                   help="name the frontend's certificate must carry, if not the endpoint host [KMS_TLS_SERVER_NAME]")
    g.add_argument("--output", metavar="json|text", default=s, help="output format [KMS_OUTPUT; json]")
    g.add_argument("--query", metavar="EXPR", default=s,
                   help="print only this part of the response: A, A.B, A[].B, A[0] (a JMESPath subset)")
    g.add_argument("--cli-binary-format", metavar="FORMAT", default=s,
                   help="blob parameters given as text are base64 (base64) or UTF-8 text (raw-in-base64-out)"
                        " [KMS_CLI_BINARY_FORMAT; base64]")
    g.add_argument("--cli-read-timeout", metavar="SECONDS", default=s,
                   help=f"deadline of each call, 0 = none [KMS_CLI_READ_TIMEOUT; {DEFAULT_READ_TIMEOUT:g}]")
    g.add_argument("--no-paginate", action="store_true", default=s,
                   help="list commands: print the single page the API returns (with NextMarker/Truncated)")
    g.add_argument("--region", metavar="REGION", default=s,
                   help="Region the calls are signed for [AWS_REGION, AWS_DEFAULT_REGION; us-east-1]")
    g.add_argument("--profile", metavar="NAME", default=s,
                   help="sign with this ~/.aws profile's credentials instead of AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    g.add_argument("--no-cli-pager", action="store_true", default=s, help=argparse.SUPPRESS)


PARAM_HELP = {
    "blob": "fileb://PATH (raw bytes), or base64 text (UTF-8 text with --cli-binary-format raw-in-base64-out)",
    "map": "k1=v1,k2=v2 or a JSON object",
    "tags": "TagKey=k,TagValue=v ... or a JSON list",
    "strings": "one or more values, or a JSON list",
    "timestamp": "epoch seconds or ISO 8601",
    "constraints": "EncryptionContextSubset={k=v,...}, EncryptionContextEquals={k=v,...} or a JSON object",
}


def add_command(sub: Any, common: argparse.ArgumentParser, cmd: Command) -> None:
    sp = sub.add_parser(cmd.name, parents=[common], prog=f"{PROG} {cmd.name}", help=cmd.summary, description=f"{cmd.rpc}: {cmd.summary}",
                        allow_abbrev=False)
    for param in cmd.params:
        text = PARAM_HELP.get(param.kind, "")
        if param.required:
            text = "(required) " + text
        if param.kind == "bool":
            sp.add_argument(param.option, dest=param.field, action=argparse.BooleanOptionalAction, default=None)
        else:
            sp.add_argument(param.option, dest=param.field, required=param.required, nargs=param.nargs,
                            metavar=param.metavar, help=text or None)
    if cmd.result_key:
        sp.add_argument("--starting-token", metavar="<token>", help="the NextToken of an earlier --max-items run")
        sp.add_argument("--page-size", metavar="<integer>", type=int, help="items per call (the Limit of each call)")
        sp.add_argument("--max-items", metavar="<integer>", type=int,
                        help="print at most this many items, and a NextToken to continue")
    sp.set_defaults(command=cmd.name)


def build_parser() -> Parser:
    p = Parser(prog=PROG, usage=f"{PROG} [options] <command> [parameters]", allow_abbrev=False,
               description="AWS KMS (aws kms) for custom key stores backed by a CloudHSM-like cluster.",
               epilog="Defaults are read from the env file named by KMS_ENV_FILE, else ./.kms-cluster/env"
                      " (KEY=VALUE lines; real environment variables win).")
    add_global_options(p)
    common = Parser(add_help=False, allow_abbrev=False)
    add_global_options(common)
    sub = p.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)
    for cmd in COMMANDS:
        add_command(sub, common, cmd)
    wait = sub.add_parser("wait", parents=[common], prog=f"{PROG} wait", help="wait until a custom key store is connected/disconnected",
                          allow_abbrev=False)
    wsub = wait.add_subparsers(dest="waiter", metavar="<waiter>", parser_class=Parser)
    for w in WAITERS.values():
        wp = wsub.add_parser(w.name, parents=[common], prog=f"{PROG} wait {w.name}", help=w.summary, description=f"Poll DescribeCustomKeyStores "
                             f"{w.summary}.", allow_abbrev=False)
        wp.add_argument("--custom-key-store-id", metavar="<value>")
        wp.add_argument("--custom-key-store-name", metavar="<value>")
        wp.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS", help="give up after (300)")
        wp.add_argument("--delay", type=float, default=0.5, metavar="SECONDS", help="between polls (0.5)")
    return p


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """``kms help`` / ``kms encrypt help`` -> ``--help``; ``--key-store-password -x`` -> ``--key-store-password=-x``
    (a password may start with '-', which argparse would take for an option)."""
    args = join_option_values(argv, SECRET_OPTIONS)
    if args and args[-1] == "help" and (len(args) == 1 or args[-2] in COMMANDS_BY_NAME or args[-2] == "wait"
                                        or args[-2] in WAITERS):
        args[-1] = "--help"
    return args


# ---------------------------------------------------------------- entry point


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    secrets = secret_values(argv)
    client: Client | None = None
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(prepare_argv(argv))
        if extras:
            raise UsageError("Unknown options: " + ", ".join(extras))
        if not getattr(args, "command", None):
            raise UsageError("the following arguments are required: command")
        if args.command == "wait" and not getattr(args, "waiter", None):
            raise UsageError("the following arguments are required: waiter (one of: " + ", ".join(WAITERS) + ")")
        env = ca.environment(os.environ if environ is None else environ)
        settings = resolve(args, env, secrets)
        client = Client(settings)
        if args.command == "wait":
            run_wait(client, WAITERS[args.waiter], args)
            return 0
        data = run_command(client, COMMANDS_BY_NAME[args.command], args)
        sys.stdout.write(render(data, settings.output, settings.query))
        sys.stdout.flush()
        return 0
    except UsageError as exc:
        sys.stderr.write(redact(exc.message, secrets) + "\n")
        return exc.exit_code
    except KmsCliError as exc:
        sys.stderr.write("\n" + redact(exc.message, secrets) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return ca.EXIT_INTERRUPTED
    except SystemExit as exc:                      # --help
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a CLI reports, never a traceback
        sys.stderr.write("\n" + redact(f"{type(exc).__name__}: {exc}", secrets) + "\n")
        return EXIT_FAILED
    finally:
        if client is not None:
            client.close()


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
