"""Two workers over one metadata file (kms_frontend/service/workers.py): what one writes, the other's
memory holds after its next look at the change counter; one too far behind (the log pruned past
it) reloads everything; a store's change reaches the connection state machine of the other."""
from __future__ import annotations

import dataclasses
import os

import pytest

from kms_frontend.secret_box import SecretBox
from kms_frontend.service.catalog import Catalog
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.service.workers import WorkerSync
from kms_frontend.store import (
    AliasRecord,
    CustomKeyStoreRecord,
    GrantRecord,
    KeyRecord,
    KeyState,
    SqliteRepository,
)
from kms_frontend.store.changes import ChangeCounter
from kms_frontend.store.repository import ConnectionState

STORE = "cks-0000000000000000a"


class FollowedStores:
    """Stands for Connections: records which store changes reached it."""

    leader = False

    def __init__(self) -> None:
        self.followed: list[tuple[str, str | None]] = []

    async def follow(self, store_id: str, store: CustomKeyStoreRecord | None) -> None:
        self.followed.append((store_id, store.connection_state if store is not None else None))


def worker(tmp_path) -> Context:
    repo = SqliteRepository(tmp_path / "meta.db", changes=ChangeCounter(tmp_path / "meta.changes"))
    return Context(repo, SecretBox(os.urandom(32)), FrontendSettings())


def key(n: int) -> KeyRecord:
    key_id = f"00000000-0000-4000-8000-{n:012d}"
    return KeyRecord(key_id=key_id, arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}", custom_key_store_id=STORE,
                     cloud_hsm_cluster_id="cluster-234567abcdef", creation_date=1, policy="{}",
                     key_state=KeyState.ENABLED)


@pytest.fixture
async def two(tmp_path):
    a, b = worker(tmp_path), worker(tmp_path)
    a.repo.create_custom_key_store(CustomKeyStoreRecord(
        custom_key_store_id=STORE, custom_key_store_name="s", cloud_hsm_cluster_id="cluster-234567abcdef",
        trust_anchor_certificate="pem", creation_date=1, sealed_password=b"x", connection_state="CONNECTED"))
    catalog_a, catalog_b, stores = Catalog(a), Catalog(b), FollowedStores()
    sync = WorkerSync(b, b.repo.changes, catalog_b, stores)  # type: ignore[arg-type]
    await sync.start()
    await catalog_a.load()
    await catalog_b.load()
    yield catalog_a, catalog_b, sync, stores
    a.close()
    b.close()


async def test_what_one_worker_writes_the_other_holds_after_its_next_look(two):
    catalog_a, catalog_b, sync, _ = two
    assert not sync.stale()
    k = await catalog_a.create_key(key(1))
    await catalog_a.update_key(k, key_state=KeyState.DISABLED)
    catalog_a.ctx.repo.create_alias(AliasRecord("alias/a", k.key_id, 1, 1))
    catalog_a.ctx.repo.create_grant(GrantRecord(
        grant_id="g" * 64, key_id=k.key_id, grantee_principal="arn:aws:iam::111122223333:root",
        operations=("Encrypt",), issuing_account="arn:aws:iam::111122223333:root", creation_date=1))
    assert sync.stale()  # one memory load told it
    await sync.catch_up()
    assert not sync.stale()
    assert catalog_b.keys[k.key_id].key_state == KeyState.DISABLED
    assert catalog_b.aliases["alias/a"].key_id == k.key_id
    assert list(catalog_b.grants[k.key_id]) == ["g" * 64]

    catalog_a.ctx.repo.delete_grant("g" * 64)
    catalog_a.ctx.repo.delete_alias("alias/a")
    await catalog_a.delete_key(k.key_id)
    await sync.catch_up()
    assert k.key_id not in catalog_b.keys and "alias/a" not in catalog_b.aliases
    assert not catalog_b.grants.get(k.key_id)


async def test_a_worker_the_log_was_pruned_past_reloads_everything(two):
    catalog_a, catalog_b, sync, stores = two
    for n in range(5):
        await catalog_a.create_key(key(n))
    assert catalog_a.ctx.repo.prune_changes(keep=1) > 0  # the leader pruned while this worker slept
    await sync.catch_up()
    assert set(catalog_b.keys) == set(catalog_a.keys)
    assert (STORE, "CONNECTED") in stores.followed  # and every store's sessions were looked at again
    assert not sync.stale()


async def test_a_store_change_reaches_the_other_workers_connection_state_machine(two):
    catalog_a, _, sync, stores = two
    store = catalog_a.ctx.repo.get_custom_key_store(STORE)
    catalog_a.ctx.repo.update_custom_key_store(dataclasses.replace(store, connection_state=ConnectionState.DISCONNECTING))
    await sync.catch_up()
    assert stores.followed == [(STORE, "DISCONNECTING")]
