"""The one validator (the KMS model's constraints, for every entry point) and the service's own
input rules that come after it, with AWS's messages."""
import json

import pytest

from kms_frontend import errors
from kms_frontend.service.input_rules import (
    encoded_encryption_context,
    page_limit,
    require_number_of_bytes,
    validate_alias_name,
    validate_data_key_spec,
    validate_encryption_context,
    validate_pending_window,
    validate_policy,
    validate_tag_keys,
    validate_tags,
)
from kms_frontend.service.model import ServiceModel

PREFIX = "1 validation error detected: "
MODEL = ServiceModel()
CLUSTER = "cluster-234567abcdef"
ANCHOR = "-----BEGIN CERTIFICATE-----"


def message_of(operation: str, params: dict) -> str:
    with pytest.raises(errors.ValidationException) as info:
        MODEL.validate(operation, params)
    return info.value.message


def store(**changes) -> dict:
    return {"CustomKeyStoreName": "ok", "CloudHsmClusterId": CLUSTER, "TrustAnchorCertificate": ANCHOR,
            "KeyStorePassword": "kmsPassw0rd", **changes}


def test_no_failures_no_exception():
    MODEL.validate("CreateCustomKeyStore", store())
    MODEL.validate("DescribeCustomKeyStores", {"Limit": 5})


def test_custom_key_store_name_lengths():
    assert message_of("CreateCustomKeyStore", store(CustomKeyStoreName="")) == (
        PREFIX + "Value '' at 'customKeyStoreName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    long = "n" * 257
    assert message_of("CreateCustomKeyStore", store(CustomKeyStoreName=long)) == (
        PREFIX + f"Value '{long}' at 'customKeyStoreName' failed to satisfy constraint: "
        "Member must have length less than or equal to 256"
    )
    assert message_of("CreateCustomKeyStore", store(CustomKeyStoreName=None)) == (
        PREFIX + "Value null at 'customKeyStoreName' failed to satisfy constraint: Member must not be null"
    )


def test_an_over_long_value_is_not_echoed_whole():
    message = message_of("CreateKey", {"Description": "d" * 9000})
    assert "...(9000 characters)" in message and len(message) < 1300


@pytest.mark.parametrize("good", ["cluster-234567abcde", "cluster-jfzx2ngmkf5", "cluster-ABCDEFGHIJKLMNOP"])
def test_cluster_id_accepts(good):
    MODEL.validate("CreateCustomKeyStore", store(CloudHsmClusterId=good))


def test_cluster_id_pattern_and_length():
    msg = message_of("CreateCustomKeyStore", store(CloudHsmClusterId="cluster-1111111111111"))  # 1 is not base32
    assert msg == (
        PREFIX + "Value 'cluster-1111111111111' at 'cloudHsmClusterId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: cluster-[2-7a-zA-Z]{11,16}"
    )
    msg = message_of("CreateCustomKeyStore", store(CloudHsmClusterId="cluster-x"))
    assert msg.startswith("2 validation errors detected: ")
    assert "length greater than or equal to 19" in msg and "regular expression" in msg


def test_password_never_appears():
    for pw in ("short", "x" * 40):
        msg = message_of("CreateCustomKeyStore", store(KeyStorePassword=pw))
        assert pw not in msg
        assert "Value '***' at 'keyStorePassword'" in msg


def test_trust_anchor_length():
    assert "less than or equal to 5000" in message_of("CreateCustomKeyStore", store(TrustAnchorCertificate="x" * 5001))


def test_limit_marker_ranges():
    assert message_of("ListKeys", {"Limit": 0}) == (
        PREFIX + "Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert "less than or equal to 1000" in message_of("ListKeys", {"Limit": 1001})
    assert "length less than or equal to 1024" in message_of("ListKeys", {"Marker": "m" * 1025})
    assert "regular expression pattern" in message_of("ListKeys", {"Marker": "\u0100"})
    MODEL.validate("ListKeys", {})


def test_plaintext_and_ciphertext_blobs_omit_value():
    assert message_of("Encrypt", {"KeyId": "k", "Plaintext": b"x" * 4097}) == (
        PREFIX + "Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )
    assert "Value at 'plaintext'" in message_of("Encrypt", {"KeyId": "k", "Plaintext": b""})
    assert "Value at 'ciphertextBlob'" in message_of("Decrypt", {"CiphertextBlob": b"x" * 6145})
    MODEL.validate("Encrypt", {"KeyId": "k", "Plaintext": b"x" * 4096})
    MODEL.validate("Decrypt", {"CiphertextBlob": b"x" * 6144})


def test_number_of_bytes_and_data_key_spec():
    assert message_of("GenerateDataKey", {"KeyId": "k", "NumberOfBytes": 1025}) == (
        PREFIX + "Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024"
    )
    assert "greater than or equal to 1" in message_of("GenerateRandom", {"NumberOfBytes": 0})
    assert message_of("GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_512"}) == (
        PREFIX + "Value 'AES_512' at 'keySpec' failed to satisfy constraint: "
        "Member must satisfy enum value set: [AES_256, AES_128]"
    )
    assert validate_data_key_spec(None, "AES_256") == 32
    assert validate_data_key_spec(None, "AES_128") == 16
    assert validate_data_key_spec(64, None) == 64
    for both_or_neither in [(None, None), (32, "AES_256")]:
        with pytest.raises(
            errors.ValidationException, match="Please specify either number of bytes or key spec."
        ):
            validate_data_key_spec(*both_or_neither)
    assert require_number_of_bytes(5) == 5
    with pytest.raises(errors.ValidationException, match="Value null at 'numberOfBytes'"):
        require_number_of_bytes(None)


def test_create_key_enums_and_ranges():
    MODEL.validate("CreateKey", {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT",
                                 "Origin": "AWS_CLOUDHSM", "Description": ""})
    assert "Member must satisfy enum value set: [RSA_2048," in message_of("CreateKey", {"KeySpec": "AES"})
    assert "at 'origin'" in message_of("CreateKey", {"Origin": "CLOUDHSM"})
    assert "less than or equal to 8192" in message_of("CreateKey", {"Description": "d" * 8193})
    with pytest.raises(errors.ValidationException, match="greater than or equal to 7"):
        validate_pending_window(6)
    with pytest.raises(errors.ValidationException, match="less than or equal to 30"):
        validate_pending_window(31)
    validate_pending_window(None)
    assert "at 'grantTokens'" in message_of("Encrypt", {"KeyId": "k", "Plaintext": b"x", "GrantTokens": ["t"] * 11})


def test_multiple_failures_collected_in_order():
    msg = message_of("DescribeCustomKeyStores", {"CustomKeyStoreName": "", "Limit": 0})
    assert msg.startswith("2 validation errors detected: Value '' at 'customKeyStoreName'")
    assert "; Value '0' at 'limit'" in msg


def test_nested_members_and_list_items_use_aws_paths():
    msg = message_of("TagResource", {"KeyId": "k", "Tags": [{"TagKey": "ok", "TagValue": "v"},
                                                            {"TagKey": "k" * 129, "TagValue": "v" * 257}]})
    assert "at 'tags.2.member.tagKey'" in msg and "at 'tags.2.member.tagValue'" in msg
    assert "tagKeys.1.member" in message_of("UntagResource", {"KeyId": "k", "TagKeys": [""]})
    assert "regular expression pattern" in message_of("PutKeyPolicy", {"KeyId": "k", "Policy": '{"S": "\u0100"}'})
    assert "regular expression pattern: ^[a-zA-Z0-9:/_-]+$" in message_of("CreateAlias", {
        "AliasName": "alias/has space", "TargetKeyId": "k"})


def test_admin_operations_have_a_model_too():
    assert "Value '-1' at 'afterId'" in message_of("ListAuditEvents", {"AfterId": -1})
    assert "Value null at 'customKeyStoreId'" in message_of("ListOrphanedKeyMaterial", {})


def test_page_limit():
    assert page_limit(None, default=50, maximum=100) == 50
    assert page_limit(500, default=50, maximum=100) == 100
    assert page_limit(7, default=50, maximum=100) == 7


def test_alias_names():
    assert validate_alias_name("alias/my-key_1/x") == "alias/my-key_1/x"
    with pytest.raises(errors.ValidationException, match='Alias must start with the prefix "alias/"'):
        validate_alias_name("my-key")
    with pytest.raises(errors.ValidationException, match="alias/my:alias contains invalid characters"):
        validate_alias_name("alias/my:alias")
    with pytest.raises(errors.NotAuthorizedException):
        validate_alias_name("alias/aws/s3")
    with pytest.raises(errors.InvalidAliasNameException):
        validate_alias_name("alias/")


def test_tags():
    validate_tags([("k", ""), ("k2", "v" * 256)])
    with pytest.raises(errors.TagException, match="Tags beginning with aws: are reserved"):
        validate_tags([("AWS:x", "v")])
    with pytest.raises(errors.TagException, match="Duplicate"):
        validate_tags([("a", "1"), ("a", "2")])
    with pytest.raises(errors.LimitExceededException):
        validate_tags([(f"k{i}", "") for i in range(10)], existing=[f"e{i}" for i in range(41)])
    validate_tags([("e1", "new value")], existing=[f"e{i}" for i in range(50)])  # overwrite, still 50
    validate_tag_keys(["a", "b"])
    with pytest.raises(errors.TagException):
        validate_tag_keys(["aws:x"])


def test_policy():
    doc = {"Version": "2012-10-17", "Statement": []}
    assert validate_policy(json.dumps(doc)) == doc
    with pytest.raises(errors.MalformedPolicyDocumentException):
        validate_policy("{not json")
    with pytest.raises(errors.MalformedPolicyDocumentException):
        validate_policy("[]")
    with pytest.raises(errors.LimitExceededException):
        validate_policy(json.dumps({"Statement": [], "pad": "x" * 33000}))
    # nesting within the 32 KB quota that json.loads cannot parse (RecursionError), or that would
    # exhaust the stack of the policy compiler after it: a MalformedPolicyDocument, not a 500
    for deep in ("[" * 30000, '{"Statement": ' + "[" * 5000 + "]" * 5000 + "}",
                 '{"Statement": [' + '{"a": ' * 70 + "1" + "}" * 70 + "]}"):
        with pytest.raises(errors.MalformedPolicyDocumentException, match="deeper than 64 levels"):
            validate_policy(deep)


def test_encryption_context():
    validate_encryption_context(None)
    validate_encryption_context({"a": "b"})
    with pytest.raises(errors.ValidationException, match="too large"):
        validate_encryption_context({"k": "v" * 9000})
    with pytest.raises(errors.ValidationException):
        validate_encryption_context({"k": "\udc80"})


def test_encoded_encryption_context_checks_and_returns_the_encoding():
    from kms_frontend.ciphertext import encode_context

    assert encoded_encryption_context({"b": "2", "a": "1"}) == encode_context({"a": "1", "b": "2"})
    assert encoded_encryption_context(None) == encode_context({})
    with pytest.raises(errors.ValidationException, match="destinationEncryptionContext is too large"):
        encoded_encryption_context({"k": "v" * 9000}, field="destinationEncryptionContext")
