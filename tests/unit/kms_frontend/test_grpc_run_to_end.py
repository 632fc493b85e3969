"""A caller that hangs up does not cut a state-changing operation in half (a real gRPC
server in-process, the adapter's own wrapper, stand-in operations)."""
from __future__ import annotations

import asyncio
import re

import grpc
import pytest

from kms_frontend.api.grpc_service import GrpcApi
from kms_frontend.errors import METADATA_KEY
from kms_frontend.service.frontend import Services
from kms_frontend.service.model import ServiceModel
from kms_frontend.service.operations import Operation
from kms_frontend.service.principals import Principal
from protos.kms.v1 import kms_pb2 as pb
from protos.kms.v1 import kms_pb2_grpc as pb_grpc


class SlowOperations:
    """Stand-in operations behind the real ``Services.call`` and the real gRPC adapter."""

    def __init__(self) -> None:
        self.started = {"CreateKey": asyncio.Event(), "Encrypt": asyncio.Event()}
        self.release = asyncio.Event()
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def work(self, name: str) -> dict:
        self.started[name].set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        self.finished.append(name)
        return {}

    def services(self) -> Services:
        async def describe_key(s, p, c):
            raise RuntimeError(f"unexpected: {p['KeyId']}")
        services = Services.__new__(Services)
        services.model = ServiceModel()
        services.authorizer = AllowEverything()
        services.audit = NoAudit()
        services.operations = {
            "CreateKey": Operation("CreateKey", lambda s, p, c: self.work("CreateKey"), changes_state=True),
            "Encrypt": Operation("Encrypt", lambda s, p, c: self.work("Encrypt"), changes_state=False),
            "DescribeKey": Operation("DescribeKey", describe_key, changes_state=False)}
        return services


class AllowEverything:
    def authorize(self, op, params, caller):  # type: ignore[no-untyped-def]
        return []


class NoAudit:
    async def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        pass


class AnyCaller:
    """Stands in for the SigV4 verifier: every call is the account root."""

    def verify_grpc(self, path, metadata, payload):  # type: ignore[no-untyped-def]
        return Principal(arn="arn:aws:iam::111122223333:root", account="111122223333", kind="root",
                         user_id="111122223333")


async def serve(ops: SlowOperations) -> tuple[grpc.aio.Server, GrpcApi, int]:
    api = GrpcApi(ops.services(), AnyCaller())  # type: ignore[arg-type]
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(tuple(api.handlers()))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, api, port


async def wait_for(condition, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_state_changes_finish_after_the_caller_gives_up_and_reads_do_not():
    servicer = SlowOperations()
    server, api, port = await serve(servicer)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.KmsStub(channel)
            for name, call in (("CreateKey", stub.CreateKey(pb.CreateKeyRequest(), timeout=0.3)),
                               ("Encrypt", stub.Encrypt(pb.EncryptRequest(key_id="k", plaintext=b"x"), timeout=0.3))):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert servicer.started[name].is_set()
            await wait_for(lambda: api.gate.in_flight == 0)
            await wait_for(lambda: servicer.cancelled == ["Encrypt"])  # the read went with its caller
            servicer.release.set()
            await wait_for(lambda: servicer.finished == ["CreateKey"])  # the state change did not
            assert servicer.cancelled == ["Encrypt"]
    finally:
        await server.stop(None)


async def test_an_unexpected_exception_is_an_internal_error_with_an_incident_id_only(caplog):
    server, _, port = await serve(SlowOperations())
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
