"""Key deletion end to end (AWS KMS Developer Guide: "Deleting AWS KMS keys", and the
orphaned key material of a CloudHSM key store) with the frontend's injectable clock
(KMS_CLOCK_OFFSET_FILE) and a fast deletion sweep: metadata and aliases go, the backing key goes
from the HSM, the audit log records a DeleteKey event with the per-handle outcome; a deletion
while the store is disconnected fails on the HSM side (FAILURE) and leaves orphaned key material
that KmsAdmin.ListOrphanedKeyMaterial finds and removes; DeleteCustomKeyStore is refused while
any key, even one pending deletion, remains."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from protos.kms.v1 import kms_pb2 as k
from tests.harness import wait_until
from tests.integration.test_keys_common import CALL_TIMEOUT, KmsEnv, alias_arn, expect, key_arn, start_env

DAY = 86_400


@pytest.fixture(scope="module")
async def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("deletion")
    offset = root / "clock-offset"
    offset.write_text("0")
    e = await start_env(root, fe_env={"KMS_CLOCK_OFFSET_FILE": str(offset), "KMS_SWEEP_INTERVAL": "0.2"})
    e.offset_file = offset
    yield e
    await e.close()


def set_clock(env: KmsEnv, days: float) -> None:
    """Move the frontend's clock to now + ``days`` (atomically, so it never reads half a file)."""
    path: Path = env.offset_file  # type: ignore[attr-defined]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(days * DAY))
    os.replace(tmp, path)


async def gone(env: KmsEnv, key_id: str) -> bool:
    await expect(env.kms.DescribeKey(k.DescribeKeyRequest(key_id=key_id)), "NotFoundException",
                 f"Key '{key_arn(key_id)}' does not exist")
    return True


async def create_tracked(env: KmsEnv, **fields) -> tuple[k.KeyMetadata, int]:
    """CreateKey, returning the metadata and the handle of the new kmsuser-owned key in the HSM."""
    before = await env.kmsuser_handles_anywhere()
    md = await env.create_key(**fields)
    new = await env.kmsuser_handles_anywhere() - before
    assert len(new) == 1, new
    return md, new.pop()


async def deletion_event(env: KmsEnv, key_id: str) -> dict:
    # The metadata goes first, the backing key after it: the event with its outcome follows.
    await wait_until(lambda: env.audit_events(key_id), timeout=20, what=f"the DeleteKey audit event of {key_id}")
    events = await env.audit_events(key_id)
    assert len(events) == 1, events
    e = events[0]
    assert e.event == "DeleteKey" and e.key_id == key_id and e.custom_key_store_id == env.store_id
    return json.loads(e.details_json)


async def test_scheduled_deletion_deletes_key_aliases_and_backing_key(env):
    kms = env.kms
    md, handle = await create_tracked(env, description="to be deleted")
    keeper, keeper_handle = await create_tracked(env, description="stays")
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/doomed-1", target_key_id=md.key_id), timeout=CALL_TIMEOUT)
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/doomed-2", target_key_id=md.key_id), timeout=CALL_TIMEOUT)
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/keeper", target_key_id=keeper.key_id),
                          timeout=CALL_TIMEOUT)
    blob = (await env.encrypt(md.key_id, b"gone soon")).ciphertext_blob
    r = await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id, pending_window_in_days=7),
                                      timeout=CALL_TIMEOUT)
    assert r.key_state == "PendingDeletion" and r.pending_window_in_days == 7

    set_clock(env, 6.9)  # not yet: the window has not ended
    described = await env.describe(md.key_id)
    assert described.key_state == "PendingDeletion" and described.deletion_date == r.deletion_date
    assert await env.audit_events(md.key_id) == []

    set_clock(env, 8)
    await wait_until(lambda: gone(env, md.key_id), timeout=20, what="the key to be deleted")
    assert md.key_id not in await env.list_all_keys()
    names = {a.alias_name for a in (await kms.ListAliases(k.ListAliasesRequest(), timeout=CALL_TIMEOUT)).aliases}
    assert "alias/doomed-1" not in names and "alias/doomed-2" not in names and "alias/keeper" in names
    await expect(kms.DescribeKey(k.DescribeKeyRequest(key_id="alias/doomed-1")), "NotFoundException",
                 f"Alias {alias_arn('alias/doomed-1')} is not found.")
    await expect(kms.Decrypt(k.DecryptRequest(ciphertext_blob=blob)), "InvalidCiphertextException")
    # the alias names are free again
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/doomed-1", target_key_id=keeper.key_id),
                          timeout=CALL_TIMEOUT)

    async def material_gone() -> bool:
        return handle not in await env.kmsuser_handles(env.nodes[2])
    await wait_until(material_gone, timeout=20, what="the backing key to leave the HSMs")
    assert keeper_handle in await env.kmsuser_handles()

    details = await deletion_event(env, md.key_id)
    assert details["keyArn"] == md.arn and details["clusterId"] == env.cluster_id
    assert details["backingKeys"] == [{"keyHandle": handle, "backingKeyId": md.key_id}]
    assert details["backingKeysDeletionStatus"] == [
        {"keyHandle": handle, "backingKeyId": md.key_id, "deletionStatus": "SUCCESS"}]
    # the other key is untouched
    assert (await env.describe(keeper.key_id)).key_state == "Enabled"
    assert (await env.decrypt((await env.encrypt("alias/keeper", b"still here")).ciphertext_blob)).plaintext \
        == b"still here"


async def test_deletion_while_disconnected_leaves_an_orphan_that_admin_cleans(env):
    kms = env.kms
    md, handle = await create_tracked(env, description="deleted while disconnected")
    survivor, survivor_handle = await create_tracked(env, description="pending, 30 days")
    await kms.CreateAlias(k.CreateAliasRequest(alias_name="alias/orphan-to-be", target_key_id=md.key_id),
                          timeout=CALL_TIMEOUT)
    await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=md.key_id, pending_window_in_days=7),
                                  timeout=CALL_TIMEOUT)  # clock is at +8 days: due at +15
    await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=survivor.key_id, pending_window_in_days=30),
                                  timeout=CALL_TIMEOUT)  # due at +38
    # nothing is orphaned yet
    r = await env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id),
                                                timeout=CALL_TIMEOUT)
    assert list(r.orphans) == []

    await env.disconnect()
    assert await env.key_state(md.key_id) == "PendingDeletion"  # sticks while disconnected
    await expect(env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id)),
                 "CustomKeyStoreInvalidStateException")
    set_clock(env, 16)
    await wait_until(lambda: gone(env, md.key_id), timeout=20, what="the key to be deleted while disconnected")
    details = await deletion_event(env, md.key_id)
    assert details["backingKeysDeletionStatus"] == [
        {"keyHandle": handle, "backingKeyId": md.key_id, "deletionStatus": "FAILURE"}]
    names = {a.alias_name for a in (await kms.ListAliases(k.ListAliasesRequest(), timeout=CALL_TIMEOUT)).aliases}
    assert "alias/orphan-to-be" not in names
    assert handle in await env.kmsuser_handles()  # the material is still in the cluster
    assert (await env.describe(survivor.key_id)).key_state == "PendingDeletion"

    # DeleteCustomKeyStore: refused while keys remain, even if only pending deletion
    await expect(kms.DeleteCustomKeyStore(k.DeleteCustomKeyStoreRequest(custom_key_store_id=env.store_id)),
                 "CustomKeyStoreHasCMKsException", contains=env.store_id)

    await env.connect()
    r = await env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id),
                                                timeout=CALL_TIMEOUT)
    assert [(o.key_handle, o.label, o.outcome) for o in r.orphans] == [(handle, md.arn, "FOUND")]
    assert handle in await env.kmsuser_handles()  # listing alone deletes nothing
    r = await env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id,
                                                                                 delete=True), timeout=CALL_TIMEOUT)
    assert [(o.key_handle, o.label, o.outcome) for o in r.orphans] == [(handle, md.arn, "DELETED")]

    async def material_gone() -> bool:
        return handle not in await env.kmsuser_handles(env.nodes[1])
    await wait_until(material_gone, timeout=20, what="the orphan to leave the HSMs")
    r = await env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id),
                                                timeout=CALL_TIMEOUT)
    assert list(r.orphans) == []
    assert survivor_handle in await env.kmsuser_handles()  # live keys' material is never an orphan
    await expect(env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(
        custom_key_store_id="cks-0123456789abcdef0")), "CustomKeyStoreNotFoundException")


async def test_concurrent_create_key_survives_the_sweep(env):
    """The sweep that settles keys a crash left in Creating runs every 0.2 s here; it must not
    drop the record of a CreateKey still in progress (which then failed with an internal error
    and left its backing key behind as an orphan)."""
    before = await env.kmsuser_handles_anywhere()
    results = await asyncio.gather(*(env.create_key(description=f"race {i}") for i in range(40)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    for md in results:
        assert (await env.describe(md.key_id)).key_state == "Enabled"
    assert len(await env.kmsuser_handles_anywhere() - before) == 40
    r = await env.admin.ListOrphanedKeyMaterial(k.ListOrphanedKeyMaterialRequest(custom_key_store_id=env.store_id),
                                                timeout=CALL_TIMEOUT)
    assert list(r.orphans) == []


async def test_store_can_be_deleted_once_its_keys_are_gone(env):
    kms = env.kms
    remaining = await env.list_all_keys()
    for key_id in remaining:
        if await env.key_state(key_id) != "PendingDeletion":
            await kms.ScheduleKeyDeletion(k.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7),
                                          timeout=CALL_TIMEOUT)
    await env.disconnect()
    await expect(kms.DeleteCustomKeyStore(k.DeleteCustomKeyStoreRequest(custom_key_store_id=env.store_id)),
                 "CustomKeyStoreHasCMKsException", contains=env.store_id)
    await env.connect()  # keep it connected until the deletion dates, as AWS recommends
    set_clock(env, 60)

    async def all_gone() -> bool:
        return await env.list_all_keys() == []
    await wait_until(all_gone, timeout=20, what="every key to be deleted")
    for key_id in remaining:
        statuses = (await deletion_event(env, key_id))["backingKeysDeletionStatus"]
        assert [s["deletionStatus"] for s in statuses] == ["SUCCESS"]
    await wait_until(lambda: _no_kmsuser_keys(env), timeout=20, what="the cluster to hold no kmsuser keys")
    await env.disconnect()
    await kms.DeleteCustomKeyStore(k.DeleteCustomKeyStoreRequest(custom_key_store_id=env.store_id), timeout=CALL_TIMEOUT)
    await expect(kms.DescribeCustomKeyStores(k.DescribeCustomKeyStoresRequest(custom_key_store_id=env.store_id)),
                 "CustomKeyStoreNotFoundException")


async def _no_kmsuser_keys(env: KmsEnv) -> bool:
    return await env.kmsuser_handles() == set()

