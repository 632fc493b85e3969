"""The ``kms`` global options, resolved: flag, else environment variable (or env file), else default."""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protos.kms.v1 import auth as kms_auth

from . import args as ca
from .args import KmsCliError, parse_endpoint
from .output import parse_query

try:
    from botocore.credentials import Credentials
except ImportError:  # pragma: no cover - botocore is a dependency
    Credentials = Any  # type: ignore[misc,assignment]

DEFAULT_ENDPOINT = "127.0.0.1:7800"
DEFAULT_READ_TIMEOUT = 60.0


@dataclass
class KmsCliSettings:
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
    credentials: Credentials | None = None   # signs every call (SigV4); None: unsigned, and refused
    region: str = "us-east-1"


def resolve(args: argparse.Namespace, env: Mapping[str, str], secrets: list[str]) -> KmsCliSettings:
    def pick(name: str, var: str, default: Any = None) -> Any:
        value = getattr(args, name, None)
        return value if value is not None else (env.get(var) or default)

    target, tls = parse_endpoint(pick("endpoint_url", "KMS_ENDPOINT", DEFAULT_ENDPOINT))
    ca_file = pick("ca_file", "KMS_CA_FILE")
    tls = bool(ca_file) or bool(tls)
    output = pick("output", "KMS_OUTPUT", "json")
    if output not in ("json", "text"):
        raise KmsCliError(f"argument --output: Invalid choice '{output}', valid choices are: json | text")
    binary_format = pick("cli_binary_format", "KMS_CLI_BINARY_FORMAT", "base64")
    if binary_format not in ca.BINARY_FORMATS:
        raise KmsCliError(f"argument --cli-binary-format: Invalid choice '{binary_format}', valid choices are: "
                       + " | ".join(ca.BINARY_FORMATS))
    raw_timeout = pick("cli_read_timeout", "KMS_CLI_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise KmsCliError(f"argument --cli-read-timeout: expected seconds, received: '{raw_timeout}'") from None
    query = getattr(args, "query", None)
    region = getattr(args, "region", None) or kms_auth.region_from(env)
    return KmsCliSettings(target=target, url=("grpcs://" if tls else "grpc://") + target, tls=tls, ca_file=ca_file,
                    tls_server_name=pick("tls_server_name", "KMS_TLS_SERVER_NAME"), output=output,
                    query=parse_query(query) if query is not None else None, binary_format=binary_format,
                    timeout=timeout if timeout > 0 else None, paginate=not getattr(args, "no_paginate", False),
                    secrets=secrets, credentials=credentials(env, getattr(args, "profile", None)), region=region)


def credentials(env: Mapping[str, str], profile: str | None) -> Credentials | None:
    """As the AWS CLI finds them: ``--profile``; else ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
    / ``AWS_SESSION_TOKEN`` (the environment, then the env file ``kms-cluster`` writes); else the
    default profile of ``~/.aws``."""
    if profile is None:
        found = kms_auth.credentials_from(env)
        if found is not None:
            return found
    import botocore.session
    from botocore.exceptions import BotoCoreError
    try:
        return botocore.session.Session(profile=profile).get_credentials()
    except BotoCoreError as exc:
        raise KmsCliError(f"Unable to locate credentials for profile {profile}: {exc}", ca.EXIT_CONFIG) from None
