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
=====================  =====================  =================================

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
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import grpc  # noqa: E402
from google.protobuf.message import Message  # noqa: E402

from plumbing.argv import join_option_values  # noqa: E402
from protos.kms.v1 import kms_pb2 as pb  # noqa: E402
from protos.kms.v1 import kms_pb2_grpc as pb_grpc  # noqa: E402

from ..errors import METADATA_KEY  # noqa: E402
from . import args as ca  # noqa: E402
from .args import (  # noqa: E402
    EXIT_FAILED,
    EXIT_SERVICE,
    EXIT_USAGE,
    SECRET_OPTIONS,
    CliError,
    Param,
    decode_token,
    encode_token,
    parse_endpoint,
    redact,
    secret_values,
)

PROG = "kms"
DEFAULT_ENDPOINT = "127.0.0.1:7800"
DEFAULT_READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 3                      # ThrottlingException only: the request was not processed


# ---------------------------------------------------------------- the command table

def audit_events(resp: Message) -> dict[str, Any]:
    """ListAuditEvents: ``details_json`` becomes a ``Details`` object."""
    data = ca.to_aws(resp)
    for event in data.get("Events", []):
        text = event.pop("DetailsJson", "") or "{}"
        try:
            event["Details"] = json.loads(text)
        except json.JSONDecodeError:
            event["Details"] = text
    return data


@dataclass(frozen=True)
class Command:
    """One subcommand: the RPC it calls, how the request is built, how the response is printed.

    Options come from the request message: each field is ``--field-name`` (the AWS CLI option of that
    member); ``required`` lists the members the AWS API requires."""

    name: str
    rpc: str
    summary: str
    required: tuple[str, ...] = ()
    service: str = "Kms"
    result_key: str | None = None            # list commands: the member merged over pages
    format: Callable[[Message], dict[str, Any]] = ca.to_aws
    build: Callable[[Command, argparse.Namespace, str], Message] | None = None  # None: build_request

    @property
    def request_type(self) -> type[Message]:
        return getattr(pb, f"{self.rpc}Request")

    @property
    def params(self) -> list[Param]:
        return ca.params_of(self.request_type, self.required)


KEY = ("key_id",)
STORE = ("custom_key_store_id",)

COMMANDS: list[Command] = [
    # custom key stores
    Command("create-custom-key-store", "CreateCustomKeyStore", "create a custom key store for a CloudHSM cluster",
            ("custom_key_store_name",)),
    Command("describe-custom-key-stores", "DescribeCustomKeyStores", "custom key stores and their connection state",
            result_key="CustomKeyStores"),
    Command("update-custom-key-store", "UpdateCustomKeyStore", "rename, change the kmsuser password or the cluster",
            STORE),
    Command("connect-custom-key-store", "ConnectCustomKeyStore", "start connecting (see: kms wait)", STORE),
    Command("disconnect-custom-key-store", "DisconnectCustomKeyStore", "disconnect a custom key store", STORE),
    Command("delete-custom-key-store", "DeleteCustomKeyStore", "delete a disconnected store without keys", STORE),
    # keys
    Command("create-key", "CreateKey", "create a KMS key in a custom key store (--origin AWS_CLOUDHSM)"),
    Command("describe-key", "DescribeKey", "key metadata", KEY),
    Command("list-keys", "ListKeys", "key ids and ARNs", result_key="Keys"),
    Command("enable-key", "EnableKey", "enable a key", KEY),
    Command("disable-key", "DisableKey", "disable a key", KEY),
    Command("update-key-description", "UpdateKeyDescription", "change a key's description", KEY + ("description",)),
    Command("schedule-key-deletion", "ScheduleKeyDeletion", "delete a key after 7..30 days", KEY),
    Command("cancel-key-deletion", "CancelKeyDeletion", "cancel a scheduled deletion (the key stays disabled)", KEY),
    Command("enable-key-rotation", "EnableKeyRotation", "not supported in a CloudHSM key store", KEY),
    Command("disable-key-rotation", "DisableKeyRotation", "not supported in a CloudHSM key store", KEY),
    Command("get-key-rotation-status", "GetKeyRotationStatus", "not supported in a CloudHSM key store", KEY),
    Command("get-parameters-for-import", "GetParametersForImport", "not supported in a CloudHSM key store",
            KEY + ("wrapping_algorithm", "wrapping_key_spec")),
    Command("import-key-material", "ImportKeyMaterial", "not supported in a CloudHSM key store",
            KEY + ("import_token", "encrypted_key_material")),
    # aliases
    Command("create-alias", "CreateAlias", "create alias/<name> for a key", ("alias_name", "target_key_id")),
    Command("update-alias", "UpdateAlias", "point an alias at another key", ("alias_name", "target_key_id")),
    Command("delete-alias", "DeleteAlias", "delete an alias", ("alias_name",)),
    Command("list-aliases", "ListAliases", "aliases (of one key with --key-id)", result_key="Aliases"),
    # tags
    Command("tag-resource", "TagResource", "add or replace tags", KEY + ("tags",)),
    Command("untag-resource", "UntagResource", "remove tags", KEY + ("tag_keys",)),
    Command("list-resource-tags", "ListResourceTags", "a key's tags", KEY, result_key="Tags"),
    # key policies
    Command("get-key-policy", "GetKeyPolicy", "the key policy document", KEY),
    Command("put-key-policy", "PutKeyPolicy", "replace the key policy", KEY + ("policy",)),
    Command("list-key-policies", "ListKeyPolicies", "policy names (always default)", KEY, result_key="PolicyNames"),
    # cryptographic operations
    Command("encrypt", "Encrypt", "encrypt up to 4096 bytes", KEY + ("plaintext",)),
    Command("decrypt", "Decrypt", "decrypt a ciphertext blob", ("ciphertext_blob",)),
    Command("re-encrypt", "ReEncrypt", "decrypt and encrypt again under another key or context",
            ("ciphertext_blob", "destination_key_id")),
    Command("generate-data-key", "GenerateDataKey", "a data key, in plaintext and encrypted", KEY),
    Command("generate-data-key-without-plaintext", "GenerateDataKeyWithoutPlaintext", "an encrypted data key", KEY),
    Command("generate-random", "GenerateRandom", "random bytes (from a store's cluster with --custom-key-store-id)"),
    # operator extensions (KmsAdmin)
    Command("list-orphaned-key-material", "ListOrphanedKeyMaterial",
            "kmsuser keys in the cluster that no KMS key uses (--delete removes them)", STORE, service="KmsAdmin"),
    Command("list-audit-events", "ListAuditEvents", "the audit log (backing key deletions ...)",
            service="KmsAdmin", format=audit_events),
]
COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}


def build_request(cmd: Command, args: argparse.Namespace, binary_format: str) -> Message:
    request = cmd.request_type()
    for param in cmd.params:
        raw = getattr(args, param.field, None)
        if raw is not None:
            ca.set_field(request, param, ca.convert(param, raw, binary_format))
    return request


# ---------------------------------------------------------------- waiters


@dataclass(frozen=True)
class Waiter:
    name: str                 # custom-key-store-connected
    waiter_name: str          # CustomKeyStoreConnected (as in the AWS CLI's messages)
    success: str
    failure: tuple[str, ...]
    summary: str


WAITERS = {w.name: w for w in (
    Waiter("custom-key-store-connected", "CustomKeyStoreConnected", "CONNECTED", ("FAILED",),
           "until ConnectionState is CONNECTED; fails on FAILED (prints the ConnectionErrorCode)"),
    Waiter("custom-key-store-disconnected", "CustomKeyStoreDisconnected", "DISCONNECTED", (),
           "until ConnectionState is DISCONNECTED"),
)}


# ---------------------------------------------------------------- settings


@dataclass
class Settings:
    target: str               # host:port for gRPC
    url: str                  # as shown in messages: grpc://host:port or grpcs://host:port
    tls: bool
    ca_file: str | None
    tls_server_name: str | None
    output: str
    query: list[tuple[str, Any]] | None
    binary_format: str
    timeout: float | None
    paginate: bool
    secrets: list[str] = field(default_factory=list)


def resolve(args: argparse.Namespace, env: Mapping[str, str], secrets: list[str]) -> Settings:
    def pick(name: str, var: str, default: Any = None) -> Any:
        value = getattr(args, name, None)
        return value if value is not None else (env.get(var) or default)

    target, tls = parse_endpoint(pick("endpoint_url", "KMS_ENDPOINT", DEFAULT_ENDPOINT))
    ca_file = pick("ca_file", "KMS_CA_FILE")
    tls = bool(ca_file) or bool(tls)
    output = pick("output", "KMS_OUTPUT", "json")
    if output not in ("json", "text"):
        raise CliError(f"argument --output: Invalid choice '{output}', valid choices are: json | text")
    binary_format = pick("cli_binary_format", "KMS_CLI_BINARY_FORMAT", "base64")
    if binary_format not in ca.BINARY_FORMATS:
        raise CliError(f"argument --cli-binary-format: Invalid choice '{binary_format}', valid choices are: "
                       + " | ".join(ca.BINARY_FORMATS))
    raw_timeout = pick("cli_read_timeout", "KMS_CLI_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise CliError(f"argument --cli-read-timeout: expected seconds, received: '{raw_timeout}'") from None
    query = getattr(args, "query", None)
    return Settings(target=target, url=("grpcs://" if tls else "grpc://") + target, tls=tls, ca_file=ca_file,
                    tls_server_name=pick("tls_server_name", "KMS_TLS_SERVER_NAME"), output=output,
                    query=ca.parse_query(query) if query is not None else None, binary_format=binary_format,
                    timeout=timeout if timeout > 0 else None, paginate=not getattr(args, "no_paginate", False),
                    secrets=secrets)


# ---------------------------------------------------------------- calling the frontend


class Client:
    def __init__(self, s: Settings) -> None:
        self.s = s
        if s.tls:
            root = None
            if s.ca_file:
                try:
                    root = Path(s.ca_file).expanduser().read_bytes()
                except OSError as exc:
                    raise CliError(f"Unable to read the CA file {s.ca_file} (--ca-file / KMS_CA_FILE): "
                                   f"{exc.strerror}", ca.EXIT_CONFIG) from None
            options = [("grpc.ssl_target_name_override", s.tls_server_name)] if s.tls_server_name else []
            self.channel = grpc.secure_channel(s.target, grpc.ssl_channel_credentials(root), options=options)
        else:
            self.channel = grpc.insecure_channel(s.target)
        self.stubs = {"Kms": pb_grpc.KmsStub(self.channel), "KmsAdmin": pb_grpc.KmsAdminStub(self.channel)}

    def close(self) -> None:
        self.channel.close()

    def call(self, service: str, rpc: str, request: Message) -> Any:
        method = getattr(self.stubs[service], rpc)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return method(request, timeout=self.s.timeout)
            except grpc.RpcError as exc:
                name = exception_name(exc)
                if name == "ThrottlingException" and attempt < MAX_ATTEMPTS:
                    time.sleep(random.uniform(0, 0.2 * 2 ** attempt))
                    continue
                raise self.error(exc, name, rpc) from None
        raise AssertionError("unreachable")

    def error(self, exc: grpc.RpcError, name: str | None, rpc: str) -> CliError:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else None) or ""
        if name:
            return CliError(f"An error occurred ({name}) when calling the {rpc} operation: {details}", EXIT_SERVICE)
        if code == grpc.StatusCode.UNAVAILABLE:
            if "ssl" in details.lower() or "handshake" in details.lower():
                return CliError(f"SSL validation failed for {self.s.url} {details}", EXIT_FAILED)
            return CliError(f'Could not connect to the endpoint URL: "{self.s.url}"', EXIT_FAILED)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CliError(f'Read timeout on endpoint URL: "{self.s.url}"', EXIT_FAILED)
        status = code.name if code is not None else "Unknown"
        return CliError(f"An error occurred ({status}) when calling the {rpc} operation: {details}", EXIT_SERVICE)


def exception_name(exc: grpc.RpcError) -> str | None:
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else value
    return None


# ---------------------------------------------------------------- pagination (as the AWS CLI's)

PAGING_OPTIONS = (("starting_token", "--starting-token"), ("page_size", "--page-size"), ("max_items", "--max-items"))


def run_list(client: Client, cmd: Command, request: Any, args: argparse.Namespace) -> dict[str, Any]:
    """All pages merged (``--max-items`` stops early with a ``NextToken``), unless ``--no-paginate`` or
    ``--marker`` asks for the one page the API returns."""
    assert cmd.result_key is not None
    given = [option for name, option in PAGING_OPTIONS if getattr(args, name, None) is not None]
    if not client.s.paginate or request.HasField("marker"):
        if given:
            raise CliError("Cannot specify --no-paginate (or --marker) along with pagination arguments: "
                           + ", ".join(given))
        return cmd.format(client.call(cmd.service, cmd.rpc, request))
    page_size, max_items = args.page_size, args.max_items
    for option, value in (("--page-size", page_size), ("--max-items", max_items)):
        if value is not None and value < 1:
            raise ca.param_error(option, f"expected a positive integer, received: '{value}'")
    if page_size is not None:
        request.limit = page_size
    marker, skip = decode_token(args.starting_token) if args.starting_token else (None, 0)
    items: list[Any] = []
    next_token: dict[str, Any] | None = None
    seen: set[str] = set()
    while True:
        if marker is None:
            request.ClearField("marker")
        else:
            request.marker = marker
        response = client.call(cmd.service, cmd.rpc, request)
        page = cmd.format(response).get(cmd.result_key, [])
        taken_before, page, skip = skip, page[skip:], 0
        remaining = None if max_items is None else max_items - len(items)
        next_marker = response.next_marker if response.HasField("next_marker") else None
        if remaining is not None and len(page) > remaining:
            items += page[:remaining]
            next_token = {"Marker": marker} if marker is not None else {}
            next_token["boto_truncate_amount"] = taken_before + remaining
            break
        items += page
        if not next_marker:
            break
        if remaining is not None and len(page) == remaining:
            next_token = {"Marker": next_marker}
            break
        if next_marker in seen:
            raise CliError(f"The service returned the same NextMarker twice when calling the {cmd.rpc} operation; "
                           "stopping pagination (retry with --no-paginate)", EXIT_FAILED)
        seen.add(next_marker)
        marker = next_marker
    result: dict[str, Any] = {cmd.result_key: items}
    if next_token is not None:
        result["NextToken"] = encode_token(next_token)
    return result


# ---------------------------------------------------------------- running commands


def run_command(client: Client, cmd: Command, args: argparse.Namespace) -> dict[str, Any]:
    request = (cmd.build or build_request)(cmd, args, client.s.binary_format)
    if cmd.result_key:
        return run_list(client, cmd, request, args)
    return cmd.format(client.call(cmd.service, cmd.rpc, request))


def run_wait(client: Client, waiter: Waiter, args: argparse.Namespace) -> None:
    """Poll DescribeCustomKeyStores; prints nothing on success, like the AWS CLI's waiters."""
    request = pb.DescribeCustomKeyStoresRequest()
    if args.custom_key_store_id is not None:
        request.custom_key_store_id = ca.string_value("--custom-key-store-id", args.custom_key_store_id)
    if args.custom_key_store_name is not None:
        request.custom_key_store_name = ca.string_value("--custom-key-store-name", args.custom_key_store_name)
    if not (request.HasField("custom_key_store_id") or request.HasField("custom_key_store_name")):
        raise CliError("kms wait: give --custom-key-store-id or --custom-key-store-name")
    prefix = f"Waiter {waiter.waiter_name} failed: "
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            response = client.call("Kms", "DescribeCustomKeyStores", request)
        except CliError as exc:
            if exc.exit_code != EXIT_SERVICE:
                raise
            raise CliError(prefix + exc.message.replace(" when calling the DescribeCustomKeyStores operation", ""),
                           EXIT_FAILED) from None
        stores = list(response.custom_key_stores)
        if not stores:
            raise CliError(prefix + "Waiter encountered a terminal failure state: no such custom key store",
                           EXIT_FAILED)
        state = stores[0].connection_state
        if state == waiter.success:
            return
        if state in waiter.failure:
            code = stores[0].connection_error_code if stores[0].HasField("connection_error_code") else "none given"
            raise CliError(prefix + f"Waiter encountered a terminal failure state: ConnectionState is {state} "
                           f"(ConnectionErrorCode: {code})", EXIT_FAILED)
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError(prefix + f"Max attempts exceeded: ConnectionState is still {state} after {args.timeout:g} s",
                           EXIT_FAILED)
        time.sleep(min(args.delay, left))


# ---------------------------------------------------------------- argument parsing

USAGE = (f"usage: {PROG} [options] <command> [parameters]\n"
         "To see help text, you can run:\n\n"
         f"  {PROG} help\n"
         f"  {PROG} <command> help\n")


class UsageError(CliError):
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
    for ignored in ("--region", "--profile"):       # accepted so that pasted `aws kms` lines run
        g.add_argument(ignored, default=s, help=argparse.SUPPRESS)
    g.add_argument("--no-cli-pager", action="store_true", default=s, help=argparse.SUPPRESS)


PARAM_HELP = {
    "blob": "fileb://PATH (raw bytes), or base64 text (UTF-8 text with --cli-binary-format raw-in-base64-out)",
    "map": "k1=v1,k2=v2 or a JSON object",
    "tags": "TagKey=k,TagValue=v ... or a JSON list",
    "strings": "one or more values, or a JSON list",
    "timestamp": "epoch seconds or ISO 8601",
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
        sys.stdout.write(ca.render(data, settings.output, settings.query))
        sys.stdout.flush()
        return 0
    except UsageError as exc:
        sys.stderr.write(redact(exc.message, secrets) + "\n")
        return exc.exit_code
    except CliError as exc:
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
