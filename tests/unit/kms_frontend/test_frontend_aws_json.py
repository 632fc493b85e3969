"""The AWS JSON adapter's pure parts: SigV4 verification against botocore's signer, decoding and
encoding by botocore's KMS model, and the operation table's coverage of kms.proto and the model."""
from __future__ import annotations

import datetime as dt
import json
import stat
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kms_frontend import errors
from kms_frontend.api import sigv4
from kms_frontend.api.aws_model import AwsJsonCodec, SerializationException
from kms_frontend.service.model import ServiceModel
from kms_frontend.service.operations import OPERATIONS
from protos.kms.v1 import kms_pb2

KEY_ID, SECRET = "AKIAEXAMPLEEXAMPLE01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = dt.datetime(2026, 3, 1, 12, 0, 0)


def signed(body: bytes = b"{}", *, secret: str = SECRET, region: str = "us-east-1", when: dt.datetime = NOW,
           target: str = "TrentService.ListKeys") -> tuple[list[tuple[str, str]], bytes]:
    request = AWSRequest(method="POST", url="http://127.0.0.1:4599/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(KEY_ID, secret), "kms", region).add_auth(request)
    headers = [("Host", "127.0.0.1:4599"), *request.headers.items()]
    return headers, body


def verifier(offset_s: float = 0.0) -> sigv4.SigV4Verifier:
    now = NOW.replace(tzinfo=dt.UTC).timestamp() + offset_s
    return sigv4.SigV4Verifier({KEY_ID: SECRET}, "us-east-1", clock=lambda: now)


def refusal(v: sigv4.SigV4Verifier, headers, body: bytes) -> errors.KmsError:
    with pytest.raises(errors.KmsError) as info:
        v.verify("POST", "/", headers, body)
    return info.value


def test_a_botocore_signature_verifies():
    headers, body = signed(b'{"Limit": 5}')
    assert verifier().verify("POST", "/", headers, body) == KEY_ID
    assert verifier(offset_s=299).verify("POST", "/", headers, body) == KEY_ID


def test_refusals_carry_aws_names_and_messages():
    headers, body = signed()
    v = verifier()
    err = refusal(v, [h for h in headers if h[0] != "Authorization"], body)
    assert (err.name, err.message) == ("MissingAuthenticationTokenException", "Missing Authentication Token")
    assert refusal(v, headers, b'{"Limit": 1}').name == "InvalidSignatureException"  # body changed
    err = refusal(v, *signed(secret="not-the-secret"))
    assert err.name == "InvalidSignatureException"
    assert err.message.startswith("The request signature we calculated does not match the signature you provided.")
    assert SECRET not in err.message
    err = refusal(sigv4.SigV4Verifier({"AKIAOTHER": SECRET}, "us-east-1", clock=lambda: NOW.timestamp()),
                  headers, body)
    assert (err.name, err.message) == ("UnrecognizedClientException",
                                       "The security token included in the request is invalid.")
    err = refusal(verifier(offset_s=301), headers, body)
    assert err.name == "InvalidSignatureException"
    assert err.message == ("Signature expired: 20260301T120000Z is now earlier than 20260301T120001Z "
                           "(20260301T120501Z - 5 min.)")
    assert refusal(verifier(offset_s=-301), headers, body).message.startswith("Signature not yet current: ")
    err = refusal(v, *signed(region="eu-west-1"))
    assert err.name == "InvalidSignatureException" and "Credential should be scoped to a valid region" in err.message
    bad = [(k, "AWS4-HMAC-SHA256 Credential=x/y") if k == "Authorization" else (k, val) for k, val in headers]
    assert refusal(v, bad, body).name == "IncompleteSignatureException"


def test_access_keys_configured_or_generated(tmp_path):
    assert sigv4.parse_access_keys(["A:s1", "B:s/2+x,C:s3"]) == {"A": "s1", "B": "s/2+x", "C": "s3"}
    with pytest.raises(ValueError) as info:
        sigv4.parse_access_keys(["no-secret-given"])
    assert "no-secret-given" not in str(info.value)
    assert sigv4.access_keys(["A:s1"], tmp_path) == {"A": "s1"}
    assert not (tmp_path / sigv4.CREDENTIALS_FILE).exists()
    keys = sigv4.access_keys([], tmp_path)
    path = tmp_path / sigv4.CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys == {json.loads(path.read_text())["aws_access_key_id"]: json.loads(path.read_text())[
        "aws_secret_access_key"]}
    assert sigv4.access_keys([], tmp_path) == keys  # stable


def test_decoding_and_encoding():
    codec = AwsJsonCodec(ServiceModel())
    assert codec.decode("Encrypt", {"KeyId": "k", "Plaintext": "aGk=", "EncryptionContext": {"a": "b"}}) == {
        "KeyId": "k", "Plaintext": b"hi", "EncryptionContext": {"a": "b"}}
    assert codec.decode("Encrypt", {"KeyId": "k", "Plaintext": "aGk=", "EncryptionContext": {"n": 1, "b": True}})[
        "EncryptionContext"] == {"n": "1", "b": "true"}  # non-string context values read as strings
    assert codec.decode("ListKeys", {"Limit": 5, "Unknown": "ignored"}) == {"Limit": 5}
    for op, body in (("GenerateRandom", {"NumberOfBytes": "1"}), ("GenerateRandom", {"NumberOfBytes": 1.5}),
                     ("GenerateRandom", {"NumberOfBytes": True}), ("Encrypt", {"KeyId": "k", "Plaintext": "%%"}),
                     ("TagResource", {"KeyId": "k", "Tags": {"a": "b"}}), ("ListKeys", [])):
        with pytest.raises(SerializationException):
            codec.decode(op, body)
    # Results: blobs as base64, timestamps (ms in the service) as epoch seconds, absent members left out.
    assert codec.encode("Encrypt", {"CiphertextBlob": b"hi", "KeyId": "arn", "EncryptionAlgorithm": None}) == {
        "CiphertextBlob": "aGk=", "KeyId": "arn"}
    assert codec.encode("ScheduleKeyDeletion", {"KeyId": "arn", "DeletionDate": 1_700_000_000_500})[
        "DeletionDate"] == 1_700_000_000.5
    assert codec.encode("EnableKey", None) is None  # no output shape: an empty body


def test_decoded_bodies_are_validated_with_every_failure_at_once():
    model = ServiceModel()
    with pytest.raises(errors.ValidationException) as info:
        model.validate("GenerateDataKey", AwsJsonCodec(model).decode("GenerateDataKey",
                                                                     {"KeySpec": "AES_1", "NumberOfBytes": 0}))
    assert info.value.message == (
        "3 validation errors detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal "
        "to 1; Value 'AES_1' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: "
        "[AES_256, AES_128]")


def test_every_kms_proto_operation_is_in_the_operation_table_and_the_model():
    model = ServiceModel()
    for service_name in ("Kms", "KmsAdmin"):
        methods = {m.name for m in kms_pb2.DESCRIPTOR.services_by_name[service_name].methods}
        assert methods <= set(OPERATIONS)
    assert set(OPERATIONS) == {m.name for name in ("Kms", "KmsAdmin")
                               for m in kms_pb2.DESCRIPTOR.services_by_name[name].methods}
    assert set(OPERATIONS) <= set(model.operations)
