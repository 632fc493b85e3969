"""The principals file: exactly the documented form, refused whole with FILE:LINE: reason."""
from __future__ import annotations

import json
import os

import pytest

from kms_frontend.secret_box import SecretBox
from kms_frontend.service.principals import (
    Identities,
    PrincipalsFileError,
    load_principals_file,
    parse_principals,
)

ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
APP = f"arn:aws:iam::{ACCOUNT}:role/app"
KEY_ID, SECRET = "AKIAALICEALICE000001", "alice-secret-alice-secret-0001"
READ_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Describe*", "Resource": "*"}]}


def document(*entries: dict) -> str:
    return json.dumps({"principals": list(entries)}, indent=2)


def alice(**extra: object) -> dict:
    return {"arn": ALICE, "access_keys": [{"id": KEY_ID, "secret": SECRET}], "policies": [READ_ONLY], **extra}


def app(**extra: object) -> dict:
    return {"arn": APP, "trust": [ALICE], "policies": [], **extra}


def test_a_valid_file_gives_users_keys_and_roles(tmp_path):
    path = tmp_path / "principals.json"
    path.write_text(document(alice(), app(), {"arn": "arn:aws:iam::444455556666:user/bob", "access_keys": []}))
    loaded = load_principals_file(path)
    assert [u.arn for u in loaded.users] == [ALICE, "arn:aws:iam::444455556666:user/bob"]
    assert loaded.keys == {KEY_ID: (SECRET, ALICE)}
    (role,) = loaded.roles
    assert role.arn == APP and role.name == "app" and role.role_id.startswith("AROA")
    assert loaded.users[0].user_id == parse_principals(document(alice())).users[0].user_id  # stable ids
    identities = Identities(ACCOUNT, {"AKIAROOTROOTROOTROOT": "root-secret-root-secret"}, loaded,
                            SecretBox(os.urandom(32)), lambda: 0.0)
    assert identities.credential(KEY_ID, None)[1].arn == ALICE
    assert identities.credential("AKIAROOTROOTROOTROOT", None)[1].arn == f"arn:aws:iam::{ACCOUNT}:root"
    assert identities.known(APP) and identities.known(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/any-session")
    assert not identities.known(f"arn:aws:iam::{ACCOUNT}:user/nobody")


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if fragment in line)


@pytest.mark.parametrize("entries, fragment, reason", [
    ((alice(arn="arn:aws:iam::1234:user/x"),), '"arn:aws:iam::1234:user/x"', "must be arn:aws:iam::ACCOUNT:user/NAME"),
    ((alice(), alice()), None, "is listed twice"),
    ((alice(trust=[ALICE]),), None, "unknown or misplaced member 'trust'"),
    ((app(access_keys=[]),), None, "unknown or misplaced member 'access_keys'"),
    ((alice(), app(trust=["arn:aws:iam::111122223333:user/nobody"])), None, "trust lists an unknown or invalid"),
    ((alice(), app(trust=[])), None, "a role needs \"trust\""),
    ((alice(access_keys=[{"id": "short", "secret": SECRET}]),), '"id": "short"', "id must be 16 to 128"),
    ((alice(access_keys=[{"id": KEY_ID, "secret": "x"}]),), f'"id": "{KEY_ID}"', "secret must be at least 16"),
    ((alice(), {"arn": "arn:aws:iam::111122223333:user/carol", "access_keys": [{"id": KEY_ID, "secret": SECRET}]}),
     None, "is used twice"),
    ((alice(policies=[{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Principal": "*"}]}]),),
     '"Effect": "Allow"', "must not specify a principal"),
    ((alice(policies=[{"Statement": [{"Effect": "Maybe", "Action": "kms:*", "Resource": "*"}]}]),),
     '"Effect": "Maybe"', 'Effect must be "Allow" or "Deny"'),
])
def test_a_bad_file_is_refused_with_its_line_and_reason(entries, fragment, reason):
    text = document(*entries)
    with pytest.raises(PrincipalsFileError) as info:
        parse_principals(text, "p.json")
    message = str(info.value)
    assert message.startswith("p.json:") and reason in message, message
    if fragment is not None:  # the line of the object that holds the problem
        line = int(message.split(":")[1])
        assert line <= line_of(text, fragment) <= line + 3, (message, text)


def test_not_json_or_not_the_form_is_refused_with_the_line(tmp_path):
    with pytest.raises(PrincipalsFileError, match=r"^p\.json:3: not valid JSON"):
        parse_principals('{\n  "principals": [\n    {"arn": }\n  ]\n}', "p.json")
    with pytest.raises(PrincipalsFileError, match='expected {"principals"'):
        parse_principals('{"principals": [], "extra": 1}', "p.json")
    with pytest.raises(PrincipalsFileError, match="cannot read the principals file"):
        load_principals_file(tmp_path / "missing.json")


def test_root_keys_and_user_keys_must_not_overlap():
    loaded = parse_principals(document(alice()))
    with pytest.raises(ValueError, match="both the account root's"):
        Identities(ACCOUNT, {KEY_ID: "root-secret-root-secret"}, loaded, SecretBox(os.urandom(32)), lambda: 0.0)
