"""The crypto leg from the frontend to the HSM nodes.

Each node session carries one long-lived ``CryptoStream``. Requests that queue
while the stream is busy travel together in the next message (adaptive
micro-batching: no timer, a lone request on an idle stream goes at once), and
results are matched back by id. "Busy" means a message is on its way to the
node and not yet answered: a stream keeps at most ``MAX_MESSAGES_IN_FLIGHT``
unanswered messages, so under load requests gather while the node works on the
previous message. Without that bound every request went alone (a write
completes as soon as gRPC takes the message, long before the node answers), and
each message costs the frontend and the node about as much CPU as a unary call.
When a node dies or stalls mid-flight, its pending operations fail over to
another node, so callers see no error while any node is alive. A stream that
has had work out for ``STALL_S`` without any answer (a paused or overloaded
node) hands its operations to a responsive node at once and gets no new ones
until it answers again; only when no other node answers either do operations
wait for it, up to ``OP_TIMEOUT_S``.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

import grpc

from protos.hsm.v1 import hsm_pb2 as hsm
from protos.hsm.v1.metadata import DRAINING_KEY

from ..observability import HSM_BATCH_SIZE, HSM_OP_SECONDS, REQUEST_ID
from .errors import BackingKeyMissing, NoHsmAvailable
from .kmsuser_sessions import KmsuserSessions, NodeSession

log = logging.getLogger("kms_frontend.crypto_streams")
MAX_BATCH = 256
MAX_IN_FLIGHT = 1024      # per node: thousands at once on one channel get CANCELLED
MAX_MESSAGES_IN_FLIGHT = 1  # per stream: unanswered messages; requests arriving meanwhile form the next batch
JOIN_BATCH_BELOW = 32     # an operation joins another node's forming batch only while it is smaller than this
OP_TIMEOUT_S = 3.0        # a stalled (paused) node: give up on it after this, even if no other node answers
STALL_S = 0.5             # no answer for this long with work out: move the work to a responsive node if any
# A busy stream (an operation reached it while a message was out less than BUSY_WITHIN_S ago: callers
# overlap) holds each message back for LINGER_S once its node has answered, so that the operations
# arriving meanwhile travel in it too, and operations go to it first (``gathering``): each message
# costs the frontend and the node about as much as a unary call, and under load the node answers
# before the next operation arrives (1.5-1.8 operations per message without this). A lone caller's
# operations never overlap: they still go at once.
LINGER_S = 0.001
BUSY_WITHIN_S = 0.005


class NodeUnavailable(Exception):
    """The node's stream broke or stalled; the operation did not complete there."""


class HsmOpError(Exception):
    """A node refused the operation itself (not "not here"): its status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class NodeStream:
    def __init__(self, session: NodeSession, others_responsive: Callable[[], bool] = lambda: False) -> None:
        self.session = session
        self._others_responsive = others_responsive
        self._ids = itertools.count(1)
        self._queue: list[tuple[hsm.CryptoOp, asyncio.Future]] = []
        self._pending: dict[int, asyncio.Future] = {}
        # Operations in submission order with their deadlines (all share OP_TIMEOUT_S, so the
        # oldest unanswered one expires first): one timer per stream watches the oldest, instead
        # of an asyncio.timeout (a timer scheduled and cancelled) per operation.
        self._deadlines: deque[tuple[float, asyncio.Future]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._unanswered = 0                # messages written whose results have not come back
        self._silent_since: float | None = None  # waiting for an answer since then (None: nothing out)
        self._overlapped_at = float("-inf")  # when an operation last arrived while a message was out
        self._lingering = False             # holding the next message back for LINGER_S (see there)
        self._answered = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._call = session.stub.CryptoStream()
        self.broken = False
        self.latency = HSM_OP_SECONDS.labels(session.endpoint)
        self._loop = loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send()), loop.create_task(self._receive())]

    @property
    def stalled(self) -> bool:
        """Work has been out for STALL_S and nothing came back (a paused or overloaded node)."""
        since = self._silent_since
        return since is not None and not self.broken and self._loop.time() - since >= STALL_S

    @property
    def gathering(self) -> bool:
        """A message is out or held back (busy) and the next batch is forming: an operation added
        now rides along."""
        return ((self._unanswered >= MAX_MESSAGES_IN_FLIGHT or self._lingering or self.busy)
                and len(self._queue) < JOIN_BATCH_BELOW and not self.broken)

    @property
    def busy(self) -> bool:
        """Operations overlapped here less than BUSY_WITHIN_S ago: the next message lingers (LINGER_S)."""
        return self._loop.time() - self._overlapped_at < BUSY_WITHIN_S

    async def submit(self, op: hsm.CryptoOp) -> hsm.CryptoResult:
        if self.broken:
            raise NodeUnavailable(self.session.endpoint)
        async with self._slots:
            if self.broken:  # it broke while this operation waited for a slot
                raise NodeUnavailable(self.session.endpoint)
            op_id = op.id = next(self._ids)
            loop = self._loop
            fut: asyncio.Future = loop.create_future()
            self._pending[op_id] = fut
            self._queue.append((op, fut))
            if self._unanswered:
                self._overlapped_at = loop.time()
            self._wake.set()
            deadlines = self._deadlines
            while deadlines and deadlines[0][1].done():  # answered ones leave from the front (mostly FIFO)
                deadlines.popleft()
            deadline = loop.time() + OP_TIMEOUT_S
            deadlines.append((deadline, fut))
            if self._timer is None:
                self._timer = loop.call_at(min(deadline, loop.time() + STALL_S), self._expire)
            try:
                return await fut  # close() fails it with NodeUnavailable when the stream breaks or stalls
            finally:
                self._pending.pop(op_id, None)

    def _expire(self) -> None:
        """The stream's one timer, while operations are unanswered: a stream silent for STALL_S
        hands its work to a responsive node; past the oldest operation's deadline it closes."""
        self._timer = None
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()
        if not deadlines or self.broken:
            return
        deadline, now = deadlines[0][0], self._loop.time()
        if deadline - now <= 0.001:  # asyncio may run a timer up to a clock tick early
            self.close("timed out")
            return
        if self.stalled and self._others_responsive():
            self._hand_over(f"no answer for {now - self._silent_since:.1f} s")  # type: ignore[operator]
            return
        since = self._silent_since
        next_check = now + STALL_S if since is None or now - since >= STALL_S else since + STALL_S
        self._timer = self._loop.call_at(min(deadline, next_check), self._expire)

    def _hand_over(self, why: str) -> None:
        """Fail this stream's operations over to other nodes, keeping the stream: a paused node
        that resumes answers its message and is used again; one that stays silent gets no work."""
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(NodeUnavailable(f"{self.session.endpoint}: {why}"))
        self._queue.clear()
        self._deadlines.clear()
        log.warning("crypto stream stalled, work moved", extra={
            "event": "crypto_stream_stalled", "endpoint": self.session.endpoint, "reason": why})

    async def _send(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    while self._unanswered >= MAX_MESSAGES_IN_FLIGHT:
                        self._answered.clear()
                        await self._answered.wait()  # meanwhile, new requests join the queue
                    if self.busy and len(self._queue) < JOIN_BATCH_BELOW:
                        self._lingering = True
                        try:
                            await asyncio.sleep(LINGER_S)  # meanwhile, new requests join the queue
                        finally:
                            self._lingering = False
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    live = [op for op, fut in batch if not fut.done()]
                    if live:
                        HSM_BATCH_SIZE.observe(len(live))
                        if not self._unanswered:
                            self._silent_since = self._loop.time()
                        self._unanswered += 1
                        await self._call.write(hsm.CryptoBatch(ops=live))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.close(f"send failed: {exc}")

    async def _receive(self) -> None:
        try:
            pending = self._pending
            async for batch in self._call:
                self._unanswered -= 1
                self._silent_since = self._loop.time() if self._unanswered else None
                self._answered.set()
                for result in batch.results:
                    fut = pending.get(result.id)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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


def _choose(sessions: KmsuserSessions, tried: set[str]) -> NodeSession | None:
    """The node for the next attempt. A node whose stream is gathering a batch comes first: the
    operation rides in a message that is going anyway, which costs the frontend and the node a
    fraction of a message of its own (per-message gRPC work dominates; the AES is ~1 us). Only
    when no batch is forming (light load) or every forming batch is already big does the choice
    rotate over the nodes, so light load spreads evenly and heavy load spills over to every node."""
    for node in sessions.nodes.values():
        stream = node.crypto_stream
        if stream is not None and node.token and stream.gathering and node.endpoint not in tried \
                and not stream.stalled:
            return node
    return sessions.pick(exclude=tried)


def _stream(session: NodeSession, sessions: KmsuserSessions) -> NodeStream:
    if session.crypto_stream is None or session.crypto_stream.broken:
        session.crypto_stream = NodeStream(session, lambda: any(
            s is not session and s.responsive for s in sessions.nodes.values()))
    return session.crypto_stream


async def run_op(sessions: KmsuserSessions, make_op: Callable[[str], hsm.CryptoOp]) -> hsm.CryptoResult:
    """One crypto operation on some node of the store, failing over between nodes.
    ``make_op`` builds the request for a node's session token. Raises NoHsmAvailable when no
    node answered, BackingKeyMissing when every node that answered lacks the key, HsmOpError
    when a node refused the operation."""
    tried: set[str] = set()
    missing = 0
    request_id = REQUEST_ID.get()
    while True:
        node = _choose(sessions, tried)
        if node is None:
            if missing and missing == len(tried):
                raise BackingKeyMissing("no HSM node holds the key")
            raise NoHsmAvailable("no HSM node of the cluster answered")
        tried.add(node.endpoint)
        op = make_op(node.token)
        if request_id:
            op.request_id = request_id
        stream = _stream(node, sessions)
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
