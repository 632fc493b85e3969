"""Calling the frontend for ``kms``: the gRPC channel (TLS when asked; every call signed with
SigV4 by the caller's AWS credentials), retries of ThrottlingException, errors in the AWS CLI's
words, list pagination as the AWS CLI does it, and the waiters' polling."""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from plumbing.tls import explain_verify_failure
from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as pb
from protos.kms.v1 import kms_pb2_grpc as pb_grpc

from ..errors import METADATA_KEY
from . import args as ca
from .args import EXIT_FAILED, EXIT_SERVICE, KmsCliError, decode_token, encode_token
from .commands import Command, Waiter, build_request
from .settings import KmsCliSettings

MAX_ATTEMPTS = 3                      # ThrottlingException only: the request was not processed


class Client:
    def __init__(self, s: KmsCliSettings) -> None:
        self.s = s
        if s.tls:
            root = None
            if s.ca_file:
                try:
                    root = Path(s.ca_file).expanduser().read_bytes()
                except OSError as exc:
                    raise KmsCliError(f"Unable to read the CA file {s.ca_file} (--ca-file / KMS_CA_FILE): "
                                   f"{exc.strerror}", ca.EXIT_CONFIG) from None
            options = [("grpc.ssl_target_name_override", s.tls_server_name)] if s.tls_server_name else []
            self.channel = grpc.secure_channel(s.target, grpc.ssl_channel_credentials(root), options=options)
        else:
            self.channel = grpc.insecure_channel(s.target)
        if s.credentials is not None:
            self.channel = grpc.intercept_channel(self.channel, kms_auth.SyncSigningInterceptor(
                s.credentials, s.region, s.target))
        self.stubs = {"Kms": pb_grpc.KmsStub(self.channel), "KmsAdmin": pb_grpc.KmsAdminStub(self.channel)}

    def close(self) -> None:
        self.channel.close()

    def call(self, service: str, rpc: str, request: Message) -> Any:
        if self.s.credentials is None:  # as the AWS CLI: the parameters are checked first, then this
            raise KmsCliError("Unable to locate credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the local"
                              " cluster's env file, ./.kms-cluster/env, sets them), or use --profile.", ca.EXIT_CONFIG)
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

    def error(self, exc: grpc.RpcError, name: str | None, rpc: str) -> KmsCliError:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else None) or ""
        if name:
            return KmsCliError(f"An error occurred ({name}) when calling the {rpc} operation: {details}", EXIT_SERVICE)
        if code == grpc.StatusCode.UNAVAILABLE:
            if "ssl" in details.lower() or "handshake" in details.lower():
                seen = explain_verify_failure(self.s.target, self.s.ca_file or "", self.s.tls_server_name or "")
                return KmsCliError(f"SSL validation failed for {self.s.url}: {seen}. Pass the CA that issued the"
                                   " frontend's certificate with --ca-file (KMS_CA_FILE), or --tls-server-name NAME"
                                   " for a certificate issued to another name", EXIT_FAILED)
            return KmsCliError(f'Could not connect to the endpoint URL: "{self.s.url}"', EXIT_FAILED)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return KmsCliError(f'Read timeout on endpoint URL: "{self.s.url}"', EXIT_FAILED)
        status = code.name if code is not None else "Unknown"
        return KmsCliError(f"An error occurred ({status}) when calling the {rpc} operation: {details}", EXIT_SERVICE)


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
            raise KmsCliError("Cannot specify --no-paginate (or --marker) along with pagination arguments: "
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
            raise KmsCliError(f"The service returned the same NextMarker twice when calling the {cmd.rpc} operation; "
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
        raise KmsCliError("kms wait: give --custom-key-store-id or --custom-key-store-name")
    prefix = f"Waiter {waiter.waiter_name} failed: "
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            response = client.call("Kms", "DescribeCustomKeyStores", request)
        except KmsCliError as exc:
            if exc.exit_code != EXIT_SERVICE:
                raise
            raise KmsCliError(prefix + exc.message.replace(" when calling the DescribeCustomKeyStores operation", ""),
                           EXIT_FAILED) from None
        stores = list(response.custom_key_stores)
        if not stores:
            raise KmsCliError(prefix + "Waiter encountered a terminal failure state: no such custom key store",
                           EXIT_FAILED)
        state = stores[0].connection_state
        if state == waiter.success:
            return
        if state in waiter.failure:
            code = stores[0].connection_error_code if stores[0].HasField("connection_error_code") else "none given"
            raise KmsCliError(prefix + f"Waiter encountered a terminal failure state: ConnectionState is {state} "
                           f"(ConnectionErrorCode: {code})", EXIT_FAILED)
        left = deadline - time.monotonic()
        if left <= 0:
            raise KmsCliError(prefix + f"Max attempts exceeded: ConnectionState is still {state} after {args.timeout:g} s",
                           EXIT_FAILED)
        time.sleep(min(args.delay, left))
