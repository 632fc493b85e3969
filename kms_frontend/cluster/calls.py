"""Unary HSM calls made as kmsuser on behalf of a store, moving to another node
when one fails (management operations; the crypto path has its own streams)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from .sessions import NodeSession, StoreSessions

T = TypeVar("T")
# FAILED_PRECONDITION: on these key calls it only means the node is not ACTIVE (e.g. it was just
# removed from the cluster and still answers as DELETED): another node can take the call.
# RESOURCE_EXHAUSTED: that node's storage is full; another node may still have room.
RETRY_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.CANCELLED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED)


class NoNodeAvailable(Exception):
    """No HSM node of the store's cluster could take the call."""

    def __init__(self, message: str, last_code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.last_code = last_code  # what the last node tried answered, if any


async def on_any_node(sessions: StoreSessions | None, call: Callable[[NodeSession], Awaitable[T]]) -> T:
    """Run ``call`` on a node with an open kmsuser session, trying the next node when
    one is unreachable or lost its session (a restarted node)."""
    if sessions is None:
        raise NoNodeAvailable("the custom key store has no kmsuser sessions")
    tried: set[str] = set()
    last: Any = None
    while True:
        node = sessions.pick(exclude=tried)
        if node is None:
            raise NoNodeAvailable(f"no HSM node answered ({last.code().name if last else 'none logged in'})",
                                  last.code() if last else None)
        tried.add(node.endpoint)
        try:
            return await call(node)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRY_ON:
                raise
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                sessions.invalidate(node.endpoint)
            last = exc
