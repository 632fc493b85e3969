"""Bare gRPC servers used as the baselines of the crypto-path benchmark.

    python bench/echo_server.py echo   --listen 127.0.0.1:P --tls-cert C --tls-key K [--plain-listen 127.0.0.1:R]
    python bench/echo_server.py proxy  --listen 127.0.0.1:P --upstream 127.0.0.1:Q --ca C [--tls-cert C --tls-key K]
    python bench/echo_server.py stream-proxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q --ca C [...]

``echo`` answers each unary call with its request. ``proxy`` forwards each unary
call to the upstream echo over TLS and returns its answer, so client -> proxy ->
echo has the same hops and TLS as client -> frontend -> HSM node, with no work in
either process. ``stream-proxy`` forwards the same unary calls over one
long-lived TLS stream to the echo's ``Batch`` method, with the frontend's
batching (requests that arrive while a message is unanswered travel together in
the next one): the frontend's design with no work at all, i.e. the most the
frontend could reach on this machine. ``--plain-listen`` also serves the echo
without TLS, for a one-hop baseline whose client leg matches a plaintext client
leg of the other paths.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plumbing.drain import run_on_loop  # noqa: E402

METHOD = "/bench.Echo/Echo"
BATCH_METHOD = "/bench.Echo/Batch"
STATS_METHOD = "/bench.Echo/Stats"  # the stream proxy: "<operations> <messages>" it has sent so far
_ITEM = struct.Struct(">IH")  # a batch is a run of (id, length, bytes)


def _identity(b: bytes) -> bytes:
    return b


def _pack(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(_ITEM.pack(i, len(b)) + b for i, b in items)


def _unpack(buf: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(buf):
        i, n = _ITEM.unpack_from(buf, at)
        at += _ITEM.size
        out.append((i, buf[at:at + n]))
        at += n
    return out


class StreamProxy:
    """Unary calls in; out over one stream, batched while a message is unanswered."""

    def __init__(self, upstream: str, ca: bytes) -> None:
        channel = grpc.aio.secure_channel(upstream, grpc.ssl_channel_credentials(ca))
        # wait_for_ready: the three bench servers start together, and a stream opened before the
        # echo server listens would otherwise fail at once and leave every forward hanging.
        self._call = channel.stream_stream(BATCH_METHOD, request_serializer=_identity,
                                           response_deserializer=_identity)(wait_for_ready=True)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._queue: list[tuple[int, bytes]] = []
        self._wake, self._answered = asyncio.Event(), asyncio.Event()
        self._unanswered = 0
        self.ops = self.messages = 0
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send()), loop.create_task(self._receive())]

    async def forward(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        i = next(self._ids)
        fut = self._pending[i] = asyncio.get_running_loop().create_future()
        self._queue.append((i, request))
        self._wake.set()
        return await fut

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                while self._unanswered:
                    self._answered.clear()
                    await self._answered.wait()
                batch, self._queue = self._queue, []
                self._unanswered += 1
                self.ops += len(batch)
                self.messages += 1
                await self._call.write(_pack(batch))

    async def _receive(self) -> None:
        try:
            async for message in self._call:
                self._unanswered -= 1
                self._answered.set()
                for i, b in _unpack(message):
                    self._pending.pop(i).set_result(b)
        finally:  # the stream ended: fail what waits rather than hang (the benchmark counts errors)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(RuntimeError("the upstream stream ended"))


def kms_surface(proxy: StreamProxy) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    """The stream proxy behind what the frontend's gRPC side does around every call and nothing
    more: parse the EncryptRequest, read the metadata and the peer, forward the plaintext, answer
    an EncryptResponse with a request id in trailing metadata. No signature check, no authorization,
    no key lookup, no ciphertext framing, no metrics: the floor of the frontend's API surface."""
    from protos.kms.v1 import kms_pb2 as kms
    ids = itertools.count(1)

    async def surface(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        parsed = kms.EncryptRequest.FromString(request)
        metadata = context.invocation_metadata() or ()
        context.peer()
        request_id = next((v for k, v in metadata if k == "x-request-id"), None) or f"bench-{next(ids)}"
        blob = await proxy.forward(parsed.plaintext, context)
        context.set_trailing_metadata((("x-request-id", request_id),))
        return kms.EncryptResponse(ciphertext_blob=blob, key_id=f"arn:aws:kms:us-east-1:111122223333:key/{parsed.key_id}",
                                   encryption_algorithm="SYMMETRIC_DEFAULT").SerializeToString()
    return surface


async def serve(args: argparse.Namespace) -> None:
    server = grpc.aio.server()
    handlers = {}
    if args.mode == "echo":
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        async def batch(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for message in requests:
                yield message
        handler = echo
        handlers["Batch"] = grpc.stream_stream_rpc_method_handler(batch, request_deserializer=_identity,
                                                                  response_serializer=_identity)
    elif args.mode == "proxy":
        channel = grpc.aio.secure_channel(args.upstream, grpc.ssl_channel_credentials(Path(args.ca).read_bytes()))
        upstream = channel.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity)

        async def proxy(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await upstream(request)
        handler = proxy
    else:
        proxy = StreamProxy(args.upstream, Path(args.ca).read_bytes())
        handler = kms_surface(proxy) if args.kms_surface else proxy.forward

        async def stats(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return f"{proxy.ops} {proxy.messages}".encode()
        handlers["Stats"] = grpc.unary_unary_rpc_method_handler(stats, request_deserializer=_identity,
                                                                response_serializer=_identity)
    handlers["Echo"] = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=_identity,
                                                           response_serializer=_identity)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", handlers)])
    if args.tls_cert:
        creds = grpc.ssl_server_credentials([(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())])
        server.add_secure_port(args.listen, creds)
    else:
        server.add_insecure_port(args.listen)
    if args.plain_listen:
        server.add_insecure_port(args.plain_listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "proxy", "stream-proxy"])
    p.add_argument("--listen", required=True)
    p.add_argument("--plain-listen")
    p.add_argument("--upstream")
    p.add_argument("--ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--kms-surface", action="store_true", help="stream-proxy: take Encrypt requests as the frontend does")
    p.add_argument("--event-loop", default="auto", help="as the servers' --event-loop: the baseline runs on the loop the product runs on")
    args = p.parse_args()
    run_on_loop(serve(args), args.event_loop)


if __name__ == "__main__":
    main()
