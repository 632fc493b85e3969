"""The durable audit trail (ListAuditEvents): who did what, with which outcome.

* An operation that changes state (CreateKey, PutKeyPolicy, CreateGrant, ...), whatever its
  outcome, and any operation refused with AccessDeniedException: one event each, with the
  caller's principal, written to the metadata database before the response goes out.
* Everything else, the cryptographic operations first among them, must not cost a database write
  per request (DESIGN, "Crypto path under load"): each request adds one to an in-memory count per
  (operation, principal, key, outcome), and a background task writes one event per such group
  every second (``details``: ``count``, and the ``windowStart``/``windowEnd`` it covers) in one
  transaction. Like CloudTrail, which delivers asynchronously, the trail of these operations lags
  by up to a second, and a crash of the frontend loses at most that last second of counts.

The request log line (``"event": "request"``) carries the principal of every request too.
Secrets (the kmsuser password, plaintexts, blobs) never reach either.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from .. import observability
from ..store.repository import AuditEvent, KeyRecord
from .context import Context
from .model import Params, ServiceModel

if TYPE_CHECKING:
    from .authorization import Caller
    from .operations import Operation

log = logging.getLogger("kms_frontend.audit")
FLUSH_INTERVAL_S = 1.0
MAX_LOGGED_STRING = 4096
ACCESS_DENIED = "AccessDeniedException"


class _Done:
    """An awaitable that is already finished (a counted request has nothing to wait for)."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


def request_parameters(model: ServiceModel, operation: str, params: Params) -> dict[str, Any]:
    """The request's members as an audit event keeps them: strings (sensitive ones left out, long
    ones cut), numbers, booleans, lists and maps of those; never blobs."""
    shapes = model.shapes_of(operation)

    def walk(shape_name: str, value: Any) -> Any:
        shape = shapes[shape_name]
        kind = shape["type"]
        if kind == "blob" or shape.get("sensitive"):
            return None
        if kind == "structure":
            out = {}
            for name, member in shape.get("members", {}).items():
                if value.get(name) is not None:
                    kept = walk(member["shape"], value[name])
                    if kept is not None:
                        out[name] = kept
            return out
        if kind == "list":
            return [walk(shape["member"]["shape"], v) for v in value]
        if kind == "map":
            return {k: walk(shape["value"]["shape"], v) for k, v in value.items()}
        if isinstance(value, str) and len(value) > MAX_LOGGED_STRING:
            return value[:MAX_LOGGED_STRING] + f"...({len(value)} characters)"
        return value
    return walk(model.input_shape(operation), params) or {}


class AuditTrail:
    def __init__(self, ctx: Context, model: ServiceModel) -> None:
        self.ctx, self.model = ctx, model
        self._counts: dict[tuple[str, str, str, str, str, str], int] = {}
        self._window_start = ctx.now_ms()

    # ------------------------------------------------------------ recording

    def record(self, op: Operation, caller: Caller, params: Params, keys: Sequence[KeyRecord], outcome: str,
               resource: str | None = None) -> Awaitable[None]:
        """One request's outcome (``ok`` or the AWS exception name) after it ran: counted at once,
        or written (the returned awaitable) before the response goes out."""
        key = keys[0] if keys else None
        if not (op.changes_state or outcome == ACCESS_DENIED):
            group = (op.name, caller.principal.arn, key.key_id if key is not None else "",
                     key.custom_key_store_id if key is not None else "", outcome, caller.api)
            self._counts[group] = self._counts.get(group, 0) + 1
            return _DONE
        return self._write(op, caller, params, keys, outcome, resource)

    async def _write(self, op: Operation, caller: Caller, params: Params, keys: Sequence[KeyRecord], outcome: str,
                     resource: str | None) -> None:
        key = keys[0] if keys else None
        key_id = key.key_id if key is not None else _key_id_of(resource)
        request_id = observability.REQUEST_ID.get()
        details: dict[str, Any] = {"requestId": request_id, "api": caller.api, "sourceIp": caller.source_ip or "",
                                   "outcome": outcome,
                                   "requestParameters": request_parameters(self.model, op.name, params)}
        if len(keys) > 1:
            details["keyIds"] = [k.key_id for k in keys]
        event = AuditEvent(timestamp=self.ctx.now_ms(), event=op.name, key_id=key_id,
                           custom_key_store_id=(key.custom_key_store_id if key is not None
                                                else params.get("CustomKeyStoreId")),
                           details=details, principal=caller.principal.arn)
        try:
            await self.ctx.db(self.ctx.repo.append_audit_event, event)
        except Exception:  # the operation's own outcome stands; the log says the trail missed it
            log.exception("audit event not written", extra={"event": "audit_write_failed", "operation": op.name,
                                                            "request_id": request_id})

    # ------------------------------------------------------------ the counted operations

    async def flush(self) -> int:
        counts, self._counts = self._counts, {}
        start, end = self._window_start, self.ctx.now_ms()
        self._window_start = end
        if not counts:
            return 0
        events = [AuditEvent(timestamp=end, event=name, key_id=key_id or None, custom_key_store_id=store_id or None,
                             principal=principal, details={"count": n, "outcome": outcome, "api": api,
                                                           "windowStart": start, "windowEnd": end})
                  for (name, principal, key_id, store_id, outcome, api), n in counts.items()]
        await self.ctx.db(self.ctx.repo.append_audit_events, events)
        return len(events)

    async def run(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit flush failed", extra={"event": "audit_flush_failed"})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()

    # ------------------------------------------------------------ reading

    async def events(self, after_id: int, limit: int | None, event: str | None, key_ref: str | None,
                     principal: str | None) -> list[AuditEvent]:
        """The audit log, oldest first; a key by id or ARN."""
        key_id = _key_id_of(key_ref) if key_ref and key_ref.startswith("arn:") else key_ref
        return await self.ctx.db(self.ctx.repo.list_audit_events, after_id=after_id, limit=limit or 100,
                                 event=event or None, key_id=key_id or None, principal=principal or None)


def _key_id_of(arn: str | None) -> str | None:
    if arn and ":key/" in arn:
        return arn.rsplit("/", 1)[-1]
    return None

