"""All operation families of the frontend, built once, and the one entry point every adapter uses:
:meth:`Services.call` (validate against the model, authorize the caller, run the operation,
shape its result, keep the audit trail)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from .. import errors, observability
from ..cluster.hsm_client import HsmClients
from .aliases import Aliases
from .audit import AuditTrail
from .authorization import Authorizer, Caller
from .catalog import Catalog
from .connections import Connections
from .context import Context
from .crypto import Crypto
from .grants import Grants, GrantTokens
from .key_stores import KeyStores
from .keys import KmsKeys
from .model import Params, ServiceModel
from .operations import OPERATIONS, Operation
from .policies import Policies
from .principals import Identities
from .shapes import Shape
from .sts import Sts
from .tags import Tags
from .workers import WorkerSync

T = TypeVar("T")
_finishing: set[asyncio.Task] = set()


def run_to_end(operation: Awaitable[T]) -> Awaitable[T]:
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
    sync: WorkerSync | None = None  # several workers: the others' writes, applied before a call

    def __init__(self, ctx: Context, hsms: HsmClients, identities: Identities, model: ServiceModel | None = None,
                 operations: dict[str, Operation] = OPERATIONS) -> None:
        self.ctx, self.hsms, self.directory = ctx, hsms, hsms.directory
        self.model = model or ServiceModel()
        self.operations = operations
        self.account_id = ctx.settings.account_id
        self.identities = identities
        self.catalog = Catalog(ctx)
        self.tokens = GrantTokens(ctx.box)
        self.authorizer = Authorizer(self.catalog, identities, self.tokens, self.account_id, ctx.clock)
        self.policies = Policies(self.catalog, self.authorizer)
        self.connections = Connections(ctx, hsms)
        self.key_stores = KeyStores(ctx, self.directory, self.connections)
        self.keys = KmsKeys(ctx, self.catalog, self.directory, hsms, self.policies)
        self.aliases = Aliases(ctx, self.catalog)
        self.tags = Tags(self.catalog)
        self.grants = Grants(ctx, self.catalog, self.authorizer, self.tokens)
        self.crypto = Crypto(ctx, self.catalog, hsms)
        self.sts = Sts(identities)
        self.audit = AuditTrail(ctx, self.model)
        self.connections.on_keys_changed = self.catalog.reload_store

    def offers(self, operation: str) -> bool:
        return operation in self.operations

    async def call(self, operation: str, params: Params, caller: Caller) -> Shape | None:
        """Run one operation by its AWS name for ``caller``: the model's checks first (every
        violation in one ValidationException), then the evaluator, then its rules. An operation
        that changes state runs to its end even if the caller hangs up."""
        op = self.operations[operation]
        sync = self.sync
        if sync is not None and sync.stale():  # one memory load per call; a reload only after a change
            await sync.catch_up()
        self.model.validate(operation, params)
        if op.changes_state:
            return await run_to_end(self._run(op, params, caller))
        return await self._run(op, params, caller)

    async def _run(self, op: Operation, params: Params, caller: Caller) -> Shape | None:
        keys: list = []
        try:
            keys = self.authorizer.authorize(op, params, caller)
            result = await op.handler(self, params, caller)
        except errors.KmsError as exc:
            await self.audit.record(op, caller, params, keys, exc.name, getattr(exc, "resource", None))
            raise
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            await self.audit.record(op, caller, params, keys,
                                    "Cancelled" if cancelled else errors.KMSInternalException.name)
            raise
        await self.audit.record(op, caller, params, keys, observability.OK)
        return result


async def finish_abandoned(timeout_s: float) -> None:
    """At shutdown: let operations whose callers hung up finish, for at most ``timeout_s``."""
    if _finishing:
        await asyncio.wait(list(_finishing), timeout=max(0.1, timeout_s))
