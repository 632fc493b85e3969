"""Errors raised by the HSM's rules, each with the gRPC status the API reports.

Messages follow CloudHSM's return-code style where one exists
("0xc6 : HSM Error: Key Access is denied.") so operators recognise them, and
never contain a password or key material.
"""
from __future__ import annotations

import grpc

from protos.hsm.v1.metadata import ERROR_KEY, KEY_LIMIT_KEY, REPLICAS_KEY


class HsmError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((ERROR_KEY, type(self).__name__),)


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
    """A write that needed ``needed`` nodes reached only ``confirmed``; nothing was kept."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, confirmed: int, needed: int) -> None:
        super().__init__(message)
        self.confirmed, self.needed = confirmed, needed

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), (REPLICAS_KEY, str(self.confirmed)))


class StorageFull(HsmError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StorageFailed(HsmError):
    """The node's storage was found damaged or altered while serving: nothing was changed,
    and the node must be restored from a backup."""
    code = grpc.StatusCode.DATA_LOSS


DEFAULT_MAX_KEYS = 3300  # CloudHSM quota "Maximum keys per cluster" (hsm1.medium)


class KeyLimitExceeded(HsmError):
    """CloudHSM's limit of keys per cluster: a new key is refused, nothing else changes."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, limit: int, held: int) -> None:
        super().__init__(
            f"HSM Error: key limit reached: this HSM holds {held} keys and the cluster's maximum is {limit}"
            " (CloudHSM quota: maximum keys per cluster); no key was created. Delete keys that are no longer"
            " needed; for scale tests the limit can be raised (hsm-node --max-keys, HSM_MAX_KEYS)")
        self.limit = limit

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), (KEY_LIMIT_KEY, str(self.limit)))


# The CloudHSM return codes our messages reuse.
KEY_ACCESS_DENIED = "0xc6 : HSM Error: Key Access is denied."
INVALID_HANDLE = "0xa8 : HSM Error: Invalid object handle is passed to this operation"
LOGIN_FAILED = "0xa3 : HSM Error: Login failed (invalid user name or password)"
USER_LOCKED = "0xa4 : HSM Error: User account is locked; a CO must reset its password"
NOT_LOGGED_IN = "0xb9 : HSM Error: Session is not logged in or has expired"
