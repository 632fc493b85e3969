import grpc
import pytest

from kms_frontend import errors

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

REQUIRED = [
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "InvalidKeyUsageException",
    "ValidationException",
    "UnsupportedOperationException",
    "AlreadyExistsException",
    "InvalidAliasNameException",
    "NotAuthorizedException",
    "TagException",
    "LimitExceededException",
    "MalformedPolicyDocumentException",
    "InvalidArnException",
    "InvalidMarkerException",
    "ThrottlingException",
    "DependencyTimeoutException",
    "KMSInternalException",
    "DryRunOperationException",
    "KeyUnavailableException",
    "InvalidGrantTokenException",
    "CustomKeyStoreNotFoundException",
    "CustomKeyStoreNameInUseException",
    "CustomKeyStoreInvalidStateException",
    "CustomKeyStoreHasCMKsException",
    "CloudHsmClusterNotFoundException",
    "CloudHsmClusterNotActiveException",
    "CloudHsmClusterInUseException",
    "CloudHsmClusterInvalidConfigurationException",
    "CloudHsmClusterNotRelatedException",
    "IncorrectTrustAnchorException",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_every_exception_is_registered_under_its_aws_name(name):
    cls = errors.EXCEPTIONS[name]
    assert cls.__name__ == cls.name == name
    err = cls("boom")
    assert err.name == name
    assert err.message == "boom"
    assert isinstance(err.grpc_code, grpc.StatusCode) and err.grpc_code is not grpc.StatusCode.OK
    assert err.grpc_metadata() == (("x-aws-exception", name),)
    assert err.aws_json_body() == {"__type": name, "message": "boom"}


def test_http_status():
    assert errors.KMSInternalException().http_status == 500
    assert errors.KeyUnavailableException().http_status == 500
    assert errors.DependencyTimeoutException().http_status == 503
    assert errors.ThrottlingException().http_status == 400
    assert errors.NotFoundException().http_status == 400
    assert errors.CustomKeyStoreInvalidStateException().http_status == 400


def test_grpc_codes():
    assert errors.NotFoundException.grpc_code is grpc.StatusCode.NOT_FOUND
    assert errors.CustomKeyStoreNotFoundException.grpc_code is grpc.StatusCode.NOT_FOUND
    assert errors.KMSInvalidStateException.grpc_code is grpc.StatusCode.FAILED_PRECONDITION
    assert errors.ValidationException.grpc_code is grpc.StatusCode.INVALID_ARGUMENT
    assert errors.ThrottlingException.grpc_code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert errors.KMSInternalException.grpc_code is grpc.StatusCode.INTERNAL
    assert errors.UnsupportedOperationException.grpc_code is grpc.StatusCode.UNIMPLEMENTED


def test_from_name_round_trip_and_unknown_names():
    err = errors.from_name("DisabledException", "x is disabled.")
    assert isinstance(err, errors.DisabledException) and err.message == "x is disabled."
    unknown = errors.from_name("SomeNewException", "m")
    assert type(unknown) is errors.KmsError and unknown.name == "SomeNewException"
    assert str(unknown) == "SomeNewException: m"


def test_key_state_messages_are_verbatim():
    assert errors.key_disabled(ARN).message == f"{ARN} is disabled."
    assert isinstance(errors.key_disabled(ARN), errors.DisabledException)
    assert errors.key_pending_deletion(ARN).message == f"{ARN} is pending deletion."
    assert errors.key_unavailable(ARN).message == f"{ARN} is unavailable."
    assert errors.key_not_pending_deletion(ARN).message == f"{ARN} is not pending deletion."
    for state, cls in [
        ("Disabled", errors.DisabledException),
        ("PendingDeletion", errors.KMSInvalidStateException),
        ("Unavailable", errors.KMSInvalidStateException),
        ("Creating", errors.KMSInvalidStateException),
    ]:
        assert isinstance(errors.key_state_error(ARN, state), cls)


def test_not_found_and_other_verbatim_messages():
    assert errors.invalid_key_id("nope").message == "Invalid keyId 'nope'"
    assert errors.key_not_found(ARN).message == f"Key '{ARN}' does not exist"
    alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/x"
    assert errors.alias_not_found(alias_arn).message == f"Alias {alias_arn} is not found."
    assert (
        errors.alias_already_exists(alias_arn).message == f"An alias with the name {alias_arn} already exists"
    )
    assert errors.throttled().message == (
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
    )
    assert errors.unsupported_origin(ARN).message == (
        f"{ARN} origin is AWS_CLOUDHSM which is not valid for this operation"
    )
    assert errors.invalid_key_usage(ARN, "SIGN_VERIFY", "Encrypt").message == (
        f"{ARN} key usage is SIGN_VERIFY which is not valid for Encrypt."
    )
    assert errors.data_key_spec_required().message == "Please specify either number of bytes or key spec."
    assert errors.reserved_tag_key().message == "Tags beginning with aws: are reserved"
    assert errors.invalid_ciphertext().message == ""


def test_validation_message_shapes():
    one = errors.validation_error(
        [
            errors.validation_failure(
                "numberOfBytes", "Member must have value less than or equal to 1024", 2000
            )
        ]
    )
    assert one.message == (
        "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024"
    )
    blob = errors.validation_failure(
        "plaintext", "Member must have length less than or equal to 4096", b"x", shown="omitted"
    )
    assert blob == (
        "Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )
    assert errors.validation_failure("keyId", "Member must not be null").startswith("Value null at 'keyId'")
    masked = errors.validation_failure("keyStorePassword", "c", "hunter2", shown="masked")
    assert "hunter2" not in masked and "'***'" in masked
    two = errors.validation_error(["a", "b"])
    assert two.message == "2 validation errors detected: a; b"


def test_custom_key_store_invalid_state_message_is_actionable():
    err = errors.custom_key_store_invalid_state(
        "cks-1", "FAILED", "ConnectCustomKeyStore", ["DISCONNECTED", "CONNECTING", "CONNECTED"]
    )
    assert isinstance(err, errors.CustomKeyStoreInvalidStateException)
    assert "cks-1" in err.message and "FAILED" in err.message and "DisconnectCustomKeyStore" in err.message
    err = errors.custom_key_store_invalid_state("cks-1", "DISCONNECTED", "CreateKey", ["CONNECTED"])
    assert "ConnectCustomKeyStore" in err.message
    err = errors.custom_key_store_invalid_state(
        "cks-1", "DISCONNECTED", "DisconnectCustomKeyStore", ["CONNECTED", "CONNECTING", "FAILED"]
    )
    assert "already disconnected" in err.message
    err = errors.custom_key_store_invalid_state(
        "cks-1", "CONNECTED", "DeleteCustomKeyStore", ["DISCONNECTED"]
    )
    assert "Call DisconnectCustomKeyStore first." in err.message


def test_custom_key_store_helpers_have_their_types():
    assert isinstance(errors.custom_key_store_not_found("cks-1"), errors.CustomKeyStoreNotFoundException)
    assert "name 'n'" in errors.custom_key_store_not_found(custom_key_store_name="n").message
    assert isinstance(errors.custom_key_store_name_in_use("n"), errors.CustomKeyStoreNameInUseException)
    assert "3 KMS key(s)" in errors.custom_key_store_has_cmks("cks-1", 3).message
    assert isinstance(errors.custom_key_store_limit_exceeded(), errors.LimitExceededException)
    assert isinstance(
        errors.cloud_hsm_cluster_not_found("cluster-a"), errors.CloudHsmClusterNotFoundException
    )
    assert "UNINITIALIZED" in errors.cloud_hsm_cluster_not_active("cluster-a", "UNINITIALIZED").message
    assert isinstance(errors.cloud_hsm_cluster_in_use("c", "cks-1"), errors.CloudHsmClusterInUseException)
    cfg = errors.cloud_hsm_cluster_invalid_configuration("c", 1, 2)
    assert "at least two active HSMs, each in a different Availability Zone" in cfg.message
    assert isinstance(
        errors.cloud_hsm_cluster_not_related("c2", "c1"), errors.CloudHsmClusterNotRelatedException
    )
    assert isinstance(errors.incorrect_trust_anchor("c"), errors.IncorrectTrustAnchorException)
    assert errors.connection_failure_summary("USER_NOT_FOUND").startswith(
        "KMS cannot connect the custom key store to its CloudHSM cluster. Error code: USER_NOT_FOUND."
    )
