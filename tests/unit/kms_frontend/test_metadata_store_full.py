"""The frontend's metadata store on a full disk (SQLite's own SQLITE_FULL, from
``PRAGMA max_page_count``): a clear KMSInternalException, nothing half-written, and
writes work again once there is room."""
from __future__ import annotations

import pytest

from kms_frontend import errors
from kms_frontend.service.context import Context, FrontendSettings
from kms_frontend.store import NotFoundError, SqliteRepository
from tests.unit.kms_frontend.test_frontend_store import key, store


async def test_a_full_metadata_store_refuses_the_change_and_keeps_what_was_acknowledged(tmp_path):
    repo = SqliteRepository(tmp_path / "meta.db")
    ctx = Context(repo, box=None, settings=FrontendSettings())  # type: ignore[arg-type]
    await ctx.db(repo.create_custom_key_store, store(1))
    pages = repo._db.execute("PRAGMA page_count").fetchone()[0]
    repo._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    acknowledged = []
    with pytest.raises(errors.KMSInternalException) as refused:
        for n in range(1, 500):
            await ctx.db(repo.create_key, key(n, store_id=store(1).custom_key_store_id, policy="p" * 3000))
            acknowledged.append(key(n).key_id)
    assert acknowledged and refused.value.name == "KMSInternalException"
    assert "metadata store is full: nothing was changed" in refused.value.message
    with pytest.raises(NotFoundError):  # the refused key left nothing behind
        repo.get_key(key(len(acknowledged) + 1).key_id)
    repo._db.execute("PRAGMA max_page_count = 1073741823")
    await ctx.db(repo.create_key, key(900, store_id=store(1).custom_key_store_id))
    ctx.close()
    reopened = SqliteRepository(tmp_path / "meta.db")
    for key_id in [*acknowledged, key(900).key_id]:
        assert reopened.get_key(key_id).key_id == key_id
    reopened.close()
