"""AWS Signature Version 4: checking that a request was signed by a credential the frontend knows,
for both adapters (the AWS endpoint's HTTP requests, and kms.v1 gRPC calls).

Credentials are the principals' (:class:`~kms_frontend.service.principals.Identities`): the
account root's key pair (``--aws-access-key ID:SECRET``, repeatable, or
``KMS_AWS_ACCESS_KEYS=ID:SECRET,ID2:SECRET2``; with none given, the pair in
``<data dir>/aws-credentials.json``, mode 0600, generated on first start), the IAM users of the
principals file, and the temporary credentials of AssumeRole sessions (``X-Amz-Security-Token``).

A request is verified by recomputing its signature the way SigV4 defines it (botocore's
canonicalisation, reproduced and tested against botocore's signer: method, normalised and
re-encoded path, sorted query, the headers named in ``SignedHeaders`` with whitespace folded, the
SHA-256 of the body as received) and comparing in constant time; signing keys are derived once per
(secret, day, region, service). The credential scope must be ``<date>/<this frontend's
region>/<kms or sts>/aws4_request``, ``X-Amz-Date`` within five minutes of now, and ``Host``,
``X-Amz-Date``, ``Content-Type`` and (where sent) ``X-Amz-Target`` must be among the signed
headers, so that a captured request cannot be replayed as another operation. A signed header whose
value is not ASCII is refused (``IncompleteSignatureException``). Refusals carry AWS's exception
names and messages.

gRPC (:meth:`SigV4Verifier.verify_grpc`): a kms.v1 call is the HTTP request ``POST /<service>/<method>``
whose body is the serialized request message, signed for service ``kms``; the signature travels in
the call's metadata (``authorization``, ``x-amz-date``, ``host``, ``x-amz-security-token``), and
``content-type`` is ``application/grpc`` (what gRPC itself sends). The client half of that
contract is :mod:`protos.kms.v1.auth`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from botocore.utils import normalize_url_path

from plumbing.files import write_private
from protos.kms.v1 import auth as grpc_auth

from .. import errors
from ..errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from ..service.principals import Principal

log = logging.getLogger("kms_frontend.sigv4")

ALGORITHM = "AWS4-HMAC-SHA256"
CREDENTIALS_FILE = "aws-credentials.json"
MAX_SKEW_S = 300
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
MAX_SIGNING_KEYS = 1024

REFUSALS = errors.AUTHENTICATION_REFUSALS
__all__ = ["REFUSALS", "IncompleteSignatureException", "InvalidSignatureException",
           "MissingAuthenticationTokenException", "UnrecognizedClientException", "SigV4Verifier", "Authenticated",
           "access_keys", "local_access_key", "parse_access_keys"]

CredentialLookup = Callable[[str, "str | None"], "tuple[str, Principal]"]
"""(access key id, session token) -> (secret, principal); raises AWS's refusals."""


def _mismatch(canonical_request: str, string_to_sign: str) -> InvalidSignatureException:
    return InvalidSignatureException(
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details.\n\n"
        f"The Canonical String for this request should have been\n'{canonical_request}'\n\n"
        f"The String-to-Sign should have been\n'{string_to_sign}'\n")


# ---------------------------------------------------------------- access keys of the account root


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
    """The account root's keys: the configured ones, else the frontend's own pair."""
    keys = parse_access_keys(configured)
    if keys:
        log.info("AWS access keys of the account root configured", extra={
            "event": "aws_credentials", "source": "configured", "access_key_ids": sorted(keys)})
        return keys
    key_id, secret, path, created = local_access_key(data_dir)
    log.info("AWS access key of the account root " + ("generated" if created else "loaded") + f"; see {path}",
             extra={"event": "aws_credentials", "source": "file", "path": str(path), "access_key_id": key_id,
                    "generated": created})
    return {key_id: secret}


# ---------------------------------------------------------------- canonical form (SigV4)


_PATHS: dict[str, str] = {}


def canonical_path(path: str) -> str:
    """The path as botocore canonicalises it: dot segments removed, then URI-encoded (again).
    Remembered: a frontend sees few paths (``/`` and the gRPC method paths)."""
    found = _PATHS.get(path)
    if found is None:
        found = quote(normalize_url_path(path), safe="/~")
        if len(_PATHS) < 4096:
            _PATHS[path] = found
    return found


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(method: str, path: str, query: str, headers: dict[str, list[str]], signed: Sequence[str],
                      payload_sha256: str) -> str:
    lines = []
    for name in signed:
        values = headers[name]
        value = " ".join(values[0].split()) if len(values) == 1 else ",".join(" ".join(v.split()) for v in values)
        lines.append(f"{name}:{value}\n")
    return f"{method.upper()}\n{canonical_path(path)}\n{canonical_query(query)}\n{''.join(lines)}\n" \
           f"{';'.join(signed)}\n{payload_sha256}"


# ---------------------------------------------------------------- verification


_PRINTABLE_ASCII = re.compile(r"[\t\x20-\x7e]*")
_MUST_SIGN = (("x-amz-date", "X-Amz-Date"), ("content-type", "Content-Type"), ("x-amz-target", "X-Amz-Target"))
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^,\s]+), ?SignedHeaders=([^,\s]+), ?Signature=([0-9a-f]+)")


def _fast_auth_params(auth: str) -> dict[str, str] | None:
    """The Authorization header as SDKs write it, read with one regular expression (the general
    parser handles, and explains, everything else)."""
    m = _AUTHORIZATION.fullmatch(auth)
    if m is None:
        return None
    return {"Credential": m.group(1), "SignedHeaders": m.group(2), "Signature": m.group(3)}


class Authenticated(NamedTuple):
    principal: Principal
    service: str  # the signing name in the credential scope: "kms" or "sts"


class SigV4Verifier:
    def __init__(self, credentials: CredentialLookup, region: str, services: Iterable[str] = ("kms",),
                 clock: Callable[[], float] = time.time, max_skew_s: int = MAX_SKEW_S) -> None:
        self.credentials, self.region, self.services = credentials, region, tuple(services)
        self.clock, self.max_skew_s = clock, max_skew_s
        self._signing_keys: dict[tuple[str, str, str], bytes] = {}
        self._dates: dict[str, float] = {}
        self._signed: dict[str, tuple[str, ...]] = {}
        self._scopes: dict[tuple[str, tuple[str, ...]], tuple[str, str, str]] = {}

    def verify(self, method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: bytes,
               services: tuple[str, ...] | None = None) -> Authenticated:
        """Authenticate an HTTP request (``raw_path`` with its query string) signed for one of
        ``services`` (default: the verifier's), or raise AWS's refusal."""
        received: dict[str, list[str]] = {}
        for name, value in headers:
            received.setdefault(name.lower(), []).append(value)
        path, _, query = raw_path.partition("?")
        return self._verify(method, path, query, received, hashlib.sha256(body).hexdigest(), services)

    def verify_grpc(self, method_path: str, metadata: Iterable[tuple[str, str | bytes]], payload: bytes) -> Principal:
        """Authenticate a kms.v1 call: ``method_path`` is ``/kms.v1.Kms/Encrypt``, ``payload`` the
        serialized request as received."""
        received: dict[str, list[str]] = {}
        for name, value in metadata:
            if isinstance(value, str):
                received.setdefault(name, []).append(value)
        received["content-type"] = [grpc_auth.CONTENT_TYPE]
        found = self._verify("POST", method_path, "", received, hashlib.sha256(payload).hexdigest(),
                             services=(grpc_auth.SERVICE,))
        return found.principal

    def _verify(self, method: str, path: str, query: str, received: dict[str, list[str]], payload_sha256: str,
                services: tuple[str, ...] | None = None) -> Authenticated:
        auth = (received.get("authorization") or [""])[0].strip()
        if not auth:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        params = _fast_auth_params(auth) or self._auth_params(auth)
        amz_date = (received.get("x-amz-date") or [""])[0].strip()
        if len(params) < 3 or not amz_date:
            missing = [f"Authorization header requires '{p}' parameter." for p in ("Credential", "Signature",
                                                                                    "SignedHeaders")
                       if p not in params]
            if not amz_date:
                missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                               "header.")
            if missing:
                raise IncompleteSignatureException(" ".join(missing) + f" Authorization={auth}")
        key_id, scope_date, scope_service = self._scope(params["Credential"], services or self.services)
        when = self._parse_date(amz_date)
        signed = self._signed_names(params["SignedHeaders"])
        self._require_signed(signed, received)
        if scope_date != amz_date[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
        self._check_time(amz_date, when)
        token = received.get("x-amz-security-token")
        secret, principal = self.credentials(key_id, token[0].strip() if token else None)
        claimed = received.get("x-amz-content-sha256")
        if claimed is not None and claimed[0].strip() != payload_sha256:
            raise InvalidSignatureException("The provided 'x-amz-content-sha256' header does not match what was "
                                            "computed.")
        canonical = canonical_request(method, path, query, received, signed, payload_sha256)
        credential_scope = f"{scope_date}/{self.region}/{scope_service}/aws4_request"
        to_sign = "\n".join((ALGORITHM, amz_date, credential_scope,
                             hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
        key = self._signing_key(secret, scope_date, scope_service)
        expected = hmac.digest(key, to_sign.encode("utf-8"), "sha256").hex()
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise _mismatch(canonical, to_sign)
        return Authenticated(principal, scope_service)

    def _scope(self, credential: str, services: tuple[str, ...]) -> tuple[str, str, str]:
        """``keyid/date/region/service/aws4_request``, checked: (key id, date, service). Remembered per
        credential string (one per key per day)."""
        cache_key = (credential, services)
        found = self._scopes.get(cache_key)
        if found is not None:
            return found
        scope = credential.split("/")
        if len(scope) != 5:
            raise IncompleteSignatureException(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
                f"got '{credential}'")
        key_id, scope_date, scope_region, scope_service, terminator = scope
        if scope_region != self.region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region. This endpoint serves '{self.region}', "
                f"not '{scope_region}'.")
        if scope_service not in services:
            raise InvalidSignatureException(f"Credential should be scoped to correct service: '{services[0]}'. ")
        if terminator != "aws4_request":
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. ")
        if len(self._scopes) >= 4096:
            self._scopes.clear()
        found = self._scopes[cache_key] = (key_id, scope_date, scope_service)
        return found

    def _signed_names(self, text: str) -> tuple[str, ...]:
        found = self._signed.get(text)
        if found is None:
            found = tuple(sorted({n.strip().lower() for n in text.split(";") if n.strip()}))
            if len(self._signed) < 1024:
                self._signed[text] = found
        return found

    @staticmethod
    def _require_signed(signed: Sequence[str], received: dict[str, list[str]]) -> None:
        if "host" not in signed:
            raise IncompleteSignatureException("'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                                               "Authorization.")
        for name, shown in _MUST_SIGN:
            if name in received and name not in signed:
                raise IncompleteSignatureException(f"'{shown}' must be a 'SignedHeader' in the AWS Authorization.")
        for name in signed:
            values = received.get(name)
            if values is None:
                raise IncompleteSignatureException(f"Header '{name}' is named in SignedHeaders but is not in "
                                                   "the request.")
            if not all((v.isascii() and v.isprintable()) or _PRINTABLE_ASCII.fullmatch(v) for v in values):
                raise IncompleteSignatureException(
                    f"The value of signed header '{name}' has characters that are not printable ASCII; signed "
                    "header values must be printable ASCII.")

    def _signing_key(self, secret: str, date: str, service: str) -> bytes:
        cache_key = (secret, date, service)
        key = self._signing_keys.get(cache_key)
        if key is None:
            k = hmac.digest(("AWS4" + secret).encode("utf-8"), date.encode(), "sha256")
            for part in (self.region, service, "aws4_request"):
                k = hmac.digest(k, part.encode(), "sha256")
            if len(self._signing_keys) >= MAX_SIGNING_KEYS:
                self._signing_keys.clear()
            key = self._signing_keys[cache_key] = k
        return key

    def _parse_date(self, amz_date: str) -> float:
        when = self._dates.get(amz_date)
        if when is None:
            try:
                when = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC).timestamp()
            except ValueError:
                raise IncompleteSignatureException(
                    f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                    "See http://en.wikipedia.org/wiki/ISO_8601") from None
            if len(self._dates) >= 4096:
                self._dates.clear()
            self._dates[amz_date] = when
        return when

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

    def _check_time(self, amz_date: str, ts: float) -> None:
        now_s = self.clock()
        skew = self.max_skew_s
        if now_s - skew <= ts <= now_s + skew:
            return
        now = dt.datetime.fromtimestamp(now_s, dt.UTC).replace(microsecond=0)
        delta = dt.timedelta(seconds=skew)
        minutes = skew // 60

        def fmt(t: dt.datetime) -> str:
            return t.strftime(_AMZ_DATE)

        if ts < now_s - skew:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than {fmt(now - delta)} ({fmt(now)} - {minutes} min.)")
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than {fmt(now + delta)} "
            f"({fmt(now)} + {minutes} min.)")
