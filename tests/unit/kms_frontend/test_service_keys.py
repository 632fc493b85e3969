"""In-process tests of kms_frontend.service.keys with a fake cluster: the crash-recovery sweep
(recover) against a CreateKey in progress."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import pytest

from kms_frontend.secret_box import SecretBox
from kms_frontend.service.catalog import Catalog
from kms_frontend.service.context import Context, Settings
from kms_frontend.service.keys import CreateKeyRequest, Keys
from kms_frontend.store import CustomKeyStoreRecord, KeyRecord, NotFoundError, SqliteRepository

STORE = "cks-0000000000000000a"
CLUSTER = "cluster-234567abcdef"


@dataclass
class Answer:
    key_handle: int = 0
    key_handles: list[int] = field(default_factory=list)


class FakeStub:
    def __init__(self) -> None:
        self.generating = asyncio.Event()   # a GenerateKey is in progress
        self.release = asyncio.Event()      # let it finish
        self.labels: dict[str, int] = {}    # what the "cluster" holds

    async def GenerateKey(self, req, timeout=None):  # noqa: N802 - gRPC method name
        self.generating.set()
        await self.release.wait()
        self.labels[req.label] = 7
        return Answer(key_handle=7)

    async def FindKeys(self, req, timeout=None):  # noqa: N802 - gRPC method name
        return Answer(key_handles=[self.labels[req.label]] if req.label in self.labels else [])


@dataclass
class FakeNode:
    stub: FakeStub
    endpoint: str = "127.0.0.1:1"
    token: str = "token"


class FakeSessions:
    def __init__(self, node: FakeNode) -> None:
        self.node = node

    def pick(self, exclude=frozenset()):
        return None if self.node.endpoint in exclude else self.node

    def invalidate(self, endpoint: str) -> None:
        pass


@dataclass
class FakeClusterInfo:
    active_hsms: int = 3


class FakeDirectory:
    async def lookup(self, cluster_id, *, max_age_s=0.5):
        return FakeClusterInfo()


class FakeConnector:
    def __init__(self, sessions: FakeSessions) -> None:
        self.sessions = {STORE: sessions}


@pytest.fixture
async def keys(tmp_path):
    repo = SqliteRepository(tmp_path / "meta.db")
    ctx = Context(repo, SecretBox(os.urandom(32)), Settings())
    repo.create_custom_key_store(CustomKeyStoreRecord(
        custom_key_store_id=STORE, custom_key_store_name="s", cloud_hsm_cluster_id=CLUSTER,
        trust_anchor_certificate="pem", creation_date=1, sealed_password=b"x", connection_state="CONNECTED"))
    catalog = Catalog(ctx)
    stub = FakeStub()
    k = Keys(ctx, catalog, FakeDirectory(), FakeConnector(FakeSessions(FakeNode(stub))))  # type: ignore[arg-type]
    k.fake = stub  # type: ignore[attr-defined]
    yield k
    ctx.close()


async def test_recover_leaves_a_create_key_in_progress_alone(keys):
    stub = keys.fake
    task = asyncio.create_task(keys.create(CreateKeyRequest(custom_key_store_id=STORE, origin="AWS_CLOUDHSM")))
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
        keys.catalog.put(keys.ctx.repo.create_key(record))
    stub.labels[made.arn] = 9  # the crash came after the HSM made the key
    await keys.recover()
    assert keys.ctx.repo.get_key(made.key_id).key_state == "Enabled"
    assert keys.ctx.repo.get_key(made.key_id).backing_key_handle == 9
    with pytest.raises(NotFoundError):
        keys.ctx.repo.get_key(lost.key_id)
    assert lost.key_id not in keys.catalog.keys
