"""The AWS JSON adapter's pure parts: SigV4 verification against botocore's signer (HTTP and
gRPC), decoding and encoding by botocore's KMS model, and the operation table's coverage of
kms.proto and the model."""
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
from kms_frontend.api import aws_wire, sigv4
from kms_frontend.api.aws_model import AwsJsonCodec, SerializationException
from kms_frontend.secret_box import SecretBox
from kms_frontend.service.model import STS_OPERATIONS, ServiceModel
from kms_frontend.service.operations import OPERATIONS
from kms_frontend.service.principals import Identities, parse_principals
from protos.kms.v1 import auth, kms_pb2

KEY_ID, SECRET = "AKIAEXAMPLEEXAMPLE01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
ROOT = "arn:aws:iam::111122223333:root"


def signed(body: bytes = b"{}", *, secret: str = SECRET, region: str = "us-east-1", when: dt.datetime = NOW,
           target: str | None = "TrentService.ListKeys", url: str = "http://127.0.0.1:4599/",
           extra: dict[str, str] | None = None) -> tuple[list[tuple[str, str]], bytes]:
    headers = {"Content-Type": "application/x-amz-json-1.1", **({"X-Amz-Target": target} if target else {}),
               **(extra or {})}
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(KEY_ID, secret), "kms", region).add_auth(request)
    headers = [("Host", "127.0.0.1:4599"), *request.headers.items()]
    return headers, body


def identities(keys: dict[str, str] | None = None) -> Identities:
    return Identities("111122223333", keys or {KEY_ID: SECRET}, None, SecretBox(b"k" * 32), lambda: NOW.timestamp())


def verifier(offset_s: float = 0.0, keys: dict[str, str] | None = None) -> sigv4.SigV4Verifier:
    now = NOW.replace(tzinfo=dt.UTC).timestamp() + offset_s
    return sigv4.SigV4Verifier(identities(keys).credential, "us-east-1", clock=lambda: now)


def refusal(v: sigv4.SigV4Verifier, headers, body: bytes, path: str = "/") -> errors.KmsError:
    with pytest.raises(errors.KmsError) as info:
        v.verify("POST", path, headers, body)
    return info.value


def test_a_botocore_signature_verifies():
    headers, body = signed(b'{"Limit": 5}')
    assert verifier().verify("POST", "/", headers, body).principal.arn == ROOT
    found = verifier(offset_s=299).verify("POST", "/", headers, body)
    assert (found.principal.arn, found.service) == (ROOT, "kms")
    err = refusal_for(verifier(), headers, body, services=("sts",))  # a KMS signature is not an STS one
    assert err.name == "InvalidSignatureException" and "scoped to correct service: 'sts'" in err.message


def refusal_for(v: sigv4.SigV4Verifier, headers, body: bytes, services: tuple[str, ...]) -> errors.KmsError:
    with pytest.raises(errors.KmsError) as info:
        v.verify("POST", "/", headers, body, services=services)
    return info.value


@pytest.mark.parametrize("url", ["http://127.0.0.1:4599/a/../b%20c/d~e", "http://127.0.0.1:4599/?z=1&a=2&a=1&e=",
                                 "http://127.0.0.1:4599/x?q=a%2Fb&p=%20"])
def test_paths_queries_and_folded_header_values_canonicalise_as_botocore_signs_them(url):
    headers, body = signed(url=url, extra={"X-Custom": "a   b\t c", "X-Amz-Meta": "1"})
    raw = url.split("4599", 1)[1]
    assert verifier().verify("POST", raw, headers, body).principal.arn == ROOT


def test_target_date_host_and_content_type_must_be_signed():
    """A captured request cannot be replayed as another operation: X-Amz-Target is signed."""
    headers, body = signed()
    auth_header = dict(headers)["Authorization"]
    for name, shown in (("x-amz-target", "X-Amz-Target"), ("content-type", "Content-Type"),
                        ("x-amz-date", "X-Amz-Date"), ("host", "Host")):
        names = [n for n in "content-type;host;x-amz-date;x-amz-target".split(";") if n != name]
        bad = auth_header.replace("SignedHeaders=content-type;host;x-amz-date;x-amz-target",
                                  "SignedHeaders=" + ";".join(names))
        err = refusal(verifier(), [(k, bad if k == "Authorization" else v) for k, v in headers], body)
        assert err.name == "IncompleteSignatureException", err
        assert f"'{shown}'" in err.message and "must be a 'SignedHeader'" in err.message


def test_a_signed_header_that_is_not_ascii_is_an_aws_refusal_not_a_crash():
    headers, body = signed(extra={"X-Custom": "plain"})
    bad = [(k, "caf\u00e9" if k == "X-Custom" else v) for k, v in headers]
    err = refusal(verifier(), bad, body)
    assert err.name == "IncompleteSignatureException" and "x-custom" in err.message and err.http_status == 400
    surrogate = [(k, "caf\udce9" if k == "X-Custom" else v) for k, v in headers]  # aiohttp's undecodable bytes
    assert refusal(verifier(), surrogate, body).name == "IncompleteSignatureException"


def test_a_grpc_call_signed_by_the_client_half_verifies_and_binds_method_and_body():
    creds = Credentials(KEY_ID, SECRET)
    request = kms_pb2.EncryptRequest(key_id="k", plaintext=b"x" * 256,
                                     encryption_context={f"key{i}": f"value{i}" for i in range(40)})
    payload = request.SerializeToString()
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        metadata = auth.sign("/kms.v1.Kms/Encrypt", payload, creds, "us-east-1", "127.0.0.1:7800")
    v = verifier()
    assert v.verify_grpc("/kms.v1.Kms/Encrypt", metadata, payload).arn == ROOT
    assert v.verify_grpc("/kms.v1.Kms/Encrypt", metadata, request.SerializeToString()).arn == ROOT  # stable bytes
    with pytest.raises(errors.InvalidSignatureException):
        v.verify_grpc("/kms.v1.Kms/Decrypt", metadata, payload)       # another method
    with pytest.raises(errors.InvalidSignatureException):
        v.verify_grpc("/kms.v1.Kms/Encrypt", metadata, payload + b"\x00")
    with pytest.raises(errors.MissingAuthenticationTokenException):
        v.verify_grpc("/kms.v1.Kms/Encrypt", (), payload)


def test_temporary_credentials_need_their_token_and_expire():
    loaded = parse_principals(json.dumps({"principals": [
        {"arn": "arn:aws:iam::111122223333:user/alice", "access_keys": [], "policies": []},
        {"arn": "arn:aws:iam::111122223333:role/app", "trust": ["arn:aws:iam::111122223333:user/alice"],
         "policies": []}]}))
    now = [NOW.timestamp()]
    ids = Identities("111122223333", {KEY_ID: SECRET}, loaded, SecretBox(b"k" * 32), lambda: now[0])
    session = ids.new_session(ids.roles["arn:aws:iam::111122223333:role/app"], "s1", 900, None)
    secret, principal = ids.credential(session.access_key_id, session.session_token)
    assert principal.arn == "arn:aws:sts::111122223333:assumed-role/app/s1" and secret == session.secret_access_key
    with pytest.raises(errors.UnrecognizedClientException):
        ids.credential(session.access_key_id, None)
    with pytest.raises(errors.UnrecognizedClientException):
        ids.credential(session.access_key_id, session.session_token[:-4] + "AAAA")
    with pytest.raises(errors.UnrecognizedClientException):
        ids.credential(KEY_ID, session.session_token)  # a long-term key with a token
    # a frontend that restarted knows the session from its token alone
    again = Identities("111122223333", {KEY_ID: SECRET}, loaded, SecretBox(b"k" * 32), lambda: now[0])
    assert again.credential(session.access_key_id, session.session_token)[1].arn == principal.arn
    now[0] += 901
    with pytest.raises(errors.ExpiredTokenException) as info:
        again.credential(session.access_key_id, session.session_token)
    assert info.value.message == "The security token included in the request is expired"


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
    err = refusal(verifier(keys={"AKIAOTHER": SECRET}), headers, body)
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
    """gRPC parity: every KMS operation the frontend serves is a kms.v1 method (STS is the AWS
    endpoint's only), and every operation declares how it is authorized."""
    model = ServiceModel()
    for service_name in ("Kms", "KmsAdmin"):
        methods = {m.name for m in kms_pb2.DESCRIPTOR.services_by_name[service_name].methods}
        assert methods <= set(OPERATIONS)
    assert set(OPERATIONS) - set(STS_OPERATIONS) == {m.name for name in ("Kms", "KmsAdmin")
                                                     for m in kms_pb2.DESCRIPTOR.services_by_name[name].methods}
    assert set(OPERATIONS) <= set(model.operations)
    for op in OPERATIONS.values():
        assert op.resources and op.action.startswith(("kms:", "sts:")), op.name


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b'{"KeyId": ' + b"[" * 65 + b"]" * 65 + b"}", b"{", b"\xff\xfe\x00", b'"\xc0\xaf"'])
def test_bodies_that_are_not_json_or_nest_too_deep_are_serialization_exceptions(body):
    with pytest.raises(SerializationException, match="not valid JSON"):
        aws_wire.parse_json_body(body)


def test_an_empty_body_is_an_empty_structure():
    assert aws_wire.parse_json_body(b"  \n") == {}
    assert aws_wire.parse_json_body(b'{"Limit": 5}') == {"Limit": 5}
