"""The gRPC adapter of the KMS frontend: translate kms.v1 messages to service
calls and KmsError to a status (AWS message as details, the AWS exception name
in trailing metadata). No rules here."""
from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from protos.kms.v1 import kms_pb2 as pb
from protos.kms.v1 import kms_pb2_grpc as pb_grpc

from .. import errors
from ..service.key_stores import KeyStores, UpdateRequest
from ..store.repository import CustomKeyStoreRecord

log = logging.getLogger("kms_frontend.api")


def opt(msg: Any, field: str) -> Any:
    return getattr(msg, field) if msg.HasField(field) else None


def rpc(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except errors.KmsError as exc:
            await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.grpc_metadata())
        except grpc.aio.AbortError:
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error", extra={"event": "internal_error", "operation": fn.__name__,
                                                   "incident": incident})
            exc = errors.internal(f"An internal error occurred (incident {incident}). Retry the request.")
            await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.grpc_metadata())
    return wrapper


def store_entry(s: CustomKeyStoreRecord) -> pb.CustomKeyStoresListEntry:
    entry = pb.CustomKeyStoresListEntry(
        custom_key_store_id=s.custom_key_store_id, custom_key_store_name=s.custom_key_store_name,
        cloud_hsm_cluster_id=s.cloud_hsm_cluster_id, trust_anchor_certificate=s.trust_anchor_certificate,
        connection_state=s.connection_state, creation_date=s.creation_date, custom_key_store_type=s.custom_key_store_type)
    if s.connection_state == "FAILED" and s.connection_error_code:
        entry.connection_error_code = s.connection_error_code
    return entry


class KmsServicer(pb_grpc.KmsServicer):
    def __init__(self, key_stores: KeyStores) -> None:
        self.key_stores = key_stores

    @rpc
    async def CreateCustomKeyStore(self, r: pb.CreateCustomKeyStoreRequest, context: Any) -> pb.CreateCustomKeyStoreResponse:
        store_id = await self.key_stores.create(r.custom_key_store_name, r.cloud_hsm_cluster_id,
                                                r.trust_anchor_certificate, r.key_store_password,
                                                opt(r, "custom_key_store_type"))
        return pb.CreateCustomKeyStoreResponse(custom_key_store_id=store_id)

    @rpc
    async def DescribeCustomKeyStores(self, r: pb.DescribeCustomKeyStoresRequest,
                                      context: Any) -> pb.DescribeCustomKeyStoresResponse:
        page = await self.key_stores.describe(opt(r, "custom_key_store_id"), opt(r, "custom_key_store_name"),
                                              opt(r, "limit"), opt(r, "marker"))
        resp = pb.DescribeCustomKeyStoresResponse(custom_key_stores=[store_entry(s) for s in page.items],
                                                  truncated=page.truncated)
        if page.next_marker:
            resp.next_marker = page.next_marker
        return resp

    @rpc
    async def UpdateCustomKeyStore(self, r: pb.UpdateCustomKeyStoreRequest, context: Any) -> pb.UpdateCustomKeyStoreResponse:
        await self.key_stores.update(UpdateRequest(
            r.custom_key_store_id, opt(r, "new_custom_key_store_name"), opt(r, "key_store_password"),
            opt(r, "cloud_hsm_cluster_id")))
        return pb.UpdateCustomKeyStoreResponse()

    @rpc
    async def ConnectCustomKeyStore(self, r: pb.ConnectCustomKeyStoreRequest, context: Any) -> pb.ConnectCustomKeyStoreResponse:
        await self.key_stores.connect(r.custom_key_store_id)
        return pb.ConnectCustomKeyStoreResponse()

    @rpc
    async def DisconnectCustomKeyStore(self, r: pb.DisconnectCustomKeyStoreRequest,
                                       context: Any) -> pb.DisconnectCustomKeyStoreResponse:
        await self.key_stores.disconnect(r.custom_key_store_id)
        return pb.DisconnectCustomKeyStoreResponse()

    @rpc
    async def DeleteCustomKeyStore(self, r: pb.DeleteCustomKeyStoreRequest, context: Any) -> pb.DeleteCustomKeyStoreResponse:
        await self.key_stores.delete(r.custom_key_store_id)
        return pb.DeleteCustomKeyStoreResponse()
