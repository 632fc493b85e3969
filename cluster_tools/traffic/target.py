"""Where the cluster is: the frontend's endpoints, credentials and the custom key store.

Flags win; what they leave out comes from the local cluster's state directory
(``kms-cluster``'s ``state.json``, the same data ``kms-cluster status --json`` prints).
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..launcher import DEFAULT_DIR, Cluster


class TargetError(Exception):
    pass


@dataclass
class Target:
    protocol: str = "grpc"              # grpc | aws
    endpoint: str = ""                  # gRPC host:port
    aws_endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""             # both protocols sign their calls with these (SigV4)
    secret_access_key: str = ""
    session_token: str = ""
    store_id: str = ""
    ca_bundle: str = ""                 # the CA an https AWS endpoint is trusted by (empty: AWS_CA_BUNDLE, else the system's)
    timeout: float = 30.0               # per call, seconds


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """``500ms``, ``5s``, ``5`` (seconds), ``2m``, ``1h`` -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration such as 500ms, 5s, 2m; got {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]


def cluster_dir(args: argparse.Namespace) -> Path:
    return Path(args.cluster_dir or os.environ.get("KMS_CLUSTER_DIR") or DEFAULT_DIR)


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (defaults: the local cluster's state.json)")
    g.add_argument("--cluster-dir", help=f"kms-cluster state directory [KMS_CLUSTER_DIR, default {DEFAULT_DIR}]")
    g.add_argument("--protocol", choices=("grpc", "aws"), default="grpc",
                   help="gRPC (kms.v1) or the AWS JSON 1.1 endpoint through boto3 (default grpc)")
    g.add_argument("--endpoint", help="frontend gRPC host:port")
    g.add_argument("--aws-endpoint-url", help="AWS JSON endpoint URL (--protocol aws)")
    g.add_argument("--region", help="AWS Region of the frontend")
    g.add_argument("--access-key-id", help="AWS access key id every call is signed with (both protocols; default:"
                                           " the local cluster's account root)")
    g.add_argument("--secret-access-key", help="AWS secret access key")
    g.add_argument("--session-token", help="session token of temporary (AssumeRole) credentials")
    g.add_argument("--custom-key-store-id", help="store to create keys in and to draw random bytes from")
    g.add_argument("--timeout", type=parse_duration, default=30.0, help="deadline of each call (default 30s)")


def resolve(args: argparse.Namespace, defaults: dict | None = None) -> Target:
    """Flags first, then ``defaults`` (e.g. from a compose project), then the local state directory."""
    t = Target(protocol=args.protocol, timeout=args.timeout)
    given = {"endpoint": args.endpoint, "aws_endpoint_url": args.aws_endpoint_url, "region": args.region,
             "access_key_id": args.access_key_id, "secret_access_key": args.secret_access_key,
             "session_token": args.session_token, "store_id": args.custom_key_store_id}
    found = dict(defaults or {})
    needed = ("endpoint", "access_key_id", "secret_access_key", "store_id") if t.protocol == "grpc" else (
        "aws_endpoint_url", "access_key_id", "secret_access_key", "store_id")
    if any(not given[k] and not found.get(k) for k in needed):
        found = {**local_defaults(cluster_dir(args)), **found}
    for name, value in given.items():
        setattr(t, name, value or found.get(name) or getattr(t, name))
    if not args.aws_endpoint_url:  # the CA goes with the endpoint it was found with
        t.ca_bundle = found.get("ca_bundle", "")
    missing = [k for k in needed if not getattr(t, k)]
    if missing:
        flags = ", ".join("--" + {"store_id": "custom-key-store-id"}.get(k, k).replace("_", "-") for k in missing)
        raise TargetError(f"no {flags} given and no local cluster state to read them from"
                          f" ({cluster_dir(args)}/state.json; start one with `kms-cluster up --detach`)")
    return t


def local_defaults(directory: Path) -> dict:
    if not (directory / "state.json").exists():
        return {}
    st = Cluster(directory).status()
    return {"endpoint": st["kms_endpoint"], "aws_endpoint_url": st["aws_endpoint_url"], "region": st["region"],
            "access_key_id": st["aws_access_key_id"], "secret_access_key": st["aws_secret_access_key"],
            "store_id": st["custom_key_store_id"], "ca_bundle": st.get("aws_ca_bundle", "")}
