"""The IAM policy language as KMS key policies and IAM identity policies use it ("IAM JSON policy
element reference" and "Condition operators" in the IAM User Guide; "Key policies in AWS KMS" and
"AWS KMS condition keys" in the KMS Developer Guide).

A document is checked and compiled once, when it is stored or loaded (:func:`compile_policy`):
action and resource patterns become exact sets and regular expressions, principals become sets,
conditions become clauses over lower-cased condition keys. Evaluation (:func:`evaluate`) then
walks a few compiled statements and never parses anything.

Rules kept here, as IAM documents them:

* ``Action`` / ``NotAction`` match case-insensitively with ``*`` and ``?`` wildcards;
  ``Resource`` / ``NotResource`` case-sensitively with the same wildcards.
* ``Principal`` (key policies only): ``"*"``, ``{"AWS": "*"}``, an account id or
  ``arn:aws:iam::ACCOUNT:root`` (the account: its root directly, its other principals only where
  their IAM policies allow too), a user or role ARN (a role matches every session of it), an
  assumed-role session ARN. ``Service``/``Federated``/``CanonicalUser`` principals are accepted
  and match no caller of this endpoint.
* Conditions: every operator of a ``Condition`` block must hold (AND), every key of an operator
  (AND), any value of a key (OR; NOR for negated operators). A key absent from the request does
  not match, except that negated operators (``StringNotEquals``, ``ArnNotLike`` ...) are then
  true, ``...IfExists`` is true, ``ForAllValues:`` is true and ``Null`` tests presence. Condition
  key names are case-insensitive, including the context key in ``kms:EncryptionContext:<key>``.
  A key this service does not know is absent from every request.
* Policy variables (``${aws:username}``, ``${aws:PrincipalAccount}`` ...) in condition values
  resolve from the request; an unresolvable one matches nothing.
"""
from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .principals import Principal

VERSIONS = ("2012-10-17", "2008-10-17")
ACCOUNT_RE = re.compile(r"^\d{12}$")
IAM_ARN_RE = re.compile(r"^arn:aws:iam::(?P<account>\d{12}):(?P<kind>root|user|role)(?:/(?P<name>[\w+=,.@/-]+))?$")
SESSION_ARN_RE = re.compile(
    r"^arn:aws:sts::(?P<account>\d{12}):assumed-role/(?P<role>[\w+=,.@-]+)/(?P<session>[\w+=,.@-]+)$")
_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                             "NotResource", "Condition"})
_DOCUMENT_KEYS = frozenset({"Version", "Id", "Statement"})

# Condition keys whose value depends only on the caller (and, for key operations, on the key
# version): a decision that used no others can be cached per (key version, principal, action).
STATIC_KEYS = frozenset({
    "aws:principalarn", "aws:principalaccount", "aws:principaltype", "aws:username", "aws:userid",
    "kms:calleraccount", "kms:viaservice", "kms:grantisforawsresource",
})
_STATIC_PREFIXES = ("aws:resourcetag/",)
MULTI_VALUED = frozenset({"kms:encryptioncontextkeys", "kms:grantoperations", "kms:resourcealiases",
                          "aws:tagkeys"})


class PolicyError(ValueError):
    """A document that is not a valid policy: ``reason`` says what, ``line`` (when the document
    came from a file) where."""

    def __init__(self, reason: str, node: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line: int | None = getattr(node, "line", None)


class Match(IntEnum):
    """How a key policy statement's principal covers a caller."""

    NONE = 0
    ACCOUNT = 1  # names the caller's account: the caller's IAM policies must allow too
    DIRECT = 2   # names the caller (or its role, or "*", or the account of a root caller)


class Context(Protocol):
    """What conditions read: the value of a (lower-cased) condition key in this request, ``None``
    when the request has none. Multi-valued keys give a list (never an empty one)."""

    def get(self, key: str) -> Any: ...


# ---------------------------------------------------------------- patterns


def _glob(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), flags)


class Patterns:
    """Action or resource patterns of one statement element."""

    __slots__ = ("any", "exact", "globs", "fold", "_memo")

    def __init__(self, patterns: Iterable[str], *, fold: bool) -> None:
        self.fold = fold
        self.any = False
        self.exact: set[str] = set()
        self.globs: list[re.Pattern[str]] = []
        self._memo: dict[str, bool] = {}
        for p in patterns:
            if p == "*":
                self.any = True
            elif "*" in p or "?" in p:
                self.globs.append(_glob(p, re.IGNORECASE if fold else 0))
            else:
                self.exact.add(p.lower() if fold else p)

    def match(self, value: str) -> bool:
        if self.any:
            return True
        if (value.lower() if self.fold else value) in self.exact:
            return True
        if not self.globs:
            return False
        if self.fold:  # actions: a small fixed set, remembered
            hit = self._memo.get(value)
            if hit is None:
                hit = self._memo[value] = any(g.fullmatch(value) for g in self.globs)
            return hit
        return any(g.fullmatch(value) for g in self.globs)


@dataclass(frozen=True)
class PrincipalSet:
    everyone: bool = False
    accounts: frozenset[str] = frozenset()
    arns: frozenset[str] = frozenset()  # users, roles and sessions, exactly

    def match(self, p: Principal) -> Match:
        if self.everyone or p.arn in self.arns or (p.role_arn is not None and p.role_arn in self.arns):
            return Match.DIRECT
        if p.account in self.accounts:
            return Match.DIRECT if p.is_root else Match.ACCOUNT
        return Match.NONE


# ---------------------------------------------------------------- conditions

_Compare = Callable[[Any, Any], bool]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _numeric(test: Callable[[float, float], bool]) -> _Compare:
    def compare(request: Any, policy: Any) -> bool:
        a, b = _number(request), _number(policy)
        return a is not None and b is not None and test(a, b)
    return compare


def _dated(test: Callable[[float, float], bool]) -> _Compare:
    def compare(request: Any, policy: Any) -> bool:
        a, b = _date(request), _date(policy)
        return a is not None and b is not None and test(a, b)
    return compare


def _like(request: Any, policy: Any) -> bool:
    return _glob(_text(policy)).fullmatch(_text(request)) is not None


def _ip(request: Any, policy: Any) -> bool:
    try:
        return ipaddress.ip_address(_text(request)) in ipaddress.ip_network(_text(policy), strict=False)
    except ValueError:
        return False


def _bool(request: Any, policy: Any) -> bool:
    return _text(request).lower() == _text(policy).lower()


def _arn_like(request: Any, policy: Any) -> bool:
    """ARN matching: the six colon-separated parts compared one by one, each with wildcards."""
    got, want = _text(request).split(":", 5), _text(policy).split(":", 5)
    if len(got) != len(want):
        return False
    return all(_glob(w).fullmatch(g) is not None for g, w in zip(got, want, strict=True))


# name -> (comparison, negated)
_OPERATORS: dict[str, tuple[_Compare, bool]] = {
    "stringequals": (lambda a, b: _text(a) == _text(b), False),
    "stringnotequals": (lambda a, b: _text(a) == _text(b), True),
    "stringequalsignorecase": (lambda a, b: _text(a).lower() == _text(b).lower(), False),
    "stringnotequalsignorecase": (lambda a, b: _text(a).lower() == _text(b).lower(), True),
    "stringlike": (_like, False),
    "stringnotlike": (_like, True),
    "numericequals": (_numeric(lambda a, b: a == b), False),
    "numericnotequals": (_numeric(lambda a, b: a == b), True),
    "numericlessthan": (_numeric(lambda a, b: a < b), False),
    "numericlessthanequals": (_numeric(lambda a, b: a <= b), False),
    "numericgreaterthan": (_numeric(lambda a, b: a > b), False),
    "numericgreaterthanequals": (_numeric(lambda a, b: a >= b), False),
    "dateequals": (_dated(lambda a, b: a == b), False),
    "datenotequals": (_dated(lambda a, b: a == b), True),
    "datelessthan": (_dated(lambda a, b: a < b), False),
    "datelessthanequals": (_dated(lambda a, b: a <= b), False),
    "dategreaterthan": (_dated(lambda a, b: a > b), False),
    "dategreaterthanequals": (_dated(lambda a, b: a >= b), False),
    "bool": (_bool, False),
    "binaryequals": (lambda a, b: _text(a) == _text(b), False),
    "ipaddress": (_ip, False),
    "notipaddress": (_ip, True),
    "arnequals": (_arn_like, False),
    "arnlike": (_arn_like, False),
    "arnnotequals": (_arn_like, True),
    "arnnotlike": (_arn_like, True),
}
_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_UNRESOLVED = "\x00unresolved\x00"


def dynamic_key(key: str) -> bool:
    """Whether a condition key's value may differ between two requests of the same principal
    for the same action on the same key version."""
    return key not in STATIC_KEYS and not key.startswith(_STATIC_PREFIXES)


@dataclass(frozen=True)
class Clause:
    operator: str         # as written, for messages
    key: str              # lower-cased condition key
    values: tuple[Any, ...]
    compare: _Compare | None  # None for Null
    negated: bool = False
    qualifier: str = ""   # "", "any" (ForAnyValue) or "all" (ForAllValues)
    if_exists: bool = False
    variables: bool = False
    dynamic: bool = True

    def holds(self, ctx: Context) -> bool:
        value = ctx.get(self.key)
        if value is not None and isinstance(value, list) and not value:
            value = None
        if self.compare is None:  # Null: "true" -> the key must be absent
            return (value is None) == (_text(self.values[0]).lower() == "true")
        if value is None:
            if self.if_exists or self.qualifier == "all":
                return True
            if self.qualifier == "any":
                return False
            return self.negated
        wanted = self._resolved(ctx) if self.variables else self.values
        if isinstance(value, list):
            results = (self._one(v, wanted) for v in value)
            return all(results) if self.qualifier == "all" else any(results)
        return self._one(value, wanted)

    def _one(self, value: Any, wanted: Sequence[Any]) -> bool:
        compare = self.compare
        assert compare is not None
        hit = any(compare(value, w) for w in wanted if w is not _UNRESOLVED)
        return not hit if self.negated else hit

    def _resolved(self, ctx: Context) -> list[Any]:
        out: list[Any] = []
        for v in self.values:
            if not isinstance(v, str) or "${" not in v:
                out.append(v)
                continue
            unresolved = False

            def substitute(m: re.Match[str]) -> str:
                nonlocal unresolved
                name = m.group(1)
                if name in _ESCAPES:
                    return _ESCAPES[name]
                found = ctx.get(name.lower())
                if found is None or isinstance(found, list):
                    unresolved = True
                    return ""
                return _text(found)
            text = _VARIABLE.sub(substitute, v)
            out.append(_UNRESOLVED if unresolved else text)
        return out


def _clauses(condition: Any, node: object) -> tuple[Clause, ...]:
    if not isinstance(condition, dict):
        raise PolicyError("Condition must be a JSON object of condition operators.", node)
    out = []
    for op_name, block in condition.items():
        qualifier = ""
        base = op_name
        head, sep, rest = op_name.partition(":")
        if sep:
            if head.lower() == "foranyvalue":
                qualifier = "any"
            elif head.lower() == "forallvalues":
                qualifier = "all"
            else:
                raise PolicyError(f"Condition operator {op_name} is not valid.", node)
            base = rest
        lowered = base.lower()
        if_exists = lowered.endswith("ifexists") and lowered != "ifexists"
        if if_exists:
            lowered = lowered[: -len("ifexists")]
        if lowered != "null" and lowered not in _OPERATORS:
            raise PolicyError(f"Condition operator {op_name} is not valid.", node)
        if lowered == "null" and (if_exists or qualifier):
            raise PolicyError(f"Condition operator {op_name} is not valid.", node)
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"Condition operator {op_name} must map condition keys to values.", node)
        for key, raw in block.items():
            values = tuple(raw) if isinstance(raw, list) else (raw,)
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                raise PolicyError(f"Condition {op_name} {key}: values must be strings, numbers or booleans.", node)
            k = key.lower()
            if qualifier == "all" and (k.startswith("kms:encryptioncontext:") or k.startswith("aws:requesttag/")):
                what = "encryption context" if k.startswith("kms:") else "tag"
                raise PolicyError(
                    f"OverlyPermissiveCondition: Using the ForAllValues set operator with a single-valued condition"
                    f" key matches requests without the specified {what} or with an unspecified {what}. To fix,"
                    " remove ForAllValues.", node)
            if lowered == "null":
                if len(values) != 1 or _text(values[0]).lower() not in ("true", "false"):
                    raise PolicyError(f"Condition Null {key}: the value must be true or false.", node)
                out.append(Clause(op_name, k, values, None, dynamic=dynamic_key(k)))
                continue
            compare, negated = _OPERATORS[lowered]
            names = [m.group(1).lower() for v in values if isinstance(v, str) for m in _VARIABLE.finditer(v)]
            out.append(Clause(op_name, k, values, compare, negated, qualifier, if_exists,
                              variables=bool(names),
                              dynamic=dynamic_key(k) or any(dynamic_key(n) for n in names if n not in _ESCAPES)))
    return tuple(out)


# ---------------------------------------------------------------- statements and documents


@dataclass(frozen=True)
class Statement:
    sid: str
    allow: bool
    actions: Patterns | None        # None when the statement has no Action/NotAction (it has no effect)
    not_action: bool
    resources: Patterns | None      # None when it has no Resource/NotResource (no effect)
    not_resource: bool
    principals: PrincipalSet | None  # None in identity policies
    not_principal: bool
    conditions: tuple[Clause, ...]
    dynamic: bool                    # a condition reads a key that varies per request

    def covers(self, action: str, resource: str) -> bool:
        if self.actions is None or self.resources is None:
            return False
        if self.actions.match(action) == self.not_action:
            return False
        return self.resources.match(resource) != self.not_resource

    def principal_match(self, p: Principal) -> Match:
        if self.principals is None:
            return Match.DIRECT
        found = self.principals.match(p)
        if self.not_principal:
            return Match.NONE if found else Match.DIRECT
        return found

    def conditions_hold(self, ctx: Context) -> bool:
        return all(c.holds(ctx) for c in self.conditions)


@dataclass(frozen=True)
class CompiledPolicy:
    statements: tuple[Statement, ...]
    principal_arns: frozenset[str] = field(default=frozenset())  # user/role/session ARNs it names

    @property
    def empty(self) -> bool:
        return not self.statements


def _strings(value: Any, element: str, node: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{element} must be a string or a list of strings.", node)
    return items


PrincipalCheck = Callable[[str], bool]
"""Whether a user, role or session ARN names a principal this service knows."""


def principal_set(value: Any, node: object, known: PrincipalCheck) -> PrincipalSet:
    invalid = PolicyError("Policy contains a statement with one or more invalid principals.", node)
    if value == "*":
        return PrincipalSet(everyone=True)
    if not isinstance(value, dict) or not value:
        raise invalid
    everyone, accounts, arns = False, set(), set()
    for kind, ids in value.items():
        try:
            items = _strings(ids, "Principal", node)
        except PolicyError:
            raise invalid from None
        if kind in ("Service", "Federated", "CanonicalUser"):
            continue  # valid, and never this endpoint's caller
        if kind != "AWS":
            raise invalid
        for item in items:
            if item == "*":
                everyone = True
            elif ACCOUNT_RE.match(item):
                accounts.add(item)
            elif (m := IAM_ARN_RE.match(item)) is not None:
                if m["kind"] == "root":
                    if m["name"]:
                        raise invalid
                    accounts.add(m["account"])
                elif not m["name"] or not known(item):
                    raise invalid
                else:
                    arns.add(item)
            elif SESSION_ARN_RE.match(item) is not None and known(item):
                arns.add(item)
            else:
                raise invalid
    return PrincipalSet(everyone, frozenset(accounts), frozenset(arns))


def compile_policy(document: Any, *, key_policy: bool, known: PrincipalCheck = lambda arn: True) -> CompiledPolicy:
    """Check a parsed policy document and compile it. Raises :class:`PolicyError` with the reason
    (the messages KMS and IAM give where they document one).

    Key policies must name principals in every statement, and only principals that exist
    (``known``); identity policies must not name any. As AWS does for key policies, a statement
    without Action or Resource is accepted and has no effect; identity policies need both."""
    if not isinstance(document, dict):
        raise PolicyError("The policy must be a JSON object.", document)
    extra = sorted(set(document) - _DOCUMENT_KEYS)
    if extra:
        raise PolicyError(f"The policy has an unknown element: {extra[0]}.", document)
    version = document.get("Version")
    if version is not None and version not in VERSIONS:
        raise PolicyError(f"The policy Version must be one of {', '.join(VERSIONS)}, not {version!r}.", document)
    if "Statement" not in document:
        raise PolicyError("The policy must contain a Statement element.", document)
    raw = document["Statement"]
    items = raw if isinstance(raw, list) else [raw]
    statements = []
    named: set[str] = set()
    for n, st in enumerate(items):
        statements.append(_statement(st, n, key_policy, known, named))
    return CompiledPolicy(tuple(statements), frozenset(named))


def _statement(st: Any, n: int, key_policy: bool, known: PrincipalCheck, named: set[str]) -> Statement:
    where = f"Statement {n}"
    if not isinstance(st, dict):
        raise PolicyError(f"{where} must be a JSON object.", st)
    extra = sorted(set(st) - _STATEMENT_KEYS)
    if extra:
        raise PolicyError(f"{where} has an unknown element: {extra[0]}.", st)
    sid = st.get("Sid", "")
    if not isinstance(sid, str):
        raise PolicyError(f"{where}: Sid must be a string.", st)
    effect = st.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be \"Allow\" or \"Deny\", not {json.dumps(effect)}.", st)
    for a, b in (("Action", "NotAction"), ("Resource", "NotResource"), ("Principal", "NotPrincipal")):
        if a in st and b in st:
            raise PolicyError(f"{where} has both {a} and {b}.", st)
    principals, not_principal = None, False
    if key_policy:
        if "Principal" not in st and "NotPrincipal" not in st:
            raise PolicyError("Policy contains a statement with no principal.", st)
        not_principal = "NotPrincipal" in st
        principals = principal_set(st.get("NotPrincipal") if not_principal else st["Principal"], st, known)
        named.update(principals.arns)
    elif "Principal" in st or "NotPrincipal" in st:
        raise PolicyError(f"{where}: an identity-based policy must not specify a principal.", st)
    actions, not_action = None, "NotAction" in st
    if "Action" in st or not_action:
        actions = Patterns(_strings(st.get("NotAction") if not_action else st["Action"], "Action", st), fold=True)
    elif not key_policy:
        raise PolicyError(f"{where} must contain an Action or NotAction element.", st)
    resources, not_resource = None, "NotResource" in st
    if "Resource" in st or not_resource:
        resources = Patterns(_strings(st.get("NotResource") if not_resource else st["Resource"], "Resource", st),
                             fold=False)
    elif not key_policy:
        raise PolicyError(f"{where} must contain a Resource or NotResource element.", st)
    conditions = _clauses(st["Condition"], st) if "Condition" in st else ()
    return Statement(sid, effect == "Allow", actions, not_action, resources, not_resource, principals,
                     not_principal, conditions, any(c.dynamic for c in conditions))


# ---------------------------------------------------------------- evaluation


@dataclass
class Findings:
    """What the statements of some policies say about one request."""

    deny: bool = False
    direct: bool = False   # an Allow naming the caller (or everyone; identity policies: any Allow)
    account: bool = False  # an Allow naming only the caller's account (delegation to IAM)
    dynamic: bool = False  # some statement that applied read a per-request condition key


def evaluate(policies: Iterable[CompiledPolicy], action: str, resource: str, principal: Principal, ctx: Context,
             found: Findings | None = None) -> Findings:
    """Walk the statements that cover ``action`` on ``resource`` for ``principal``. Stops at the
    first explicit Deny that applies."""
    out = found or Findings()
    for policy in policies:
        for st in policy.statements:
            if not st.covers(action, resource):
                continue
            how = st.principal_match(principal)
            if how is Match.NONE:
                continue
            if st.conditions:
                out.dynamic = out.dynamic or st.dynamic
                if not st.conditions_hold(ctx):
                    continue
            if not st.allow:
                out.deny = True
                return out
            if how is Match.DIRECT:
                out.direct = True
            else:
                out.account = True
    return out


# ---------------------------------------------------------------- files with line numbers


class Located(dict[str, Any]):
    """A JSON object that remembers the line it starts on."""

    line: int = 0


def loads_located(text: str) -> Any:
    """``json.loads`` whose objects are :class:`Located` (for "file:line: reason" messages)."""
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(starts, pos)

    decoder = json.JSONDecoder()
    plain_object = json.decoder.JSONObject  # type: ignore[attr-defined]  # the stdlib's own object parser

    def parse_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                     object_pairs_hook: Any, memo: Any = None) -> tuple[Located, int]:
        s, end = s_and_end
        obj, new_end = plain_object(s_and_end, strict, scan_once, None, None, memo)
        located = Located(obj)
        located.line = line_of(end - 1)
        return located, new_end

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text)

