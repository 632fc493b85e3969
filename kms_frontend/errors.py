"""AWS KMS exceptions: the one mapping of exception name -> gRPC status code and HTTP status.

Every error the service layer reports is a :class:`KmsError` subclass whose class name is the
AWS exception name (``KMSInvalidStateException`` ...). Adapters need nothing else:

* gRPC: ``context.abort(err.grpc_code, err.message)`` with trailing metadata
  ``err.grpc_metadata()`` = ``(("x-aws-exception", err.name),)``.
* AWS JSON 1.1: HTTP ``err.http_status`` with body ``err.aws_json_body()``
  (``{"__type": name, "message": message}``).

Clients go the other way with :func:`from_name`.

The helper constructors below (``key_disabled(arn)`` ...) produce the messages AWS returns
verbatim where AWS documents them; for custom key store errors, whose AWS texts are not
documented, the messages say what state things are in and what to do about it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import ClassVar

import grpc

METADATA_KEY = "x-aws-exception"
"""Trailing-metadata key carrying the AWS exception name on a failed gRPC call."""

_S = grpc.StatusCode
_REGISTRY: dict[str, type[KmsError]] = {}


class KmsError(Exception):
    """An AWS KMS error: ``name`` is the AWS exception name, ``message`` the AWS message."""

    name: str = "KmsError"  # the AWS exception name; set per subclass to its class name
    grpc_code: ClassVar[grpc.StatusCode] = _S.INTERNAL
    http_status: ClassVar[int] = 400
    retryable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__
        _REGISTRY[cls.__name__] = cls

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, self.name),)

    def aws_json_body(self) -> dict[str, str]:
        return {"__type": self.name, "message": self.message}


# ---------------------------------------------------------------- generic KMS exceptions


class NotFoundException(KmsError):
    grpc_code = _S.NOT_FOUND


class AlreadyExistsException(KmsError):
    grpc_code = _S.ALREADY_EXISTS


class DisabledException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class KMSInvalidStateException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class InvalidCiphertextException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class IncorrectKeyException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class InvalidKeyUsageException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class ValidationException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class UnsupportedOperationException(KmsError):
    grpc_code = _S.UNIMPLEMENTED


class InvalidAliasNameException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class InvalidArnException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class InvalidMarkerException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class InvalidGrantTokenException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class MalformedPolicyDocumentException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class TagException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class NotAuthorizedException(KmsError):
    grpc_code = _S.PERMISSION_DENIED


class LimitExceededException(KmsError):
    grpc_code = _S.RESOURCE_EXHAUSTED


class ThrottlingException(KmsError):
    grpc_code = _S.RESOURCE_EXHAUSTED
    retryable = True


class DryRunOperationException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION
    http_status = 412


class DependencyTimeoutException(KmsError):
    grpc_code = _S.UNAVAILABLE
    http_status = 503
    retryable = True


class KeyUnavailableException(KmsError):
    grpc_code = _S.UNAVAILABLE
    http_status = 500
    retryable = True


class KMSInternalException(KmsError):
    grpc_code = _S.INTERNAL
    http_status = 500
    retryable = True


# ---------------------------------------------------------------- custom key store exceptions


class CustomKeyStoreNotFoundException(KmsError):
    grpc_code = _S.NOT_FOUND


class CustomKeyStoreNameInUseException(KmsError):
    grpc_code = _S.ALREADY_EXISTS


class CustomKeyStoreInvalidStateException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class CustomKeyStoreHasCMKsException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class CloudHsmClusterNotFoundException(KmsError):
    grpc_code = _S.NOT_FOUND


class CloudHsmClusterNotActiveException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class CloudHsmClusterInUseException(KmsError):
    grpc_code = _S.ALREADY_EXISTS


class CloudHsmClusterInvalidConfigurationException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class CloudHsmClusterNotRelatedException(KmsError):
    grpc_code = _S.FAILED_PRECONDITION


class IncorrectTrustAnchorException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


# ---------------------------------------------------------------- authentication and authorization


class MissingAuthenticationTokenException(KmsError):
    grpc_code = _S.UNAUTHENTICATED


class IncompleteSignatureException(KmsError):
    grpc_code = _S.UNAUTHENTICATED


class UnrecognizedClientException(KmsError):
    grpc_code = _S.UNAUTHENTICATED


class InvalidSignatureException(KmsError):
    grpc_code = _S.UNAUTHENTICATED


class ExpiredTokenException(KmsError):
    grpc_code = _S.UNAUTHENTICATED


class AccessDeniedException(KmsError):
    grpc_code = _S.PERMISSION_DENIED
    resource: str | None = None  # the ARN the caller was refused on (for the audit trail)


class InvalidGrantIdException(KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class AccessDenied(KmsError):
    """STS's name for a refused call (KMS's is AccessDeniedException)."""

    grpc_code = _S.PERMISSION_DENIED
    http_status = 403


AUTHENTICATION_REFUSALS = (MissingAuthenticationTokenException, IncompleteSignatureException,
                           UnrecognizedClientException, InvalidSignatureException, ExpiredTokenException)
"""Refusals of a request whose caller could not be authenticated (nothing ran)."""


def invalid_security_token() -> UnrecognizedClientException:
    return UnrecognizedClientException("The security token included in the request is invalid.")


def expired_security_token() -> ExpiredTokenException:
    return ExpiredTokenException("The security token included in the request is expired")


def access_denied(principal_arn: str, action: str, resource: str | None, why: str) -> AccessDeniedException:
    """AWS's wording: ``User: <arn> is not authorized to perform: <action> on resource: <arn>
    because no identity-based policy allows the <action> action`` (``why`` is the part after the
    resource: ``because no resource-based policy allows the kms:Decrypt action``, ``with an explicit
    deny in a resource-based policy`` ...). ``resource`` None leaves out "on resource"."""
    on = f" on resource: {resource}" if resource is not None else ""
    exc = AccessDeniedException(f"User: {principal_arn} is not authorized to perform: {action}{on} {why}")
    exc.resource = resource
    return exc


def sts_access_denied(principal_arn: str, action: str, resource: str, why: str) -> AccessDenied:
    return AccessDenied(f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource} {why}")


EXCEPTIONS: Mapping[str, type[KmsError]] = _REGISTRY
"""AWS exception name -> class, for every exception defined above."""


def from_name(name: str, message: str = "") -> KmsError:
    """Rebuild an error from its AWS name (client side). Unknown names keep their name."""
    cls = _REGISTRY.get(name)
    if cls is not None:
        return cls(message)
    err = KmsError(message)
    err.name = name
    return err


# ---------------------------------------------------------------- key state messages (verbatim AWS)


def key_disabled(arn: str) -> DisabledException:
    return DisabledException(f"{arn} is disabled.")


def key_pending_deletion(arn: str) -> KMSInvalidStateException:
    return KMSInvalidStateException(f"{arn} is pending deletion.")


def key_unavailable(arn: str) -> KMSInvalidStateException:
    return KMSInvalidStateException(f"{arn} is unavailable.")


def key_not_pending_deletion(arn: str) -> KMSInvalidStateException:
    return KMSInvalidStateException(f"{arn} is not pending deletion.")


def key_state_error(arn: str, key_state: str) -> KmsError:
    """The error a cryptographic operation gets on a key that is not ``Enabled``."""
    if key_state == "Disabled":
        return key_disabled(arn)
    if key_state == "PendingDeletion":
        return key_pending_deletion(arn)
    if key_state == "Unavailable":
        return key_unavailable(arn)
    return KMSInvalidStateException(f"{arn} is not usable: its key state is {key_state}.")


def invalid_key_id(key_id: str) -> NotFoundException:
    return NotFoundException(f"Invalid keyId '{key_id}'")


def key_not_found(arn: str) -> NotFoundException:
    return NotFoundException(f"Key '{arn}' does not exist")


def alias_not_found(alias_arn: str) -> NotFoundException:
    return NotFoundException(f"Alias {alias_arn} is not found.")


def alias_already_exists(alias_arn: str) -> AlreadyExistsException:
    return AlreadyExistsException(f"An alias with the name {alias_arn} already exists")


def invalid_key_usage(arn: str, key_usage: str, operation: str) -> InvalidKeyUsageException:
    return InvalidKeyUsageException(f"{arn} key usage is {key_usage} which is not valid for {operation}.")


def unsupported_origin(arn: str, origin: str = "AWS_CLOUDHSM") -> UnsupportedOperationException:
    """Rotation and import operations on a key in a CloudHSM key store."""
    return UnsupportedOperationException(f"{arn} origin is {origin} which is not valid for this operation")


def unsupported_in_custom_key_store(what: str) -> UnsupportedOperationException:
    """CreateKey parameters a CloudHSM key store cannot honour, e.g. ``what='KeySpec RSA_2048'``."""
    return UnsupportedOperationException(
        f"{what} is not supported for KMS keys in an AWS CloudHSM key store; "
        "only symmetric ENCRYPT_DECRYPT keys (KeySpec SYMMETRIC_DEFAULT), single-Region, are."
    )


def cluster_unreachable(arn: str, cluster_id: str) -> KMSInvalidStateException:
    """Crypto on a key whose store is CONNECTED but whose cluster has no answering HSM."""
    return KMSInvalidStateException(
        f"{arn} cannot be used now: KMS cannot communicate with your CloudHSM cluster {cluster_id}. "
        "Make sure the cluster has at least one active HSM, then retry."
    )


def backing_key_missing(arn: str, cluster_id: str) -> KMSInvalidStateException:
    """Crypto on a key whose key material is gone from the cluster."""
    return KMSInvalidStateException(
        f"{arn} cannot be used: its key material was not found in CloudHSM cluster {cluster_id}. "
        "If it was deleted, restore a cluster from a backup that contains it and switch the "
        "custom key store to that cluster."
    )


def incorrect_key() -> IncorrectKeyException:
    return IncorrectKeyException(
        "The key ID in the request does not identify the KMS key that was used to encrypt the ciphertext."
    )


def invalid_ciphertext() -> InvalidCiphertextException:
    """AWS returns no message: nothing is said about why (context, tamper, wrong store...)."""
    return InvalidCiphertextException("")


def throttled() -> ThrottlingException:
    return ThrottlingException(
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
    )


def dry_run_succeeded() -> DryRunOperationException:
    return DryRunOperationException("The request would have succeeded, but the DryRun option is set.")


def reserved_tag_key() -> TagException:
    return TagException("Tags beginning with aws: are reserved")


def internal(message: str = "An internal error occurred. Retry the request.") -> KMSInternalException:
    return KMSInternalException(message)


def unexpected(log: logging.Logger, operation: str, request_id: str) -> KMSInternalException:
    """For an exception no rule expected (call it in the ``except`` block): the traceback goes to the
    log under an incident id, the caller gets only that id."""
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error", extra={"event": "internal_error", "operation": operation,
                                           "incident": incident, "request_id": request_id})
    return internal(f"An internal error occurred (incident {incident}). Retry the request.")


def hsm_storage_full(cluster_id: str) -> KMSInternalException:
    return KMSInternalException(
        f"The HSMs in CloudHSM cluster {cluster_id} could not store the key: their storage is full. No key was "
        "created. Free space on the HSM nodes' data volumes, then retry.")


def cloud_hsm_key_limit(cluster_id: str, limit: int) -> LimitExceededException:
    """The cluster holds CloudHSM's maximum number of keys: AWS documents no text for this case;
    KMS reports an exceeded resource quota as LimitExceededException."""
    held = f" ({limit:,})" if limit else ""
    return LimitExceededException(
        f"CloudHSM cluster {cluster_id} cannot hold another key: it holds the maximum number of keys per cluster"
        f"{held}. No KMS key was created. Delete KMS keys of this custom key store that are no longer needed"
        " (their key material leaves the cluster when their waiting period ends), or use another cluster.")


def metadata_store_full() -> KMSInternalException:
    return KMSInternalException(
        "The KMS frontend's metadata store is full: nothing was changed. Free space on its data volume, then retry.")


def no_free_sessions(cluster_id: str) -> KMSInternalException:
    return KMSInternalException(
        f"CloudHSM cluster {cluster_id} has no free PKCS#11 sessions. Back off and retry the request."
    )


def dependency_timeout() -> DependencyTimeoutException:
    return DependencyTimeoutException("The system timed out while trying to fulfill the request. Retry it.")


# ---------------------------------------------------------------- ValidationException shapes


MAX_ECHOED_VALUE = 1024  # longer values are cut: gRPC drops status details beyond ~8 KB of metadata


def validation_failure(field: str, constraint: str, value: object = None, *, shown: str = "value") -> str:
    """One AWS constraint-violation phrase.

    ``shown`` says how the value appears: ``"value"`` -> ``Value '<v>'`` (``Value null`` for None),
    ``"masked"`` -> ``Value '***'`` (sensitive strings), ``"omitted"`` -> ``Value`` (blobs).
    """
    if shown == "omitted":
        subject = "Value"
    elif value is None:
        subject = "Value null"
    elif shown == "masked":
        subject = "Value '***'"
    else:
        text = str(value)
        if len(text) > MAX_ECHOED_VALUE:  # an over-long value is not repeated whole (status details are small)
            text = text[:MAX_ECHOED_VALUE] + f"...({len(text)} characters)"
        subject = f"Value '{text}'"
    return f"{subject} at '{field}' failed to satisfy constraint: {constraint}"


def validation_error(failures: Iterable[str]) -> ValidationException:
    """``N validation error(s) detected: <failure>; <failure>`` from :func:`validation_failure` phrases."""
    items = list(failures)
    noun = "error" if len(items) == 1 else "errors"
    return ValidationException(f"{len(items)} validation {noun} detected: " + "; ".join(items))


def data_key_spec_required() -> ValidationException:
    return ValidationException("Please specify either number of bytes or key spec.")


def alias_prefix_required() -> ValidationException:
    return ValidationException(
        'Alias must start with the prefix "alias/". Please see '
        "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
    )


def alias_invalid_characters(alias_name: str) -> ValidationException:
    return ValidationException(f"{alias_name} contains invalid characters for an alias")


def alias_reserved(alias_name: str) -> NotAuthorizedException:
    return NotAuthorizedException(
        f"{alias_name} is reserved: aliases beginning with alias/aws/ belong to AWS managed keys."
    )


# ---------------------------------------------------------------- custom key store messages


def _state_advice(connection_state: str, allowed: list[str]) -> str:
    if connection_state == "CONNECTING":
        return "Wait until the connection attempt ends (DescribeCustomKeyStores shows CONNECTED or FAILED)."
    if connection_state == "DISCONNECTING":
        return "Wait until DescribeCustomKeyStores shows DISCONNECTED."
    if connection_state == "FAILED":
        return (
            "Call DisconnectCustomKeyStore, fix the cause given by ConnectionErrorCode, then connect again."
        )
    if connection_state == "CONNECTED" and "DISCONNECTED" in allowed:
        return "Call DisconnectCustomKeyStore first."
    if connection_state == "DISCONNECTED" and allowed == ["CONNECTED"]:
        return "Call ConnectCustomKeyStore and wait until DescribeCustomKeyStores shows CONNECTED."
    if connection_state == "DISCONNECTED":
        return "It is already disconnected."
    return ""


def custom_key_store_not_found(
    custom_key_store_id: str | None = None, custom_key_store_name: str | None = None
) -> CustomKeyStoreNotFoundException:
    which = (
        f"ID '{custom_key_store_id}'"
        if custom_key_store_id is not None
        else f"name '{custom_key_store_name}'"
    )
    return CustomKeyStoreNotFoundException(
        f"No custom key store with {which} exists in this account and Region. "
        "Call DescribeCustomKeyStores to list them."
    )


def custom_key_store_invalid_state(
    custom_key_store_id: str, connection_state: str, operation: str, allowed: Iterable[str]
) -> CustomKeyStoreInvalidStateException:
    """``operation`` refused in ``connection_state``; ``allowed`` are the states it would run in."""
    allowed_list = list(allowed)
    text = (
        f"{operation} is not allowed while custom key store {custom_key_store_id} is {connection_state}; "
        f"it requires connection state {' or '.join(allowed_list)}."
    )
    advice = _state_advice(connection_state, allowed_list)
    return CustomKeyStoreInvalidStateException(f"{text} {advice}".rstrip())


def custom_key_store_name_in_use(name: str) -> CustomKeyStoreNameInUseException:
    return CustomKeyStoreNameInUseException(
        f"The custom key store name '{name}' is already used by another custom key store in this "
        "account and Region. Choose a different name."
    )


def custom_key_store_has_cmks(custom_key_store_id: str, key_count: int) -> CustomKeyStoreHasCMKsException:
    return CustomKeyStoreHasCMKsException(
        f"Custom key store {custom_key_store_id} still contains {key_count} KMS key(s), counting keys "
        "pending deletion. Schedule their deletion and wait until their waiting periods end, then "
        "delete the custom key store."
    )


def custom_key_store_limit_exceeded(limit: int = 10) -> LimitExceededException:
    return LimitExceededException(
        f"This account already has the maximum of {limit} custom key stores in this Region. "
        "Delete an unused custom key store first."
    )


def cloud_hsm_cluster_not_found(cluster_id: str) -> CloudHsmClusterNotFoundException:
    return CloudHsmClusterNotFoundException(
        f"No CloudHSM cluster with ID {cluster_id} was found. Check the cluster ID, and that at least one "
        "of its HSMs is reachable from KMS."
    )


def cloud_hsm_cluster_not_active(cluster_id: str, cluster_state: str) -> CloudHsmClusterNotActiveException:
    return CloudHsmClusterNotActiveException(
        f"CloudHSM cluster {cluster_id} is {cluster_state}, not ACTIVE. Initialize and activate the "
        "cluster, then retry."
    )


def cloud_hsm_cluster_in_use(cluster_id: str, custom_key_store_id: str) -> CloudHsmClusterInUseException:
    return CloudHsmClusterInUseException(
        f"CloudHSM cluster {cluster_id}, or a cluster that shares its backup history, already backs "
        f"custom key store {custom_key_store_id}. Use a different cluster, or delete that custom key store."
    )


def cloud_hsm_cluster_invalid_configuration(
    cluster_id: str, active_hsms: int, required: int, zones: int | None = None, subnet_zones: int = 0
) -> CloudHsmClusterInvalidConfigurationException:
    """AWS's rule, in AWS's words: two active HSMs, each in a different Availability Zone, for
    CreateCustomKeyStore, UpdateCustomKeyStore and CreateKey; one for ConnectCustomKeyStore; and
    private subnets in at least two Availability Zones."""
    if 0 < subnet_zones < 2:
        return CloudHsmClusterInvalidConfigurationException(
            f"CloudHSM cluster {cluster_id} has subnets in {subnet_zones} Availability Zone. The CloudHSM cluster must "
            "be configured with private subnets in at least two different Availability Zones in the Region: create a "
            "cluster from one of its backups with SubnetIds in two Availability Zones.")
    if required > 1:
        where = f" in {zones} Availability Zone(s)" if zones is not None else ""
        return CloudHsmClusterInvalidConfigurationException(
            f"CloudHSM cluster {cluster_id} has {active_hsms} active HSM(s){where}. For the CreateCustomKeyStore, "
            "UpdateCustomKeyStore, and CreateKey operations, the CloudHSM cluster must have at least two active HSMs, "
            "each in a different Availability Zone. To add HSMs, use the CloudHSM CreateHsm operation.")
    return CloudHsmClusterInvalidConfigurationException(
        f"CloudHSM cluster {cluster_id} has {active_hsms} active HSM(s). For the ConnectCustomKeyStore operation, "
        "the CloudHSM cluster must contain at least one active HSM. To add HSMs, use the CloudHSM CreateHsm operation.")


def cloud_hsm_cluster_not_related(
    cluster_id: str, original_cluster_id: str
) -> CloudHsmClusterNotRelatedException:
    return CloudHsmClusterNotRelatedException(
        f"CloudHSM cluster {cluster_id} does not share a backup history with cluster {original_cluster_id} "
        "(its cluster certificate differs). Specify the original cluster or one created from its backups."
    )


def incorrect_trust_anchor(cluster_id: str) -> IncorrectTrustAnchorException:
    return IncorrectTrustAnchorException(
        f"The trust anchor certificate is not the one that was used to initialize CloudHSM cluster "
        f"{cluster_id}. Specify the content of that cluster's customerCA.crt file."
    )


CONNECTION_ERROR_ADVICE: Mapping[str, str] = {
    "CLUSTER_NOT_FOUND": "No cluster has the stored cluster ID. Restore a cluster from a backup of the "
    "original, disconnect, UpdateCustomKeyStore(CloudHsmClusterId), then connect.",
    "INSUFFICIENT_CLOUDHSM_HSMS": "The cluster has no active HSM. Add an HSM, disconnect, then connect.",
    "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET": "A cluster subnet has no free address. Free addresses, "
    "disconnect, then connect.",
    "INTERNAL_ERROR": "KMS hit an internal error. Disconnect, then connect again.",
    "INVALID_CREDENTIALS": "The stored kmsuser password is not the current one. Set a known password "
    "with changePswd, UpdateCustomKeyStore(KeyStorePassword), then connect.",
    "NETWORK_ERRORS": "KMS could not reach the cluster. Disconnect, wait a few minutes, then connect.",
    "SUBNET_NOT_FOUND": "A cluster subnet was deleted. Create a cluster from a recent backup, switch the "
    "cluster ID, then connect.",
    "USER_LOCKED_OUT": "kmsuser is locked out. Have a CO reset its password (changePswd), "
    "UpdateCustomKeyStore(KeyStorePassword), then connect.",
    "USER_LOGGED_IN": "kmsuser is logged in elsewhere. Log it out (update the stored password if you "
    "changed it), disconnect, then connect.",
    "USER_NOT_FOUND": "There is no kmsuser crypto user on every HSM. Create it (createUser CU kmsuser "
    "<password>), UpdateCustomKeyStore(KeyStorePassword), disconnect, then connect.",
}


def connection_failure_summary(connection_error_code: str) -> str:
    """Operator-facing text for a FAILED store (CLI, logs); not an exception."""
    advice = CONNECTION_ERROR_ADVICE.get(connection_error_code, "")
    head = (
        "KMS cannot connect the custom key store to its CloudHSM cluster. "
        f"Error code: {connection_error_code}"
    )
    return f"{head}. {advice}" if advice else head
