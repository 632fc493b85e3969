"""A bare gRPC echo used as the baseline of the crypto-path benchmark.

    python bench/echo_server.py echo  --listen 127.0.0.1:P --tls-cert C --tls-key K
    python bench/echo_server.py proxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q --ca C

``proxy`` forwards each unary call to the upstream echo over TLS and returns its
answer, so client -> proxy -> echo has the same hops and TLS as client ->
frontend -> HSM node, with no work in either process.
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc

METHOD = "/bench.Echo/Echo"


def _identity(b: bytes) -> bytes:
    return b


async def serve(args: argparse.Namespace) -> None:
    server = grpc.aio.server()
    if args.mode == "echo":
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request
        handler = echo
    else:
        channel = grpc.aio.secure_channel(args.upstream, grpc.ssl_channel_credentials(Path(args.ca).read_bytes()))
        upstream = channel.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity)

        async def proxy(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await upstream(request)
        handler = proxy
    rpc = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=_identity, response_serializer=_identity)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {"Echo": rpc})])
    if args.tls_cert:
        creds = grpc.ssl_server_credentials([(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())])
        server.add_secure_port(args.listen, creds)
    else:
        server.add_insecure_port(args.listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "proxy"])
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream")
    p.add_argument("--ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
