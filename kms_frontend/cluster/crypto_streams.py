"""The crypto leg from the frontend to the HSM nodes.

Each node session carries one long-lived ``CryptoStream``. Requests that queue
while a batch is being written travel together in the next message (adaptive
micro-batching: no timer, a lone request goes at once), and results are matched
back by id. When a node dies or stalls mid-flight, its pending operations fail
over to another node, so callers see no error while any node is alive.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm

from ..observability import HSM_BATCH_SIZE, HSM_OP_SECONDS, REQUEST_ID
from .calls import NoNodeAvailable
from .sessions import NodeSession, StoreSessions

log = logging.getLogger("kms_frontend.crypto_streams")
MAX_BATCH = 256
MAX_IN_FLIGHT = 1024      # per node: thousands at once on one channel get CANCELLED
OP_TIMEOUT_S = 3.0        # a stalled (paused) node: give its work to another node after this
DRAINING_KEY = "x-hsm-draining"  # trailing metadata of a stream a node ended because it is stopping


class NodeUnavailable(Exception):
    """The node's stream broke or stalled; the operation did not complete there."""


class HsmOpError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class NodeStream:
    def __init__(self, session: NodeSession) -> None:
        self.session = session
        self._ids = itertools.count(1)
        self._queue: list[tuple[hsm.CryptoOp, asyncio.Future]] = []
        self._pending: dict[int, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._call = session.stub.CryptoStream()
        self.broken = False
        self.latency = HSM_OP_SECONDS.labels(session.endpoint)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send()), loop.create_task(self._receive())]

    async def submit(self, op: hsm.CryptoOp) -> hsm.CryptoResult:
        if self.broken:
            raise NodeUnavailable(self.session.endpoint)
        async with self._slots:
            op.id = next(self._ids)
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[op.id] = fut
            self._queue.append((op, fut))
            self._wake.set()
            try:
                async with asyncio.timeout(OP_TIMEOUT_S):
                    return await fut
            except TimeoutError:
                self.close("timed out")
                raise NodeUnavailable(self.session.endpoint) from None
            finally:
                self._pending.pop(op.id, None)

    async def _send(self) -> None:
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(0)  # let requests that are ready right now join this batch
                self._wake.clear()
                while self._queue:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    live = [op for op, fut in batch if not fut.done()]
                    if live:
                        HSM_BATCH_SIZE.observe(len(live))
                        await self._call.write(hsm.CryptoBatch(ops=live))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.close(f"send failed: {exc}")

    async def _receive(self) -> None:
        try:
            async for batch in self._call:
                for result in batch.results:
                    fut = self._pending.get(result.id)
                    if fut is not None and not fut.done():
                        fut.set_result(result)
            self.close("stream ended")
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if dict(exc.trailing_metadata() or ()).get(DRAINING_KEY) == "1":
                self.session.token = ""  # the node is shutting down, and its sessions end with it
            self.close(f"receive failed: {exc.code().name} {exc.details()}")
        except Exception as exc:
            self.close(f"receive failed: {exc}")

    def close(self, why: str) -> None:
        if self.broken:
            return
        self.broken = True
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(NodeUnavailable(f"{self.session.endpoint}: {why}"))
        self._call.cancel()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        log.info("crypto stream closed", extra={"event": "crypto_stream_closed", "endpoint": self.session.endpoint,
                                                "reason": why[:200]})


def _stream(session: NodeSession) -> NodeStream:
    if session.crypto_stream is None or session.crypto_stream.broken:
        session.crypto_stream = NodeStream(session)
    return session.crypto_stream


class KeyMissing(Exception):
    """Every node answered that it does not hold the backing key."""


async def run_op(sessions: StoreSessions | None, make_op: Callable[[str], hsm.CryptoOp]) -> hsm.CryptoResult:
    """One crypto operation on some node of the store, failing over between nodes.
    ``make_op`` builds the request for a node's session token."""
    if sessions is None:
        raise NoNodeAvailable("the custom key store has no kmsuser sessions")
    tried: set[str] = set()
    missing = 0
    request_id = REQUEST_ID.get()
    while True:
        node = sessions.pick(exclude=tried)
        if node is None:
            if missing and missing == len(tried):
                raise KeyMissing()
            raise NoNodeAvailable("no HSM node of the cluster answered")
        tried.add(node.endpoint)
        op = make_op(node.token)
        if request_id:
            op.request_id = request_id
        stream = _stream(node)
        started = time.perf_counter()
        try:
            result = await stream.submit(op)
        except NodeUnavailable:
            continue
        stream.latency.observe(time.perf_counter() - started)
        if result.WhichOneof("result") != "error":
            return result
        code = _CODES.get(result.error.code, grpc.StatusCode.UNKNOWN)
        if code == grpc.StatusCode.UNAUTHENTICATED:  # the node restarted: its session is gone
            sessions.invalidate(node.endpoint)
            continue
        if code == grpc.StatusCode.NOT_FOUND:        # this node lacks the key (not yet replicated?)
            missing += 1
            continue
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
            continue
        raise HsmOpError(code, result.error.message)
