"""What every operation family shares: the metadata repository (run on one
storage thread), the clock, account and Region, and the sealing box."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import errors
from ..secret_box import SecretBox
from ..store.repository import (
    ConnectionState,
    CustomKeyStoreRecord,
    MetadataRepository,
    NotFoundError,
    StaleRecordError,
)

T = TypeVar("T")
log = logging.getLogger("kms_frontend.store")


@dataclass
class FrontendSettings:
    account_id: str = "111122223333"
    region: str = "us-east-1"
    store_request_quota: int = 1800  # crypto requests per second per custom key store
    shared_quota_dir: str | None = None  # several workers: each store's bucket is a file here, shared


class Context:
    def __init__(self, repo: MetadataRepository, box: SecretBox, settings: FrontendSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.repo, self.box, self.settings, self.clock = repo, box, settings, clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kms-db")

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking repository call on the storage thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))
        except sqlite3.Error as exc:  # the repository rolled the transaction back: nothing was written
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
                log.error("metadata store full", extra={"event": "metadata_store_full"})
                raise errors.metadata_store_full() from None
            raise

    def call_blocking(self, fn: Callable[..., T], *args: Any, timeout: float = 5.0, **kwargs: Any) -> T:
        """Run a repository call on the storage thread from another thread (a metrics scrape), and wait."""
        return self._thread.submit(lambda: fn(*args, **kwargs)).result(timeout)

    async def update_store(self, store_id: str, **changes: Any) -> CustomKeyStoreRecord:
        """Read-modify-write a custom key store, retrying if it changed meanwhile."""
        for _ in range(20):
            current = await self.db(self.repo.get_custom_key_store, store_id)
            try:
                return await self.db(self.repo.update_custom_key_store, dataclasses.replace(current, **changes))
            except StaleRecordError:
                continue
        raise StaleRecordError(f"custom key store {store_id} keeps changing")

    async def connected_store(self, store_id: str, operation: str) -> CustomKeyStoreRecord:
        """The custom key store an operation needs CONNECTED, or AWS's error for why it cannot run."""
        store = await self.store_or_none(store_id)
        if store is None:
            raise errors.custom_key_store_not_found(store_id)
        if store.connection_state != ConnectionState.CONNECTED:
            raise errors.custom_key_store_invalid_state(store_id, store.connection_state, operation,
                                                        [ConnectionState.CONNECTED])
        return store

    async def store_or_none(self, store_id: str) -> CustomKeyStoreRecord | None:
        try:
            return await self.db(self.repo.get_custom_key_store, store_id)
        except NotFoundError:
            return None

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.repo.close()
