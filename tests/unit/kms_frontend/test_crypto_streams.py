"""The frontend's crypto streams with a fake node: micro-batching while a message is unanswered,
routing to a node whose batch is forming, and the one-timer stall detection."""
from __future__ import annotations

import asyncio
import itertools

import pytest

from kms_frontend.cluster import crypto_streams as cs
from kms_frontend.cluster.errors import NoHsmAvailable
from kms_frontend.cluster.kmsuser_sessions import KmsuserSessions, NodeSession
from protos.hsm.v1 import hsm_pb2 as hsm
from tests.harness import wait_until


class FakeCall:
    """A CryptoStream call whose node answers a message only when told to (``answer``)."""

    def __init__(self) -> None:
        self.written: list[hsm.CryptoBatch] = []
        self._replies: asyncio.Queue[hsm.CryptoBatchResult] = asyncio.Queue()
        self.cancelled = False

    async def write(self, batch: hsm.CryptoBatch) -> None:
        self.written.append(batch)

    def answer(self, index: int) -> None:
        results = [hsm.CryptoResult(id=op.id, encrypt=hsm.EncryptResponse(iv=b"i" * 12, ciphertext=op.encrypt.plaintext))
                   for op in self.written[index].ops]
        self._replies.put_nowait(hsm.CryptoBatchResult(results=results))

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> hsm.CryptoBatchResult:
        return await self._replies.get()

    def cancel(self) -> None:
        self.cancelled = True


class FakeStub:
    def __init__(self) -> None:
        self.calls: list[FakeCall] = []

    def CryptoStream(self) -> FakeCall:  # noqa: N802 - the gRPC method name
        self.calls.append(FakeCall())
        return self.calls[-1]


def store(n: int = 3) -> KmsuserSessions:
    sessions = KmsuserSessions.__new__(KmsuserSessions)
    sessions._rr = itertools.count()
    sessions.nodes = {}
    for i in range(n):
        endpoint = f"127.0.0.1:{9000 + i}"
        sessions.nodes[endpoint] = NodeSession(endpoint, None, FakeStub(), token=f"token-{i}")  # type: ignore[arg-type]
    return sessions


def op(data: bytes) -> hsm.CryptoOp:
    return hsm.CryptoOp(encrypt={"session_token": "t", "key_handle": 1, "plaintext": data})


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_arriving_while_a_message_is_unanswered_travel_together():
    sessions = store(1)
    node = next(iter(sessions.nodes.values()))
    first = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"first")))
    await settle()
    call = node.stub.calls[0]
    assert [len(b.ops) for b in call.written] == [1]  # a lone request goes at once
    later = [asyncio.ensure_future(cs.run_op(sessions, lambda token, i=i: op(b"later %d" % i))) for i in range(5)]
    await settle()
    assert [len(b.ops) for b in call.written] == [1]  # the stream is busy: they wait for its answer
    call.answer(0)
    assert (await first).encrypt.ciphertext == b"first"
    await wait_until(lambda: len(call.written) == 2, timeout=5, interval=0.001, what="the next message")
    assert [len(b.ops) for b in call.written] == [1, 5]  # ... and then travel in one message
    call.answer(1)
    assert [(await f).encrypt.ciphertext for f in later] == [b"later %d" % i for i in range(5)]


async def test_an_operation_joins_the_node_whose_batch_is_forming():
    sessions = store(3)
    first = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"a")))
    await settle()
    busy = [n for n in sessions.nodes.values() if n.stub.calls]
    assert len(busy) == 1
    more = [asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"b"))) for _ in range(3)]
    await settle()
    assert [n for n in sessions.nodes.values() if n.stub.calls] == busy  # no other node's stream opened
    call = busy[0].stub.calls[0]
    call.answer(0)
    await wait_until(lambda: len(call.written) == 2, timeout=5, interval=0.001, what="the next message")
    call.answer(1)
    await asyncio.gather(first, *more)
    assert [len(b.ops) for b in call.written] == [1, 3]


async def test_a_lone_callers_operations_go_at_once():
    sessions = store(1)
    node = next(iter(sessions.nodes.values()))
    for i in range(3):
        task = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"x")))
        await settle()
        call = node.stub.calls[0]
        assert len(call.written) == i + 1  # no overlap, so no lingering: sent in the same loop turns
        call.answer(i)
        await task


async def test_a_busy_stream_holds_its_next_message_briefly_so_that_arrivals_join_it():
    sessions = store(3)
    first = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"a")))
    await settle()
    busy = next(n for n in sessions.nodes.values() if n.stub.calls)
    call = busy.stub.calls[0]
    assert [len(b.ops) for b in call.written] == [1]  # an idle stream sends at once
    second = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"b")))  # arrives while "a" is out
    await settle()
    call.answer(0)
    await first
    await settle()
    # answered, but callers overlap here: the next message waits up to LINGER_S for company ...
    assert len(call.written) == 1 and busy.crypto_stream.gathering
    third = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"c")))  # ... and this one joins it
    await wait_until(lambda: len(call.written) == 2, timeout=5, interval=0.001, what="the held message")
    assert [len(b.ops) for b in call.written] == [1, 2]
    assert [n for n in sessions.nodes.values() if n.stub.calls] == [busy]
    call.answer(1)
    assert [(await f).encrypt.ciphertext for f in (second, third)] == [b"b", b"c"]


async def test_a_stalled_node_fails_over_after_the_timeout(monkeypatch):
    monkeypatch.setattr(cs, "OP_TIMEOUT_S", 0.2)
    sessions = store(2)
    nodes = list(sessions.nodes.values())
    task = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"x")))
    await settle()
    stalled = next(n for n in nodes if n.stub.calls)
    other = next(n for n in nodes if n is not stalled)
    # the stalled node never answers: once its deadline passes its stream closes and the op moves on
    # (the retry's message is written by the stream's sender task a loop turn after the stream opens)
    await wait_until(lambda: other.stub.calls and other.stub.calls[0].written, timeout=5, interval=0.01,
                     what="the retry on the other node")
    assert stalled.crypto_stream.broken and stalled.stub.calls[0].cancelled
    other.stub.calls[0].answer(0)
    assert (await task).encrypt.ciphertext == b"x"


async def test_every_node_stalled_is_no_node_available(monkeypatch):
    monkeypatch.setattr(cs, "OP_TIMEOUT_S", 0.1)
    with pytest.raises(NoHsmAvailable):
        await cs.run_op(store(2), lambda token: op(b"x"))


async def test_a_silent_node_hands_its_work_to_a_responsive_one_long_before_the_timeout(monkeypatch):
    # A paused node (SIGSTOP) keeps its connection: without this, its callers waited OP_TIMEOUT_S.
    monkeypatch.setattr(cs, "OP_TIMEOUT_S", 30.0)
    monkeypatch.setattr(cs, "STALL_S", 0.2)
    sessions = store(2)
    nodes = list(sessions.nodes.values())
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(cs.run_op(sessions, lambda token: op(b"x")))
    await wait_until(lambda: any(n.stub.calls for n in nodes), timeout=5, interval=0.01, what="the first attempt")
    silent = next(n for n in nodes if n.stub.calls)
    other = next(n for n in nodes if n is not silent)
    await wait_until(lambda: other.stub.calls and other.stub.calls[0].written, timeout=5, interval=0.01,
                     what="the operation moved to the responsive node")
    assert loop.time() - started < 5, "the work waited for the long timeout instead of moving"
    assert not silent.crypto_stream.broken and silent.crypto_stream.stalled and not silent.responsive
    other.stub.calls[0].answer(0)
    assert (await task).encrypt.ciphertext == b"x"
    # while it stays silent, new work goes to the responsive node only
    later = [asyncio.ensure_future(cs.run_op(sessions, lambda token, i=i: op(b"%d" % i))) for i in range(4)]
    await wait_until(lambda: len(other.stub.calls[0].written) == 2, timeout=5, interval=0.01,
                     what="the next batch on the responsive node")
    assert len(silent.stub.calls[0].written) == 1
    other.stub.calls[0].answer(1)
    await asyncio.gather(*later)
    # once it answers again it is responsive and takes work again
    silent.stub.calls[0].answer(0)
    await wait_until(lambda: silent.responsive, timeout=5, interval=0.01, what="the resumed node answering")
    more = [asyncio.ensure_future(cs.run_op(sessions, lambda token, i=i: op(b"%d" % i))) for i in range(2)]
    await wait_until(lambda: len(silent.stub.calls[0].written) == 2, timeout=5, interval=0.01,
                     what="work for the resumed node")
    silent.stub.calls[0].answer(1)
    for i in range(len(other.stub.calls[0].written)):
        other.stub.calls[0].answer(i)
    await asyncio.gather(*more)
