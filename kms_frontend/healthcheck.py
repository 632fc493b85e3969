"""Container health check of the frontend: ``python -m kms_frontend.healthcheck [host:port]``.
Exit 0 when its gRPC health service says SERVING."""
from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check(endpoint: str) -> bool:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        try:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="kms.v1.Kms"), timeout=3)
        except grpc.aio.AioRpcError:
            return False
    return r.status == health_pb2.HealthCheckResponse.SERVING


def main() -> None:
    sys.exit(0 if asyncio.run(check(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7800")) else 1)


if __name__ == "__main__":
    main()
