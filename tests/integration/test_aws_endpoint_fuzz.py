"""The AWS endpoint under bad input, table-driven: every service it serves (KMS, CloudHSM v2, STS),
signed and unsigned, with malformed JSON, wrong JSON types, deep nesting, huge strings and bodies,
bad base64 and blobs, odd Unicode and odd headers. Each answer must be an AWS error (its name in
``__type``, or ``<Code>`` for STS) and never a 5xx; afterwards the same process still serves, and
its log holds no traceback. A real ``kms-frontend`` process (no HSM is needed to reach the parsers,
the signature check, the model and the rules in front of the HSMs)."""
from __future__ import annotations

import base64
import http.client
import json
import re
import socket
from dataclasses import dataclass, field

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.harness import FrontendProcess, running_frontend

JSON_11 = "application/x-amz-json-1.1"
FORM = "application/x-www-form-urlencoded"
MIB = 1 << 20
AWS_NAME = re.compile(r"[A-Z][A-Za-z0-9]+")  # SerializationException, MalformedQueryString (STS)...
ROLE = "arn:aws:iam::111122223333:role/nobody"


@pytest.fixture(scope="module")
async def fe(tmp_path_factory):
    async with running_frontend(tmp_path_factory.mktemp("fuzz"), []) as frontend:
        yield frontend


# ------------------------------------------------------------------ requests


@dataclass
class Case:
    id: str
    service: str                 # kms, cloudhsm, sts: what the request is signed for (and routed to)
    target: str = ""             # X-Amz-Target (kms, cloudhsm)
    body: bytes = b"{}"
    signed: bool = True
    headers: dict[str, str | bytes] = field(default_factory=dict)  # set after signing (may break it)
    signed_headers: dict[str, str] = field(default_factory=dict)   # set before signing
    method: str = "POST"
    path: str = "/"
    expect: str | None = None    # the AWS error name, where one answer is right
    status: int | None = None


def kms(op: str, body: bytes | dict, **kw) -> Case:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Case(kw.pop("id", f"kms {op}"), "kms", f"TrentService.{op}", raw, **kw)


def hsm(op: str, body: bytes | dict, **kw) -> Case:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Case(kw.pop("id", f"cloudhsm {op}"), "cloudhsm", f"BaldrApiService.{op}", raw, **kw)


def sts(body: bytes, **kw) -> Case:
    return Case(kw.pop("id", f"sts {body[:30]!r}"), "sts", "", body, **kw)


def deep_list(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
BLOBS = [b"", b"\x00", b"\x01" + b"\xff" * 200, b"\x00" * 32, bytes(range(256)) * 24,
         b"\x01\x24" + KEY.encode() + b"\x00" * 40]
ODD = ["\ud800", "\udfff\ud800", "a\u0000b", "\u202eevil", "\U0001f600" * 300, "\ufeff", "alias/\u0130",
       "\x7f\x1b[31m", "../../etc/passwd", "%00", "a" * 70000]

CASES: list[Case] = [
    # malformed JSON, and what json.loads cannot parse (deep nesting) or that is not an object
    *[kms("ListKeys", body, id=f"kms malformed {body[:12]!r}", expect="SerializationException", status=400)
      for body in (b"{", b"[1,2", b"nul", b'{"a":}', b"\xff\xfe\xfa", b'"\xc0\xaf"', b"{}}", b"[]", b"123",
                   b'"text"', b"null", b"true", b"{\"Limit\": 1,}", b"\x00{}")],
    kms("ListKeys", deep_list(100_000), expect="SerializationException", status=400, id="kms nested lists 100000"),
    kms("Encrypt", deep_object(50_000), expect="SerializationException", status=400, id="kms nested objects 50000"),
    kms("Encrypt", b'{"KeyId": ' + deep_list(900) + b"}", expect="SerializationException", id="kms nested 900"),
    kms("Encrypt", b'{"EncryptionContext": ' + deep_object(65) + b"}", expect="SerializationException",
        id="kms nested 65"),
    # wrong JSON types for the members
    *[kms(op, body, id=f"kms types {op} {json.dumps(body)[:40]}") for op, body in (
        ("ListKeys", {"Limit": "ten"}), ("ListKeys", {"Limit": 1.5}), ("ListKeys", {"Limit": 10 ** 40}),
        ("ListKeys", {"Limit": -1}), ("ListKeys", {"Limit": True}), ("ListKeys", {"Limit": None}),
        ("ListKeys", {"Limit": [1]}), ("ListKeys", {"Limit": {"a": 1}}), ("ListKeys", {"Marker": 7}),
        ("Encrypt", {"KeyId": 1, "Plaintext": "QQ=="}), ("Encrypt", {"KeyId": None, "Plaintext": None}),
        ("Encrypt", {"KeyId": ["k"], "Plaintext": {"b": 1}}), ("Encrypt", {"KeyId": KEY, "Plaintext": 5}),
        ("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "EncryptionContext": {"a": 1}}),
        ("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "EncryptionContext": ["a"]}),
        ("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "EncryptionContext": {"a": {"b": "c"}}}),
        ("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "GrantTokens": "t"}),
        ("GenerateRandom", {"NumberOfBytes": 1e400}), ("GenerateRandom", {"NumberOfBytes": -0.0}),
        ("GenerateRandom", {"NumberOfBytes": 2 ** 63}), ("TagResource", {"KeyId": KEY, "Tags": [1, None, "x"]}),
        ("TagResource", {"KeyId": KEY, "Tags": {"TagKey": "k"}}), ("CreateKey", {"Tags": [{"TagKey": []}]}),
        ("CreateKey", {"KeyUsage": 5, "Origin": False}), ("CreateGrant", {"Operations": "Encrypt"}),
        ("CreateGrant", {"KeyId": KEY, "GranteePrincipal": ROLE, "Operations": ["Encrypt"],
                         "Constraints": {"EncryptionContextSubset": "x"}}),
        ("CreateCustomKeyStore", {"CustomKeyStoreName": {"n": 1}}),
        ("PutKeyPolicy", {"KeyId": KEY, "PolicyName": "default", "Policy": 5}),
    )],
    # huge strings and bodies: the model's limits, and over 1 MiB a 413 in AWS's shape
    kms("DescribeKey", {"KeyId": "a" * 900_000}, id="kms huge KeyId", expect="ValidationException"),
    kms("Encrypt", {"KeyId": KEY, "Plaintext": b64(b"p" * 600_000)}, id="kms huge plaintext",
        expect="ValidationException"),
    kms("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "EncryptionContext": {f"k{i}": "v" * 60 for i in range(9000)}},
        id="kms huge encryption context"),
    kms("CreateKey", {"Description": "d" * 900_000}, id="kms huge description", expect="ValidationException"),
    kms("TagResource", {"KeyId": KEY, "Tags": [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(20_000)]},
        id="kms 20000 tags"),
    kms("Encrypt", b'{"KeyId": "' + b"k" * (2 * MIB) + b'"}', id="kms body 2 MiB",
        expect="RequestEntityTooLargeException", status=413),
    kms("ListKeys", b" " * (MIB + 1), id="kms body 1 MiB of blanks", expect="RequestEntityTooLargeException",
        status=413),
    kms("CreateKey", {"Policy": "[" * 30_000}, id="kms policy nested 30000"),
    kms("CreateKey", {"Policy": '{"Statement": ' + "[" * 5000 + "]" * 5000 + "}"}, id="kms policy nested 5000"),
    kms("CreateKey", {"Policy": "x" * 40_000}, id="kms policy huge"),
    kms("CreateKey", {"Policy": '{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*",'
                                ' "Resource": "*", "Condition": {"StringEquals": ' + "[" * 2000 + "]" * 2000 + "}}]}"},
        id="kms policy condition nested"),
    # bad base64 and bad ciphertext blobs
    *[kms("Decrypt", {"CiphertextBlob": text}, id=f"kms base64 {text[:10]!r}")
      for text in ("!!!!", "QQ", "QQ=", "Q===", "QQ==QQ==", "\u00e9\u00e9\u00e9\u00e9", "Q Q = =", "-_-_")],
    *[kms("Decrypt", {"CiphertextBlob": b64(blob)}, id=f"kms blob {blob[:6]!r} ({len(blob)})") for blob in BLOBS],
    *[kms("ReEncrypt", {"CiphertextBlob": b64(blob), "DestinationKeyId": KEY}, id=f"kms reencrypt blob {len(blob)}")
      for blob in BLOBS[1:4]],
    kms("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==\n"}, id="kms base64 newline"),
    # odd Unicode in every kind of string member
    *[kms("DescribeKey", {"KeyId": text}, id=f"kms unicode KeyId {i}") for i, text in enumerate(ODD)],
    *[kms("CreateAlias", {"AliasName": text, "TargetKeyId": KEY}, id=f"kms unicode alias {i}")
      for i, text in enumerate(ODD[:6])],
    *[kms("Encrypt", {"KeyId": KEY, "Plaintext": "QQ==", "EncryptionContext": {text: text}},
          id=f"kms unicode context {i}") for i, text in enumerate(ODD[:6])],
    *[kms("CreateKey", {"Description": text, "Tags": [{"TagKey": text, "TagValue": text}]},
          id=f"kms unicode tags {i}") for i, text in enumerate(ODD[:6])],
    kms("ListKeys", b'{"Marker": "\\ud800\\udc00\\udbff"}', id="kms surrogate escapes"),
    kms("ListKeys", '{"Marker": "\u0000\u2028"}'.encode(), id="kms raw NUL and separator"),
    # the CloudHSM v2 control plane, with the same kinds of input
    *[hsm("DescribeClusters", body, id=f"cloudhsm malformed {body[:12]!r}", expect="SerializationException")
      for body in (b"{", b"\xff\xfe", b"[]", deep_list(100_000), deep_object(70))],
    hsm("DescribeClusters", b" " * (MIB + 1), id="cloudhsm body over 1 MiB", expect="RequestEntityTooLargeException",
        status=413),
    *[hsm(op, body, id=f"cloudhsm {op} {json.dumps(body)[:40]}") for op, body in (
        ("DescribeClusters", {"Filters": "x"}), ("DescribeClusters", {"Filters": {"clusterIds": [1, None]}}),
        ("DescribeClusters", {"MaxResults": 10 ** 30}), ("DescribeClusters", {"NextToken": "\ud800"}),
        ("CreateCluster", {"HsmType": 1, "SubnetIds": "subnet-1"}),
        ("CreateCluster", {"HsmType": "hsm1.medium", "SubnetIds": ["\u202e"] * 50}),
        ("CreateCluster", {"HsmType": "x" * 500_000, "SubnetIds": []}),
        ("CreateHsm", {"ClusterId": "cluster-aaaaaaaaaaa", "AvailabilityZone": "\u0000", "IpAddress": "999.1.1.1"}),
        ("InitializeCluster", {"ClusterId": "cluster-aaaaaaaaaaa", "SignedCert": "-----BEGIN" + "A" * 100_000,
                               "TrustAnchor": "\ud800"}),
        ("DeleteHsm", {"ClusterId": ["c"], "HsmId": {"h": 1}}),
        ("TagResource", {"ResourceId": "cluster-aaaaaaaaaaa", "TagList": [{"Key": "\ud800", "Value": "v" * 300}]}),
        ("PutResourcePolicy", {"ResourceArn": "arn:aws:cloudhsm:us-east-1:111122223333:backup/backup-aaaaaaaaaaa",
                               "Policy": "[" * 20_000}),
        ("DescribeBackups", {"Filters": {"states": ["\u0130" * 1000]}, "SortAscending": "yes"}),
        ("CopyBackupToRegion", {"DestinationRegion": "../../x", "BackupId": "backup-aaaaaaaaaaa"}),
    )],
    hsm("NoSuchOperation", {}, expect="UnknownOperationException"),
    # STS, the query protocol
    sts(b"Action=GetCallerIdentity&Version=2011-06-15", id="sts fine", status=200),
    *[sts(body) for body in (
        b"Action=%ff%fe&Version=2011-06-15", b"Action=NoSuch&Version=2011-06-15", b"\xff\xfe\xfa",
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=" + ROLE.encode() + b"&RoleSessionName=s&Policy=" + b"%5B" * 2000,
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=%00&DurationSeconds=abc",
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=s&DurationSeconds=" + b"9" * 5000,
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=" + b"a" * 500_000 + b"&RoleSessionName=s",
        b"&&&===&&&", b"Action=GetCallerIdentity&" + b"&".join(b"k%d=v" % i for i in range(50_000)),
    )],
    sts(b"Action=GetCallerIdentity&Version=2011-06-15&pad=" + b"x" * (2 * MIB), id="sts body 2 MiB", status=413),
    # unsigned, to every service
    kms("ListKeys", {}, signed=False, expect="MissingAuthenticationTokenException", id="kms unsigned"),
    hsm("DescribeClusters", {}, signed=False, id="cloudhsm unsigned"),
    sts(b"Action=GetCallerIdentity&Version=2011-06-15", signed=False, id="sts unsigned"),
    Case("GET unsigned", "kms", method="GET", body=b"", signed=False),
    Case("GET sts unsigned", "sts", method="GET", body=b"", path="/?Action=GetCallerIdentity", signed=False),
    Case("PUT odd path", "kms", "TrentService.ListKeys", method="PUT", path="/%ff/../%00?x=%zz"),
    # odd headers: changed after signing, or odd but signed
    kms("ListKeys", {}, headers={"X-Amz-Target": "TrentService.ListAliases"}, expect="InvalidSignatureException",
        id="target changed after signing"),
    kms("ListKeys", {}, headers={"Content-Type": "text/plain"}, id="content type changed"),
    kms("ListKeys", {}, headers={"X-Amz-Date": "not a date"}, id="bad date"),
    kms("ListKeys", {}, headers={"X-Amz-Date": "\u00e9t\u00e9".encode("utf-8")}, id="non-ASCII date"),
    kms("ListKeys", {}, signed_headers={"X-Odd": "caf\u00e9"}, id="signed non-ASCII header"),
    kms("ListKeys", {}, headers={"X-Odd-After": "\u00ff\u00fe".encode("latin-1")}, id="unsigned non-ASCII header"),
    kms("ListKeys", {}, headers={"Authorization": "AWS4-HMAC-SHA256 " + "A" * 7000}, id="huge authorization"),
    kms("ListKeys", {}, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=\u00e9/x/y/z/w, SignedHeaders=host;"
                                                  "x-amz-target;content-type;x-amz-date, Signature=00"
                                                  .encode("utf-8")}, id="non-ASCII credential"),
    kms("ListKeys", {}, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/kms/"
                                                  "aws4_request, SignedHeaders=x-odd;host, Signature=zz"},
        id="signed headers that are not there"),
    kms("ListKeys", {}, headers={"Authorization": "Bearer x"}, id="another scheme"),
    kms("ListKeys", {}, headers={"X-Amz-Security-Token": "\u00e9" * 2000}, id="odd token"),
    kms("ListKeys", {}, headers={"X-Amz-Target": ""}, id="empty target"),
    kms("ListKeys", {}, headers={"Content-Type": "application/x-amz-json-1.1; charset=\u00e9"}, id="odd charset"),
    hsm("DescribeClusters", {}, headers={"X-Amz-Target": "BaldrApiService." + "\u00e9" * 100}, id="odd hsm target"),
    hsm("DescribeClusters", {}, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=K/20260101/\u00e9/cloudhsm/"
                                                          "aws4_request, SignedHeaders=host, Signature=00"},
        id="cloudhsm odd region"),
]


def send(fe: FrontendProcess, case: Case) -> tuple[int, dict[str, str], bytes]:
    key_id, secret = fe.aws_credentials()
    url = fe.aws_endpoint_url + case.path
    headers: dict[str, str | bytes] = {"Content-Type": FORM if case.service == "sts" else JSON_11,
                                       **case.signed_headers}
    if case.target:
        headers["X-Amz-Target"] = case.target
    if case.signed:
        request = AWSRequest(method=case.method, url=url, data=case.body, headers=dict(headers))
        SigV4Auth(Credentials(key_id, secret), case.service, fe.region).add_auth(request)
        headers = dict(request.headers.items())
    headers.update(case.headers)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    conn = http.client.HTTPConnection("127.0.0.1", fe.aws_port, timeout=120)
    try:
        conn.putrequest(case.method, case.path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value.encode("utf-8") if isinstance(value, str) else value)
        conn.putheader("Content-Length", str(len(case.body)))
        conn.endheaders(case.body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    except (BrokenPipeError, ConnectionResetError):  # the server answered (413) and closed mid-upload
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def error_name(case: Case, headers: dict[str, str], body: bytes) -> str:
    if headers.get("Content-Type", "").startswith("text/xml"):
        found = re.search(rb"<Code>([^<]*)</Code>", body)
        assert found, body[:300]
        return found.group(1).decode()
    doc = json.loads(body)
    return doc.get("__type", "")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_bad_input_gets_an_aws_error_never_a_5xx(fe, case: Case) -> None:
    status, headers, body = send(fe, case)
    assert status < 500, (status, body[:500])
    if case.status is not None:
        assert status == case.status, (status, body[:500])
    if status >= 400:
        name = error_name(case, headers, body)
        assert AWS_NAME.fullmatch(name) and "Internal" not in name, (status, body[:500])
        if case.expect is not None:
            assert name == case.expect, (status, body[:500])
        assert b"Traceback" not in body


# ------------------------------------------------------------------ below HTTP


RAW: list[tuple[str, bytes]] = [
    ("a TLS hello", bytes.fromhex("160301002a0100002603035a") + b"\x00" * 40),
    ("NUL bytes", b"\x00" * 4096),
    ("an unknown HTTP version", b"POST / HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("a header line of 100 KB", b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"),
    ("a token header of 20 KB", b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Security-Token: " + "\u00e9".encode() * 10_000
     + b"\r\n\r\n"),
    ("10000 headers", b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
     + b"\r\n"),
    ("a lying Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}"),
    ("a negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
    ("chunked garbage", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("chunked over 1 MiB", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           b"Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.ListKeys\r\n\r\n"
     + (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 2 + b"0\r\n\r\n"),
    ("a half request, then nothing", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"),
]


@pytest.mark.parametrize("what,data", RAW, ids=[r[0] for r in RAW])
async def test_garbage_below_http_is_refused_and_the_server_keeps_serving(fe, what: str, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", fe.aws_port), timeout=30) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            answer = b""
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]
        if status == 413:  # in the handler: AWS's shape
            assert b'"__type": "RequestEntityTooLargeException"' in answer, answer[:300]


def assert_serves(fe: FrontendProcess) -> None:
    status, _, body = send(fe, kms("ListKeys", {}))
    assert status == 200 and json.loads(body)["Keys"] == [], body


async def test_afterwards_it_still_serves_and_logged_no_traceback(fe) -> None:
    assert_serves(fe)
    status, _, body = send(fe, sts(b"Action=GetCallerIdentity&Version=2011-06-15"))
    assert status == 200 and b"<Arn>arn:aws:iam::111122223333:root</Arn>" in body
    status, _, body = send(fe, hsm("DescribeClusters", {}))
    assert status == 200 and "Clusters" in json.loads(body)
    assert fe.proc is not None and fe.proc.poll() is None
    log = fe.log_path.read_text(errors="replace")
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]
    # the CloudHSM side's request lines name who called, as KMS's do
    assert '"operation": "DescribeClusters", "outcome": "ok"' in log
    assert all('"principal": "arn:aws:iam::111122223333:root"' in line for line in log.splitlines()
               if '"operation": "DescribeClusters", "outcome": "ok"' in line)
