"""The CloudHSM v2 exceptions (botocore's ``cloudhsmv2`` model), in the frontend's one error
hierarchy (:class:`kms_frontend.errors.KmsError`: the AWS name, gRPC code, HTTP status), so the
AWS endpoint reports them exactly as it reports KMS's. The helpers give messages a person can act
on; none carries a secret."""
from __future__ import annotations

import grpc

from .. import errors

_S = grpc.StatusCode


class CloudHsmAccessDeniedException(errors.KmsError):
    grpc_code = _S.PERMISSION_DENIED


class CloudHsmInternalFailureException(errors.KmsError):
    grpc_code = _S.INTERNAL
    http_status = 500
    retryable = True


class CloudHsmInvalidRequestException(errors.KmsError):
    grpc_code = _S.INVALID_ARGUMENT


class CloudHsmResourceNotFoundException(errors.KmsError):
    grpc_code = _S.NOT_FOUND


class CloudHsmResourceLimitExceededException(errors.KmsError):
    grpc_code = _S.RESOURCE_EXHAUSTED


class CloudHsmServiceException(errors.KmsError):
    grpc_code = _S.UNAVAILABLE


class CloudHsmTagException(errors.KmsError):
    grpc_code = _S.INVALID_ARGUMENT


def invalid(message: str) -> CloudHsmInvalidRequestException:
    return CloudHsmInvalidRequestException(message)


def cluster_not_found(cluster_id: str) -> CloudHsmResourceNotFoundException:
    return CloudHsmResourceNotFoundException(
        f"Cluster {cluster_id} was not found in this Region. Check the cluster ID (DescribeClusters lists them) "
        "and the Region of your client.")


def hsm_not_found(cluster_id: str, what: str) -> CloudHsmResourceNotFoundException:
    return CloudHsmResourceNotFoundException(
        f"No HSM with {what} was found in cluster {cluster_id}. DescribeClusters lists the cluster's HSMs.")


def backup_not_found(backup_id: str) -> CloudHsmResourceNotFoundException:
    return CloudHsmResourceNotFoundException(
        f"Backup {backup_id} was not found in this Region. DescribeBackups lists the backups; a copy made with "
        "CopyBackupToRegion is found in its destination Region.")


def resource_not_found(resource: str) -> CloudHsmResourceNotFoundException:
    return CloudHsmResourceNotFoundException(f"Resource {resource} was not found in this Region.")


def internal(message: str) -> CloudHsmInternalFailureException:
    return CloudHsmInternalFailureException(message)
