"""Who may call: the IAM principals this frontend knows, and the credentials that prove them.

* The account root (``arn:aws:iam::ACCOUNT:root``): the frontend's own access key pair
  (``--aws-access-key``, or the one generated into ``aws-credentials.json``). As in AWS, root is
  bound by key policies, never by IAM policies.
* IAM users and roles from the principals file (``--principals FILE``, ``KMS_PRINCIPALS_FILE``),
  in one or more accounts, exactly in this form::

      {"principals": [
        {"arn": "arn:aws:iam::111122223333:user/alice",
         "access_keys": [{"id": "AKIA...", "secret": "..."}],
         "policies": [{"Version": "2012-10-17", "Statement": [...]}]},
        {"arn": "arn:aws:iam::111122223333:role/app",
         "trust": ["arn:aws:iam::111122223333:user/alice"],
         "policies": [...]}]}

  A file that is not exactly that is refused at start with ``FILE:LINE: reason`` and nothing of
  it is used.
* Sessions of a role (``AssumeRole``): temporary credentials whose session token is sealed
  under the frontend's master key. The token carries the session (role, name, expiry, secret), so
  it needs no database and outlives a restart of the frontend, as AWS's do.

Credentials are looked up in memory on every request (:meth:`Identities.credential`): no
database, no file.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors
from ..secret_box import SealError, SecretBox
from .policy_language import (
    ACCOUNT_RE,
    IAM_ARN_RE,
    SESSION_ARN_RE,
    CompiledPolicy,
    PolicyError,
    PrincipalSet,
    compile_policy,
    loads_located,
    principal_set,
)

ACCESS_KEY_RE_TEXT = r"^[A-Z0-9]{16,128}$"
_ALPHABET = string.ascii_uppercase + "234567"
_TOKEN_CONTEXT = b"sts-session-token:v1"
MAX_CACHED_SESSIONS = 10_000


def stable_id(prefix: str, arn: str) -> str:
    """An IAM unique id (``AIDA...`` for users, ``AROA...`` for roles) derived from the ARN, so it
    is the same on every start."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()
    return prefix + "".join(c for c in digest if c.isalnum())[:17]


@dataclass(frozen=True, eq=False)
class Principal:
    """The caller of a request, as IAM sees it."""

    arn: str                # user ARN, root ARN, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    account: str
    kind: str               # "root" | "user" | "assumed-role"
    user_id: str            # aws:userid: the account id (root), AIDA... (user), AROA...:SESSION
    policies: tuple[CompiledPolicy, ...] = ()   # identity-based: the user's, or the role's
    role_arn: str | None = None                 # sessions: the role (aws:PrincipalArn)
    session_name: str | None = None
    session_policy: CompiledPolicy | None = None  # AssumeRole's Policy: limits the session further
    expires_ms: int | None = None

    @property
    def is_root(self) -> bool:
        return self.kind == "root"

    @property
    def principal_arn(self) -> str:
        """``aws:PrincipalArn``: the role for a session, else the caller's ARN."""
        return self.role_arn or self.arn

    @property
    def username(self) -> str | None:
        """``aws:username``: only IAM users have one."""
        return self.arn.rsplit("/", 1)[-1] if self.kind == "user" else None

    @property
    def principal_type(self) -> str:
        return {"root": "Account", "user": "User", "assumed-role": "AssumedRole"}[self.kind]


@dataclass(frozen=True)
class Role:
    arn: str
    account: str
    name: str
    role_id: str
    trust: PrincipalSet
    policies: tuple[CompiledPolicy, ...]


@dataclass(frozen=True)
class PrincipalsFile:
    users: tuple[Principal, ...] = ()
    keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # access key id -> (secret, user ARN)
    roles: tuple[Role, ...] = ()


class PrincipalsFileError(ValueError):
    """A principals file that cannot be used, with ``FILE:LINE: reason``."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


# ---------------------------------------------------------------- the principals file


def load_principals_file(path: str | os.PathLike[str]) -> PrincipalsFile:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PrincipalsFileError(source, None, f"cannot read the principals file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PrincipalsFileError(source, None, "the principals file is not UTF-8 text") from None
    return parse_principals(text, source)


def parse_principals(text: str, source: str = "<principals>") -> PrincipalsFile:
    """Parse and check a whole principals file; raise :class:`PrincipalsFileError` on the first
    problem (nothing is used unless everything is valid)."""
    try:
        doc = loads_located(text)
    except json.JSONDecodeError as exc:
        raise PrincipalsFileError(source, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None

    def fail(node: object, reason: str) -> PrincipalsFileError:
        return PrincipalsFileError(source, getattr(node, "line", None), reason)

    if not isinstance(doc, dict) or set(doc) != {"principals"} or not isinstance(doc["principals"], list):
        raise fail(doc, 'expected {"principals": [...]} and nothing else at the top level')
    entries = doc["principals"]
    arns: dict[str, object] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise fail(doc, f"principals[{n}] must be a JSON object")
        arn = entry.get("arn")
        m = IAM_ARN_RE.match(arn) if isinstance(arn, str) else None
        if m is None or m["kind"] == "root" or not m["name"]:
            raise fail(entry, f"principals[{n}].arn must be arn:aws:iam::ACCOUNT:user/NAME or "
                              f"arn:aws:iam::ACCOUNT:role/NAME, got {json.dumps(arn)}")
        assert isinstance(arn, str)
        if arn in arns:
            raise fail(entry, f"principals[{n}]: {arn} is listed twice")
        arns[arn] = entry

    def known(ref: str) -> bool:
        s = SESSION_ARN_RE.match(ref)
        if s is not None:
            return f"arn:aws:iam::{s['account']}:role/{s['role']}" in arns
        return ref in arns

    users: list[Principal] = []
    roles: list[Role] = []
    keys: dict[str, tuple[str, str]] = {}
    for n, entry in enumerate(entries):
        arn = entry["arn"]
        m = IAM_ARN_RE.match(arn)
        assert m is not None
        kind = m["kind"]
        allowed = {"arn", "policies"} | ({"access_keys"} if kind == "user" else {"trust"})
        extra = sorted(set(entry) - allowed)
        if extra:
            raise fail(entry, f"principals[{n}] ({arn}): unknown or misplaced member {extra[0]!r}"
                              f" (a {kind} has {', '.join(sorted(allowed))})")
        policies = _policies(entry, n, arn, fail)
        if kind == "user":
            for key_id, secret in _access_keys(entry, n, arn, fail):
                if key_id in keys:
                    raise fail(entry, f"principals[{n}] ({arn}): access key id {key_id} is used twice")
                keys[key_id] = (secret, arn)
            users.append(Principal(arn=arn, account=m["account"], kind="user", user_id=stable_id("AIDA", arn),
                                   policies=policies))
        else:
            trust = entry.get("trust")
            if not isinstance(trust, list) or not trust:
                raise fail(entry, f"principals[{n}] ({arn}): a role needs \"trust\": a list of principal ARNs"
                                  " allowed to assume it")
            try:
                trusted = principal_set({"AWS": trust}, entry, known)
            except PolicyError:
                raise fail(entry, f"principals[{n}] ({arn}): trust lists an unknown or invalid principal; each"
                                  " entry must be a user or role ARN from this file, arn:aws:iam::ACCOUNT:root"
                                  " or an account id") from None
            roles.append(Role(arn=arn, account=m["account"], name=arn.rsplit("/", 1)[-1],
                              role_id=stable_id("AROA", arn), trust=trusted, policies=policies))
    return PrincipalsFile(tuple(users), keys, tuple(roles))


def _policies(entry: Mapping[str, Any], n: int, arn: str,
              fail: Callable[[object, str], PrincipalsFileError]) -> tuple[CompiledPolicy, ...]:
    docs = entry.get("policies", [])
    if not isinstance(docs, list):
        raise fail(entry, f"principals[{n}] ({arn}): \"policies\" must be a list of IAM policy documents")
    out = []
    for i, doc in enumerate(docs):
        try:
            out.append(compile_policy(doc, key_policy=False))
        except PolicyError as exc:
            raise fail(exc if exc.line else (doc if isinstance(doc, dict) else entry),
                       f"principals[{n}] ({arn}) policies[{i}]: {exc.reason}") from None
    return tuple(out)


def _access_keys(entry: Mapping[str, Any], n: int, arn: str,
                 fail: Callable[[object, str], PrincipalsFileError]) -> list[tuple[str, str]]:
    items = entry.get("access_keys", [])
    if not isinstance(items, list):
        raise fail(entry, f"principals[{n}] ({arn}): \"access_keys\" must be a list of {{\"id\", \"secret\"}}")
    out = []
    for i, item in enumerate(items):
        node = item if isinstance(item, dict) else entry
        if not isinstance(item, dict) or set(item) != {"id", "secret"}:
            raise fail(node, f"principals[{n}] ({arn}) access_keys[{i}]: expected {{\"id\": ..., \"secret\": ...}}")
        key_id, secret = item["id"], item["secret"]
        if not isinstance(key_id, str) or not key_id.isalnum() or not 16 <= len(key_id) <= 128 \
                or key_id != key_id.upper():
            raise fail(node, f"principals[{n}] ({arn}) access_keys[{i}]: id must be 16 to 128 upper-case letters"
                             " and digits, like AKIAIOSFODNN7EXAMPLE")
        if not isinstance(secret, str) or len(secret) < 16 or not secret.isascii() or any(c.isspace() for c in secret):
            raise fail(node, f"principals[{n}] ({arn}) access_keys[{i}]: secret must be at least 16 printable"
                             " ASCII characters without spaces")
        out.append((key_id, secret))
    return out


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class SessionCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_ms: int
    principal: Principal


class Identities:
    """Every principal and credential the frontend accepts; read on every request."""

    def __init__(self, account_id: str, root_keys: Mapping[str, str], loaded: PrincipalsFile | None,
                 box: SecretBox, clock: Callable[[], float]) -> None:
        loaded = loaded or PrincipalsFile()
        self.account_id = account_id
        self.root = Principal(arn=f"arn:aws:iam::{account_id}:root", account=account_id, kind="root",
                              user_id=account_id)
        self.users = {p.arn: p for p in loaded.users}
        self.roles = {r.arn: r for r in loaded.roles}
        self._keys: dict[str, tuple[str, Principal]] = {k: (s, self.root) for k, s in root_keys.items()}
        for key_id, (secret, arn) in loaded.keys.items():
            if key_id in self._keys:
                raise ValueError(f"access key id {key_id} is both the account root's and {arn}'s; give each"
                                 " principal its own keys")
            self._keys[key_id] = (secret, self.users[arn])
        self._box, self._clock = box, clock
        self._sessions: dict[str, tuple[str, str, Principal]] = {}  # key id -> (secret, token, principal)

    @property
    def access_key_ids(self) -> list[str]:
        return sorted(self._keys)

    def known(self, arn: str) -> bool:
        """Whether a user, role or session ARN names a principal that exists (policies and grants
        may name only those)."""
        s = SESSION_ARN_RE.match(arn)
        if s is not None:
            return f"arn:aws:iam::{s['account']}:role/{s['role']}" in self.roles
        return arn in self.users or arn in self.roles

    def valid_principal(self, ref: str) -> bool:
        """A principal a grant may name: a known user, role or session, or an account root."""
        m = IAM_ARN_RE.match(ref)
        if m is not None and m["kind"] == "root":
            return not m["name"]
        return self.known(ref)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------ per request

    def credential(self, key_id: str, session_token: str | None) -> tuple[str, Principal]:
        """The secret to verify a signature with, and the principal it proves. Raises AWS's
        UnrecognizedClientException or ExpiredTokenException."""
        static = self._keys.get(key_id)
        if static is not None:
            if session_token is not None:
                raise errors.invalid_security_token()
            return static
        if session_token is None:
            raise errors.invalid_security_token()
        session = self._sessions.get(key_id)
        if session is None:
            session = self._open_token(key_id, session_token)
        secret, token, principal = session
        if not hmac.compare_digest(token.encode(), session_token.encode()):
            raise errors.invalid_security_token()
        if principal.expires_ms is not None and self.now_ms() >= principal.expires_ms:
            raise errors.expired_security_token()
        return secret, principal

    def _open_token(self, key_id: str, token: str) -> tuple[str, str, Principal]:
        try:
            sealed = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            doc = json.loads(self._box.open(sealed, context=_TOKEN_CONTEXT))
        except (ValueError, binascii.Error, SealError, UnicodeError):
            raise errors.invalid_security_token() from None
        role = self.roles.get(doc.get("r", ""))
        if doc.get("k") != key_id or role is None:
            raise errors.invalid_security_token()
        session_policy = None
        if doc.get("p"):
            session_policy = compile_policy(json.loads(doc["p"]), key_policy=False)
        principal = self._session_principal(role, doc["n"], int(doc["e"]), session_policy)
        entry = (str(doc["s"]), token, principal)
        self._remember(key_id, entry)
        return entry

    def _remember(self, key_id: str, entry: tuple[str, str, Principal]) -> None:
        if len(self._sessions) >= MAX_CACHED_SESSIONS:
            now = self.now_ms()
            for k in [k for k, (_, _, p) in self._sessions.items() if (p.expires_ms or 0) <= now]:
                del self._sessions[k]
            if len(self._sessions) >= MAX_CACHED_SESSIONS:
                self._sessions.clear()  # opened again from their tokens when used
        self._sessions[key_id] = entry

    @staticmethod
    def _session_principal(role: Role, session_name: str, expires_ms: int,
                           session_policy: CompiledPolicy | None) -> Principal:
        return Principal(arn=f"arn:aws:sts::{role.account}:assumed-role/{role.name}/{session_name}",
                         account=role.account, kind="assumed-role", user_id=f"{role.role_id}:{session_name}",
                         policies=role.policies, role_arn=role.arn, session_name=session_name,
                         session_policy=session_policy, expires_ms=expires_ms)

    # ------------------------------------------------------------ AssumeRole

    def new_session(self, role: Role, session_name: str, duration_s: int,
                    session_policy: str | None) -> SessionCredentials:
        """Temporary credentials for a session of ``role`` (the rules of AssumeRole are the
        caller's: :mod:`.sts`)."""
        compiled = compile_policy(json.loads(session_policy), key_policy=False) if session_policy else None
        key_id = "ASIA" + "".join(secrets.choice(_ALPHABET) for _ in range(16))
        secret = base64.b64encode(secrets.token_bytes(30)).decode()
        expires_ms = self.now_ms() + duration_s * 1000
        doc = {"k": key_id, "s": secret, "r": role.arn, "n": session_name, "e": expires_ms, "p": session_policy}
        sealed = self._box.seal(json.dumps(doc, separators=(",", ":")).encode(), context=_TOKEN_CONTEXT)
        token = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        principal = self._session_principal(role, session_name, expires_ms, compiled)
        self._remember(key_id, (secret, token, principal))
        return SessionCredentials(key_id, secret, token, expires_ms, principal)

    def role(self, arn: str) -> Role | None:
        return self.roles.get(arn)


def account_of(ref: str) -> str | None:
    """The account a principal reference belongs to (an ARN or an account id)."""
    if ACCOUNT_RE.match(ref):
        return ref
    m = IAM_ARN_RE.match(ref) or SESSION_ARN_RE.match(ref)
    return m["account"] if m is not None else None
