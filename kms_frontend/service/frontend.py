"""All operation families of the frontend, built once and shared by the adapters."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from ..cluster.connector import Connector
from ..cluster.directory import ClusterDirectory
from .aliases import Aliases
from .catalog import Catalog
from .context import Context
from .crypto import Crypto
from .key_stores import KeyStores
from .keys import Keys
from .policies import Policies
from .tags import Tags

T = TypeVar("T")

# Operations that change nothing: a caller hanging up may cancel them at any await.
_READS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                    "GenerateRandom"})
_READ_PREFIXES = ("Describe", "List", "Get")
_finishing: set[asyncio.Task] = set()


def changes_state(operation: str) -> bool:
    return operation not in _READS and not operation.startswith(_READ_PREFIXES)


def run_to_end(operation: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Run an operation that changes state to its end even if its caller hangs up.

    Such an operation writes the metadata store, the HSMs and the in-memory
    catalogue one after another; cancelling it between two of them (a gRPC
    client's deadline, a closed HTTP connection) would leave them disagreeing, e.g.
    a backing key in the HSMs for a KMS key record already removed. AWS, too,
    finishes a request it has accepted whether or not the caller waits for it."""
    task = asyncio.ensure_future(operation)
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    return asyncio.shield(task)


class Services:
    def __init__(self, ctx: Context, directory: ClusterDirectory, connector: Connector) -> None:
        self.ctx, self.directory, self.connector = ctx, directory, connector
        self.catalog = Catalog(ctx)
        self.key_stores = KeyStores(ctx, directory, connector)
        self.keys = Keys(ctx, self.catalog, directory, connector)
        self.aliases = Aliases(ctx, self.catalog)
        self.tags = Tags(self.keys, self.catalog)
        self.policies = Policies(self.keys, self.catalog)
        self.crypto = Crypto(ctx, self.catalog, connector)
        connector.on_keys_changed = self.catalog.reload_store


async def finish_abandoned(timeout_s: float) -> None:
    """At shutdown: let operations whose callers hung up finish, for at most ``timeout_s``."""
    if _finishing:
        await asyncio.wait(list(_finishing), timeout=max(0.1, timeout_s))
