"""Who may use a key, end to end with real processes (three hsm-nodes, one kms-frontend with a
principals file): each rule of AWS's evaluation on both APIs (boto3 on the AWS endpoint, signed
kms.v1 gRPC calls), grants and their constraints, STS AssumeRole with boto3's own ``sts`` client,
the gRPC refusal of unauthenticated calls, the audit trail, and the AWS Encryption SDK as a
principal the key policy allows.

The tests share one deployment and run in file order; the one that disconnects the store
reconnects it.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.session
import grpc
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.kms.v1 import kms_pb2 as k
from protos.kms.v1 import kms_pb2_grpc as kg
from tests.harness import FrontendProcess, wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, KmsEnv, aws_error, start_env

ACCOUNT, OTHER_ACCOUNT = "111122223333", "444455556666"
REGION = "us-east-1"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"


def arn(name: str, account: str = ACCOUNT) -> str:
    kind = "role" if name in ("app", "nobody-role") else "user"
    return f"arn:aws:iam::{account}:{kind}/{name}"


def allow(actions: list[str] | str, resource: str = "*", **extra: object) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource,
                                                    **extra}]}


def user(name: str, *policies: dict, account: str = ACCOUNT) -> dict:
    key_id = ("AKIA" + name.upper() + "0" * 16)[:20]
    return {"arn": arn(name, account), "access_keys": [{"id": key_id, "secret": f"{name}-secret-{name}-secret"}],
            "policies": list(policies)}


PRINCIPALS = {"principals": [
    user("alice", allow("kms:*"), allow("sts:AssumeRole", arn("app"))),
    user("bob"),
    user("carol", allow(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:ReEncrypt*"],
                        f"arn:aws:kms:*:{ACCOUNT}:key/*"), allow("sts:AssumeRole", arn("app"))),
    user("eve", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}),
    user("erin", allow("sts:AssumeRole")),
    user("dave", allow("kms:*"), account=OTHER_ACCOUNT),
    {"arn": arn("app"), "trust": [arn("carol"), arn("alice")],
     "policies": [allow(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])]},
]}
KEYS = {e["arn"].rsplit("/", 1)[1]: (e["access_keys"][0]["id"], e["access_keys"][0]["secret"])
        for e in PRINCIPALS["principals"] if "access_keys" in e}


@dataclass
class AuthEnv:
    kms_env: KmsEnv
    offset_file: Path
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    default_key: str = ""   # the default key policy: the account's IAM policies decide

    @property
    def fe(self) -> FrontendProcess:
        return self.kms_env.fe

    def credentials(self, who: str) -> tuple[str, str]:
        return self.fe.aws_credentials() if who == "root" else KEYS[who]

    def client(self, service: str, who: str = "root", **session: str):
        """boto3's own client for ``service``, signed as ``who`` (or with an AssumeRole session's credentials)."""
        key_id, secret = self.credentials(who) if not session else (session["AccessKeyId"], session["SecretAccessKey"])
        return boto3.client(service, endpoint_url=self.fe.aws_endpoint_url, region_name=REGION,
                            aws_access_key_id=key_id, aws_secret_access_key=secret,
                            aws_session_token=session.get("SessionToken"),
                            config=Config(retries={"total_max_attempts": 1}))

    def kms(self, who: str = "root", **session: str):
        return self.client("kms", who, **session)

    def sts(self, who: str = "root", **session: str):
        return self.client("sts", who, **session)

    def grpc(self, who: str | None = "root", token: str | None = None, secret: str | None = None,
             key_id: str | None = None) -> kg.KmsStub:
        credentials = None
        if who is not None:
            found = self.credentials(who) if key_id is None else (key_id, secret)
            credentials = Credentials(found[0], secret or found[1], token)
        channel = self.fe.channel(credentials)
        self.channels.append(channel)
        return kg.KmsStub(channel)

    def set_clock(self, seconds: float) -> None:
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(str(seconds))
        os.replace(tmp, self.offset_file)

    def create_key(self, policy: dict | None = None, who: str = "root", **params: object) -> str:
        extra = {"Policy": json.dumps(policy)} if policy is not None else {}
        return self.kms(who).create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=self.kms_env.store_id, **extra,
                                        **params)["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("authz")
    principals = root / "principals.json"
    principals.write_text(json.dumps(PRINCIPALS, indent=2))
    offset = root / "clock-offset"
    offset.write_text("0")
    e = await start_env(root, fe_env={"KMS_PRINCIPALS_FILE": str(principals), "KMS_CLOCK_OFFSET_FILE": str(offset)})
    auth = AuthEnv(e, offset)
    try:
        auth.default_key = auth.create_key()
        yield auth
    finally:
        for channel in auth.channels:
            await channel.close()
        await e.close()


def denied(fn, *args, **kwargs) -> str:
    """A boto3 call that AWS's evaluation refuses: AccessDeniedException (HTTP 400), its message."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDeniedException", 400), err
    return err["Error"]["Message"]


def error_code(fn, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def why(principal: str, action: str, resource: str | None, reason: str) -> str:
    on = f" on resource: {resource}" if resource else ""
    return f"User: {principal} is not authorized to perform: {action}{on} {reason}"


def no_identity(action: str) -> str:
    return f"because no identity-based policy allows the {action} action"


def no_resource(action: str) -> str:
    return f"because no resource-based policy allows the {action} action"


# ---------------------------------------------------------------- authentication on gRPC


async def test_an_unauthenticated_grpc_call_is_refused_and_changes_nothing(env):
    kms_env = env.kms_env
    before = await kms_env.list_all_keys()
    unsigned = env.grpc(None)
    request = k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=kms_env.store_id)
    for stub, exception in ((unsigned, "MissingAuthenticationTokenException"),
                            (env.grpc("root", secret="not-the-secret-at-all-0000"), "InvalidSignatureException"),
                            (env.grpc("bob", key_id="AKIAUNKNOWNUNKNOWN00", secret="x" * 40),
                             "UnrecognizedClientException")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateKey(request, timeout=CALL_TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
        assert dict(info.value.trailing_metadata() or ())["x-aws-exception"] == exception
    assert await kms_env.list_all_keys() == before  # nothing was created
    admin = kg.KmsAdminStub(env.fe.channel(None))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.ListAuditEvents(k.ListAuditEventsRequest(), timeout=CALL_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # the admin service too
    health = await health_pb2_grpc.HealthStub(env.fe.channel(None)).Check(
        health_pb2.HealthCheckRequest(service="kms.v1.Kms"), timeout=CALL_TIMEOUT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # health checks need no credentials


# ---------------------------------------------------------------- the evaluation rules


async def test_a_principal_with_no_policy_is_denied_on_both_apis(env):
    bob = env.kms("bob")
    assert denied(bob.list_keys) == why(arn("bob"), "kms:ListKeys", "*", no_identity("kms:ListKeys"))
    assert denied(bob.encrypt, KeyId=env.default_key, Plaintext=b"x") == why(
        arn("bob"), "kms:Encrypt", env.default_key, no_identity("kms:Encrypt"))
    name, message = await aws_error(env.grpc("bob").Encrypt(k.EncryptRequest(key_id=env.default_key, plaintext=b"x"),
                                                            timeout=CALL_TIMEOUT))
    assert (name, message) == ("AccessDeniedException", why(arn("bob"), "kms:Encrypt", env.default_key,
                                                             no_identity("kms:Encrypt")))
    # operations no key here can do are judged first, as AWS does: bob learns nothing of the key
    assert denied(bob.sign, KeyId=env.default_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == why(
        arn("bob"), "kms:Sign", env.default_key, no_identity("kms:Sign"))
    assert denied(bob.rotate_key_on_demand, KeyId=env.default_key) == why(
        arn("bob"), "kms:RotateKeyOnDemand", env.default_key, no_identity("kms:RotateKeyOnDemand"))
    # the default key policy delegates to IAM: alice's IAM policy allows, so alice may
    blob = env.kms("alice").encrypt(KeyId=env.default_key, Plaintext=b"x")["CiphertextBlob"]
    assert env.kms("alice").decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    assert env.kms("alice").list_keys()["Keys"]


async def test_a_key_policy_allows_directly_and_iam_alone_never_opens_a_key(env):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": arn("alice")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "use", "Effect": "Allow", "Principal": {"AWS": arn("bob")},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]}
    key = env.create_key(policy, who="alice")  # alice keeps PutKeyPolicy: the lockout check passes
    bob = env.kms("bob")
    blob = bob.encrypt(KeyId=key, Plaintext=b"direct")["CiphertextBlob"]  # bob has no IAM policy at all
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"direct"
    assert denied(bob.describe_key, KeyId=key) == why(arn("bob"), "kms:DescribeKey", key,
                                                      no_resource("kms:DescribeKey"))
    # carol's IAM policy allows Encrypt on every key, but this key's policy names neither her nor her account
    assert denied(env.kms("carol").encrypt, KeyId=key, Plaintext=b"x") == why(
        arn("carol"), "kms:Encrypt", key, no_resource("kms:Encrypt"))
    # the account root is bound by the key policy too
    assert denied(env.kms("root").describe_key, KeyId=key) == why(ROOT, "kms:DescribeKey", key,
                                                                  no_resource("kms:DescribeKey"))
    assert env.kms("alice").describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key


async def test_explicit_deny_beats_every_allow(env):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": arn("alice")}, "Action": "kms:Decrypt", "Resource": "*"}]}
    key = env.create_key(policy)
    blob = env.kms("alice").encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert denied(env.kms("alice").decrypt, CiphertextBlob=blob) == why(
        arn("alice"), "kms:Decrypt", key, "with an explicit deny in a resource-based policy")
    # an explicit deny in eve's own IAM policy, and a grant does not get around it
    blob = env.kms("eve").encrypt(KeyId=env.default_key, Plaintext=b"y")["CiphertextBlob"]
    env.kms().create_grant(KeyId=env.default_key, GranteePrincipal=arn("eve"), Operations=["Decrypt"])
    assert denied(env.kms("eve").decrypt, CiphertextBlob=blob) == why(
        arn("eve"), "kms:Decrypt", env.default_key, "with an explicit deny in an identity-based policy")


async def test_decrypt_is_judged_against_the_key_inside_the_ciphertext(env):
    direct = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": arn("bob")}, "Action": "kms:Decrypt", "Resource": "*"}]}
    mine = env.create_key(direct)
    root = env.kms()
    mine_blob = root.encrypt(KeyId=mine, Plaintext=b"one")["CiphertextBlob"]
    other_blob = root.encrypt(KeyId=env.default_key, Plaintext=b"two")["CiphertextBlob"]
    assert env.kms("bob").decrypt(CiphertextBlob=mine_blob)["Plaintext"] == b"one"  # no KeyId: the blob's key
    assert denied(env.kms("bob").decrypt, CiphertextBlob=other_blob) == why(
        arn("bob"), "kms:Decrypt", env.default_key, no_identity("kms:Decrypt"))
    # carol's IAM policy is scoped to key ARNs (arn:aws:kms:*:ACCOUNT:key/*), never "*": it covers Decrypt
    assert env.kms("carol").decrypt(CiphertextBlob=other_blob)["Plaintext"] == b"two"
    # ReEncrypt: ReEncryptFrom on the blob's key, ReEncryptTo on the destination
    assert denied(env.kms("bob").re_encrypt, CiphertextBlob=mine_blob, DestinationKeyId=env.default_key) == why(
        arn("bob"), "kms:ReEncryptFrom", mine, no_identity("kms:ReEncryptFrom"))
    again = env.kms("carol").re_encrypt(CiphertextBlob=other_blob, DestinationKeyId=env.default_key)
    assert root.decrypt(CiphertextBlob=again["CiphertextBlob"])["Plaintext"] == b"two"


async def test_encryption_context_conditions(env):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": arn("bob")}, "Action": ["kms:Encrypt", "kms:Decrypt"],
         "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:app": "demo"}}},
        {"Effect": "Allow", "Principal": {"AWS": arn("bob")}, "Action": "kms:GenerateDataKey", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Project"}}}]}
    key = env.create_key(policy)
    bob = env.kms("bob")
    blob = bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"app": "demo", "more": "ok"})["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "demo", "more": "ok"})["Plaintext"] == b"x"
    bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"APP": "demo"})  # the context key: any case
    denied(bob.encrypt, KeyId=key, Plaintext=b"x", EncryptionContext={"app": "Demo"})  # the value: exactly
    denied(bob.encrypt, KeyId=key, Plaintext=b"x")
    other = env.kms().encrypt(KeyId=key, Plaintext=b"y", EncryptionContext={"app": "other"})["CiphertextBlob"]
    denied(bob.decrypt, CiphertextBlob=other, EncryptionContext={"app": "other"})
    bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"Project": "p", "x": "y"})
    denied(bob.generate_data_key, KeyId=key, KeySpec="AES_256", EncryptionContext={"project": "p"})
    denied(bob.generate_data_key, KeyId=key, KeySpec="AES_256")
    # the same evaluator behind gRPC
    ok = await env.grpc("bob").Encrypt(k.EncryptRequest(key_id=key, plaintext=b"g", encryption_context={"app": "demo"}),
                                       timeout=CALL_TIMEOUT)
    assert ok.key_id == key
    name, _ = await aws_error(env.grpc("bob").Encrypt(k.EncryptRequest(
        key_id=key, plaintext=b"g", encryption_context={"app": "nope"}), timeout=CALL_TIMEOUT))
    assert name == "AccessDeniedException"


async def test_source_ip_and_caller_conditions(env):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}, "StringEquals": {"kms:CallerAccount": ACCOUNT}}},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:DescribeKey", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/e*"}}}]}
    key = env.create_key(policy)
    env.kms("bob").encrypt(KeyId=key, Plaintext=b"x")      # from 127.0.0.1, in the account
    denied(env.kms("bob").describe_key, KeyId=key)          # not from 10/8
    assert "explicit deny in a resource-based policy" in denied(env.kms("eve").encrypt, KeyId=key, Plaintext=b"x")
    await env.grpc("bob").Encrypt(k.EncryptRequest(key_id=key, plaintext=b"x"), timeout=CALL_TIMEOUT)


async def test_cross_account_needs_the_key_policy_and_the_other_accounts_iam(env):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]}
    key = env.create_key(policy)
    dave = env.kms("dave")
    blob = dave.encrypt(KeyId=key, Plaintext=b"across")["CiphertextBlob"]  # by key ARN
    assert dave.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across"
    code, message = error_code(dave.encrypt, KeyId=key.rsplit("/", 1)[1], Plaintext=b"x")  # a bare id is his own
    assert code == "NotFoundException" and OTHER_ACCOUNT in message
    assert denied(dave.encrypt, KeyId=env.default_key, Plaintext=b"x") == why(
        arn("dave", OTHER_ACCOUNT), "kms:Encrypt", env.default_key, no_resource("kms:Encrypt"))
    assert "holds the KMS resources of account" in denied(dave.list_keys)


async def test_the_policy_lockout_safety_check_and_malformed_documents(env):
    root = env.kms()
    key = env.create_key()
    only_bob = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": arn("bob")}, "Action": "kms:*", "Resource": "*"}]}
    code, message = error_code(root.put_key_policy, KeyId=key, PolicyName="default", Policy=json.dumps(only_bob))
    assert (code, message) == ("MalformedPolicyDocumentException",
                               "The new key policy will not allow you to update the key policy in the future.")
    code, message = error_code(root.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.kms_env.store_id,
                               Policy=json.dumps(only_bob))
    assert code == "MalformedPolicyDocumentException" and "update the key policy in the future" in message
    invalid = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"}, "Action": "kms:*",
         "Resource": "*"}]}
    assert error_code(root.put_key_policy, KeyId=key, PolicyName="default", Policy=json.dumps(invalid)) == (
        "MalformedPolicyDocumentException", "Policy contains a statement with one or more invalid principals.")
    typo = json.dumps({"Statement": [{"Effect": "Alow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]})
    assert error_code(root.put_key_policy, KeyId=key, PolicyName="default", Policy=typo)[0] == \
        "MalformedPolicyDocumentException"
    # bypassed: accepted, and the root is then locked out of this key's policy
    root.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(only_bob),
                        BypassPolicyLockoutSafetyCheck=True)
    assert denied(root.get_key_policy, KeyId=key, PolicyName="default") == why(
        ROOT, "kms:GetKeyPolicy", key, no_resource("kms:GetKeyPolicy"))
    assert json.loads(env.kms("bob").get_key_policy(KeyId=key, PolicyName="default")["Policy"]) == only_bob
    created = root.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.kms_env.store_id,
                              Policy=json.dumps(only_bob), BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    assert env.kms("bob").describe_key(KeyId=created["Arn"])["KeyMetadata"]["KeyState"] == "Enabled"


# ---------------------------------------------------------------- grants


async def test_grants_allow_their_operations_under_their_constraints(env):
    root, bob = env.kms(), env.kms("bob")
    key = env.create_key()
    grant = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["Encrypt", "Decrypt", "RetireGrant"],
                              RetiringPrincipal=arn("carol"), Name="bob-app",
                              Constraints={"EncryptionContextSubset": {"app": "demo"}})
    context = {"app": "demo", "extra": "1"}
    blob = bob.encrypt(KeyId=key, Plaintext=b"g", EncryptionContext=context)["CiphertextBlob"]  # usable at once
    assert bob.decrypt(CiphertextBlob=blob, EncryptionContext=context,
                       GrantTokens=[grant["GrantToken"]])["Plaintext"] == b"g"
    bob.encrypt(KeyId=key, Plaintext=b"g", EncryptionContext={"APP": "demo"})  # constraint keys: any case
    denied(bob.encrypt, KeyId=key, Plaintext=b"g", EncryptionContext={"app": "DEMO"})
    denied(bob.encrypt, KeyId=key, Plaintext=b"g")
    denied(bob.describe_key, KeyId=key)                                       # not one of its operations
    assert error_code(bob.encrypt, KeyId=key, Plaintext=b"g", EncryptionContext=context,
                      GrantTokens=["not-a-grant-token"])[0] == "InvalidGrantTokenException"
    equals = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["GenerateDataKey"],
                               Constraints={"EncryptionContextEquals": {"app": "demo"}})
    bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"app": "demo"})
    denied(bob.generate_data_key, KeyId=key, KeySpec="AES_256", EncryptionContext={"app": "demo", "x": "y"})
    # a retry with the same Name and properties: the same grant, a new token; other properties: a new grant
    again = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["Decrypt", "Encrypt", "RetireGrant"],
                              RetiringPrincipal=arn("carol"), Name="bob-app",
                              Constraints={"EncryptionContextSubset": {"app": "demo"}})
    assert again["GrantId"] == grant["GrantId"] and again["GrantToken"] != grant["GrantToken"]
    other = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["Decrypt"], Name="bob-app")
    assert other["GrantId"] != grant["GrantId"]
    # ListGrants and its filters
    listed = {g["GrantId"]: g for g in root.list_grants(KeyId=key)["Grants"]}
    assert set(listed) == {grant["GrantId"], equals["GrantId"], other["GrantId"]}
    entry = listed[grant["GrantId"]]
    assert entry["KeyId"] == key and entry["IssuingAccount"] == ROOT and entry["Name"] == "bob-app"
    assert entry["GranteePrincipal"] == arn("bob") and entry["RetiringPrincipal"] == arn("carol")
    assert sorted(entry["Operations"]) == ["Decrypt", "Encrypt", "RetireGrant"]
    assert entry["Constraints"] == {"EncryptionContextSubset": {"app": "demo"}}
    assert [g["GrantId"] for g in root.list_grants(KeyId=key, GrantId=equals["GrantId"])["Grants"]] == [
        equals["GrantId"]]
    assert root.list_grants(KeyId=key, GranteePrincipal=arn("carol"))["Grants"] == []
    page = root.list_grants(KeyId=key, Limit=2)
    assert len(page["Grants"]) == 2 and page["Truncated"] and root.list_grants(KeyId=key, Marker=page["NextMarker"])
    assert error_code(root.list_grants, KeyId=key, GrantId="nope")[0] == "InvalidGrantIdException"
    denied(bob.list_grants, KeyId=key)
    retirable = root.list_retirable_grants(RetiringPrincipal=arn("carol"))["Grants"]
    assert [g["GrantId"] for g in retirable] == [grant["GrantId"]]
    # RetireGrant: not by a stranger; by the retiring principal; by the grantee with the token
    assert "kms:RetireGrant" in denied(env.kms("erin").retire_grant, KeyId=key, GrantId=grant["GrantId"])
    env.kms("carol").retire_grant(KeyId=key, GrantId=grant["GrantId"])
    denied(bob.encrypt, KeyId=key, Plaintext=b"g", EncryptionContext=context)
    assert error_code(root.retire_grant, KeyId=key, GrantId=grant["GrantId"])[0] == "NotFoundException"
    third = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["Encrypt", "RetireGrant"])
    bob.retire_grant(GrantToken=third["GrantToken"])
    # RevokeGrant: kms:RevokeGrant on the key (bob has none)
    denied(bob.revoke_grant, KeyId=key, GrantId=equals["GrantId"])
    root.revoke_grant(KeyId=key, GrantId=equals["GrantId"])
    denied(bob.generate_data_key, KeyId=key, KeySpec="AES_256", EncryptionContext={"app": "demo"})
    assert error_code(root.revoke_grant, KeyId=key, GrantId="0" * 64)[0] == "NotFoundException"
    assert {g["GrantId"] for g in root.list_grants(KeyId=key)["Grants"]} == {other["GrantId"]}


async def test_create_grant_rules(env):
    root, bob = env.kms(), env.kms("bob")
    key = env.create_key()
    parent = root.create_grant(KeyId=key, GranteePrincipal=arn("bob"), Operations=["Decrypt", "CreateGrant"],
                               Constraints={"EncryptionContextSubset": {"app": "demo"}})
    # a grantee whose CreateGrant comes from a grant: some or all of its operations, constraints as strict
    child = bob.create_grant(KeyId=key, GranteePrincipal=arn("carol"), Operations=["Decrypt"],
                             Constraints={"EncryptionContextEquals": {"app": "demo", "x": "y"}},
                             GrantTokens=[parent["GrantToken"]])
    assert child["GrantId"]
    denied(bob.create_grant, KeyId=key, GranteePrincipal=arn("carol"), Operations=["Encrypt"],
           Constraints={"EncryptionContextSubset": {"app": "demo"}})
    denied(bob.create_grant, KeyId=key, GranteePrincipal=arn("carol"), Operations=["Decrypt"])
    # bad requests
    assert error_code(root.create_grant, KeyId=key, GranteePrincipal=arn("bob"), Operations=["Sign"])[0] == \
        "ValidationException"
    assert error_code(root.create_grant, KeyId=key, GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:user/nobody",
                      Operations=["Decrypt"])[0] == "InvalidArnException"
    assert error_code(root.create_grant, KeyId="alias/nothing", GranteePrincipal=arn("bob"),
                      Operations=["Decrypt"])[0] == "NotFoundException"
    root.disable_key(KeyId=key)
    assert error_code(root.create_grant, KeyId=key, GranteePrincipal=arn("bob"), Operations=["Decrypt"]) == (
        "DisabledException", f"{key} is disabled.")
    root.list_grants(KeyId=key)  # listing works in every key state
    root.enable_key(KeyId=key)
    assert error_code(root.create_grant, KeyId=key, GranteePrincipal=arn("bob"), Operations=["Decrypt"],
                      DryRun=True)[0] == "DryRunOperationException"


async def test_at_most_500_grants_per_grantee_on_a_key(env):
    stub = env.kms_env.kms
    key = env.create_key()
    request = k.CreateGrantRequest(key_id=key, grantee_principal=arn("dave", OTHER_ACCOUNT), operations=["Encrypt"])
    for _ in range(500 // 25):
        await asyncio.gather(*(stub.CreateGrant(request, timeout=60) for _n in range(25)))
    name, message = await aws_error(stub.CreateGrant(request, timeout=CALL_TIMEOUT))
    assert name == "LimitExceededException" and "500 grants" in message
    other = k.CreateGrantRequest(key_id=key, grantee_principal=arn("bob"), operations=["Encrypt"])
    assert (await stub.CreateGrant(other, timeout=CALL_TIMEOUT)).grant_id  # per grantee, not per key


async def test_grants_through_grpc_and_on_a_disconnected_store_and_across_a_restart(env):
    kms_env = env.kms_env
    key = env.create_key()
    stub = kms_env.kms
    made = await stub.CreateGrant(k.CreateGrantRequest(
        key_id=key, grantee_principal=arn("bob"), operations=["Encrypt", "DescribeKey"],
        constraints=k.GrantConstraints(encryption_context_subset={"app": "demo"})), timeout=CALL_TIMEOUT)
    listed = await stub.ListGrants(k.ListGrantsRequest(key_id=key), timeout=CALL_TIMEOUT)
    assert [g.grant_id for g in listed.grants] == [made.grant_id]
    assert dict(listed.grants[0].constraints.encryption_context_subset) == {"app": "demo"}
    bob = env.grpc("bob")
    await bob.DescribeKey(k.DescribeKeyRequest(key_id=key), timeout=CALL_TIMEOUT)  # constraints do not apply to it
    # grants are durable: the frontend restarts, and they are there and in force
    await kms_env.fe.restart()
    bob = env.grpc("bob")

    async def encrypts() -> bool:  # the restarted frontend reconnects the store to its HSMs first
        try:
            await bob.Encrypt(k.EncryptRequest(key_id=key, plaintext=b"x", encryption_context={"app": "demo"},
                                               grant_tokens=[made.grant_token]), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            assert dict(exc.trailing_metadata() or ())["x-aws-exception"] == "KMSInvalidStateException", exc
            return False
        return True
    await wait_until(encrypts, timeout=30, what="bob's Encrypt through his grant after the restart")
    # a disconnected store: its keys are Unavailable; grants can still be created, listed and retired
    await kms_env.disconnect()
    try:
        second = await kms_env.kms.CreateGrant(k.CreateGrantRequest(
            key_id=key, grantee_principal=arn("carol"), operations=["Decrypt"]), timeout=CALL_TIMEOUT)
        assert len((await kms_env.kms.ListGrants(k.ListGrantsRequest(key_id=key), timeout=CALL_TIMEOUT)).grants) == 2
        name, message = await aws_error(bob.Encrypt(k.EncryptRequest(
            key_id=key, plaintext=b"x", encryption_context={"app": "demo"}), timeout=CALL_TIMEOUT))
        assert (name, message) == ("KMSInvalidStateException", f"{key} is unavailable.")  # allowed, but unusable
        await kms_env.kms.RevokeGrant(k.RevokeGrantRequest(key_id=key, grant_id=second.grant_id),
                                      timeout=CALL_TIMEOUT)
    finally:
        await kms_env.connect()
    await bob.Encrypt(k.EncryptRequest(key_id=key, plaintext=b"x", encryption_context={"app": "demo"}),
                      timeout=CALL_TIMEOUT)


# ---------------------------------------------------------------- STS


async def test_assume_role_with_boto3s_own_sts_client(env):
    carol = env.sts("carol")
    me = carol.get_caller_identity()
    assert (me["Arn"], me["Account"]) == (arn("carol"), ACCOUNT) and me["UserId"].startswith("AIDA")
    assert env.sts().get_caller_identity()["Arn"] == ROOT
    assumed = carol.assume_role(RoleArn=arn("app"), RoleSessionName="batch-1", DurationSeconds=900)
    creds = assumed["Credentials"]
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/batch-1"
    assert assumed["AssumedRoleUser"]["Arn"] == session_arn
    assert assumed["AssumedRoleUser"]["AssumedRoleId"].endswith(":batch-1") and creds["AccessKeyId"].startswith("ASIA")
    left = creds["Expiration"].timestamp() - time.time()
    assert 800 < left <= 901
    assert env.sts(**creds).get_caller_identity()["Arn"] == session_arn
    as_role = env.kms(**creds)
    blob = as_role.encrypt(KeyId=env.default_key, Plaintext=b"role")["CiphertextBlob"]
    assert as_role.decrypt(CiphertextBlob=blob)["Plaintext"] == b"role"
    assert denied(as_role.list_keys) == why(session_arn, "kms:ListKeys", "*", no_identity("kms:ListKeys"))
    # the same temporary credentials sign gRPC calls (the session token is part of the signature)
    grpc_role = env.grpc(key_id=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["SessionToken"])
    out = await grpc_role.Decrypt(k.DecryptRequest(ciphertext_blob=blob), timeout=CALL_TIMEOUT)
    assert out.plaintext == b"role"
    tampered = env.grpc(key_id=creds["AccessKeyId"], secret=creds["SecretAccessKey"],
                        token=creds["SessionToken"][:-6] + "AAAAAA")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await tampered.Decrypt(k.DecryptRequest(ciphertext_blob=blob), timeout=CALL_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # a session policy narrows the session further
    narrow = carol.assume_role(RoleArn=arn("app"), RoleSessionName="narrow",
                               Policy=json.dumps(allow("kms:Encrypt")))["Credentials"]
    env.kms(**narrow).encrypt(KeyId=env.default_key, Plaintext=b"x")
    assert "session policy" in denied(env.kms(**narrow).decrypt, CiphertextBlob=blob)
    # who may not
    for who, code, fragment in (("erin", "AccessDenied", "no resource-based policy allows the sts:AssumeRole"),
                                ("bob", "AccessDenied", "no identity-based policy allows the sts:AssumeRole"),
                                ("root", "AccessDenied", "Roles may not be assumed by root accounts.")):
        with pytest.raises(ClientError) as caught:
            env.sts(who).assume_role(RoleArn=arn("app"), RoleSessionName="x" * 2)
        err = caught.value.response
        assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, 403), err
        assert fragment in err["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        carol.assume_role(RoleArn=arn("app"), RoleSessionName="long", DurationSeconds=7200)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as caught:
        carol.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/missing", RoleSessionName="s1")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    # the session ends when its credentials expire (the frontend's clock moves past the expiry)
    env.set_clock(901)
    try:
        code, message = error_code(as_role.encrypt, KeyId=env.default_key, Plaintext=b"late")
        assert (code, message) == ("ExpiredTokenException", "The security token included in the request is expired")
        with pytest.raises(ClientError) as caught:
            env.sts(**creds).get_caller_identity()
        assert caught.value.response["Error"]["Code"] == "ExpiredToken"
    finally:
        env.set_clock(0)


# ---------------------------------------------------------------- the audit trail and the request log


async def test_the_audit_trail_and_the_request_log_name_the_principal(env):
    admin = env.kms_env.admin
    env.kms("alice").tag_resource(KeyId=env.default_key, Tags=[{"TagKey": "audited", "TagValue": "yes"}])
    denied(env.kms("bob").list_aliases)
    for _ in range(3):
        env.kms("carol").encrypt(KeyId=env.default_key, Plaintext=b"counted")

    async def events(principal: str, event: str) -> list[k.AuditEventEntry]:
        r = await admin.ListAuditEvents(k.ListAuditEventsRequest(principal=principal, event=event, limit=1000),
                                        timeout=CALL_TIMEOUT)
        return list(r.events)

    tagged = await events(arn("alice"), "TagResource")
    assert tagged and tagged[-1].key_id == env.default_key.rsplit("/", 1)[1]
    details = json.loads(tagged[-1].details_json)
    assert details["outcome"] == "ok" and details["api"] == "aws" and details["requestId"]
    assert details["requestParameters"]["Tags"] == [{"TagKey": "audited", "TagValue": "yes"}]
    refused = await events(arn("bob"), "ListAliases")
    assert refused and json.loads(refused[-1].details_json)["outcome"] == "AccessDeniedException"
    # cryptographic operations: counted in memory, written about once a second, never one write per request

    async def counted() -> int:
        return sum(json.loads(e.details_json)["count"] for e in await events(arn("carol"), "Encrypt")
                   if json.loads(e.details_json)["outcome"] == "ok")
    await wait_until(lambda: _at_least(counted, 3), timeout=20, what="carol's Encrypt calls in the audit trail")
    log = env.fe.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"event": "request"' in line]
    assert any(r["operation"] == "ListAliases" and r["principal"] == arn("bob")
               and r["outcome"] == "AccessDeniedException" for r in lines)
    assert "bob-secret" not in log and "alice-secret" not in log


async def _at_least(fn, n: int) -> bool:
    return await fn() >= n


async def test_the_kms_cli_signs_as_the_principal_in_its_environment(env, tmp_path):
    def kms_cli(who: str, *args: str) -> subprocess.CompletedProcess:
        key_id, secret = KEYS[who]
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KMS_"))}
        cli_env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_CONFIG_FILE=os.devnull,
                       AWS_SHARED_CREDENTIALS_FILE=os.devnull, KMS_ENDPOINT=env.fe.endpoint)
        return subprocess.run([sys.executable, "-m", "kms_frontend.cli", *args], env=cli_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    ok = kms_cli("alice", "describe-key", "--key-id", env.default_key)
    assert ok.returncode == 0 and json.loads(ok.stdout)["KeyMetadata"]["Arn"] == env.default_key, ok.stderr
    refused = kms_cli("bob", "describe-key", "--key-id", env.default_key)
    assert refused.returncode == 254
    assert refused.stderr == ("\nAn error occurred (AccessDeniedException) when calling the DescribeKey operation: "
                              + why(arn("bob"), "kms:DescribeKey", env.default_key, no_identity("kms:DescribeKey"))
                              + "\n")


# ---------------------------------------------------------------- the AWS Encryption SDK


async def test_the_aws_encryption_sdk_round_trips_as_a_principal_the_policy_allows(env, tmp_path):
    aws_encryption_sdk = pytest.importorskip("aws_encryption_sdk")
    from aws_encryption_sdk.identifiers import CommitmentPolicy

    key_id, secret = KEYS["alice"]
    (tmp_path / "config").write_text(
        f"[profile alice]\nregion = {REGION}\nservices = local\n\n"
        f"[services local]\nkms =\n  endpoint_url = {env.fe.aws_endpoint_url}\n")
    (tmp_path / "credentials").write_text(f"[alice]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    session = botocore.session.Session(profile="alice")
    session.set_config_variable("config_file", str(tmp_path / "config"))
    session.set_config_variable("credentials_file", str(tmp_path / "credentials"))
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[env.default_key], botocore_session=session)
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    message = os.urandom(4096)
    ciphertext, _ = client.encrypt(source=message, key_provider=provider, encryption_context={"who": "alice"})
    plaintext, header = client.decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == message and header.encryption_context["who"] == "alice"
    # bob, whom no policy allows, cannot decrypt the same message
    (tmp_path / "credentials").write_text(
        f"[alice]\naws_access_key_id = {KEYS['bob'][0]}\naws_secret_access_key = {KEYS['bob'][1]}\n")
    stranger = botocore.session.Session(profile="alice")
    stranger.set_config_variable("config_file", str(tmp_path / "config"))
    stranger.set_config_variable("credentials_file", str(tmp_path / "credentials"))
    with pytest.raises(Exception) as info:
        client.decrypt(source=ciphertext, key_provider=aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
            key_ids=[env.default_key], botocore_session=stranger))
    assert "AccessDenied" in repr(info.value) or "Unable to decrypt" in str(info.value)


# ---------------------------------------------------------------- a principals file that is not valid


async def test_a_bad_principals_file_stops_the_frontend_with_the_line_and_reason(tmp_path):
    bad = tmp_path / "principals.json"
    doc = json.loads(json.dumps(PRINCIPALS))
    doc["principals"][1]["policies"] = [{"Statement": [{"Effect": "Permit", "Action": "kms:*", "Resource": "*"}]}]
    bad.write_text(json.dumps(doc, indent=2))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), start=1) if '"Permit"' in text)
    fe = FrontendProcess(tmp_path, [], name="bad-principals", env={"KMS_PRINCIPALS_FILE": str(bad)})
    fe.start()
    try:
        assert fe.proc is not None
        await wait_until(lambda: fe.proc.poll() is not None, timeout=30, what="the frontend to refuse the file")
        assert fe.proc.returncode == 2
        out = fe.log_path.read_text()
        assert f"{bad}:" in out and 'Effect must be "Allow" or "Deny"' in out and "Traceback" not in out
        reported = int(out.split(f"{bad}:", 1)[1].split(":", 1)[0])
        assert reported <= line <= reported + 2
        assert not (fe.data_dir / "metadata.db").exists()  # refused before anything was opened
    finally:
        await fe.stop()
