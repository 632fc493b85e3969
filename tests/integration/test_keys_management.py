"""CreateKey rules, DescribeKey metadata, ListKeys paging, key references, aliases, tags and
key policies for keys in a CloudHSM key store (AWS KMS Developer Guide:
"Creating KMS keys in an AWS CloudHSM key store", aliases, tags, key policies), against real
hsm-node processes and a real kms-frontend."""
from __future__ import annotations

import json
import time

import pytest

from protos.kms.v1 import kms_pb2 as k
from tests.harness import wait_until
from tests.integration.test_keys_common import (
    ACCOUNT,
    CALL_TIMEOUT,
    KmsEnv,
    alias_arn,
    expect,
    key_arn,
    start_env,
)

UNKNOWN_KEY = "00000000-1111-2222-3333-444444444444"


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    e = await start_env(tmp_path_factory.mktemp("management"))
    yield e
    await e.close()


@pytest.fixture(scope="module")
async def key(env):
    return await env.create_key(description="the shared key")


@pytest.fixture(scope="module")
async def key2(env):
    return await env.create_key(description="the second key")


# ---------------------------------------------------------------- CreateKey / DescribeKey


async def test_create_key_returns_full_metadata_and_describe_matches(env):
    before = int(time.time() * 1000)
    md = await env.create_key(description="full metadata")
    after = int(time.time() * 1000)
    assert md.aws_account_id == ACCOUNT
    assert len(md.key_id) == 36 and md.arn == key_arn(md.key_id)
    assert before - 5000 <= md.creation_date <= after + 5000
    assert md.enabled and md.key_state == "Enabled"
    assert md.description == "full metadata"
    assert md.key_usage == "ENCRYPT_DECRYPT"
    assert md.origin == "AWS_CLOUDHSM"
    assert md.custom_key_store_id == env.store_id
    assert md.cloud_hsm_cluster_id == env.cluster_id
    assert md.key_manager == "CUSTOMER"
    assert md.key_spec == "SYMMETRIC_DEFAULT" and md.customer_master_key_spec == "SYMMETRIC_DEFAULT"
    assert list(md.encryption_algorithms) == ["SYMMETRIC_DEFAULT"]
    assert list(md.signing_algorithms) == []
    assert not md.multi_region
    for absent in ("deletion_date", "valid_to", "expiration_model", "pending_deletion_window_in_days"):
        assert not md.HasField(absent), absent
    assert await env.describe(md.key_id) == md
    assert await env.describe(md.arn) == md


async def test_create_key_with_explicit_defaults_tags_and_policy(env):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "x", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
         "Resource": "*"}]})
    md = await env.create_key(key_spec="SYMMETRIC_DEFAULT", key_usage="ENCRYPT_DECRYPT",
                              customer_master_key_spec="SYMMETRIC_DEFAULT", policy=policy,
                              tags=[k.Tag(tag_key="team", tag_value="crypto"), k.Tag(tag_key="empty", tag_value="")])
    assert md.key_state == "Enabled" and md.description == ""
    tags = await env.kms.ListResourceTags(k.ListResourceTagsRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert {(t.tag_key, t.tag_value) for t in tags.tags} == {("team", "crypto"), ("empty", "")}
    got = await env.kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id, policy_name="default"), timeout=CALL_TIMEOUT)
    assert got.policy == policy and got.policy_name == "default"


async def test_create_key_rules(env):
    kms, store = env.kms, env.store_id
    count = len(await env.list_all_keys())

    async def refused(name, *, contains=None, message=None, **fields):
        await expect(kms.CreateKey(k.CreateKeyRequest(**fields)), name, message, contains=contains)

    hsm = {"origin": "AWS_CLOUDHSM", "custom_key_store_id": store}
    await refused("CustomKeyStoreNotFoundException", origin="AWS_CLOUDHSM", custom_key_store_id="cks-0123456789abcdef0",
                  contains="cks-0123456789abcdef0")
    for spec in ("RSA_2048", "ECC_NIST_P256", "HMAC_256"):
        await refused("UnsupportedOperationException", key_spec=spec, contains=spec, **hsm)
    await refused("UnsupportedOperationException", customer_master_key_spec="RSA_4096", contains="RSA_4096", **hsm)
    for usage in ("SIGN_VERIFY", "GENERATE_VERIFY_MAC"):
        await refused("UnsupportedOperationException", key_usage=usage, contains=usage, **hsm)
    await refused("UnsupportedOperationException", multi_region=True, **hsm)
    await refused("UnsupportedOperationException", origin="EXTERNAL", custom_key_store_id=store, contains="EXTERNAL")
    await refused("UnsupportedOperationException", origin="EXTERNAL")
    await refused("UnsupportedOperationException", origin="AWS_KMS")
    await refused("UnsupportedOperationException", custom_key_store_id=store)  # Origin defaults to AWS_KMS
    await refused("ValidationException", origin="AWS_CLOUDHSM")               # no CustomKeyStoreId
    await refused("ValidationException", key_spec="AES_999", custom_key_store_id=store, origin="AWS_CLOUDHSM",
                  contains="Value 'AES_999' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set")
    await refused("ValidationException", origin="SOMEWHERE", custom_key_store_id=store,
                  contains="at 'origin' failed to satisfy constraint")
    await refused("ValidationException", description="d" * 8193, **hsm,
                  message="1 validation error detected: Value '" + "d" * 1024 + "...(8193 characters)' at 'description'"
                          " failed to satisfy constraint: Member must have length less than or equal to 8192")
    await refused("MalformedPolicyDocumentException", policy="{not json", **hsm)
    await refused("LimitExceededException", policy=json.dumps({"Statement": [], "pad": "x" * 40000}), **hsm)
    await refused("TagException", tags=[k.Tag(tag_key="aws:owner", tag_value="me")], **hsm,
                  message="Tags beginning with aws: are reserved")
    await refused("LimitExceededException", tags=[k.Tag(tag_key=f"t{i}", tag_value="v") for i in range(51)], **hsm)
    # no refused request left a key behind
    assert len(await env.list_all_keys()) == count
    md = await env.create_key(description="d" * 8192, tags=[k.Tag(tag_key=f"t{i}", tag_value="v") for i in range(50)])
    assert len(md.description) == 8192


async def test_backing_key_is_created_in_the_cluster_for_kmsuser(env):
    before = await env.kmsuser_handles_anywhere()
    md = await env.create_key()
    new = await env.kmsuser_handles_anywhere() - before
    assert len(new) == 1, new

    async def on_every_node() -> bool:  # replicated to all three HSMs
        for n in env.nodes:
            if not new <= await env.kmsuser_handles(n):
                return False
        return True
    await wait_until(on_every_node, timeout=20, what="the backing key on every node")
    # the label check (label = key ARN) needs a kmsuser login: see test_keys_states
    assert md.key_state == "Enabled"


async def test_rotation_and_import_are_unsupported(env, key):
    msg = f"{key.arn} origin is AWS_CLOUDHSM which is not valid for this operation"
    for ref in (key.key_id, key.arn):
        await expect(env.kms.EnableKeyRotation(k.EnableKeyRotationRequest(key_id=ref, rotation_period_in_days=90)),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.DisableKeyRotation(k.DisableKeyRotationRequest(key_id=ref)),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.GetKeyRotationStatus(k.GetKeyRotationStatusRequest(key_id=ref)),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.GetParametersForImport(k.GetParametersForImportRequest(
            key_id=ref, wrapping_algorithm="RSAES_OAEP_SHA_256", wrapping_key_spec="RSA_2048")),
            "UnsupportedOperationException", msg)
        await expect(env.kms.ImportKeyMaterial(k.ImportKeyMaterialRequest(key_id=ref, import_token=b"t",
                                                                          encrypted_key_material=b"k")),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.RotateKeyOnDemand(k.RotateKeyOnDemandRequest(key_id=ref)),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.ListKeyRotations(k.ListKeyRotationsRequest(key_id=ref)),
                     "UnsupportedOperationException", msg)
        await expect(env.kms.DeleteImportedKeyMaterial(k.DeleteImportedKeyMaterialRequest(key_id=ref)),
                     "UnsupportedOperationException", msg)
    await expect(env.kms.EnableKeyRotation(k.EnableKeyRotationRequest(key_id=UNKNOWN_KEY)),
                 "NotFoundException", f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")


async def test_operations_for_other_kinds_of_keys_are_refused_over_grpc_too(env, key):
    """The AWS endpoint's test covers every one (test_aws_endpoint.py); here the gRPC methods."""
    usage = f"{key.arn} key usage is ENCRYPT_DECRYPT which is not valid for"
    await expect(env.kms.Sign(k.SignRequest(key_id=key.key_id, message=b"m", signing_algorithm="ECDSA_SHA_256")),
                 "InvalidKeyUsageException", f"{usage} Sign.")
    await expect(env.kms.GenerateMac(k.GenerateMacRequest(key_id=key.arn, message=b"m", mac_algorithm="HMAC_SHA_256")),
                 "InvalidKeyUsageException", f"{usage} GenerateMac.")
    await expect(env.kms.GenerateDataKeyPair(k.GenerateDataKeyPairRequest(key_id=key.key_id, key_pair_spec="RSA_2048")),
                 "UnsupportedOperationException", contains="custom key store")
    await expect(env.kms.ReplicateKey(k.ReplicateKeyRequest(key_id=key.key_id, replica_region="us-west-2")),
                 "UnsupportedOperationException", contains="not a multi-Region key")
    await expect(env.kms.Sign(k.SignRequest(key_id=UNKNOWN_KEY, message=b"m", signing_algorithm="ECDSA_SHA_256")),
                 "NotFoundException", f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    await expect(env.kms.Sign(k.SignRequest(key_id=key.key_id, message=b"m")),   # the model's checks first
                 "ValidationException", contains="signingAlgorithm")


async def test_update_key_description(env, key2):
    await env.kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=key2.arn, description="new text"),
                                       timeout=CALL_TIMEOUT)
    assert (await env.describe(key2.key_id)).description == "new text"
    await env.kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=key2.key_id, description=""),
                                       timeout=CALL_TIMEOUT)
    assert (await env.describe(key2.key_id)).description == ""


# ---------------------------------------------------------------- ListKeys


async def test_list_keys_paging(env):
    for _ in range(5):
        await env.create_key()
    everything = await env.list_all_keys()
    assert len(everything) == len(set(everything)) >= 5
    seen, marker, pages = [], None, 0
    while True:
        req = k.ListKeysRequest(limit=2)
        if marker:
            req.marker = marker
        r = await env.kms.ListKeys(req, timeout=CALL_TIMEOUT)
        pages += 1
        assert len(r.keys) <= 2
        for e in r.keys:
            assert e.key_arn == key_arn(e.key_id)
        seen += [e.key_id for e in r.keys]
        if not r.truncated:
            assert not r.HasField("next_marker")
            break
        assert len(r.keys) == 2 and r.next_marker
        marker = r.next_marker
    assert seen == everything
    assert pages == (len(everything) + 1) // 2
    r = await env.kms.ListKeys(k.ListKeysRequest(), timeout=CALL_TIMEOUT)  # default limit 100
    assert [e.key_id for e in r.keys] == everything[:100]
    await expect(env.kms.ListKeys(k.ListKeysRequest(limit=0)), "ValidationException",
                 "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
                 "Member must have value greater than or equal to 1")
    await expect(env.kms.ListKeys(k.ListKeysRequest(limit=1001)), "ValidationException",
                 "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: "
                 "Member must have value less than or equal to 1000")
    await expect(env.kms.ListKeys(k.ListKeysRequest(marker="not-a-marker")), "InvalidMarkerException")


# ---------------------------------------------------------------- key references


async def test_key_references(env, key):
    kms = env.kms
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/ref", target_key_id=key.key_id), timeout=CALL_TIMEOUT)
    refs = (key.key_id, key.arn, "alias/ref", alias_arn("alias/ref"))
    # accepted everywhere aliases are allowed
    for ref in refs:
        assert (await env.describe(ref)).key_id == key.key_id
        e = await env.encrypt(ref, b"by reference")
        assert e.key_id == key.arn
        assert (await env.decrypt(e.ciphertext_blob, key_id=ref)).plaintext == b"by reference"
        g = await kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=ref, key_spec="AES_256"), timeout=CALL_TIMEOUT)
        assert g.key_id == key.arn
        w = await kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
            key_id=ref, key_spec="AES_128"), timeout=CALL_TIMEOUT)
        assert w.key_id == key.arn
        r = await kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=e.ciphertext_blob, source_key_id=ref,
                                                   destination_key_id=ref), timeout=CALL_TIMEOUT)
        assert r.key_id == key.arn and r.source_key_id == key.arn
    # id or ARN only
    for ref in refs[:2]:
        await kms.EnableKey(k.EnableKeyRequest(key_id=ref), timeout=CALL_TIMEOUT)
        await kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=ref, description="x"), timeout=CALL_TIMEOUT)
        await kms.TagResource(k.TagResourceRequest(key_id=ref, tags=[k.Tag(tag_key="r", tag_value="1")]),
                              timeout=CALL_TIMEOUT)
        await kms.UntagResource(k.UntagResourceRequest(key_id=ref, tag_keys=["r"]), timeout=CALL_TIMEOUT)
        await kms.ListResourceTags(k.ListResourceTagsRequest(key_id=ref), timeout=CALL_TIMEOUT)
        await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=ref), timeout=CALL_TIMEOUT)
        await kms.ListKeyPolicies(k.ListKeyPoliciesRequest(key_id=ref), timeout=CALL_TIMEOUT)
        await kms.ListAliases(k.ListAliasesRequest(key_id=ref), timeout=CALL_TIMEOUT)
    for ref in refs[2:]:
        invalid = f"Invalid keyId '{ref}'"
        calls = [kms.EnableKey(k.EnableKeyRequest(key_id=ref)),
                 kms.DisableKey(k.DisableKeyRequest(key_id=ref)),
                 kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=ref)),
                 kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=ref)),
                 kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=ref, description="x")),
                 kms.TagResource(k.TagResourceRequest(key_id=ref, tags=[k.Tag(tag_key="r", tag_value="1")])),
                 kms.UntagResource(k.UntagResourceRequest(key_id=ref, tag_keys=["r"])),
                 kms.ListResourceTags(k.ListResourceTagsRequest(key_id=ref)),
                 kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=ref)),
                 kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=ref, policy='{"Statement":[]}')),
                 kms.ListKeyPolicies(k.ListKeyPoliciesRequest(key_id=ref)),
                 kms.EnableKeyRotation(k.EnableKeyRotationRequest(key_id=ref)),
                 kms.ListAliases(k.ListAliasesRequest(key_id=ref)),
                 kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/ref-to-ref", target_key_id=ref)),
                 kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/ref", target_key_id=ref))]
        for call in calls:
            await expect(call, "NotFoundException", invalid)
    assert (await env.describe(key.key_id)).key_state == "Enabled"
    # unknown and malformed references
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id=UNKNOWN_KEY)), "NotFoundException",
                 f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id=key_arn(UNKNOWN_KEY))), "NotFoundException",
                 f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id="alias/nope")), "NotFoundException",
                 f"Alias {alias_arn('alias/nope')} is not found.")
    await expect(kms.Encrypt(k.EncryptRequest(key_id=alias_arn("alias/nope"), plaintext=b"x")), "NotFoundException",
                 f"Alias {alias_arn('alias/nope')} is not found.")
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id="garbage")), "NotFoundException", "Invalid keyId 'garbage'")
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id="")), "ValidationException",
                 contains="at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1")
    other_region = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key.key_id}"
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id=other_region)), "NotFoundException")


# ---------------------------------------------------------------- aliases


async def test_alias_naming_rules(env, key):
    kms = env.kms

    async def bad(name, exc, **kw):
        await expect(kms.CreateAlias(k.CreateAliasRequest(alias_name=name, target_key_id=key.key_id)), exc, **kw)

    await bad("noprefix", "ValidationException",
              message='Alias must start with the prefix "alias/". Please see '
                      "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
    await bad("alias/", "InvalidAliasNameException")
    await bad("alias/aws/mine", "NotAuthorizedException", contains="alias/aws/mine")
    await bad("alias/with space", "ValidationException",
              message="1 validation error detected: Value 'alias/with space' at 'aliasName' failed to satisfy "
                      "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")
    await bad("alias/a:b", "ValidationException", message="alias/a:b contains invalid characters for an alias")
    await bad("alias/" + "x" * 251, "ValidationException",
              contains="at 'aliasName' failed to satisfy constraint: Member must have length less than or equal to 256")
    await bad("", "ValidationException", contains="at 'aliasName'")
    # longest legal name, case sensitivity, every allowed character
    for name in ("alias/" + "x" * 250, "alias/Case", "alias/case", "alias/a-b_c/d0"):
        await kms.CreateAlias(k.CreateAliasRequest(alias_name=name, target_key_id=key.key_id), timeout=CALL_TIMEOUT)
    names = {a.alias_name for a in (await kms.ListAliases(k.ListAliasesRequest(key_id=key.key_id),
                                                          timeout=CALL_TIMEOUT)).aliases}
    assert {"alias/Case", "alias/case", "alias/a-b_c/d0", "alias/" + "x" * 250} <= names


async def test_alias_lifecycle(env, key, key2):
    kms = env.kms
    t0 = int(time.time() * 1000) - 5000
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/life", target_key_id=key.arn), timeout=CALL_TIMEOUT)
    await expect(kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/life", target_key_id=key2.key_id)),
                 "AlreadyExistsException", f"An alias with the name {alias_arn('alias/life')} already exists")
    await expect(kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/life2", target_key_id=UNKNOWN_KEY)),
                 "NotFoundException", f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    assert (await env.encrypt("alias/life")).key_id == key.arn

    entry = next(a for a in (await kms.ListAliases(k.ListAliasesRequest(), timeout=CALL_TIMEOUT)).aliases
                 if a.alias_name == "alias/life")
    assert entry.alias_arn == alias_arn("alias/life") and entry.target_key_id == key.key_id
    assert t0 <= entry.creation_date and entry.creation_date == entry.last_updated_date

    await kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/life", target_key_id=key2.key_id), timeout=CALL_TIMEOUT)
    assert (await env.encrypt("alias/life")).key_id == key2.arn
    assert (await env.describe(alias_arn("alias/life"))).key_id == key2.key_id
    updated = next(a for a in (await kms.ListAliases(k.ListAliasesRequest(key_id=key2.key_id),
                                                     timeout=CALL_TIMEOUT)).aliases if a.alias_name == "alias/life")
    assert updated.target_key_id == key2.key_id
    assert updated.creation_date == entry.creation_date and updated.last_updated_date >= entry.last_updated_date
    assert "alias/life" not in {a.alias_name for a in (await kms.ListAliases(
        k.ListAliasesRequest(key_id=key.key_id), timeout=CALL_TIMEOUT)).aliases}
    await expect(kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/missing", target_key_id=key.key_id)),
                 "NotFoundException", f"Alias {alias_arn('alias/missing')} is not found.")
    await expect(kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/life", target_key_id=UNKNOWN_KEY)),
                 "NotFoundException", f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")

    await kms.DeleteAlias(k.DeleteAliasRequest(alias_name="alias/life"), timeout=CALL_TIMEOUT)
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id="alias/life")), "NotFoundException",
                 f"Alias {alias_arn('alias/life')} is not found.")
    await expect(kms.DeleteAlias(k.DeleteAliasRequest(alias_name="alias/life")), "NotFoundException",
                 f"Alias {alias_arn('alias/life')} is not found.")
    await expect(kms.DeleteAlias(k.DeleteAliasRequest(alias_name="alias/aws/x")), "NotAuthorizedException")
    # the name is free again
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/life", target_key_id=key.key_id), timeout=CALL_TIMEOUT)
    assert (await env.describe("alias/life")).key_id == key.key_id


async def test_list_aliases_by_key_and_paging(env):
    a = await env.create_key()
    b = await env.create_key()
    for i in range(7):
        await env.kms.CreateAlias(k.CreateAliasRequest(alias_name=f"alias/page-{i}", target_key_id=a.key_id),
                                  timeout=CALL_TIMEOUT)
    await env.kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/page-b", target_key_id=b.key_id),
                              timeout=CALL_TIMEOUT)
    seen, marker = [], None
    while True:
        req = k.ListAliasesRequest(key_id=a.arn, limit=3)
        if marker:
            req.marker = marker
        r = await env.kms.ListAliases(req, timeout=CALL_TIMEOUT)
        assert len(r.aliases) <= 3
        seen += [x.alias_name for x in r.aliases]
        if not r.truncated:
            break
        marker = r.next_marker
    assert sorted(seen) == [f"alias/page-{i}" for i in range(7)]
    r = await env.kms.ListAliases(k.ListAliasesRequest(key_id=b.key_id), timeout=CALL_TIMEOUT)
    assert [x.alias_name for x in r.aliases] == ["alias/page-b"] and not r.truncated
    empty = await env.create_key()
    r = await env.kms.ListAliases(k.ListAliasesRequest(key_id=empty.key_id), timeout=CALL_TIMEOUT)
    assert list(r.aliases) == [] and not r.truncated
    await expect(env.kms.ListAliases(k.ListAliasesRequest(key_id=UNKNOWN_KEY)), "NotFoundException")


async def test_alias_limit_per_key(env):
    md = await env.create_key()
    for i in range(50):
        await env.kms.CreateAlias(k.CreateAliasRequest(alias_name=f"alias/many-{i}", target_key_id=md.key_id),
                                  timeout=CALL_TIMEOUT)
    await expect(env.kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/many-50", target_key_id=md.key_id)),
                 "LimitExceededException")
    other = await env.create_key()
    await env.kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/many-50", target_key_id=other.key_id),
                              timeout=CALL_TIMEOUT)
    await expect(env.kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/many-50", target_key_id=md.key_id)),
                 "LimitExceededException")
    await env.kms.DeleteAlias(k.DeleteAliasRequest(alias_name="alias/many-0"), timeout=CALL_TIMEOUT)
    await env.kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/many-50", target_key_id=md.key_id),
                              timeout=CALL_TIMEOUT)


# ---------------------------------------------------------------- tags


async def list_tags(env: KmsEnv, ref: str) -> dict[str, str]:
    out, marker = {}, None
    while True:
        req = k.ListResourceTagsRequest(key_id=ref)
        if marker:
            req.marker = marker
        r = await env.kms.ListResourceTags(req, timeout=CALL_TIMEOUT)
        out.update({t.tag_key: t.tag_value for t in r.tags})
        if not r.truncated:
            return out
        marker = r.next_marker


async def test_tags(env):
    kms = env.kms
    md = await env.create_key()
    assert await list_tags(env, md.key_id) == {}
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="Env", tag_value="prod"),
                                                                       k.Tag(tag_key="env", tag_value="")]),
                          timeout=CALL_TIMEOUT)
    assert await list_tags(env, md.arn) == {"Env": "prod", "env": ""}  # case sensitive, empty value allowed
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="Env", tag_value="dev")]),
                          timeout=CALL_TIMEOUT)
    assert await list_tags(env, md.key_id) == {"Env": "dev", "env": ""}  # overwrite
    for reserved in ("aws:x", "AWS:x", "aws:"):
        await expect(kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key=reserved, tag_value="v")])),
                     "TagException", "Tags beginning with aws: are reserved")
    await expect(kms.UntagResource(k.UntagResourceRequest(key_id=md.key_id, tag_keys=["aws:x"])),
                 "TagException", "Tags beginning with aws: are reserved")
    await expect(kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="k" * 129, tag_value="v")])),
                 "ValidationException", contains="Member must have length less than or equal to 128")
    await expect(kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="", tag_value="v")])),
                 "ValidationException", contains="Member must have length greater than or equal to 1")
    await expect(kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="v", tag_value="v" * 257)])),
                 "ValidationException", contains="Member must have length less than or equal to 256")
    await expect(kms.TagResource(k.TagResourceRequest(key_id=UNKNOWN_KEY, tags=[k.Tag(tag_key="a", tag_value="b")])),
                 "NotFoundException", f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    # untag: missing keys are a silent no-op
    await kms.UntagResource(k.UntagResourceRequest(key_id=md.key_id, tag_keys=["nope", "Env"]), timeout=CALL_TIMEOUT)
    assert await list_tags(env, md.key_id) == {"env": ""}
    await kms.UntagResource(k.UntagResourceRequest(key_id=md.key_id, tag_keys=["nope"]), timeout=CALL_TIMEOUT)
    assert await list_tags(env, md.key_id) == {"env": ""}


async def test_tag_limit_and_list_paging(env):
    kms = env.kms
    md = await env.create_key()
    fifty = {f"key{i:02d}": f"value{i}" for i in range(50)}
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key=a, tag_value=b)
                                                                       for a, b in list(fifty.items())[:30]]),
                          timeout=CALL_TIMEOUT)
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key=a, tag_value=b)
                                                                       for a, b in list(fifty.items())[30:]]),
                          timeout=CALL_TIMEOUT)
    assert await list_tags(env, md.key_id) == fifty
    await expect(kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="one-more", tag_value="x")])),
                 "LimitExceededException")
    # overwriting one of the 50 is fine
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="key07", tag_value="new")]),
                          timeout=CALL_TIMEOUT)
    assert (await list_tags(env, md.key_id))["key07"] == "new"
    # paging
    pages, marker, seen = 0, None, {}
    while True:
        req = k.ListResourceTagsRequest(key_id=md.key_id, limit=20)
        if marker:
            req.marker = marker
        r = await kms.ListResourceTags(req, timeout=CALL_TIMEOUT)
        pages += 1
        assert len(r.tags) <= 20
        seen.update({t.tag_key: t.tag_value for t in r.tags})
        if not r.truncated:
            break
        marker = r.next_marker
    assert pages == 3 and len(seen) == 50
    r = await kms.ListResourceTags(k.ListResourceTagsRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert len(r.tags) == 50 and not r.truncated  # default limit 50
    await expect(kms.ListResourceTags(k.ListResourceTagsRequest(key_id=md.key_id, marker="zzz")), "InvalidMarkerException")


# ---------------------------------------------------------------- key policies


async def test_default_policy_and_put_get(env):
    kms = env.kms
    md = await env.create_key()
    got = await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert got.policy_name == "default"
    expected = {"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]}
    assert json.loads(got.policy) == expected
    assert got.policy == json.dumps(expected, separators=(",", ":"))  # the "Default key policy" of the AWS KMS Developer Guide
    r = await kms.ListKeyPolicies(k.ListKeyPoliciesRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert list(r.policy_names) == ["default"] and not r.truncated

    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]}, indent=2)
    await kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.arn, policy=policy), timeout=CALL_TIMEOUT)
    assert (await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id, policy_name="default"),
                                   timeout=CALL_TIMEOUT)).policy == policy  # stored verbatim
    await kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy_name="default", policy=policy + "\n"),
                           timeout=CALL_TIMEOUT)
    assert (await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)).policy == policy + "\n"


async def test_policy_errors(env):
    kms = env.kms
    md = await env.create_key()
    original = (await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)).policy

    async def put(policy, name, **kw):
        await expect(kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy=policy)), name, **kw)

    await put("{not json", "MalformedPolicyDocumentException")
    await put("[1, 2]", "MalformedPolicyDocumentException")
    await put('{"Version": "2012-10-17"}', "MalformedPolicyDocumentException")  # no Statement
    big = json.dumps({"Statement": [], "Id": "x" * 32768})
    await put(big, "LimitExceededException")
    await put('{"Statement": [], "x": "\u20ac"}', "ValidationException",
              contains="at 'policy' failed to satisfy constraint: Member must satisfy regular expression pattern")
    await put("", "ValidationException",
              contains="at 'policy' failed to satisfy constraint: Member must have length greater than or equal to 1")
    # exactly at the quota is accepted
    doc = json.loads(original)
    doc["Id"] = ""
    doc["Id"] = "x" * (32768 - len(json.dumps(doc)))
    at_quota = json.dumps(doc)
    assert len(at_quota) == 32768
    await kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy=at_quota), timeout=CALL_TIMEOUT)
    await kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy=original), timeout=CALL_TIMEOUT)
    await expect(kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy_name="other", policy=original)),
                 "NotFoundException")
    await expect(kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id, policy_name="other")), "NotFoundException")
    await expect(kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=UNKNOWN_KEY)), "NotFoundException",
                 f"Key '{key_arn(UNKNOWN_KEY)}' does not exist")
    assert (await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)).policy == original


@pytest.mark.parametrize("field", ["policy", "description"])
async def test_over_long_values_are_validation_errors(env, key, field):
    if field == "policy":
        call = env.kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=key.key_id, policy="x" * 131073))
        limit = 131072
    else:
        call = env.kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=key.key_id, description="d" * 20000))
        limit = 8192
    await expect(call, "ValidationException",
                 contains=f"at '{field}' failed to satisfy constraint: Member must have length less than or equal to {limit}")
