from protos.kms.v1 import kms_pb2, kms_pb2_grpc

OPERATIONS = [
    "CreateCustomKeyStore",
    "DescribeCustomKeyStores",
    "UpdateCustomKeyStore",
    "ConnectCustomKeyStore",
    "DisconnectCustomKeyStore",
    "DeleteCustomKeyStore",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "UpdateKeyDescription",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
    "GetPublicKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
]


def test_service_has_every_operation_with_conventional_messages():
    service = kms_pb2.DESCRIPTOR.services_by_name["Kms"]
    assert sorted(m.name for m in service.methods) == sorted(OPERATIONS)
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    assert hasattr(kms_pb2_grpc, "KmsStub") and hasattr(kms_pb2_grpc, "KmsServicer")


def test_presence_fields():
    req = kms_pb2.GenerateDataKeyRequest(key_id="k", number_of_bytes=0)
    assert req.HasField("number_of_bytes") and not req.HasField("key_spec")
    assert not kms_pb2.ListKeysRequest().HasField("limit")
    assert kms_pb2.ListKeysRequest(limit=0).HasField("limit")
    assert not kms_pb2.ScheduleKeyDeletionRequest(key_id="k").HasField("pending_window_in_days")
    assert not kms_pb2.UpdateCustomKeyStoreRequest(custom_key_store_id="c").HasField("key_store_password")
    entry = kms_pb2.CustomKeyStoresListEntry(connection_state="CONNECTED")
    assert not entry.HasField("connection_error_code")


def test_aws_field_names():
    fields = {f.name for f in kms_pb2.CreateCustomKeyStoreRequest.DESCRIPTOR.fields}
    assert fields == {
        "custom_key_store_name",
        "cloud_hsm_cluster_id",
        "trust_anchor_certificate",
        "key_store_password",
        "custom_key_store_type",
    }
    entry = {f.name for f in kms_pb2.CustomKeyStoresListEntry.DESCRIPTOR.fields}
    assert {"connection_state", "connection_error_code", "creation_date"} <= entry
