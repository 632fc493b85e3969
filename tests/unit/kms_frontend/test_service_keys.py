"""In-process tests of kms_frontend.service.keys with a fake cluster: the crash-recovery sweep
(recover) against a CreateKey in progress."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import pytest

from kms_frontend.cluster.errors import TooFewReplicas
from kms_frontend.errors import CloudHsmClusterInvalidConfigurationException
from kms_frontend.secret_box import SecretBox
from kms_frontend.service.catalog import Catalog
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.service.keys import CreateKeyRequest, KmsKeys
from kms_frontend.store import CustomKeyStoreRecord, KeyRecord, NotFoundError, SqliteRepository

STORE = "cks-0000000000000000a"
ROOT = None  # no Policy in these requests: the default key policy needs no lockout check, so no caller
CLUSTER = "cluster-234567abcdef"


class FakeHsm:
    """The two typed-client methods CreateKey and the recovery sweep use."""

    def __init__(self) -> None:
        self.generating = asyncio.Event()   # a GenerateKey is in progress
        self.release = asyncio.Event()      # let it finish
        self.labels: dict[str, int] = {}    # what the "cluster" holds
        self.refuse: Exception | None = None

    async def generate_key(self, label: str, *, size_bytes: int, min_replicas: int, timeout_ms: int) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.generating.set()
        await self.release.wait()
        self.labels[label] = 7
        return 7

    async def find_keys(self, label: str | None = None) -> list[int]:
        return [self.labels[label]] if label in self.labels else []


class FakeHsms:
    def __init__(self, hsm: FakeHsm) -> None:
        self.hsm = hsm

    def require(self, store_id: str) -> FakeHsm:
        assert store_id == STORE
        return self.hsm


@dataclass
class FakeClusterInfo:
    active_hsms: int = 3
    active_zones: int = 3


class FakeDirectory:
    async def lookup(self, cluster_id, *, max_age_s=0.5):
        return FakeClusterInfo()


@pytest.fixture
async def keys(tmp_path):
    repo = SqliteRepository(tmp_path / "meta.db")
    ctx = Context(repo, SecretBox(os.urandom(32)), FrontendSettings())
    repo.create_custom_key_store(CustomKeyStoreRecord(
        custom_key_store_id=STORE, custom_key_store_name="s", cloud_hsm_cluster_id=CLUSTER,
        trust_anchor_certificate="pem", creation_date=1, sealed_password=b"x", connection_state="CONNECTED"))
    catalog = Catalog(ctx)
    hsm = FakeHsm()
    k = KmsKeys(ctx, catalog, FakeDirectory(), FakeHsms(hsm), policies=None)  # type: ignore[arg-type]
    k.fake = hsm  # type: ignore[attr-defined]
    yield k
    ctx.close()


async def test_recover_leaves_a_create_key_in_progress_alone(keys):
    stub = keys.fake
    task = asyncio.create_task(keys.create(CreateKeyRequest(custom_key_store_id=STORE, origin="AWS_CLOUDHSM"), ROOT))
    await asyncio.wait_for(stub.generating.wait(), timeout=5)
    creating = [k for k in keys.catalog.keys.values() if k.key_state == "Creating"]
    assert len(creating) == 1
    await keys.recover()  # the periodic sweep runs while the HSM is still generating
    assert keys.ctx.repo.get_key(creating[0].key_id).key_state == "Creating"
    stub.release.set()
    record = await asyncio.wait_for(task, timeout=5)
    assert record.key_state == "Enabled" and record.backing_key_handle == 7
    assert keys.ctx.repo.get_key(record.key_id).key_state == "Enabled"


async def test_recover_settles_crash_leftovers(keys):
    stub = keys.fake
    made, lost = (KeyRecord(key_id=f"00000000-0000-4000-8000-00000000000{n}",
                            arn=f"arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-00000000000{n}",
                            custom_key_store_id=STORE, cloud_hsm_cluster_id=CLUSTER, creation_date=1, policy="{}",
                            key_state="Creating") for n in (1, 2))
    for record in (made, lost):
        await keys.catalog.create_key(record)
    stub.labels[made.arn] = 9  # the crash came after the HSM made the key
    await keys.recover()
    assert keys.ctx.repo.get_key(made.key_id).key_state == "Enabled"
    assert keys.ctx.repo.get_key(made.key_id).backing_key_handle == 9
    with pytest.raises(NotFoundError):
        keys.ctx.repo.get_key(lost.key_id)
    assert lost.key_id not in keys.catalog.keys


async def test_create_key_says_how_many_hsms_confirmed_when_too_few_did(keys):
    keys.fake.refuse = TooFewReplicas(1, 2, "key generation needs 2 nodes ... only 1 did")
    with pytest.raises(CloudHsmClusterInvalidConfigurationException) as caught:
        await keys.create(CreateKeyRequest(custom_key_store_id=STORE, origin="AWS_CLOUDHSM"), ROOT)
    assert "has 1 active HSM(s)" in caught.value.message, caught.value.message
    assert not [k for k in keys.catalog.keys.values()]  # the Creating record was taken back
