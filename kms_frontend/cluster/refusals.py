"""What an HSM node's refusal means, read from its trailing metadata rather than its text.

A node that refuses a call for a reason a caller acts on names the reason in the trailing
metadata ``x-hsm-error-reason`` (hsm.proto, GenerateKey); the message stays for people.
"""
from __future__ import annotations

import grpc

ERROR_REASON_HEADER = "x-hsm-error-reason"
KEY_LIMIT_REASON = "KEY_LIMIT_EXCEEDED"
KEY_LIMIT_HEADER = "x-hsm-key-limit"


def key_limit(exc: grpc.aio.AioRpcError) -> int | None:
    """The cluster's limit of keys when the node refused a new key because the cluster holds
    that many (CloudHSM's "maximum keys per cluster"); None for any other failure."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    meta = {k: v for k, v in (exc.trailing_metadata() or ())}
    if meta.get(ERROR_REASON_HEADER) != KEY_LIMIT_REASON:
        return None
    try:
        return int(meta.get(KEY_LIMIT_HEADER, "0"))
    except ValueError:
        return 0
