"""The catalogue keeps the keys the periodic sweeps act on (Creating, PendingDeletion) apart, so a
sweep a second does not scan every key; the set follows every write."""
from __future__ import annotations

import os

import pytest

from kms_frontend.secret_box import SecretBox
from kms_frontend.service.catalog import Catalog
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.store import CustomKeyStoreRecord, KeyRecord, KeyState, SqliteRepository

STORE = "cks-0000000000000000a"


@pytest.fixture
async def catalog(tmp_path):
    repo = SqliteRepository(tmp_path / "meta.db")
    ctx = Context(repo, SecretBox(os.urandom(32)), FrontendSettings())
    repo.create_custom_key_store(CustomKeyStoreRecord(
        custom_key_store_id=STORE, custom_key_store_name="s", cloud_hsm_cluster_id="cluster-234567abcdef",
        trust_anchor_certificate="pem", creation_date=1, sealed_password=b"x", connection_state="CONNECTED"))
    yield Catalog(ctx)
    ctx.close()


def key(n: int, state: KeyState) -> KeyRecord:
    key_id = f"00000000-0000-4000-8000-{n:012d}"
    return KeyRecord(key_id=key_id, arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}", custom_key_store_id=STORE,
                     cloud_hsm_cluster_id="cluster-234567abcdef", creation_date=1, policy="{}", key_state=state)


async def test_the_sweep_sets_follow_every_write_and_a_reload(catalog):
    creating = await catalog.create_key(key(1, KeyState.CREATING))
    enabled = await catalog.create_key(key(2, KeyState.ENABLED))
    assert [k.key_id for k in catalog.in_state(KeyState.CREATING)] == [creating.key_id]
    assert catalog.in_state(KeyState.PENDING_DELETION) == []
    await catalog.update_key(creating, key_state=KeyState.ENABLED, backing_key_handle=7)
    pending = await catalog.update_key(enabled, key_state=KeyState.PENDING_DELETION, deletion_date=5)
    assert catalog.in_state(KeyState.CREATING) == []
    assert [k.key_id for k in catalog.in_state(KeyState.PENDING_DELETION)] == [pending.key_id]
    fresh = Catalog(catalog.ctx)
    await fresh.load()  # a restart sees the same
    assert [k.key_id for k in fresh.in_state(KeyState.PENDING_DELETION)] == [pending.key_id]
    await catalog.delete_key(pending.key_id)
    assert catalog.in_state(KeyState.PENDING_DELETION) == []
