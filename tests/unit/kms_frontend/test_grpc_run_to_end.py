"""A caller that hangs up does not cut a state-changing operation in half (a real gRPC
server in-process, the adapter's own wrapper, stand-in operations)."""
from __future__ import annotations

import asyncio
import re

import grpc
import pytest

from kms_frontend.api.grpc_service import rpc
from kms_frontend.errors import METADATA_KEY
from plumbing.drain import Gate
from protos.kms.v1 import kms_pb2 as pb
from protos.kms.v1 import kms_pb2_grpc as pb_grpc


class SlowOperations(pb_grpc.KmsServicer):
    def __init__(self) -> None:
        self.gate = Gate()
        self.started = {"CreateKey": asyncio.Event(), "Encrypt": asyncio.Event()}
        self.release = asyncio.Event()
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def _work(self, name: str) -> None:
        self.started[name].set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        self.finished.append(name)

    @rpc
    async def CreateKey(self, r: pb.CreateKeyRequest, context: object) -> pb.CreateKeyResponse:
        await self._work("CreateKey")
        return pb.CreateKeyResponse()

    @rpc
    async def Encrypt(self, r: pb.EncryptRequest, context: object) -> pb.EncryptResponse:
        await self._work("Encrypt")
        return pb.EncryptResponse()

    @rpc
    async def DescribeKey(self, r: pb.DescribeKeyRequest, context: object) -> pb.DescribeKeyResponse:
        raise RuntimeError(f"unexpected: {r.key_id}")


async def wait_for(condition, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_state_changes_finish_after_the_caller_gives_up_and_reads_do_not():
    servicer = SlowOperations()
    server = grpc.aio.server()
    pb_grpc.add_KmsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.KmsStub(channel)
            for name, call in (("CreateKey", stub.CreateKey(pb.CreateKeyRequest(), timeout=0.3)),
                               ("Encrypt", stub.Encrypt(pb.EncryptRequest(), timeout=0.3))):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert servicer.started[name].is_set()
            await wait_for(lambda: servicer.gate.in_flight == 0)
            await wait_for(lambda: servicer.cancelled == ["Encrypt"])  # the read went with its caller
            servicer.release.set()
            await wait_for(lambda: servicer.finished == ["CreateKey"])  # the state change did not
            assert servicer.cancelled == ["Encrypt"]
    finally:
        await server.stop(None)


async def test_an_unexpected_exception_is_an_internal_error_with_an_incident_id_only(caplog):
    server = grpc.aio.server()
    pb_grpc.add_KmsServicer_to_server(SlowOperations(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.KmsStub(channel).DescribeKey(pb.DescribeKeyRequest(key_id="detail-0451"), timeout=5)
        err = caught.value
        assert err.code() == grpc.StatusCode.INTERNAL
        assert dict(err.trailing_metadata())[METADATA_KEY] == "KMSInternalException"
        incident = re.fullmatch(r"An internal error occurred \(incident ([0-9a-f]{12})\)\. Retry the request\.",
                                err.details())
        assert incident, err.details()  # nothing of the exception reaches the caller
        logged = [r for r in caplog.records if getattr(r, "incident", None) == incident.group(1)]
        assert logged and logged[0].exc_info and "detail-0451" in str(logged[0].exc_info[1])
    finally:
        await server.stop(None)
