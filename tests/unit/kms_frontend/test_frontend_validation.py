import json

import pytest

from kms_frontend import errors
from kms_frontend.validation import (
    Checks,
    encoded_encryption_context,
    page_limit,
    validate_alias_name,
    validate_data_key_spec,
    validate_encryption_context,
    validate_policy,
    validate_tag_keys,
    validate_tags,
)

PREFIX = "1 validation error detected: "


def message_of(checks: Checks) -> str:
    with pytest.raises(errors.ValidationException) as info:
        checks.done()
    return info.value.message


def test_no_failures_no_exception():
    Checks().custom_key_store_name("ok").cloud_hsm_cluster_id("cluster-234567abcdef").limit(5).done()


def test_custom_key_store_name_lengths():
    assert message_of(Checks().custom_key_store_name("")) == (
        PREFIX + "Value '' at 'customKeyStoreName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    long = "n" * 257
    assert message_of(Checks().custom_key_store_name(long)) == (
        PREFIX + f"Value '{long}' at 'customKeyStoreName' failed to satisfy constraint: "
        "Member must have length less than or equal to 256"
    )
    assert message_of(Checks().custom_key_store_name(None)) == (
        PREFIX + "Value null at 'customKeyStoreName' failed to satisfy constraint: Member must not be null"
    )


@pytest.mark.parametrize("good", ["cluster-234567abcde", "cluster-jfzx2ngmkf5", "cluster-ABCDEFGHIJKLMNOP"])
def test_cluster_id_accepts(good):
    Checks().cloud_hsm_cluster_id(good).done()


def test_cluster_id_pattern_and_length():
    msg = message_of(Checks().cloud_hsm_cluster_id("cluster-1111111111111"))  # 1 is not base32
    assert msg == (
        PREFIX + "Value 'cluster-1111111111111' at 'cloudHsmClusterId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: cluster-[2-7a-zA-Z]{11,16}"
    )
    msg = message_of(Checks().cloud_hsm_cluster_id("cluster-x"))
    assert msg.startswith("2 validation errors detected: ")
    assert "length greater than or equal to 19" in msg and "regular expression" in msg


def test_password_never_appears():
    for pw in ("short", "x" * 40):
        msg = message_of(Checks().key_store_password(pw))
        assert pw not in msg
        assert "Value '***' at 'keyStorePassword'" in msg
    Checks().key_store_password("kmsPassw0rd").done()


def test_trust_anchor_length():
    assert "less than or equal to 5000" in message_of(Checks().trust_anchor_certificate("x" * 5001))


def test_limit_marker_ranges():
    assert message_of(Checks().limit(0)) == (
        PREFIX + "Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert "less than or equal to 1000" in message_of(Checks().limit(1001))
    assert "length less than or equal to 1024" in message_of(Checks().marker("m" * 1025))
    assert "regular expression pattern" in message_of(Checks().marker("\u0100"))
    Checks().limit(None).marker(None).done()


def test_plaintext_and_ciphertext_blobs_omit_value():
    assert message_of(Checks().plaintext(b"x" * 4097)) == (
        PREFIX + "Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )
    assert "Value at 'plaintext'" in message_of(Checks().plaintext(b""))
    assert "Value at 'ciphertextBlob'" in message_of(Checks().ciphertext_blob(b"x" * 6145))
    Checks().plaintext(b"x" * 4096).ciphertext_blob(b"x" * 6144).done()


def test_number_of_bytes_and_data_key_spec():
    assert message_of(Checks().number_of_bytes(1025)) == (
        PREFIX + "Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024"
    )
    assert "greater than or equal to 1" in message_of(Checks().number_of_bytes(0))
    assert message_of(Checks().data_key_spec("AES_512")) == (
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


def test_create_key_enums_and_ranges():
    Checks().key_spec("SYMMETRIC_DEFAULT").key_usage("ENCRYPT_DECRYPT").origin("AWS_CLOUDHSM").done()
    assert "Member must satisfy enum value set: [RSA_2048," in message_of(Checks().key_spec("AES"))
    assert "at 'origin'" in message_of(Checks().origin("CLOUDHSM"))
    assert "less than or equal to 8192" in message_of(Checks().description("d" * 8193))
    Checks().description("").done()
    assert "greater than or equal to 7" in message_of(Checks().pending_window_in_days(6))
    assert "less than or equal to 30" in message_of(Checks().pending_window_in_days(31))
    assert "at 'grantTokens'" in message_of(Checks().grant_tokens(["t"] * 11))


def test_multiple_failures_collected_in_order():
    msg = message_of(Checks().custom_key_store_name("").limit(0))
    assert msg.startswith("2 validation errors detected: Value '' at 'customKeyStoreName'")
    assert "; Value '0' at 'limit'" in msg


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
    with pytest.raises(
        errors.ValidationException, match=r"regular expression pattern: \^\[a-zA-Z0-9:/_-\]\+\$"
    ):
        validate_alias_name("alias/has space")
    with pytest.raises(errors.ValidationException, match="length less than or equal to 256"):
        validate_alias_name("alias/" + "a" * 251)
    with pytest.raises(errors.NotAuthorizedException):
        validate_alias_name("alias/aws/s3")
    with pytest.raises(errors.InvalidAliasNameException):
        validate_alias_name("alias/")


def test_tags():
    validate_tags([("k", ""), ("k2", "v" * 256)])
    with pytest.raises(errors.ValidationException) as info:
        validate_tags([("ok", "v"), ("k" * 129, "v")])
    assert "at 'tags.2.member.tagKey'" in info.value.message
    with pytest.raises(errors.ValidationException, match="tags.1.member.tagValue"):
        validate_tags([("k", "v" * 257)])
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
    with pytest.raises(errors.ValidationException, match="tagKeys.1.member"):
        validate_tag_keys([""])


def test_policy():
    doc = {"Version": "2012-10-17", "Statement": []}
    assert validate_policy(json.dumps(doc)) == doc
    with pytest.raises(errors.MalformedPolicyDocumentException):
        validate_policy("{not json")
    with pytest.raises(errors.MalformedPolicyDocumentException):
        validate_policy("[]")
    with pytest.raises(errors.ValidationException, match="regular expression pattern"):
        validate_policy('{"Statement": "\u0100"}')
    with pytest.raises(errors.LimitExceededException):
        validate_policy(json.dumps({"Statement": [], "pad": "x" * 33000}))
    with pytest.raises(errors.ValidationException, match="Member must not be null"):
        validate_policy(None)


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
