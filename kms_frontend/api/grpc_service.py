"""The gRPC adapter of the KMS frontend: ``kms.v1`` requests become :meth:`Services.call
<kms_frontend.service.frontend.Services.call>` by method name (the codec maps fields to the
model's members), results become response messages, and a KmsError becomes a status (the AWS
message as details, the AWS exception name in trailing metadata). Every call is authenticated
first: SigV4 over the method path and the serialized request, from the call's metadata
(:mod:`protos.kms.v1.auth`, verified by :mod:`.sigv4`); a call that is not gets UNAUTHENTICATED
and changes nothing. No rules, and no code per operation, here."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import unquote

import grpc
from google.protobuf.message import Message

from plumbing.drain import Gate
from protos.kms.v1 import kms_pb2 as pb

from .. import errors, observability
from ..service.authorization import Caller
from ..service.frontend import Services
from .proto_codec import ProtoCodec
from .sigv4 import SigV4Verifier

log = logging.getLogger("kms_frontend.api")


SHUTTING_DOWN = "ShuttingDown"  # the outcome of calls refused by a closed gate (not an AWS exception)


SERVICES = ("kms.v1.Kms", "kms.v1.KmsAdmin")


class GrpcApi:
    """Every method of ``kms.v1.Kms`` and ``kms.v1.KmsAdmin``, as generic handlers (a dict lookup
    per call; see ``server.GenericHandlersOnly`` for why no registered-method handlers)."""

    def __init__(self, services: Services, verifier: SigV4Verifier, gate: Gate | None = None,
                 secure: bool = False) -> None:
        self.services, self.verifier = services, verifier
        self.gate = gate or Gate()
        self.secure = secure
        self.codec = ProtoCodec(services.model)

    def handlers(self) -> Iterator[grpc.GenericRpcHandler]:
        for service_name in SERVICES:
            service = pb.DESCRIPTOR.services_by_name[service_name.rsplit(".", 1)[1]]
            methods = {}
            for method in service.methods:
                request_type = getattr(pb, method.input_type.name)
                response_type = getattr(pb, method.output_type.name)
                methods[method.name] = grpc.unary_unary_rpc_method_handler(
                    self.handler(service_name, method.name, response_type),
                    request_deserializer=_with_bytes(request_type.FromString),
                    response_serializer=response_type.SerializeToString)
            yield grpc.method_handlers_generic_handler(service_name, methods)

    def handler(self, service_name: str, operation: str,
                response_type: type[Message]) -> Callable[..., Awaitable[Message]]:
        """The handler of one method: the call under its request id, authenticated, counted, timed
        and logged (observability.finish); a KmsError becomes its status."""
        services, codec, gate, verifier, secure = self.services, self.codec, self.gate, self.verifier, self.secure
        offered = services.offers(operation)
        shape = services.model.input_shape(operation) if offered else ""
        path = f"/{service_name}/{operation}"

        async def handle(received: tuple[bytes, Message], context: grpc.aio.ServicerContext) -> Message:
            raw, request = received
            started = time.perf_counter()
            metadata = context.invocation_metadata() or ()
            request_id = observability.request_id_of(metadata)
            rid = ((observability.REQUEST_ID_KEY, request_id),)
            if gate.closed:
                gate.last_refused = time.monotonic()
                observability.finish("grpc", operation, SHUTTING_DOWN, time.perf_counter() - started, request_id)
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "The KMS frontend is shutting down. Retry the request.", trailing_metadata=rid)
            gate.in_flight += 1
            token = observability.REQUEST_ID.set(request_id)
            outcome = observability.OK
            principal = ""
            try:
                caller = Caller(verifier.verify_grpc(path, metadata, raw), _peer_ip(context.peer()), "grpc", secure)
                principal = caller.principal.arn
                if not offered:
                    raise errors.UnsupportedOperationException(f"{operation} is not supported by this KMS frontend.")
                result = await services.call(operation, codec.params(request, shape), caller)
                context.set_trailing_metadata(rid)
                return codec.fill(response_type(), result)
            except errors.KmsError as exc:
                outcome = exc.name
                await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.grpc_metadata() + rid)
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:
                outcome = "Cancelled"  # the caller went away (or the server's grace ran out)
                raise
            except Exception:
                internal = errors.unexpected(log, operation, request_id)
                outcome = internal.name
                await context.abort(internal.grpc_code, internal.message,
                                    trailing_metadata=internal.grpc_metadata() + rid)
            finally:
                gate.in_flight -= 1
                observability.REQUEST_ID.reset(token)
                observability.finish("grpc", operation, outcome, time.perf_counter() - started, request_id,
                                     principal)
            raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
        return handle


def _with_bytes(parse: Callable[[bytes], Message]) -> Callable[[bytes], tuple[bytes, Message]]:
    """A request deserializer that keeps the bytes as received: the signature covers them."""
    def deserialize(data: bytes) -> tuple[bytes, Message]:
        return data, parse(data)
    return deserialize


@functools.lru_cache(maxsize=4096)
def _peer_ip(peer: str | None) -> str | None:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> the address (aws:SourceIp)."""
    if not peer:
        return None
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return None
