"""The AWS JSON 1.1 endpoint end to end, with AWS's own clients and nothing but the endpoint URL
changed: boto3 (key store and key lifecycles, crypto with encryption context, the exception
classes boto3 raises, botocore's throttling retries), raw SigV4 requests that must be refused,
the AWS Encryption SDK (a message encrypted under a key in the custom key store), and the AWS CLI
when it is installed. Real processes: three hsm-nodes, one kms-frontend.

The tests of the shared deployment run in file order: the store is created and connected first
and torn down (disconnect, keys deleted, store deleted) last.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import boto3
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from protos.hsm.v1 import hsm_pb2 as h
from tests.harness import (
    CU_PASSWORD,
    FrontendProcess,
    Lab,
    NodeProcess,
    free_port,
    three_node_cluster,
    wait_until,
)

ACCOUNT = "111122223333"
REGION = "us-east-1"
DAY = 86_400
STORE_QUOTA = 40  # crypto requests per second per store: low, so a burst meets ThrottlingException
JSON_11 = "application/x-amz-json-1.1"


@dataclass
class AwsEnv:
    root: Path
    lab: Lab
    nodes: list[NodeProcess]
    fe: FrontendProcess
    cluster_id: str
    access_key_id: str
    secret_access_key: str
    offset_file: Path
    store_id: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # role -> key id

    @property
    def url(self) -> str:
        return self.fe.aws_endpoint_url

    def client(self, *, validate: bool = True, retries: int | None = None, region: str = REGION,
               access_key_id: str | None = None, secret: str | None = None):
        config = Config(parameter_validation=validate,
                        retries={"total_max_attempts": retries, "mode": "standard"} if retries else None)
        return boto3.client("kms", endpoint_url=self.url, region_name=region, config=config,
                            aws_access_key_id=access_key_id or self.access_key_id,
                            aws_secret_access_key=secret or self.secret_access_key)

    def set_clock(self, days: float) -> None:
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(str(days * DAY))
        os.replace(tmp, self.offset_file)


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("aws")
    lab = Lab(root)
    fe: FrontendProcess | None = None
    try:
        nodes = await three_node_cluster(lab)
        offset = root / "clock-offset"
        offset.write_text("0")
        fe = FrontendProcess(root, [n.endpoint for n in nodes], env={
            "KMS_CLOCK_OFFSET_FILE": str(offset), "KMS_SWEEP_INTERVAL": "0.2", "KMS_STORE_QUOTA": str(STORE_QUOTA)})
        fe.start()
        await fe.wait_ready()
        cluster_id = (await nodes[0].stub().GetStatus(h.Empty(), timeout=10)).cluster_id
        key_id, secret = fe.aws_credentials()
        yield AwsEnv(root, lab, nodes, fe, cluster_id, key_id, secret, offset)
    finally:
        if fe is not None:
            await fe.stop()
        await lab.close()


def poll(fn, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def error_of(fn, *args, **kwargs) -> tuple[str, str, int]:
    """Call something that must fail with a ClientError; return (code, message, HTTP status)."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"].get("Message", ""), err["ResponseMetadata"]["HTTPStatusCode"]


def store_state(kms, store_id: str) -> str:
    return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]["ConnectionState"]


def key_arn(key_id: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


def recent(when: dt.datetime, *, around: float = 0.0) -> bool:
    """A timestamp boto3 parsed (tz-aware) that is about ``around`` seconds from now."""
    return when.tzinfo is not None and abs(when.timestamp() - time.time() - around) < 120


# ---------------------------------------------------------------- raw HTTP (for what boto3 never sends)


def send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sign(url: str, key_id: str, secret: str, target: str, body: bytes = b"{}", *, when: dt.datetime | None = None,
         region: str = REGION, extra: dict[str, str] | None = None, content_type: str = JSON_11) -> dict[str, str]:
    """Headers of a request signed by botocore's SigV4Auth (optionally at a frozen time)."""
    request = AWSRequest(method="POST", url=url + "/", data=body,
                         headers={"Content-Type": content_type, "X-Amz-Target": target, **(extra or {})})
    frozen = (mock.patch("botocore.auth.get_current_datetime", return_value=when) if when is not None
              else contextlib.nullcontext())
    with frozen:
        SigV4Auth(Credentials(key_id, secret), "kms", region).add_auth(request)
    return dict(request.headers.items())


def signed(env: AwsEnv, target: str, body: bytes = b"{}", *, secret: str | None = None, **kwargs) -> dict[str, str]:
    return sign(env.url, env.access_key_id, secret or env.secret_access_key, target, body, **kwargs)


# ---------------------------------------------------------------- key store lifecycle (first)


def test_create_describe_and_connect_a_custom_key_store(env):
    kms = env.client()
    anchor = env.lab.anchor.cert_pem
    store_id = kms.create_custom_key_store(CustomKeyStoreName="aws-store", CloudHsmClusterId=env.cluster_id,
                                           TrustAnchorCertificate=anchor, KeyStorePassword=CU_PASSWORD)["CustomKeyStoreId"]
    assert store_id.startswith("cks-")
    env.store_id = store_id
    # AWS's idempotent retry: identical properties, store still DISCONNECTED -> the same id
    again = kms.create_custom_key_store(CustomKeyStoreName="aws-store", CloudHsmClusterId=env.cluster_id,
                                        TrustAnchorCertificate=anchor, KeyStorePassword=CU_PASSWORD)
    assert again["CustomKeyStoreId"] == store_id

    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert entry["CustomKeyStoreName"] == "aws-store" and entry["CloudHsmClusterId"] == env.cluster_id
    assert entry["TrustAnchorCertificate"] == anchor and entry["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert entry["ConnectionState"] == "DISCONNECTED" and "ConnectionErrorCode" not in entry
    assert recent(entry["CreationDate"])
    assert kms.describe_custom_key_stores(CustomKeyStoreName="aws-store")["CustomKeyStores"][0][
        "CustomKeyStoreId"] == store_id
    listed = kms.describe_custom_key_stores()
    assert [s["CustomKeyStoreId"] for s in listed["CustomKeyStores"]] == [store_id] and listed["Truncated"] is False

    with pytest.raises(kms.exceptions.CustomKeyStoreNotFoundException):
        kms.describe_custom_key_stores(CustomKeyStoreId="cks-00000000000000000")
    with pytest.raises(kms.exceptions.CustomKeyStoreNameInUseException):
        kms.create_custom_key_store(CustomKeyStoreName="aws-store", CloudHsmClusterId=env.cluster_id,
                                    TrustAnchorCertificate=anchor, KeyStorePassword="otherPassword1")
    with pytest.raises(kms.exceptions.CloudHsmClusterNotFoundException):
        kms.create_custom_key_store(CustomKeyStoreName="nowhere", CloudHsmClusterId="cluster-234567abcdefg",
                                    TrustAnchorCertificate=anchor, KeyStorePassword=CU_PASSWORD)
    with pytest.raises(kms.exceptions.CustomKeyStoreInvalidStateException):
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)  # already DISCONNECTED
    with pytest.raises(kms.exceptions.CustomKeyStoreInvalidStateException):  # keys only in a CONNECTED store
        kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)

    assert kms.connect_custom_key_store(CustomKeyStoreId=store_id)["ResponseMetadata"]["HTTPStatusCode"] == 200
    poll(lambda: store_state(kms, store_id) == "CONNECTED", what="store CONNECTED")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # connecting a connected store is a no-op

    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="aws-store-renamed")
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreName="aws-store-renamed")["CustomKeyStores"]
    assert entry["CustomKeyStoreId"] == store_id and entry["ConnectionState"] == "CONNECTED"
    code, message, status = error_of(kms.update_custom_key_store, CustomKeyStoreId=store_id,
                                     KeyStorePassword="newPassword1")
    assert (code, status) == ("CustomKeyStoreInvalidStateException", 400)
    assert "CONNECTED" in message and "DISCONNECTED" in message


# ---------------------------------------------------------------- keys, aliases, tags, policies


def test_key_lifecycle_aliases_tags_and_policies(env):
    kms = env.client()
    md = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.store_id, Description="main key",
                        Tags=[{"TagKey": "team", "TagValue": "crypto"}])["KeyMetadata"]
    key_id = md["KeyId"]
    env.keys["main"] = key_id
    assert md["Arn"] == key_arn(key_id) and md["AWSAccountId"] == ACCOUNT
    assert (md["KeyState"], md["Enabled"], md["Origin"], md["KeyManager"]) == ("Enabled", True, "AWS_CLOUDHSM",
                                                                               "CUSTOMER")
    assert md["CustomKeyStoreId"] == env.store_id and md["CloudHsmClusterId"] == env.cluster_id
    assert (md["KeySpec"], md["CustomerMasterKeySpec"], md["KeyUsage"]) == ("SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT",
                                                                            "ENCRYPT_DECRYPT")
    assert md["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"] and md["MultiRegion"] is False
    assert md["Description"] == "main key" and recent(md["CreationDate"]) and "DeletionDate" not in md
    other = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.store_id)["KeyMetadata"]["KeyId"]
    env.keys["other"] = other

    assert kms.describe_key(KeyId=key_arn(key_id))["KeyMetadata"]["KeyId"] == key_id
    listed = [k["KeyId"] for page in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1})
              for k in page["Keys"]]
    assert set(listed) >= {key_id, other}
    first = kms.list_keys(Limit=1)
    assert first["Truncated"] is True and first["NextMarker"] and len(first["Keys"]) == 1

    # aliases
    kms.create_alias(AliasName="alias/aws-main", TargetKeyId=key_id)
    assert kms.describe_key(KeyId="alias/aws-main")["KeyMetadata"]["KeyId"] == key_id
    assert kms.describe_key(KeyId=f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws-main")["KeyMetadata"]["KeyId"] == key_id
    [alias] = kms.list_aliases(KeyId=key_id)["Aliases"]
    assert alias["AliasName"] == "alias/aws-main" and alias["TargetKeyId"] == key_id
    assert alias["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws-main" and recent(alias["CreationDate"])
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName="alias/aws-main", TargetKeyId=other)
    kms.create_alias(AliasName="alias/aws-moving", TargetKeyId=key_id)
    kms.update_alias(AliasName="alias/aws-moving", TargetKeyId=other)
    assert kms.describe_key(KeyId="alias/aws-moving")["KeyMetadata"]["KeyId"] == other
    kms.delete_alias(AliasName="alias/aws-moving")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId="alias/aws-moving")

    # tags
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "test"}, {"TagKey": "empty", "TagValue": ""}])
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags == {"team": "crypto", "env": "test", "empty": ""}
    kms.untag_resource(KeyId=key_id, TagKeys=["env", "never-there"])
    assert {t["TagKey"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]} == {"team", "empty"}
    with pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])

    # description and policies
    kms.update_key_description(KeyId=key_id, Description="renamed")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "renamed"
    assert kms.list_key_policies(KeyId=key_id)["PolicyNames"] == ["default"]
    policy = kms.get_key_policy(KeyId=key_id, PolicyName="default")
    assert policy["PolicyName"] == "default"
    assert json.loads(policy["Policy"])["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    new_policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "all", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
        "Resource": "*"}]})
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=new_policy)
    assert json.loads(kms.get_key_policy(KeyId=key_id)["Policy"]) == json.loads(new_policy)
    with pytest.raises(kms.exceptions.MalformedPolicyDocumentException):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy="{not json")

    # enable / disable
    kms.disable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(kms.exceptions.DisabledException, match="is disabled"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    kms.enable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is True

    # schedule / cancel deletion
    doomed = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=env.store_id)["KeyMetadata"]["KeyId"]
    r = kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    assert r["KeyId"] == key_arn(doomed) and r["KeyState"] == "PendingDeletion" and r["PendingWindowInDays"] == 7
    assert recent(r["DeletionDate"], around=7 * DAY)
    md = kms.describe_key(KeyId=doomed)["KeyMetadata"]
    assert md["KeyState"] == "PendingDeletion" and md["DeletionDate"] == r["DeletionDate"]
    with pytest.raises(kms.exceptions.KMSInvalidStateException, match="is pending deletion"):
        kms.encrypt(KeyId=doomed, Plaintext=b"x")
    assert kms.cancel_key_deletion(KeyId=doomed)["KeyId"] == key_arn(doomed)
    assert kms.describe_key(KeyId=doomed)["KeyMetadata"]["KeyState"] == "Disabled"  # AWS: cancel -> Disabled
    with pytest.raises(kms.exceptions.KMSInvalidStateException, match="is not pending deletion"):
        kms.cancel_key_deletion(KeyId=doomed)
    env.keys["doomed"] = doomed

    # not for keys in a CloudHSM key store
    for call in (lambda: kms.enable_key_rotation(KeyId=key_id), lambda: kms.get_key_rotation_status(KeyId=key_id),
                 lambda: kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                       WrappingKeySpec="RSA_2048")):
        code, message, _ = error_of(call)
        assert code == "UnsupportedOperationException" and "AWS_CLOUDHSM" in message

    with pytest.raises(kms.exceptions.NotFoundException, match="does not exist"):
        kms.describe_key(KeyId="1234abcd-12ab-34cd-56ef-1234567890ab")


# ---------------------------------------------------------------- crypto


def test_crypto_with_encryption_context(env):
    kms = env.client()
    main, other = env.keys["main"], env.keys["other"]
    context = {"tenant": "acme", "purpose": "aws-endpoint-test"}
    enc = kms.encrypt(KeyId="alias/aws-main", Plaintext=b"hello over AWS JSON", EncryptionContext=context)
    assert enc["KeyId"] == key_arn(main) and enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = enc["CiphertextBlob"]
    assert isinstance(blob, bytes) and b"hello" not in blob

    dec = kms.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(list(context.items()))))
    assert dec["Plaintext"] == b"hello over AWS JSON" and dec["KeyId"] == key_arn(main)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=key_arn(main))["Plaintext"] == dec[
        "Plaintext"]
    for wrong in ({}, {"tenant": "acme"}, {"tenant": "ACME", "purpose": "aws-endpoint-test"}):
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=other)
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob[:-1] + bytes([blob[-1] ^ 1]), EncryptionContext=context)

    re = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=context, DestinationKeyId=other,
                        DestinationEncryptionContext={"moved": "yes"})
    assert re["SourceKeyId"] == key_arn(main) and re["KeyId"] == key_arn(other)
    moved = kms.decrypt(CiphertextBlob=re["CiphertextBlob"], EncryptionContext={"moved": "yes"})
    assert moved["Plaintext"] == b"hello over AWS JSON" and moved["KeyId"] == key_arn(other)

    dk = kms.generate_data_key(KeyId=main, KeySpec="AES_256", EncryptionContext={"dk": "1"})
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == key_arn(main)
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"dk": "1"})["Plaintext"] == dk[
        "Plaintext"]
    assert len(kms.generate_data_key(KeyId=main, NumberOfBytes=64)["Plaintext"]) == 64
    wp = kms.generate_data_key_without_plaintext(KeyId=main, KeySpec="AES_128")
    assert "Plaintext" not in wp and len(kms.decrypt(CiphertextBlob=wp["CiphertextBlob"])["Plaintext"]) == 16
    code, message, _ = error_of(kms.generate_data_key, KeyId=main)
    assert (code, message) == ("ValidationException", "Please specify either number of bytes or key spec.")

    assert len(kms.generate_random(NumberOfBytes=32)["Plaintext"]) == 32
    assert len(kms.generate_random(NumberOfBytes=17, CustomKeyStoreId=env.store_id)["Plaintext"]) == 17
    with pytest.raises(kms.exceptions.CustomKeyStoreNotFoundException):
        kms.generate_random(NumberOfBytes=8, CustomKeyStoreId="cks-00000000000000000")

    code, _, status = error_of(kms.encrypt, KeyId=main, Plaintext=b"x", DryRun=True)
    assert (code, status) == ("DryRunOperationException", 412)


def test_what_a_cloudhsm_key_store_key_cannot_do_is_refused_as_aws_refuses_it(env):
    """Operations for asymmetric, HMAC, imported or multi-Region keys: the key is looked up (an
    alias where AWS takes one) and the caller authorized first, then the reason it cannot be."""
    kms = env.client()
    main = env.keys["main"]
    arn, unknown = key_arn(main), "00000000-0000-0000-0000-000000000000"
    usage = f"{arn} key usage is ENCRYPT_DECRYPT which is not valid for"
    for call, args in ((kms.sign, dict(Message=b"m", SigningAlgorithm="ECDSA_SHA_256")),
                       (kms.verify, dict(Message=b"m", Signature=b"s", SigningAlgorithm="ECDSA_SHA_256")),
                       (kms.generate_mac, dict(Message=b"m", MacAlgorithm="HMAC_SHA_256")),
                       (kms.verify_mac, dict(Message=b"m", Mac=b"x" * 32, MacAlgorithm="HMAC_SHA_256")),
                       (kms.derive_shared_secret, dict(KeyAgreementAlgorithm="ECDH", PublicKey=b"p" * 32))):
        for ref in (main, "alias/aws-main"):
            code, message, status = error_of(call, KeyId=ref, **args)
            assert (code, status) == ("InvalidKeyUsageException", 400) and message.startswith(usage), (call, message)
        assert error_of(call, KeyId=unknown, **args)[0] == "NotFoundException"
    code, message, _ = error_of(kms.get_public_key, KeyId="alias/aws-main")
    assert code == "UnsupportedOperationException" and message.startswith(f"{arn} key spec is SYMMETRIC_DEFAULT")
    for call in (kms.generate_data_key_pair, kms.generate_data_key_pair_without_plaintext):
        code, message, _ = error_of(call, KeyId=main, KeyPairSpec="RSA_2048")
        assert code == "UnsupportedOperationException" and "custom key store" in message
    origin = f"{arn} origin is AWS_CLOUDHSM which is not valid for this operation"
    for call in (kms.rotate_key_on_demand, kms.list_key_rotations, kms.delete_imported_key_material):
        assert error_of(call, KeyId=main)[:2] == ("UnsupportedOperationException", origin)
        assert error_of(call, KeyId=unknown)[0] == "NotFoundException"
    code, message, _ = error_of(kms.replicate_key, KeyId=main, ReplicaRegion="us-west-2")
    assert code == "UnsupportedOperationException" and "not a multi-Region key" in message
    code, message, _ = error_of(kms.update_primary_region, KeyId=main, PrimaryRegion="us-west-2")
    assert code == "UnsupportedOperationException" and "not a multi-Region key" in message
    assert kms.describe_key(KeyId=main)["KeyMetadata"]["KeyState"] == "Enabled"   # nothing changed


# ---------------------------------------------------------------- request checks from the KMS model


def test_model_validation_and_protocol_errors(env):
    kms = env.client(validate=False, retries=1)  # let bad input reach the server

    def validation(call, **kwargs) -> str:
        code, message, status = error_of(call, **kwargs)
        assert (code, status) == ("ValidationException", 400), message
        return message

    main = env.keys["main"]
    assert validation(kms.encrypt, KeyId=main, Plaintext=b"x" * 4097) == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096")
    assert validation(kms.generate_random, NumberOfBytes=1025) == (
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024")
    assert validation(kms.generate_data_key, KeyId=main, KeySpec="AES_512") == (
        "1 validation error detected: Value 'AES_512' at 'keySpec' failed to satisfy constraint: "
        "Member must satisfy enum value set: [AES_256, AES_128]")
    assert validation(kms.describe_key) == (
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
    message = validation(kms.create_custom_key_store, CustomKeyStoreName="x", CloudHsmClusterId="cluster-1",
                         KeyStorePassword="short")
    assert message.startswith("3 validation errors detected: ")
    assert ("Value 'cluster-1' at 'cloudHsmClusterId' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: cluster-[2-7a-zA-Z]{11,16}") in message
    assert ("Value '***' at 'keyStorePassword' failed to satisfy constraint: Member must have length greater than "
            "or equal to 7") in message and "short" not in message
    assert validation(kms.tag_resource, KeyId=main, Tags=[{"TagKey": "", "TagValue": "v"}]) == (
        "1 validation error detected: Value '' at 'tags.1.member.tagKey' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1")
    assert "at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10" in (
        validation(kms.encrypt, KeyId=main, Plaintext=b"x", GrantTokens=[f"t{i}" for i in range(11)]))
    assert "Member must have value greater than or equal to 7" in validation(
        kms.schedule_key_deletion, KeyId=main, PendingWindowInDays=3)  # model allows 1..365, the service 7..30

    # what botocore never sends: malformed JSON, wrong JSON types, unknown or missing targets
    def raw(target: str, body: bytes, **kw) -> tuple[int, dict]:
        return send(env.url, signed(env, target, body, **kw), body)

    assert raw("TrentService.GenerateRandom", b"{not json") == (400, {
        "__type": "SerializationException", "message": "The request body is not valid JSON."})
    status, doc = raw("TrentService.GenerateRandom", b'{"NumberOfBytes": "ten"}')
    assert (status, doc["__type"]) == (400, "SerializationException")
    status, doc = raw("TrentService.Encrypt", json.dumps({"KeyId": main, "Plaintext": "not base64!"}).encode())
    assert (status, doc["__type"]) == (400, "SerializationException")
    status, doc = raw("TrentService.GenerateRandom", b'{"NumberOfBytes": 4, "SomethingNew": 1}')
    assert status == 200 and len(base64.b64decode(doc["Plaintext"])) == 4  # unknown members are ignored
    for target in ("TrentService.NoSuchOperation", "DynamoDB_20120810.ListTables", ""):
        status, doc = raw(target, b"{}")
        assert (status, doc["__type"]) == (400, "UnknownOperationException"), target
    status, doc = raw("TrentService.ListKeys", b"{}", content_type="text/plain")
    assert (status, doc["__type"]) == (400, "UnknownOperationException")
    # in the KMS model but not offered by this service
    code, message, status = error_of(kms.get_key_last_usage, KeyId=main)
    assert (code, status) == ("UnsupportedOperationException", 400) and "GetKeyLastUsage" in message


# ---------------------------------------------------------------- SigV4 refusals


def test_signature_refusals(env):
    body = b"{}"
    good = signed(env, "TrentService.ListKeys", body)
    assert send(env.url, good, body)[0] == 200

    status, doc = send(env.url, {k: v for k, v in good.items() if k != "Authorization"}, body)
    assert (status, doc["__type"], doc["message"]) == (400, "MissingAuthenticationTokenException",
                                                       "Missing Authentication Token")
    status, doc = send(env.url, {**good, "Authorization": "AWS4-HMAC-SHA256 Credential"}, body)
    assert (status, doc["__type"]) == (400, "IncompleteSignatureException")
    status, doc = send(env.url, {**good, "Authorization": "AWS4-HMAC-SHA256 Signature=abc"}, body)
    assert doc["__type"] == "IncompleteSignatureException" and "requires 'Credential' parameter" in doc["message"]

    # a body changed after signing, and a signed header changed after signing
    assert send(env.url, good, b'{"Limit": 1}')[1]["__type"] == "InvalidSignatureException"
    assert send(env.url, {**good, "X-Amz-Target": "TrentService.ListAliases"}, body)[1][
        "__type"] == "InvalidSignatureException"

    # stale and future X-Amz-Date (botocore's signer with a frozen clock)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    status, doc = send(env.url, signed(env, "TrentService.ListKeys", body, when=now - dt.timedelta(minutes=6)), body)
    assert (status, doc["__type"]) == (400, "InvalidSignatureException")
    assert doc["message"].startswith("Signature expired: ") and "is now earlier than" in doc["message"]
    status, doc = send(env.url, signed(env, "TrentService.ListKeys", body, when=now + dt.timedelta(minutes=6)), body)
    assert doc["__type"] == "InvalidSignatureException" and doc["message"].startswith("Signature not yet current")
    assert send(env.url, signed(env, "TrentService.ListKeys", body, when=now - dt.timedelta(minutes=4)), body)[0] == 200

    # temporary credentials are not issued here
    status, doc = send(env.url, signed(env, "TrentService.ListKeys", body, extra={"X-Amz-Security-Token": "tok"}),
                       body)
    assert doc["__type"] == "UnrecognizedClientException"

    # what boto3 users see
    code, message, status = error_of(env.client(secret="wrong" * 8).list_keys)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    code, message, _ = error_of(env.client(access_key_id="AKIAUNKNOWNUNKNOWN00").list_keys)
    assert (code, message) == ("UnrecognizedClientException", "The security token included in the request is invalid.")
    code, message, _ = error_of(env.client(region="eu-west-1").list_keys)
    assert code == "InvalidSignatureException" and "Credential should be scoped to a valid region" in message
    assert env.secret_access_key not in env.fe.log_path.read_text()


# ---------------------------------------------------------------- AWS Encryption SDK


def test_aws_encryption_sdk_round_trip(env, tmp_path):
    aws_encryption_sdk = pytest.importorskip("aws_encryption_sdk")
    from aws_encryption_sdk.identifiers import CommitmentPolicy

    # an ordinary AWS profile whose only change is the KMS endpoint URL
    (tmp_path / "config").write_text(
        f"[profile kmslocal]\nregion = {REGION}\nservices = kmslocal\n\n"
        f"[services kmslocal]\nkms =\n  endpoint_url = {env.url}\n")
    (tmp_path / "credentials").write_text(
        f"[kmslocal]\naws_access_key_id = {env.access_key_id}\naws_secret_access_key = {env.secret_access_key}\n")
    session = botocore.session.Session(profile="kmslocal")
    session.set_config_variable("config_file", str(tmp_path / "config"))
    session.set_config_variable("credentials_file", str(tmp_path / "credentials"))

    arn = key_arn(env.keys["main"])
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[arn], botocore_session=session)
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    message = os.urandom(10_000) + b"encryption sdk over a custom key store"
    ciphertext, header = client.encrypt(source=message, key_provider=provider,
                                        encryption_context={"app": "aws-endpoint-test"})
    assert message not in ciphertext
    [edk] = header.encrypted_data_keys
    assert edk.key_provider.provider_id == "aws-kms" and edk.key_provider.key_info.decode() == arn

    fresh = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[arn], botocore_session=session)
    plaintext, decrypted_header = client.decrypt(source=ciphertext, key_provider=fresh)
    assert plaintext == message
    assert decrypted_header.encryption_context["app"] == "aws-endpoint-test"


# ---------------------------------------------------------------- AWS CLI (when installed)


def aws_cli() -> str | None:
    beside = Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


def test_aws_cli(env, tmp_path):
    aws = aws_cli()
    if aws is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    cli_env = {**os.environ, "AWS_ACCESS_KEY_ID": env.access_key_id, "AWS_SECRET_ACCESS_KEY": env.secret_access_key,
               "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_PAGER": ""}
    cli_env.pop("AWS_PROFILE", None)
    base = [aws, "--endpoint-url", env.url, "--region", REGION, "--output", "json"]
    out = subprocess.run([*base, "kms", "list-keys"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert env.keys["main"] in {k["KeyId"] for k in json.loads(out.stdout)["Keys"]}
    out = subprocess.run([*base, "kms", "describe-key", "--key-id", "alias/aws-main"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["KeyMetadata"]["KeyId"] == env.keys["main"]
    out = subprocess.run([*base, "kms", "describe-key", "--key-id", "alias/none-such"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "NotFoundException" in out.stderr


# ---------------------------------------------------------------- throttling


def burst_until(call, seen, *, workers: int = 12, timeout: float = 120.0):
    """Call ``call`` from ``workers`` threads until ``seen(result)`` holds for one result (or the
    deadline): over the store's quota however slow a loaded machine makes each call."""
    deadline = time.monotonic() + timeout
    found: list = []

    def worker() -> None:
        while not found and time.monotonic() < deadline:
            result = call()
            if seen(result):
                found.append(result)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    return found[0] if found else None


def test_throttling_is_retried_by_botocore_as_throttling(env):
    main = env.keys["main"]
    no_retry = env.client(retries=1)

    def encrypt_once():
        try:
            return no_retry.encrypt(KeyId=main, Plaintext=b"burst")
        except ClientError as exc:
            return exc.response

    seen = burst_until(encrypt_once, lambda r: "Error" in r)
    assert seen is not None, "no ThrottlingException in a burst over the store quota"
    assert seen["Error"] == {"Code": "ThrottlingException", "Message": (
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.")}
    assert seen["ResponseMetadata"]["HTTPStatusCode"] == 400

    retrying = env.client(retries=10)

    def encrypt_retrying():
        try:
            return retrying.encrypt(KeyId=main, Plaintext=b"burst")
        except ClientError as exc:  # retries spent (a burst of 12 can outlast them): try again
            return exc.response
    retried = burst_until(encrypt_retrying, lambda r: "Error" not in r and r["ResponseMetadata"]["RetryAttempts"] > 0)
    assert retried is not None  # botocore saw ThrottlingException and retried it, to a success
    time.sleep(1.2)  # refill the bucket for the tests after


# ---------------------------------------------------------------- teardown of the store (last)


def test_disconnect_delete_keys_and_the_store(env):
    kms = env.client()
    with pytest.raises(kms.exceptions.CustomKeyStoreInvalidStateException):
        kms.delete_custom_key_store(CustomKeyStoreId=env.store_id)  # still CONNECTED
    for key_id in env.keys.values():
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.disconnect_custom_key_store(CustomKeyStoreId=env.store_id)
    poll(lambda: store_state(kms, env.store_id) == "DISCONNECTED", what="store DISCONNECTED")
    assert kms.describe_key(KeyId=env.keys["main"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    code, message, _ = error_of(kms.delete_custom_key_store, CustomKeyStoreId=env.store_id)
    assert code == "CustomKeyStoreHasCMKsException" and "pending deletion" in message

    env.set_clock(8)  # the frontend's clock only: requests are still signed and checked on the wall clock
    poll(lambda: not kms.list_keys()["Keys"], what="keys deleted after their waiting period")
    assert kms.list_aliases()["Aliases"] == []
    kms.delete_custom_key_store(CustomKeyStoreId=env.store_id)
    with pytest.raises(kms.exceptions.CustomKeyStoreNotFoundException):
        kms.describe_custom_key_stores(CustomKeyStoreId=env.store_id)
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []


# ---------------------------------------------------------------- configuration


async def test_configured_access_keys_and_disabled_endpoint(tmp_path):
    keys = {"AKIDCONFIGUREDONE001": "secret-one/abc+def", "AKIDCONFIGUREDTWO002": "secret-two"}
    fe = FrontendProcess(tmp_path, [], name="configured",
                         env={"KMS_AWS_ACCESS_KEYS": ",".join(f"{k}:{v}" for k, v in keys.items())})
    off = FrontendProcess(tmp_path, [], name="disabled", env={"KMS_AWS_LISTEN": ""})
    try:
        fe.start()
        off.start()
        await fe.wait_ready()
        await off.wait_ready()
        for key_id, secret in keys.items():
            kms = boto3.client("kms", endpoint_url=fe.aws_endpoint_url, region_name=REGION,
                               aws_access_key_id=key_id, aws_secret_access_key=secret)
            assert kms.list_keys()["Keys"] == []
        assert not (fe.data_dir / "aws-credentials.json").exists()  # configured keys replace the generated pair
        stranger = boto3.client("kms", endpoint_url=fe.aws_endpoint_url, region_name=REGION,
                                aws_access_key_id="AKIDCONFIGUREDONE001", aws_secret_access_key="secret-two")
        assert error_of(stranger.list_keys)[0] == "InvalidSignatureException"
        log = fe.log_path.read_text()
        assert "AKIDCONFIGUREDONE001" in log and "secret-one" not in log and "secret-two" not in log

        # with the AWS endpoint off, gRPC calls are still signed: the account root's pair is generated
        assert (off.data_dir / "aws-credentials.json").exists()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(off.aws_endpoint_url + "/", data=b"{}", timeout=5)
    finally:
        await fe.stop()
        await off.stop()
    assert fe.proc is not None and fe.proc.returncode == 0  # SIGTERM: both servers drained, clean exit
    assert fe.proc.returncode != -signal.SIGKILL


async def test_generated_credentials_file_is_private_and_stable_and_sigterm_drains(tmp_path):
    metrics_port = free_port()
    fe = FrontendProcess(tmp_path, [], name="generated", env={"KMS_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"})
    try:
        fe.start()
        await fe.wait_ready()
        path = fe.data_dir / "aws-credentials.json"
        assert path.stat().st_mode & 0o777 == 0o600
        first = fe.aws_credentials()
        assert first[0].startswith("AKIA") and len(first[0]) == 20 and len(first[1]) == 40
        log = fe.log_path.read_text()
        assert str(path) in log and first[0] in log and first[1] not in log
        await fe.restart()
        assert fe.aws_credentials() == first  # kept across restarts
        kms = boto3.client("kms", endpoint_url=fe.aws_endpoint_url, region_name=REGION,
                           aws_access_key_id=first[0], aws_secret_access_key=first[1])
        assert kms.list_keys()["Truncated"] is False

        # SIGTERM with a request in flight (its body half sent): no new connections, the request
        # still gets its answer, then the process exits cleanly.
        body = b'{"NumberOfBytes": 16}'
        headers = sign(fe.aws_endpoint_url, *first, "TrentService.GenerateRandom", body)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with socket.create_connection(("127.0.0.1", fe.aws_port), timeout=15) as conn:
            conn.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{fe.aws_port}\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body[:5])
            await wait_until(lambda: aws_in_flight(metrics_port) == 1, timeout=10,
                             what="the half-sent request to be in the handler")
            fe.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # the listening socket closes first ...
                try:
                    socket.create_connection(("127.0.0.1", fe.aws_port), timeout=2).close()
                except OSError:
                    break
                assert time.monotonic() < deadline, "the endpoint still accepts connections after SIGTERM"
                time.sleep(0.05)
            assert fe.proc.poll() is None  # ... while the process drains the request in flight
            conn.sendall(body[5:])
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", response
        assert len(base64.b64decode(json.loads(rest.partition(b"\r\n\r\n")[2])["Plaintext"])) == 16
        assert fe.proc.wait(timeout=20) == 0
    finally:
        await fe.stop()


def aws_in_flight(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    line = next((x for x in text.splitlines() if x.startswith('kms_requests_in_flight{api="aws"}')), None)
    return float(line.rsplit(" ", 1)[1]) if line else -1.0
