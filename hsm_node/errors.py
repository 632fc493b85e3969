"""Errors raised by the HSM's rules, each with the gRPC status the API reports.

Messages follow CloudHSM's return-code style where one exists
("0xc6 : HSM Error: Key Access is denied.") so operators recognise them, and
never contain a password or key material.
"""
from __future__ import annotations

import grpc


class HsmError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION
    # Sent as trailing metadata with the status, for callers that act on the kind of refusal
    # rather than on the message text (see hsm.proto: ERROR_REASON_HEADER).
    metadata: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgument(HsmError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(HsmError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(HsmError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(HsmError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HsmError):
    code = grpc.StatusCode.ALREADY_EXISTS


class WrongState(HsmError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(HsmError):
    code = grpc.StatusCode.UNAVAILABLE


class InsufficientReplicas(HsmError):
    code = grpc.StatusCode.UNAVAILABLE


class StorageFull(HsmError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


ERROR_REASON_HEADER = "x-hsm-error-reason"
KEY_LIMIT_REASON = "KEY_LIMIT_EXCEEDED"
KEY_LIMIT_HEADER = "x-hsm-key-limit"
DEFAULT_MAX_KEYS = 3300  # CloudHSM quota "Maximum keys per cluster" (hsm1.medium)


class KeyLimitExceeded(HsmError):
    """CloudHSM's limit of keys per cluster: a new key is refused, nothing else changes."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, limit: int, held: int) -> None:
        super().__init__(
            f"HSM Error: key limit reached: this HSM holds {held} keys and the cluster's maximum is {limit}"
            " (CloudHSM quota: maximum keys per cluster); no key was created. Delete keys that are no longer"
            " needed; for scale tests the limit can be raised (hsm-node --max-keys, HSM_MAX_KEYS)")
        self.metadata = ((ERROR_REASON_HEADER, KEY_LIMIT_REASON), (KEY_LIMIT_HEADER, str(limit)))


# The CloudHSM return codes our messages reuse.
KEY_ACCESS_DENIED = "0xc6 : HSM Error: Key Access is denied."
INVALID_HANDLE = "0xa8 : HSM Error: Invalid object handle is passed to this operation"
LOGIN_FAILED = "0xa3 : HSM Error: Login failed (invalid user name or password)"
USER_LOCKED = "0xa4 : HSM Error: User account is locked; a CO must reset its password"
NOT_LOGGED_IN = "0xb9 : HSM Error: Session is not logged in or has expired"
