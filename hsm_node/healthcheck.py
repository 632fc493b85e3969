"""Container health check of an hsm-node: ``python -m hsm_node.healthcheck [host:port] [--active]``.

Exit 0 when the node answers the gRPC health check over its TLS port (any
state; with ``--active``, only once it is ACTIVE). The check pins whatever
certificate the node shows: it reads no secret.
"""
from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plumbing.tls import presented_certificate

from . import client


async def check(endpoint: str, service: str) -> bool:
    try:
        pinned = await asyncio.to_thread(presented_certificate, endpoint, 3.0)
    except OSError:
        return False
    async with client.channel(endpoint, pinned) as ch:
        try:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
        except grpc.aio.AioRpcError:
            return False
    return r.status == health_pb2.HealthCheckResponse.SERVING


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    service = "hsm.v1.Hsm" if "--active" in sys.argv else ""
    sys.exit(0 if asyncio.run(check(args[0] if args else "127.0.0.1:2225", service)) else 1)


if __name__ == "__main__":
    main()
