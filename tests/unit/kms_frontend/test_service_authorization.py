"""The evaluator in-process (a real catalogue on SQLite, no cluster): what it caches and what it
re-reads per request, grant limits and tokens, and the audit trail's counting."""
from __future__ import annotations

import json
import os

import pytest

from kms_frontend import errors
from kms_frontend.secret_box import SecretBox
from kms_frontend.service import grants as grants_module
from kms_frontend.service.audit import AuditTrail
from kms_frontend.service.authorization import Authorizer, Caller
from kms_frontend.service.catalog import Catalog
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.service.grants import CreateGrantRequest, Grants, GrantTokens
from kms_frontend.service.model import ServiceModel
from kms_frontend.service.operations import OPERATIONS
from kms_frontend.service.policies import default_policy
from kms_frontend.service.principals import Identities, parse_principals
from kms_frontend.store import CustomKeyStoreRecord, KeyRecord, SqliteRepository

ACCOUNT = "111122223333"
STORE = "cks-0000000000000000a"
KEY_ID = "00000000-0000-4000-8000-000000000001"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}"
PRINCIPALS = {"principals": [
    {"arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "access_keys": [{"id": "AKIAALICE00000000001", "secret": "a" * 20}],
     "policies": [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]},
    {"arn": f"arn:aws:iam::{ACCOUNT}:user/bob", "access_keys": [{"id": "AKIABOB0000000000001", "secret": "b" * 20}]},
]}


@pytest.fixture
async def world(tmp_path):
    repo = SqliteRepository(tmp_path / "meta.db")
    box = SecretBox(os.urandom(32))
    ctx = Context(repo, box, FrontendSettings())
    repo.create_custom_key_store(CustomKeyStoreRecord(
        custom_key_store_id=STORE, custom_key_store_name="s", cloud_hsm_cluster_id="cluster-234567abcdef",
        trust_anchor_certificate="pem", creation_date=1, sealed_password=b"x", connection_state="CONNECTED"))
    catalog = Catalog(ctx)
    await catalog.create_key(KeyRecord(key_id=KEY_ID, arn=KEY_ARN, custom_key_store_id=STORE,
                                       cloud_hsm_cluster_id="cluster-234567abcdef", creation_date=1,
                                       policy=default_policy(ACCOUNT), backing_key_handle=7))
    identities = Identities(ACCOUNT, {"AKIAROOTROOTROOTROOT": "r" * 20}, parse_principals(json.dumps(PRINCIPALS)),
                            box, ctx.clock)
    tokens = GrantTokens(box)
    authorizer = Authorizer(catalog, identities, tokens, ACCOUNT, ctx.clock)
    yield catalog, identities, authorizer, Grants(ctx, catalog, authorizer, tokens), ctx
    ctx.close()


def caller(identities: Identities, name: str) -> Caller:
    if name == "root":
        return Caller(identities.root, "127.0.0.1", "grpc")
    return Caller(identities.users[f"arn:aws:iam::{ACCOUNT}:user/{name}"], "127.0.0.1", "grpc")


async def test_a_static_verdict_is_cached_per_key_version_and_a_policy_change_takes_effect(world):
    catalog, identities, authorizer, _, _ = world
    encrypt = OPERATIONS["Encrypt"]
    params = {"KeyId": KEY_ID, "Plaintext": b"x"}
    authorizer.authorize(encrypt, params, caller(identities, "alice"))
    key = catalog.keys[KEY_ID]
    assert authorizer._cache[(KEY_ID, key.version, f"arn:aws:iam::{ACCOUNT}:user/alice", "kms:Encrypt")].allowed
    with pytest.raises(errors.AccessDeniedException):
        authorizer.authorize(encrypt, params, caller(identities, "bob"))
    deny_alice = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}, "Action": "kms:Encrypt",
         "Resource": "*"}]}
    await catalog.update_key(key, policy=json.dumps(deny_alice))  # a new version: the cached verdict no longer applies
    with pytest.raises(errors.AccessDeniedException) as info:
        authorizer.authorize(encrypt, params, caller(identities, "alice"))
    assert info.value.message.endswith("with an explicit deny in a resource-based policy")


async def test_a_verdict_that_read_the_encryption_context_is_never_cached(world):
    catalog, identities, authorizer, _, _ = world
    key = catalog.keys[KEY_ID]
    by_context = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/bob"}, "Action": "kms:Encrypt",
         "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:app": "demo"}}}]}
    await catalog.update_key(key, policy=json.dumps(by_context))
    encrypt, bob = OPERATIONS["Encrypt"], caller(identities, "bob")
    authorizer.authorize(encrypt, {"KeyId": KEY_ID, "Plaintext": b"x", "EncryptionContext": {"app": "demo"}}, bob)
    with pytest.raises(errors.AccessDeniedException):
        authorizer.authorize(encrypt, {"KeyId": KEY_ID, "Plaintext": b"x", "EncryptionContext": {"app": "no"}}, bob)
    authorizer.authorize(encrypt, {"KeyId": KEY_ID, "Plaintext": b"x", "EncryptionContext": {"app": "demo"}}, bob)
    assert not [k for k in authorizer._cache if k[2].endswith("user/bob")]


async def test_grant_limits_tokens_and_retries(world, monkeypatch):
    catalog, identities, authorizer, grants, _ = world
    monkeypatch.setattr(grants_module, "MAX_GRANTS_PER_KEY", 3)
    monkeypatch.setattr(grants_module, "MAX_GRANTS_PER_GRANTEE", 2)
    bob, alice = f"arn:aws:iam::{ACCOUNT}:user/bob", f"arn:aws:iam::{ACCOUNT}:user/alice"
    first_id, first_token = await grants.create(CreateGrantRequest(KEY_ID, bob, ("Encrypt",), name="n"))
    again_id, again_token = await grants.create(CreateGrantRequest(KEY_ID, bob, ("Encrypt",), name="n"))
    assert (again_id, grants.tokens.grant_id(again_token)) == (first_id, first_id) and again_token != first_token
    await grants.create(CreateGrantRequest(KEY_ID, bob, ("Decrypt",)))
    with pytest.raises(errors.LimitExceededException, match="2 grants for"):
        await grants.create(CreateGrantRequest(KEY_ID, bob, ("Decrypt",)))
    await grants.create(CreateGrantRequest(KEY_ID, alice, ("Decrypt",)))
    with pytest.raises(errors.LimitExceededException, match="already has 3 grants"):
        await grants.create(CreateGrantRequest(KEY_ID, alice, ("Encrypt",)))
    with pytest.raises(errors.InvalidGrantTokenException):
        grants.tokens.grant_id(first_token[:-3] + "xyz")
    # tokens are sealed under the master key: another frontend's key opens none of them
    assert len(catalog.grants[KEY_ID]) == 3
    with pytest.raises(errors.InvalidGrantTokenException):
        GrantTokens(SecretBox(os.urandom(32))).grant_id(first_token)
    # bob may encrypt through his grant without any policy allowing him
    authorizer.authorize(OPERATIONS["Encrypt"], {"KeyId": KEY_ID, "Plaintext": b"x"}, caller(identities, "bob"))


async def test_crypto_and_reads_are_counted_and_written_together(world):
    catalog, identities, authorizer, _, ctx = world
    trail = AuditTrail(ctx, ServiceModel())
    encrypt = OPERATIONS["Encrypt"]
    key = catalog.keys[KEY_ID]
    for _ in range(5):
        await trail.record(encrypt, caller(identities, "alice"), {"KeyId": KEY_ID}, [key], "ok")
    await trail.record(encrypt, caller(identities, "alice"), {"KeyId": KEY_ID}, [key], "ThrottlingException")
    assert await ctx.db(ctx.repo.list_audit_events) == []  # nothing written per request
    assert await trail.flush() == 2
    events = await ctx.db(ctx.repo.list_audit_events)
    assert sorted((e.event, e.principal, e.key_id, e.details["count"], e.details["outcome"]) for e in events) == [
        ("Encrypt", f"arn:aws:iam::{ACCOUNT}:user/alice", KEY_ID, 1, "ThrottlingException"),
        ("Encrypt", f"arn:aws:iam::{ACCOUNT}:user/alice", KEY_ID, 5, "ok")]
    put = OPERATIONS["PutKeyPolicy"]
    await trail.record(put, caller(identities, "root"), {"KeyId": KEY_ID, "Policy": "{}", "PolicyName": "default"},
                       [key], "ok")
    written = (await ctx.db(ctx.repo.list_audit_events, event="PutKeyPolicy"))[0]
    assert written.principal == f"arn:aws:iam::{ACCOUNT}:root"
    assert written.details["requestParameters"] == {"KeyId": KEY_ID, "PolicyName": "default", "Policy": "{}"}
    store_create = OPERATIONS["CreateCustomKeyStore"]
    await trail.record(store_create, caller(identities, "root"), {"CustomKeyStoreName": "x", "KeyStorePassword": "pw"},
                       [], "ok")
    created = (await ctx.db(ctx.repo.list_audit_events, event="CreateCustomKeyStore"))[0]
    assert created.details["requestParameters"] == {"CustomKeyStoreName": "x"}  # the password never
