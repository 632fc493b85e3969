"""Console sign-in: a key pair proves a principal as a signature does; failures are limited per
client address; sessions end when idle or when their temporary credentials expire."""
from __future__ import annotations

import os

import pytest

from kms_frontend.console.sessions import IDLE_S, MAX_FAILURES, ConsoleSessions, SignInRefused
from kms_frontend.secret_box import SecretBox
from kms_frontend.service.principals import Identities


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions(clock: Clock) -> ConsoleSessions:
    identities = Identities("111122223333", {"AKIAROOT000000000001": "root-secret"}, None,
                            SecretBox(os.urandom(32)), lambda: 1_700_000_000.0)
    return ConsoleSessions(identities, clock)


def test_a_key_pair_signs_in_as_its_principal_and_a_wrong_one_does_not():
    s = sessions(Clock())
    session = s.sign_in("AKIAROOT000000000001", "root-secret", None, "127.0.0.1")
    assert session.principal.arn == "arn:aws:iam::111122223333:root" and s.get(session.token) is session
    for key_id, secret in (("AKIAROOT000000000001", "wrong"), ("AKIAUNKNOWN000000001", "root-secret")):
        with pytest.raises(SignInRefused, match="not valid"):
            s.sign_in(key_id, secret, None, "127.0.0.1")
    assert s.get("made-up") is None and s.get(None) is None


def test_failed_sign_ins_are_limited_per_client_address():
    clock = Clock()
    s = sessions(clock)
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused, match="not valid"):
            s.sign_in("AKIAROOT000000000001", "wrong", None, "10.0.0.9")
    with pytest.raises(SignInRefused, match="Too many failed sign-ins"):
        s.sign_in("AKIAROOT000000000001", "root-secret", None, "10.0.0.9")  # even the right secret, for now
    assert s.sign_in("AKIAROOT000000000001", "root-secret", None, "10.0.0.10")  # another address is not held up
    clock.now += 61
    assert s.sign_in("AKIAROOT000000000001", "root-secret", None, "10.0.0.9")


def test_an_idle_session_ends():
    clock = Clock()
    s = sessions(clock)
    session = s.sign_in("AKIAROOT000000000001", "root-secret", None, "127.0.0.1")
    clock.now += IDLE_S - 1
    assert s.get(session.token) is session  # used: the idle time starts again
    clock.now += IDLE_S + 1
    assert s.get(session.token) is None
