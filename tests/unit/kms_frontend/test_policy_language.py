"""The policy language: grammar checks with AWS's messages, patterns, principals and every condition
operator, as the IAM User Guide documents them (missing keys, negation, set operators, IfExists,
Null, policy variables)."""
from __future__ import annotations

import json

import pytest

from kms_frontend.service.policy_language import (
    Match,
    PolicyError,
    compile_policy,
    evaluate,
    loads_located,
)
from kms_frontend.service.principals import Principal

ACCOUNT = "111122223333"
ALICE = Principal(arn=f"arn:aws:iam::{ACCOUNT}:user/alice", account=ACCOUNT, kind="user", user_id="AIDAALICE")
ROOT = Principal(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, kind="root", user_id=ACCOUNT)
SESSION = Principal(arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1", account=ACCOUNT, kind="assumed-role",
                    user_id="AROAAPP:s1", role_arn=f"arn:aws:iam::{ACCOUNT}:role/app", session_name="s1")
OTHER = Principal(arn="arn:aws:iam::444455556666:user/bob", account="444455556666", kind="user", user_id="AIDABOB")
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KNOWN = {ALICE.arn, f"arn:aws:iam::{ACCOUNT}:role/app", OTHER.arn}


class Values:
    def __init__(self, **values: object) -> None:
        self.values = {k.lower().replace("__", ":").replace("_slash_", "/"): v for k, v in values.items()}

    def get(self, key: str) -> object:
        return self.values.get(key)


def statement(**st: object) -> dict:
    return {"Effect": "Allow", "Action": "kms:*", "Resource": "*", **st}


def key_policy(*statements: dict) -> object:
    return compile_policy({"Version": "2012-10-17", "Statement": list(statements)}, key_policy=True,
                          known=lambda arn: arn in KNOWN or arn.startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/"))


def identity(*statements: dict) -> object:
    return compile_policy({"Version": "2012-10-17", "Statement": list(statements)}, key_policy=False)


def holds(condition: dict, **values: object) -> bool:
    policy = identity(statement(Condition=condition))
    return evaluate([policy], "kms:Decrypt", KEY, ALICE, Values(**values)).direct


# ---------------------------------------------------------------- grammar


@pytest.mark.parametrize("document, reason", [
    ({"Statement": [statement(Effect="Alow", Principal="*")]}, 'Effect must be "Allow" or "Deny"'),
    ({"Statement": [statement()]}, "Policy contains a statement with no principal."),
    ({"Statement": [statement(Principal={"AWS": "arn:aws:iam::111122223333:user/nobody"})]},
     "Policy contains a statement with one or more invalid principals."),
    ({"Statement": [statement(Principal={"AWS": "arn:aws:iam::111122223333:user/*"})]},
     "Policy contains a statement with one or more invalid principals."),
    ({"Statement": [statement(Principal={"AWS": "12345"})]},
     "Policy contains a statement with one or more invalid principals."),
    ({"Statement": [statement(Principal={"Alien": "x"})]},
     "Policy contains a statement with one or more invalid principals."),
    ({"Statement": [statement(Principal="*", Condition={"StringEqualz": {"a": "b"}})]},
     "Condition operator StringEqualz is not valid."),
    ({"Statement": [statement(Principal="*", Condition={"ForAllValues:StringEquals": {
        "kms:EncryptionContext:Department": "IT"}})]}, "OverlyPermissiveCondition:"),
    ({"Statement": [statement(Principal="*", Condition={"Null": {"a": "maybe"}})]}, "must be true or false"),
    ({"Statement": [statement(Principal="*", Bogus=1)]}, "unknown element: Bogus"),
    ({"Version": "2020-01-01", "Statement": []}, "Version must be one of"),
    ({"Statement": [statement(Principal="*", NotAction="kms:Decrypt")]}, "has both Action and NotAction"),
    ([], "must be a JSON object"),
    ({"Id": "x"}, "must contain a Statement"),
])
def test_malformed_key_policies_are_refused_with_a_reason(document, reason):
    with pytest.raises(PolicyError) as info:
        compile_policy(document, key_policy=True, known=lambda arn: arn in KNOWN)
    assert reason in info.value.reason


def test_identity_policies_name_no_principal_and_need_action_and_resource():
    with pytest.raises(PolicyError, match="must not specify a principal"):
        identity(statement(Principal="*"))
    with pytest.raises(PolicyError, match="Resource or NotResource"):
        compile_policy({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}, key_policy=False)
    with pytest.raises(PolicyError, match="Action or NotAction"):
        compile_policy({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, key_policy=False)


def test_a_key_policy_statement_without_action_or_resource_is_accepted_and_has_no_effect():
    """As CreateKey/PutKeyPolicy document: the request succeeds, the statement is ineffective."""
    policy = key_policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*"})
    assert not evaluate([policy], "kms:Decrypt", KEY, ALICE, Values()).direct


# ---------------------------------------------------------------- patterns and principals


def test_actions_match_case_insensitively_with_wildcards_resources_case_sensitively():
    policy = identity(statement(Action=["kms:Re*", "KMS:generatedatakey?ithoutPlaintext"],
                                Resource="arn:aws:kms:*:111122223333:key/*"))
    for action in ("kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKeyWithoutPlaintext"):
        assert evaluate([policy], action, KEY, ALICE, Values()).direct, action
    assert not evaluate([policy], "kms:Decrypt", KEY, ALICE, Values()).direct
    assert not evaluate([policy], "kms:ReEncryptFrom", KEY.replace(":key/", ":KEY/"), ALICE, Values()).direct
    not_action = identity({"Effect": "Allow", "NotAction": "kms:Decrypt", "Resource": "*"})
    assert evaluate([not_action], "kms:Encrypt", KEY, ALICE, Values()).direct
    assert not evaluate([not_action], "kms:Decrypt", KEY, ALICE, Values()).direct


@pytest.mark.parametrize("principal, caller, expected", [
    ("*", ALICE, Match.DIRECT),
    ({"AWS": "*"}, OTHER, Match.DIRECT),
    ({"AWS": ACCOUNT}, ALICE, Match.ACCOUNT),                   # the account: delegation to IAM
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, ALICE, Match.ACCOUNT),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, ROOT, Match.DIRECT),  # ... and its root itself
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, OTHER, Match.NONE),
    ({"AWS": ALICE.arn}, ALICE, Match.DIRECT),
    ({"AWS": [ALICE.arn]}, SESSION, Match.NONE),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/app"}, SESSION, Match.DIRECT),  # a role covers its sessions
    ({"AWS": SESSION.arn}, SESSION, Match.DIRECT),
    ({"Service": "ec2.amazonaws.com"}, ALICE, Match.NONE),
])
def test_principal_forms(principal, caller, expected):
    st = key_policy(statement(Principal=principal)).statements[0]
    assert st.principal_match(caller) is expected


def test_explicit_deny_stops_the_walk_and_not_principal_excludes():
    policy = key_policy(statement(Principal="*"),
                        statement(Effect="Deny", Principal={"AWS": ALICE.arn}, Action="kms:Decrypt"))
    assert evaluate([policy], "kms:Decrypt", KEY, ALICE, Values()).deny
    assert not evaluate([policy], "kms:Decrypt", KEY, ROOT, Values()).deny
    everyone_but = key_policy(statement(Effect="Deny", NotPrincipal={"AWS": ALICE.arn}))
    assert evaluate([everyone_but], "kms:Decrypt", KEY, ROOT, Values()).deny
    assert not evaluate([everyone_but], "kms:Decrypt", KEY, ALICE, Values()).deny


# ---------------------------------------------------------------- conditions


def test_string_operators_and_a_missing_key():
    assert holds({"StringEquals": {"kms:EncryptionContext:app": "demo"}}, kms__encryptioncontext__app="demo")
    assert not holds({"StringEquals": {"kms:EncryptionContext:app": "demo"}}, kms__encryptioncontext__app="Demo")
    assert holds({"StringEqualsIgnoreCase": {"kms:EncryptionContext:app": "demo"}}, kms__encryptioncontext__app="DEMO")
    assert holds({"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/al?ce"}}, aws__principalarn=ALICE.arn)
    assert holds({"StringEquals": {"a": ["x", "y"]}}, a="y")            # values: OR
    assert not holds({"StringNotEquals": {"a": ["x", "y"]}}, a="y")     # negated: NOR
    assert holds({"StringNotEquals": {"a": ["x", "y"]}}, a="z")
    # a key absent from the request: no match, except that a negated operator is then true
    assert not holds({"StringEquals": {"kms:EncryptionContext:app": "demo"}})
    assert holds({"StringNotEquals": {"kms:EncryptionContext:app": "demo"}})
    assert holds({"StringNotLike": {"nothing:here": "*"}})
    assert not holds({"StringLike": {"unknown:key": "*"}})               # an unknown key is a missing key


def test_if_exists_null_and_bool():
    assert holds({"StringEqualsIfExists": {"kms:EncryptionContext:app": "demo"}})
    assert not holds({"StringEqualsIfExists": {"kms:EncryptionContext:app": "demo"}}, kms__encryptioncontext__app="x")
    assert holds({"Null": {"kms:EncryptionContextKeys": "true"}})
    assert holds({"Null": {"kms:EncryptionContextKeys": False}}, kms__encryptioncontextkeys=["a"])
    assert not holds({"Null": {"kms:EncryptionContextKeys": "false"}}, kms__encryptioncontextkeys=[])
    assert holds({"Bool": {"kms:GrantIsForAWSResource": "false"}}, kms__grantisforawsresource=False)
    assert not holds({"Bool": {"kms:GrantIsForAWSResource": True}}, kms__grantisforawsresource=False)


def test_set_operators_on_multivalued_keys():
    keys = {"kms__encryptioncontextkeys": ["AppName", "Project"]}
    assert holds({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "AppName"}}, **keys)
    assert not holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "AppName"}}, **keys)
    assert holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["AppName", "Project", "X"]}}, **keys)
    # no encryption context at all: ForAllValues is true, ForAnyValue is false
    assert holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "AppName"}})
    assert not holds({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "AppName"}})
    assert holds({"ForAllValues:StringNotLike": {"kms:EncryptionContextKeys": "secret*"}}, **keys)
    assert not holds({"ForAnyValue:StringNotLike": {"kms:EncryptionContextKeys": ["AppName", "Project"]}}, **keys)


def test_every_operator_and_key_of_a_condition_must_hold():
    condition = {"StringEquals": {"a": "1", "b": "2"}, "NumericLessThan": {"n": 10}}
    assert holds(condition, a="1", b="2", n=9)
    assert not holds(condition, a="1", b="2", n=10)
    assert not holds(condition, a="1", n=9)


def test_numbers_dates_addresses_and_arns():
    assert holds({"NumericGreaterThanEquals": {"n": "5"}}, n=5)
    assert not holds({"NumericEquals": {"n": "x"}}, n=5)
    assert holds({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, aws__currenttime="2026-12-01T10:00:00Z")
    assert holds({"DateGreaterThan": {"aws:EpochTime": 100}}, aws__epochtime=200)
    assert holds({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, aws__sourceip="127.0.0.1")
    assert not holds({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}}, aws__sourceip="127.0.0.1")
    assert holds({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, aws__sourceip="127.0.0.1")
    assert holds({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}},
                 aws__principalarn="arn:aws:iam::111122223333:role/app")
    assert not holds({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}},
                     aws__principalarn=ALICE.arn)


def test_policy_variables_resolve_from_the_request():
    condition = {"StringEquals": {"kms:EncryptionContext:user": "${aws:username}"}}
    assert holds(condition, kms__encryptioncontext__user="alice", aws__username="alice")
    assert not holds(condition, kms__encryptioncontext__user="bob", aws__username="alice")
    assert not holds(condition, kms__encryptioncontext__user="")  # unresolvable: matches nothing
    st = identity(statement(Condition=condition)).statements[0]
    assert st.dynamic  # reads the encryption context: never cached


def test_conditions_on_the_caller_only_are_cacheable():
    st = identity(statement(Condition={"StringEquals": {"aws:PrincipalArn": ALICE.arn, "kms:CallerAccount": ACCOUNT}}))
    assert not st.statements[0].dynamic
    st = identity(statement(Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}))
    assert st.statements[0].dynamic


# ---------------------------------------------------------------- JSON with line numbers


def test_objects_remember_their_line():
    text = json.dumps({"principals": [{"arn": "a"}, {"arn": "b", "policies": [{"Statement": []}]}]}, indent=2)
    doc = loads_located(text)
    lines = text.splitlines()
    assert doc.line == 1
    second = doc["principals"][1]
    assert lines[second.line - 1].strip() == "{" and '"b"' in lines[second.line]
    assert doc["principals"][1]["policies"][0].line > second.line
