"""AWS Signature Version 4 for the AWS JSON endpoint: who may call, and checking each request.

Access keys are ``ID -> secret`` pairs given to the frontend (``--aws-access-key ID:SECRET``,
repeatable, or ``KMS_AWS_ACCESS_KEYS=ID:SECRET,ID2:SECRET2``). With none given, the frontend
uses the pair in ``<data dir>/aws-credentials.json`` (mode 0600), generating it on first start.

A request is verified by recomputing its signature with botocore's own SigV4 canonicalisation
(:class:`botocore.auth.SigV4Auth`: method, path, query, the headers named in ``SignedHeaders``,
the SHA-256 of the body as received) and comparing in constant time. The credential scope must
be ``<date>/<this frontend's region>/kms/aws4_request`` and ``X-Amz-Date`` within five minutes of
now. Refusals carry AWS's exception names and messages.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import grpc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from plumbing.files import write_private

from .. import errors

log = logging.getLogger("kms_frontend.sigv4")

ALGORITHM = "AWS4-HMAC-SHA256"
CREDENTIALS_FILE = "aws-credentials.json"
MAX_SKEW_S = 300
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


# ---------------------------------------------------------------- refusals (AWS names)


class MissingAuthenticationTokenException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class IncompleteSignatureException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class UnrecognizedClientException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class InvalidSignatureException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


REFUSALS = (MissingAuthenticationTokenException, IncompleteSignatureException, UnrecognizedClientException,
            InvalidSignatureException)


def _unrecognized() -> UnrecognizedClientException:
    return UnrecognizedClientException("The security token included in the request is invalid.")


def _mismatch(canonical_request: str, string_to_sign: str) -> InvalidSignatureException:
    return InvalidSignatureException(
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details.\n\n"
        f"The Canonical String for this request should have been\n'{canonical_request}'\n\n"
        f"The String-to-Sign should have been\n'{string_to_sign}'\n")


# ---------------------------------------------------------------- access keys


def parse_access_keys(values: Iterable[str]) -> dict[str, str]:
    """``["ID:SECRET", ...]`` (items may also be comma-separated lists) -> ``{ID: SECRET}``."""
    keys: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            key_id, sep, secret = item.partition(":")
            if not sep or not key_id.strip() or not secret.strip():
                raise ValueError("an AWS access key must be given as ACCESS_KEY_ID:SECRET_ACCESS_KEY "
                                 f"(got one starting {key_id[:4]!r})")
            keys[key_id.strip()] = secret.strip()
    return keys


def _new_access_key() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
    return key_id, base64.b64encode(secrets.token_bytes(30)).decode()  # 40 characters, like AWS


def local_access_key(data_dir: Path) -> tuple[str, str, Path, bool]:
    """The frontend's own key pair from ``<data_dir>/aws-credentials.json``, created if missing.

    Returns ``(access_key_id, secret_access_key, path, created)``.
    """
    path = data_dir / CREDENTIALS_FILE
    created = False
    if not path.exists():
        key_id, secret = _new_access_key()
        write_private(path, (json.dumps({"aws_access_key_id": key_id, "aws_secret_access_key": secret}, indent=2)
                             + "\n").encode())
        created = True
    try:
        doc = json.loads(path.read_text())
        key_id, secret = doc["aws_access_key_id"], doc["aws_secret_access_key"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a valid AWS credentials file: {type(exc).__name__}") from None
    if path.stat().st_mode & 0o077:
        log.warning("credentials file is readable by others", extra={"event": "aws_credentials_mode",
                                                                      "path": str(path)})
    return key_id, secret, path, created


def access_keys(configured: Iterable[str], data_dir: Path) -> dict[str, str]:
    """The keys the endpoint accepts: the configured ones, else the frontend's own pair."""
    keys = parse_access_keys(configured)
    if keys:
        log.info("AWS endpoint access keys configured", extra={"event": "aws_credentials", "source": "configured",
                                                               "access_key_ids": sorted(keys)})
        return keys
    key_id, secret, path, created = local_access_key(data_dir)
    log.info("AWS endpoint access key " + ("generated" if created else "loaded") + f"; see {path}",
             extra={"event": "aws_credentials", "source": "file", "path": str(path), "access_key_id": key_id,
                    "generated": created})
    return {key_id: secret}


# ---------------------------------------------------------------- verification


class _ReceivedRequestSigner(SigV4Auth):
    """botocore's SigV4 canonicalisation, fed with what was received instead of what is sent."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: HTTPHeaders,
                 payload_sha256: str) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed
        self._payload_sha256 = payload_sha256

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed

    def payload(self, request: AWSRequest) -> str:
        return self._payload_sha256


class SigV4Verifier:
    def __init__(self, keys: Mapping[str, str], region: str, service: str = "kms",
                 clock: Callable[[], float] = time.time, max_skew_s: int = MAX_SKEW_S) -> None:
        self.keys, self.region, self.service = dict(keys), region, service
        self.clock, self.max_skew_s = clock, max_skew_s

    def verify(self, method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: bytes) -> str:
        """Raise the AWS refusal for a request that is not signed by a known key; return its key id."""
        received: dict[str, list[str]] = {}
        for name, value in headers:
            received.setdefault(name.lower(), []).append(value)
        auth = (received.get("authorization") or [""])[0].strip()
        if not auth:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        params = self._auth_params(auth)
        amz_date = (received.get("x-amz-date") or [""])[0].strip()
        missing = [f"Authorization header requires '{p}' parameter." for p in ("Credential", "Signature",
                                                                                "SignedHeaders") if p not in params]
        if not amz_date:
            missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        if missing:
            raise IncompleteSignatureException(" ".join(missing) + f" Authorization={auth}")
        scope = params["Credential"].split("/")
        if len(scope) != 5:
            raise IncompleteSignatureException(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
                f"got '{params['Credential']}'")
        key_id, scope_date, scope_region, scope_service, terminator = scope
        try:
            when = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
        except ValueError:
            raise IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601") from None
        signed_names = [n.strip().lower() for n in params["SignedHeaders"].split(";") if n.strip()]
        if "host" not in signed_names:
            raise IncompleteSignatureException("'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                                               "Authorization.")
        if scope_date != amz_date[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
        if scope_region != self.region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region. This endpoint serves '{self.region}', "
                f"not '{scope_region}'.")
        if scope_service != self.service:
            raise InvalidSignatureException(f"Credential should be scoped to correct service: '{self.service}'. ")
        if terminator != "aws4_request":
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. ")
        self._check_time(amz_date, when)
        if "x-amz-security-token" in received:
            raise _unrecognized()  # no temporary credentials are issued here
        secret = self.keys.get(key_id)
        if secret is None:
            raise _unrecognized()
        payload_sha256 = hashlib.sha256(body).hexdigest()
        claimed = received.get("x-amz-content-sha256")
        if claimed is not None and claimed[0].strip() != payload_sha256:
            raise InvalidSignatureException("The provided 'x-amz-content-sha256' header does not match what was "
                                            "computed.")
        signed = HTTPHeaders()
        for name in signed_names:
            if name not in received:
                raise IncompleteSignatureException(f"Header '{name}' is named in SignedHeaders but is not in "
                                                   "the request.")
            for value in received[name]:
                signed[name] = value
        request = AWSRequest(method=method, url="http://" + received["host"][0] + raw_path, data=body)
        for name in signed_names:
            for value in received[name]:
                request.headers[name] = value
        request.context["timestamp"] = amz_date
        signer = _ReceivedRequestSigner(Credentials(key_id, secret), self.service, self.region, signed,
                                        payload_sha256)
        canonical = signer.canonical_request(request)
        to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(to_sign, request)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise _mismatch(canonical, to_sign)
        return key_id

    @staticmethod
    def _auth_params(auth: str) -> dict[str, str]:
        algorithm, _, rest = auth.partition(" ")
        if algorithm != ALGORITHM:
            raise IncompleteSignatureException(
                f"Unsupported AWS 'algorithm': '{algorithm}'; this endpoint accepts {ALGORITHM} (SigV4).")
        params: dict[str, str] = {}
        for part in rest.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise IncompleteSignatureException(
                    f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{auth}'.")
            params[name.strip()] = value.strip()
        return params

    def _check_time(self, amz_date: str, when: dt.datetime) -> None:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC).replace(microsecond=0)
        skew = dt.timedelta(seconds=self.max_skew_s)
        minutes = self.max_skew_s // 60

        def fmt(t: dt.datetime) -> str:
            return t.strftime(_AMZ_DATE)

        if when < now - skew:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than {fmt(now - skew)} ({fmt(now)} - {minutes} min.)")
        if when > now + skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {amz_date} is still later than {fmt(now + skew)} "
                f"({fmt(now)} + {minutes} min.)")
