"""The key-state table ("Key states of AWS KMS keys", AWS KMS Developer Guide) row by row for Enabled, Disabled, PendingDeletion and
Unavailable keys of a CloudHSM key store, against real hsm-node processes and a real
kms-frontend: exact exception names and AWS's verbatim messages.

Unavailable is reached the AWS way, by disconnecting the store; EnableKey/DisableKey on an
Unavailable key succeed and take effect on reconnect; PendingDeletion sticks while
disconnected; CancelKeyDeletion lands in Disabled."""
from __future__ import annotations

import json

import grpc
import pytest

from protos.hsm.v1 import hsm_pb2 as h
from protos.kms.v1 import kms_pb2 as k
from tests.harness import login, wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, KmsEnv, expect, start_env

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "s", "Effect": "Allow",
                                                             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                                                             "Action": "kms:*", "Resource": "*"}]})


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    e = await start_env(tmp_path_factory.mktemp("states"))
    yield e
    await e.close()


async def new_key(env: KmsEnv, alias: str) -> tuple[k.KeyMetadata, bytes]:
    md = await env.create_key(description=alias)
    await env.kms.CreateAlias(k.CreateAliasRequest(alias_name=alias, target_key_id=md.key_id), timeout=CALL_TIMEOUT)
    blob = (await env.encrypt(md.key_id, b"made while enabled", {"purpose": "states"})).ciphertext_blob
    return md, blob


# ---------------------------------------------------------------- per-row checks


async def crypto_refused(env: KmsEnv, md: k.KeyMetadata, blob: bytes, name: str, message: str,
                         enabled_key: k.KeyMetadata, enabled_blob: bytes) -> None:
    """Encrypt / Decrypt / ReEncrypt (as source and as destination) / GenerateDataKey /
    GenerateDataKeyWithoutPlaintext on ``md`` all fail with ``name``/``message``."""
    kms = env.kms
    for ref in (md.key_id, md.arn):
        await expect(kms.Encrypt(k.EncryptRequest(key_id=ref, plaintext=b"x")), name, message)
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, encryption_context={"purpose": "states"})),
                 name, message)
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob, encryption_context={"purpose": "states"},
                                              key_id=md.arn)), name, message)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context={"purpose": "states"},
                                                  destination_key_id=enabled_key.key_id)), name, message)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=enabled_blob,
                                                  source_encryption_context={"purpose": "states"},
                                                  destination_key_id=md.key_id)), name, message)
    await expect(kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=md.key_id, key_spec="AES_256")), name, message)
    await expect(kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
        key_id=md.key_id, number_of_bytes=16)), name, message)


async def crypto_works(env: KmsEnv, md: k.KeyMetadata, blob: bytes) -> None:
    kms = env.kms
    e = await env.encrypt(md.key_id, b"hello")
    assert e.key_id == md.arn
    assert (await env.decrypt(e.ciphertext_blob)).plaintext == b"hello"
    d = await env.decrypt(blob, {"purpose": "states"}, key_id=md.arn)
    assert d.plaintext == b"made while enabled" and d.key_id == md.arn
    r = await kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=blob, source_encryption_context={"purpose": "states"},
                                               destination_key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert (await env.decrypt(r.ciphertext_blob)).plaintext == b"made while enabled"
    g = await kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=md.key_id, key_spec="AES_128"), timeout=CALL_TIMEOUT)
    assert (await env.decrypt(g.ciphertext_blob)).plaintext == g.plaintext and len(g.plaintext) == 16
    w = await kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
        key_id=md.key_id, number_of_bytes=24), timeout=CALL_TIMEOUT)
    assert len((await env.decrypt(w.ciphertext_blob)).plaintext) == 24


async def always_allowed(env: KmsEnv, md: k.KeyMetadata, alias: str) -> None:
    """DescribeKey, GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, ListResourceTags, ListAliases and
    DeleteAlias work in every key state."""
    kms = env.kms
    assert (await env.describe(md.key_id)).key_id == md.key_id
    await kms.PutKeyPolicy(k.PutKeyPolicyRequest(key_id=md.key_id, policy=POLICY), timeout=CALL_TIMEOUT)
    assert (await kms.GetKeyPolicy(k.GetKeyPolicyRequest(key_id=md.arn), timeout=CALL_TIMEOUT)).policy == POLICY
    assert list((await kms.ListKeyPolicies(k.ListKeyPoliciesRequest(key_id=md.key_id),
                                           timeout=CALL_TIMEOUT)).policy_names) == ["default"]
    await kms.ListResourceTags(k.ListResourceTagsRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    names = [a.alias_name for a in (await kms.ListAliases(k.ListAliasesRequest(key_id=md.key_id),
                                                          timeout=CALL_TIMEOUT)).aliases]
    assert alias in names
    await kms.DeleteAlias(k.DeleteAliasRequest(alias_name=alias), timeout=CALL_TIMEOUT)
    names = [a.alias_name for a in (await kms.ListAliases(k.ListAliasesRequest(key_id=md.key_id),
                                                          timeout=CALL_TIMEOUT)).aliases]
    assert alias not in names


async def editing_allowed(env: KmsEnv, md: k.KeyMetadata, other: k.KeyMetadata, alias: str) -> None:
    """CreateAlias, TagResource, UntagResource, UpdateKeyDescription, UpdateAlias (both ways)."""
    kms = env.kms
    await kms.CreateAlias(k.CreateAliasRequest(alias_name=alias, target_key_id=md.arn), timeout=CALL_TIMEOUT)
    await kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="state", tag_value="x")]),
                          timeout=CALL_TIMEOUT)
    await kms.UntagResource(k.UntagResourceRequest(key_id=md.key_id, tag_keys=["state"]), timeout=CALL_TIMEOUT)
    await kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=md.key_id, description="edited"),
                                   timeout=CALL_TIMEOUT)
    assert (await env.describe(md.key_id)).description == "edited"
    # UpdateAlias away from this key, then back onto it
    await kms.UpdateAlias(k.UpdateAliasRequest(alias_name=alias, target_key_id=other.key_id), timeout=CALL_TIMEOUT)
    await kms.UpdateAlias(k.UpdateAliasRequest(alias_name=alias, target_key_id=md.key_id), timeout=CALL_TIMEOUT)
    aliases = (await kms.ListAliases(k.ListAliasesRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)).aliases
    assert [a.alias_name for a in aliases] == [alias]


async def unsupported_ops(env: KmsEnv, md: k.KeyMetadata, rotation_error: tuple[str, str] | None = None) -> None:
    """Rotation and import: UnsupportedOperationException `<arn> origin is AWS_CLOUDHSM which is
    not valid for this operation` (rotation on a PendingDeletion key: ``rotation_error``)."""
    kms = env.kms
    unsupported = ("UnsupportedOperationException", f"{md.arn} origin is AWS_CLOUDHSM which is not valid for this operation")
    rot = rotation_error or unsupported
    await expect(kms.EnableKeyRotation(k.EnableKeyRotationRequest(key_id=md.key_id)), *rot)
    await expect(kms.DisableKeyRotation(k.DisableKeyRotationRequest(key_id=md.arn)), *rot)
    await expect(kms.GetKeyRotationStatus(k.GetKeyRotationStatusRequest(key_id=md.key_id)), *rot)
    await expect(kms.GetParametersForImport(k.GetParametersForImportRequest(
        key_id=md.key_id, wrapping_algorithm="RSAES_OAEP_SHA_256", wrapping_key_spec="RSA_2048")), *unsupported)
    await expect(kms.ImportKeyMaterial(k.ImportKeyMaterialRequest(key_id=md.key_id, import_token=b"t",
                                                                  encrypted_key_material=b"m")), *unsupported)


# ---------------------------------------------------------------- Enabled / Disabled / PendingDeletion


async def test_enabled_row(env):
    md, blob = await new_key(env, "alias/st-enabled")
    other, _ = await new_key(env, "alias/st-enabled-other")
    d = await env.describe(md.key_id)
    assert d.key_state == "Enabled" and d.enabled and not d.HasField("deletion_date")
    await crypto_works(env, md, blob)
    await always_allowed(env, md, "alias/st-enabled")
    await editing_allowed(env, md, other, "alias/st-enabled-2")
    await env.kms.EnableKey(k.EnableKeyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)  # already enabled: OK
    await expect(env.kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.key_id)),
                 "KMSInvalidStateException", f"{md.arn} is not pending deletion.")
    await unsupported_ops(env, md)
    assert await env.key_state(md.key_id) == "Enabled"
    r = await env.kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=32, custom_key_store_id=env.store_id),
                                     timeout=CALL_TIMEOUT)
    assert len(r.plaintext) == 32


async def test_disabled_row(env):
    md, blob = await new_key(env, "alias/st-disabled")
    other, other_blob = await new_key(env, "alias/st-disabled-other")
    await env.kms.DisableKey(k.DisableKeyRequest(key_id=md.arn), timeout=CALL_TIMEOUT)
    d = await env.describe("alias/st-disabled")
    assert d.key_state == "Disabled" and not d.enabled and not d.HasField("deletion_date")
    await env.kms.DisableKey(k.DisableKeyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)  # again: OK
    await crypto_refused(env, md, blob, "DisabledException", f"{md.arn} is disabled.", other, other_blob)
    await always_allowed(env, md, "alias/st-disabled")
    await editing_allowed(env, md, other, "alias/st-disabled-2")
    await expect(env.kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.arn)),
                 "KMSInvalidStateException", f"{md.arn} is not pending deletion.")
    await unsupported_ops(env, md)
    assert await env.key_state(md.key_id) == "Disabled"
    await env.kms.EnableKey(k.EnableKeyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert await env.key_state(md.key_id) == "Enabled"
    await crypto_works(env, md, blob)


async def test_pending_deletion_row(env):
    md, blob = await new_key(env, "alias/st-pd")
    other, other_blob = await new_key(env, "alias/st-pd-other")
    kms = env.kms
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/st-pd-moves", target_key_id=md.key_id),
                          timeout=CALL_TIMEOUT)
    before = await env.describe(md.key_id)
    r = await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id, pending_window_in_days=7),
                                      timeout=CALL_TIMEOUT)
    assert r.key_id == md.arn and r.key_state == "PendingDeletion" and r.pending_window_in_days == 7
    assert r.deletion_date - before.creation_date >= 7 * 86_400_000
    d = await env.describe(md.key_id)
    assert d.key_state == "PendingDeletion" and not d.enabled and d.deletion_date == r.deletion_date
    pd = f"{md.arn} is pending deletion."
    await crypto_refused(env, md, blob, "KMSInvalidStateException", pd, other, other_blob)
    for call in (kms.EnableKey(k.EnableKeyRequest(key_id=md.key_id)),
                 kms.DisableKey(k.DisableKeyRequest(key_id=md.key_id)),
                 kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id, pending_window_in_days=8)),
                 kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/st-pd-new", target_key_id=md.key_id)),
                 kms.TagResource(k.TagResourceRequest(key_id=md.key_id, tags=[k.Tag(tag_key="a", tag_value="b")])),
                 kms.UntagResource(k.UntagResourceRequest(key_id=md.key_id, tag_keys=["a"])),
                 kms.UpdateKeyDescription(k.UpdateKeyDescriptionRequest(key_id=md.key_id, description="no")),
                 # UpdateAlias onto a PendingDeletion target
                 kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/st-pd-other", target_key_id=md.key_id))):
        await expect(call, "KMSInvalidStateException", pd)
    # UpdateAlias away from a PendingDeletion source key is fine
    await kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/st-pd-moves", target_key_id=other.key_id),
                          timeout=CALL_TIMEOUT)
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/st-pd-back", target_key_id=other.key_id),
                          timeout=CALL_TIMEOUT)
    await expect(kms.UpdateAlias(k.UpdateAliasRequest(alias_name="alias/st-pd-back", target_key_id=md.arn)),
                 "KMSInvalidStateException", pd)
    d = await env.describe(md.key_id)
    assert d.description == "alias/st-pd"  # the refused UpdateKeyDescription changed nothing
    tags = await kms.ListResourceTags(k.ListResourceTagsRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert list(tags.tags) == []
    await unsupported_ops(env, md, rotation_error=("KMSInvalidStateException", pd))
    # DescribeKey, policies, ListResourceTags, ListAliases and DeleteAlias still work
    await always_allowed(env, md, "alias/st-pd")
    assert md.key_id in await env.list_all_keys()
    # CancelKeyDeletion lands in Disabled (not Enabled)
    c = await kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.arn), timeout=CALL_TIMEOUT)
    assert c.key_id == md.arn
    d = await env.describe(md.key_id)
    assert d.key_state == "Disabled" and not d.HasField("deletion_date")
    await expect(kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.key_id)),
                 "KMSInvalidStateException", f"{md.arn} is not pending deletion.")
    await crypto_refused(env, md, blob, "DisabledException", f"{md.arn} is disabled.", other, other_blob)
    await kms.EnableKey(k.EnableKeyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    await crypto_works(env, md, blob)
    # ScheduleKeyDeletion from Disabled, and the default window of 30 days
    await kms.DisableKey(k.DisableKeyRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    r = await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert r.pending_window_in_days == 30 and r.key_state == "PendingDeletion"
    await kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)
    assert await env.key_state(md.key_id) == "Disabled"


async def test_schedule_key_deletion_window_limits(env):
    md, _ = await new_key(env, "alias/st-window")
    # 0 is outside the model's 1..365 (checked first, as AWS does); 6 and 31 outside KMS's 7..30.
    for days, bound in ((6, "greater than or equal to 7"), (31, "less than or equal to 30"), (0, "greater than or equal to 1")):
        await expect(env.kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id,
                                                                              pending_window_in_days=days)),
                     "ValidationException",
                     f"1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy "
                     f"constraint: Member must have value {bound}")
    assert await env.key_state(md.key_id) == "Enabled"
    r = await env.kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id, pending_window_in_days=30),
                                          timeout=CALL_TIMEOUT)
    assert r.pending_window_in_days == 30
    await env.kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=md.key_id), timeout=CALL_TIMEOUT)


# ---------------------------------------------------------------- Unavailable (store disconnected)


async def test_unavailable_row_and_reconnect(env):
    kms = env.kms
    enabled, enabled_blob = await new_key(env, "alias/un-enabled")         # Enabled -> DisableKey while disconnected
    disabled, disabled_blob = await new_key(env, "alias/un-disabled")      # Disabled -> EnableKey while disconnected
    steady, steady_blob = await new_key(env, "alias/un-steady")            # Enabled, untouched
    pending, pending_blob = await new_key(env, "alias/un-pending")         # PendingDeletion before the disconnect
    late, _ = await new_key(env, "alias/un-late")                          # scheduled while disconnected
    other, _ = await new_key(env, "alias/un-other")
    await kms.DisableKey(k.DisableKeyRequest(key_id=disabled.key_id), timeout=CALL_TIMEOUT)
    await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=pending.key_id, pending_window_in_days=7),
                                  timeout=CALL_TIMEOUT)

    await env.disconnect()
    for md in (enabled, disabled, steady, late, other):
        d = await env.describe(md.key_id)
        assert d.key_state == "Unavailable" and not d.enabled and not d.HasField("deletion_date"), md.key_id
    assert await env.key_state(pending.key_id) == "PendingDeletion"  # F13: PendingDeletion sticks

    # crypto: F11 `<arn> is unavailable.` (ReEncrypt destination check comes first)
    un = f"{steady.arn} is unavailable."
    for ref in (steady.key_id, steady.arn, "alias/un-steady", "arn:aws:kms:us-east-1:111122223333:alias/un-steady"):
        await expect(kms.Encrypt(k.EncryptRequest(key_id=ref, plaintext=b"x")), "KMSInvalidStateException", un)
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=steady_blob, encryption_context={"purpose": "states"})),
                 "KMSInvalidStateException", un)
    await expect(kms.ReEncrypt(k.ReEncryptRequest(ciphertext_blob=steady_blob,
                                                  source_encryption_context={"purpose": "states"},
                                                  destination_key_id=steady.key_id)), "KMSInvalidStateException", un)
    await expect(kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=steady.key_id, number_of_bytes=32)),
                 "KMSInvalidStateException", un)
    await expect(kms.GenerateDataKeyWithoutPlaintext(k.GenerateDataKeyWithoutPlaintextRequest(
        key_id=steady.key_id, key_spec="AES_256")), "KMSInvalidStateException", un)
    pd = f"{pending.arn} is pending deletion."
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=pending_blob, encryption_context={"purpose": "states"})),
                 "KMSInvalidStateException", pd)
    await expect(kms.EnableKey(k.EnableKeyRequest(key_id=pending.key_id)), "KMSInvalidStateException", pd)

    # the store itself refuses CreateKey and GenerateRandom while DISCONNECTED
    await expect(kms.CreateKey(k.CreateKeyRequest(origin="AWS_CLOUDHSM", custom_key_store_id=env.store_id)),
                 "CustomKeyStoreInvalidStateException", contains="DISCONNECTED")
    await expect(kms.GenerateRandom(k.GenerateRandomRequest(number_of_bytes=8, custom_key_store_id=env.store_id)),
                 "CustomKeyStoreInvalidStateException", contains="DISCONNECTED")

    # metadata operations all work on Unavailable keys
    await always_allowed(env, steady, "alias/un-steady")
    await editing_allowed(env, steady, other, "alias/un-steady-2")
    await unsupported_ops(env, steady)
    await expect(kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=steady.key_id)),
                 "KMSInvalidStateException", f"{steady.arn} is not pending deletion.")

    # F12: EnableKey / DisableKey succeed but take effect on reconnect
    await kms.DisableKey(k.DisableKeyRequest(key_id=enabled.key_id), timeout=CALL_TIMEOUT)
    await kms.EnableKey(k.EnableKeyRequest(key_id=disabled.arn), timeout=CALL_TIMEOUT)
    assert await env.key_state(enabled.key_id) == "Unavailable"
    assert await env.key_state(disabled.key_id) == "Unavailable"

    # ScheduleKeyDeletion from Unavailable; PendingDeletion is shown at once; Cancel while disconnected
    r = await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=late.key_id, pending_window_in_days=7),
                                      timeout=CALL_TIMEOUT)
    assert r.key_state == "PendingDeletion"
    assert await env.key_state(late.key_id) == "PendingDeletion"
    await kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=late.key_id), timeout=CALL_TIMEOUT)
    assert await env.key_state(late.key_id) == "Unavailable"  # a key of a disconnected store; Disabled on reconnect

    # the backing keys in the HSM: label = key ARN, owned by kmsuser, persistent, non-extractable AES-256.
    # (AWS's manual procedure: CO resets the kmsuser password, log in as kmsuser, log out, tell KMS.)
    node = env.nodes[1]
    async with env.as_kmsuser("tempPassword77", node) as token:
        everything = set((await node.stub().FindKeys(h.FindKeysRequest(session_token=token),
                                                     timeout=CALL_TIMEOUT)).key_handles)
        for md in (enabled, disabled, steady, pending, late, other):
            found = await node.stub().FindKeys(h.FindKeysRequest(session_token=token, label=md.arn), timeout=CALL_TIMEOUT)
            assert len(found.key_handles) == 1, md.arn
            info = await node.stub().GetKeyInfo(h.KeyRequest(session_token=token, key_handle=found.key_handles[0]),
                                                timeout=CALL_TIMEOUT)
            assert info.label == md.arn
            assert info.owner_username == "kmsuser"
            assert info.key_type == "AES" and info.key_size_bytes == 32
            assert info.token and not info.extractable and info.never_extractable
            assert found.key_handles[0] in everything
        # the CO's view (findAllKeys <kmsuser>) on another node agrees

        async def co_sees_them() -> bool:
            return everything <= await env.kmsuser_handles(env.nodes[2])
        await wait_until(co_sees_them, timeout=20, what="the CO to see every backing key")
        # someone deletes the backing key of `other` behind KMS's back
        lost = (await node.stub().FindKeys(h.FindKeysRequest(session_token=token, label=other.arn),
                                           timeout=CALL_TIMEOUT)).key_handles[0]
        await node.stub().DeleteKey(h.KeyRequest(session_token=token, key_handle=lost), timeout=CALL_TIMEOUT)

    await env.connect()
    assert await env.key_state(enabled.key_id) == "Disabled"    # DisableKey took effect
    assert await env.key_state(disabled.key_id) == "Enabled"    # EnableKey took effect
    assert await env.key_state(steady.key_id) == "Enabled"      # back to its previous state
    assert await env.key_state(other.key_id) == "Enabled"
    assert await env.key_state(late.key_id) == "Disabled"       # CancelKeyDeletion lands in Disabled
    d = await env.describe(pending.key_id)
    assert d.key_state == "PendingDeletion" and d.HasField("deletion_date")
    await crypto_works(env, disabled, disabled_blob)
    await crypto_works(env, steady, steady_blob)
    # the key whose material vanished stays Enabled (the key state does not track the HSM side);
    # crypto with it fails with KMSInvalidStateException
    missing = f"{other.arn} cannot be used: its key material was not found in CloudHSM cluster {env.cluster_id}"

    async def material_missing() -> bool:
        await expect(kms.Encrypt(k.EncryptRequest(key_id=other.key_id, plaintext=b"x")), "KMSInvalidStateException",
                     contains=missing)
        return True
    await wait_until(material_missing, timeout=20, what="every node to have lost the backing key")
    await expect(kms.GenerateDataKey(k.GenerateDataKeyRequest(key_id=other.key_id, key_spec="AES_256")),
                 "KMSInvalidStateException", contains=missing)
    assert await env.key_state(other.key_id) == "Enabled"
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=enabled_blob, encryption_context={"purpose": "states"})),
                 "DisabledException", f"{enabled.arn} is disabled.")
    await kms.CancelKeyDeletion(k.CancelKeyDeletionRequest(key_id=pending.key_id), timeout=CALL_TIMEOUT)
    assert await env.key_state(pending.key_id) == "Disabled"
    await kms.EnableKey(k.EnableKeyRequest(key_id=pending.key_id), timeout=CALL_TIMEOUT)
    await crypto_works(env, pending, pending_blob)
    # a new connection rotated the kmsuser password again: the temporary one no longer works
    await expect_login_refused(node, "tempPassword77")


async def expect_login_refused(node, password: str) -> None:
    try:
        await login(node.stub(), h.CU, "kmsuser", password)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION), exc
    else:
        raise AssertionError("kmsuser login with the old temporary password succeeded")
