"""What the console makes of a form before anything is called: the parameters of each action, where
an action may send the browser back to, and which posts come from another site."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from kms_frontend.console.app import BACK, _cross_site, _pretty_json
from kms_frontend.console.views import ACTIONS


def test_create_key_takes_a_description_and_key_value_tags():
    params = ACTIONS["CreateKey"].params({"store_id": "cks-1", "description": "d", "tags": " Team=ops , Env = dev,"})
    assert params == {"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": "cks-1", "Description": "d",
                      "Tags": [{"TagKey": "Team", "TagValue": "ops"}, {"TagKey": "Env", "TagValue": "dev"}]}
    with pytest.raises(ValueError, match="Key=Value"):
        ACTIONS["CreateKey"].params({"store_id": "cks-1", "tags": "no-equals-sign"})


def test_schedule_deletion_takes_a_number_of_days_or_the_default():
    assert ACTIONS["ScheduleKeyDeletion"].params({"key_id": "k", "days": ""}) == {"KeyId": "k"}
    assert ACTIONS["ScheduleKeyDeletion"].params({"key_id": "k", "days": "7"}) == {"KeyId": "k",
                                                                                   "PendingWindowInDays": 7}
    with pytest.raises(ValueError, match="number of days"):
        ACTIONS["ScheduleKeyDeletion"].params({"key_id": "k", "days": "-1"})


@pytest.mark.parametrize("back,ok", [
    ("/stores", True), ("/keys/1234abcd-12ab-34cd-56ef-1234567890ab", True), ("/hsm", True),
    ("https://evil.example/", False), ("//evil.example", False), ("/\\evil.example", False),
    ("/keys/../../etc", False), ("/keys?x=1", False), ("", False),
])
def test_an_action_returns_only_to_a_page_of_the_console(back, ok):
    assert bool(BACK.fullmatch(back)) is ok


@pytest.mark.parametrize("headers,cross", [
    ({}, False),  # a client that says nothing (curl): the CSRF token still guards actions
    ({"Origin": "http://console.test:4600", "Sec-Fetch-Site": "same-origin"}, False),
    ({"Origin": "https://evil.example"}, True),
    ({"Origin": "null"}, True),  # a sandboxed frame, or a page under no-referrer
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Origin": "http://console.test:9999", "Sec-Fetch-Site": "same-site"}, True),  # another port
])
def test_a_post_from_another_origin_is_told_apart(headers, cross):
    request = make_mocked_request("POST", "/action", headers={"Host": "console.test:4600", **headers})
    assert _cross_site(request) is cross


def test_a_key_policy_is_indented_and_what_is_not_json_is_shown_as_is():
    assert _pretty_json('{"Version":"2012-10-17"}') == '{\n  "Version": "2012-10-17"\n}'
    assert _pretty_json("not json") == "not json"
