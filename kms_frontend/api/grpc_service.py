"""The gRPC adapter of the KMS frontend: translate kms.v1 messages to service
calls and KmsError to a status (AWS message as details, the AWS exception name
in trailing metadata). No rules here."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from plumbing.drain import Gate
from protos.kms.v1 import kms_pb2 as pb
from protos.kms.v1 import kms_pb2_grpc as pb_grpc

from .. import errors, observability
from ..service.frontend import Services, changes_state, run_to_end
from ..service.key_stores import UpdateRequest
from ..service.keys import CreateKeyRequest
from ..store.repository import CustomKeyStoreRecord, KeyRecord

log = logging.getLogger("kms_frontend.api")


def opt(msg: Any, field: str) -> Any:
    return getattr(msg, field) if msg.HasField(field) else None


SHUTTING_DOWN = "ShuttingDown"  # the outcome of calls refused by a closed gate (not an AWS exception)


def _to_the_end(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def to_the_end(self: Any, request: Any, context: Any) -> Any:
        return await run_to_end(fn(self, request, context))
    return to_the_end


def rpc(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Translate KmsError to a status; count, time and log the request (observability.finish) under
    its request id (the caller's ``x-request-id`` metadata or a new one, returned in trailing metadata)."""
    operation = fn.__name__
    if changes_state(operation):
        fn = _to_the_end(fn)

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        request_id = observability.grpc_request_id(context)
        rid = ((observability.REQUEST_ID_KEY, request_id),)
        gate: Gate = self.gate
        if gate.closed:
            gate.last_refused = time.monotonic()
            observability.finish("grpc", operation, SHUTTING_DOWN, time.perf_counter() - started, request_id)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "The KMS frontend is shutting down. Retry the request.",
                                trailing_metadata=rid)
        gate.in_flight += 1
        token = observability.REQUEST_ID.set(request_id)
        outcome = observability.OK
        try:
            response = await fn(self, request, context)
            context.set_trailing_metadata(rid)
            return response
        except errors.KmsError as exc:
            outcome = exc.name
            await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.grpc_metadata() + rid)
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            outcome = "Cancelled"  # the caller went away (or the server's grace ran out)
            raise
        except Exception:
            exc = errors.unexpected(log, operation, request_id)
            outcome = exc.name
            await context.abort(exc.grpc_code, exc.message, trailing_metadata=exc.grpc_metadata() + rid)
        finally:
            gate.in_flight -= 1
            observability.REQUEST_ID.reset(token)
            observability.finish("grpc", operation, outcome, time.perf_counter() - started, request_id)
    return wrapper


def store_entry(s: CustomKeyStoreRecord) -> pb.CustomKeyStoresListEntry:
    entry = pb.CustomKeyStoresListEntry(
        custom_key_store_id=s.custom_key_store_id, custom_key_store_name=s.custom_key_store_name,
        cloud_hsm_cluster_id=s.cloud_hsm_cluster_id, trust_anchor_certificate=s.trust_anchor_certificate,
        connection_state=s.connection_state, creation_date=s.creation_date, custom_key_store_type=s.custom_key_store_type)
    if s.connection_state == "FAILED" and s.connection_error_code:
        entry.connection_error_code = s.connection_error_code
    return entry


def key_metadata(k: KeyRecord, account_id: str) -> pb.KeyMetadata:
    md = pb.KeyMetadata(
        aws_account_id=account_id, key_id=k.key_id, arn=k.arn, creation_date=k.creation_date,
        enabled=k.key_state == "Enabled", description=k.description, key_usage=k.key_usage, key_state=k.key_state,
        origin=k.origin, custom_key_store_id=k.custom_key_store_id, cloud_hsm_cluster_id=k.cloud_hsm_cluster_id,
        key_manager="CUSTOMER", customer_master_key_spec=k.key_spec, key_spec=k.key_spec,
        encryption_algorithms=["SYMMETRIC_DEFAULT"], multi_region=False)
    if k.key_state == "PendingDeletion" and k.deletion_date is not None:
        md.deletion_date = k.deletion_date
    return md


def page_fields(resp: Any, next_marker: str | None) -> Any:
    resp.truncated = next_marker is not None
    if next_marker:
        resp.next_marker = next_marker
    return resp


class KmsServicer(pb_grpc.KmsServicer):
    def __init__(self, services: Services, gate: Gate | None = None) -> None:
        self.s = services
        self.gate = gate or Gate()
        self.key_stores = services.key_stores
        self.account_id = services.ctx.settings.account_id

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

    # ------------------------------------------------------------ keys

    @rpc
    async def CreateKey(self, r: pb.CreateKeyRequest, context: Any) -> pb.CreateKeyResponse:
        key = await self.s.keys.create(CreateKeyRequest(
            custom_key_store_id=opt(r, "custom_key_store_id"), origin=opt(r, "origin"),
            description=opt(r, "description"), policy=opt(r, "policy"), key_usage=opt(r, "key_usage"),
            key_spec=opt(r, "key_spec"), customer_master_key_spec=opt(r, "customer_master_key_spec"),
            multi_region=r.multi_region, tags=[(t.tag_key, t.tag_value) for t in r.tags],
            bypass_policy_lockout_safety_check=r.bypass_policy_lockout_safety_check))
        return pb.CreateKeyResponse(key_metadata=key_metadata(key, self.account_id))

    @rpc
    async def DescribeKey(self, r: pb.DescribeKeyRequest, context: Any) -> pb.DescribeKeyResponse:
        return pb.DescribeKeyResponse(key_metadata=key_metadata(self.s.keys.describe(r.key_id), self.account_id))

    @rpc
    async def ListKeys(self, r: pb.ListKeysRequest, context: Any) -> pb.ListKeysResponse:
        page = await self.s.keys.list(opt(r, "limit"), opt(r, "marker"))
        resp = pb.ListKeysResponse(keys=[pb.KeyListEntry(key_id=k.key_id, key_arn=k.arn) for k in page.items])
        return page_fields(resp, page.next_marker)

    @rpc
    async def EnableKey(self, r: pb.EnableKeyRequest, context: Any) -> pb.EnableKeyResponse:
        await self.s.keys.enable(r.key_id)
        return pb.EnableKeyResponse()

    @rpc
    async def DisableKey(self, r: pb.DisableKeyRequest, context: Any) -> pb.DisableKeyResponse:
        await self.s.keys.disable(r.key_id)
        return pb.DisableKeyResponse()

    @rpc
    async def UpdateKeyDescription(self, r: pb.UpdateKeyDescriptionRequest, context: Any) -> pb.UpdateKeyDescriptionResponse:
        await self.s.keys.update_description(r.key_id, r.description)
        return pb.UpdateKeyDescriptionResponse()

    @rpc
    async def ScheduleKeyDeletion(self, r: pb.ScheduleKeyDeletionRequest, context: Any) -> pb.ScheduleKeyDeletionResponse:
        key, window = await self.s.keys.schedule_deletion(r.key_id, opt(r, "pending_window_in_days"))
        return pb.ScheduleKeyDeletionResponse(key_id=key.arn, deletion_date=key.deletion_date or 0,
                                              key_state=key.key_state, pending_window_in_days=window)

    @rpc
    async def CancelKeyDeletion(self, r: pb.CancelKeyDeletionRequest, context: Any) -> pb.CancelKeyDeletionResponse:
        key = await self.s.keys.cancel_deletion(r.key_id)
        return pb.CancelKeyDeletionResponse(key_id=key.arn)

    @rpc
    async def EnableKeyRotation(self, r: pb.EnableKeyRotationRequest, context: Any) -> pb.EnableKeyRotationResponse:
        await self.s.keys.unsupported(r.key_id, rotation=True)
        return pb.EnableKeyRotationResponse()

    @rpc
    async def DisableKeyRotation(self, r: pb.DisableKeyRotationRequest, context: Any) -> pb.DisableKeyRotationResponse:
        await self.s.keys.unsupported(r.key_id, rotation=True)
        return pb.DisableKeyRotationResponse()

    @rpc
    async def GetKeyRotationStatus(self, r: pb.GetKeyRotationStatusRequest, context: Any) -> pb.GetKeyRotationStatusResponse:
        await self.s.keys.unsupported(r.key_id, rotation=True)
        return pb.GetKeyRotationStatusResponse()

    @rpc
    async def GetParametersForImport(self, r: pb.GetParametersForImportRequest,
                                     context: Any) -> pb.GetParametersForImportResponse:
        await self.s.keys.unsupported(r.key_id, rotation=False)
        return pb.GetParametersForImportResponse()

    @rpc
    async def ImportKeyMaterial(self, r: pb.ImportKeyMaterialRequest, context: Any) -> pb.ImportKeyMaterialResponse:
        await self.s.keys.unsupported(r.key_id, rotation=False)
        return pb.ImportKeyMaterialResponse()

    # ------------------------------------------------------------ aliases, tags, policies

    @rpc
    async def CreateAlias(self, r: pb.CreateAliasRequest, context: Any) -> pb.CreateAliasResponse:
        await self.s.aliases.create(r.alias_name, r.target_key_id)
        return pb.CreateAliasResponse()

    @rpc
    async def UpdateAlias(self, r: pb.UpdateAliasRequest, context: Any) -> pb.UpdateAliasResponse:
        await self.s.aliases.update(r.alias_name, r.target_key_id)
        return pb.UpdateAliasResponse()

    @rpc
    async def DeleteAlias(self, r: pb.DeleteAliasRequest, context: Any) -> pb.DeleteAliasResponse:
        await self.s.aliases.delete(r.alias_name)
        return pb.DeleteAliasResponse()

    @rpc
    async def ListAliases(self, r: pb.ListAliasesRequest, context: Any) -> pb.ListAliasesResponse:
        page = await self.s.aliases.list(opt(r, "key_id"), opt(r, "limit"), opt(r, "marker"))
        arns = self.s.catalog.arns
        entries = [pb.AliasListEntry(alias_name=a.alias_name, alias_arn=arns.alias(a.alias_name), target_key_id=a.key_id,
                                     creation_date=a.creation_date, last_updated_date=a.last_updated_date)
                   for a in page.items]
        return page_fields(pb.ListAliasesResponse(aliases=entries), page.next_marker)

    @rpc
    async def TagResource(self, r: pb.TagResourceRequest, context: Any) -> pb.TagResourceResponse:
        await self.s.tags.tag(r.key_id, [(t.tag_key, t.tag_value) for t in r.tags])
        return pb.TagResourceResponse()

    @rpc
    async def UntagResource(self, r: pb.UntagResourceRequest, context: Any) -> pb.UntagResourceResponse:
        await self.s.tags.untag(r.key_id, list(r.tag_keys))
        return pb.UntagResourceResponse()

    @rpc
    async def ListResourceTags(self, r: pb.ListResourceTagsRequest, context: Any) -> pb.ListResourceTagsResponse:
        page = self.s.tags.list(r.key_id, opt(r, "limit"), opt(r, "marker"))
        resp = pb.ListResourceTagsResponse(tags=[pb.Tag(tag_key=k, tag_value=v) for k, v in page.items])
        return page_fields(resp, page.next_marker)

    @rpc
    async def GetKeyPolicy(self, r: pb.GetKeyPolicyRequest, context: Any) -> pb.GetKeyPolicyResponse:
        return pb.GetKeyPolicyResponse(policy=self.s.policies.get(r.key_id, opt(r, "policy_name")), policy_name="default")

    @rpc
    async def PutKeyPolicy(self, r: pb.PutKeyPolicyRequest, context: Any) -> pb.PutKeyPolicyResponse:
        await self.s.policies.put(r.key_id, opt(r, "policy_name"), r.policy)
        return pb.PutKeyPolicyResponse()

    @rpc
    async def ListKeyPolicies(self, r: pb.ListKeyPoliciesRequest, context: Any) -> pb.ListKeyPoliciesResponse:
        page = self.s.policies.list(r.key_id, opt(r, "limit"), opt(r, "marker"))
        return page_fields(pb.ListKeyPoliciesResponse(policy_names=page.items), page.next_marker)

    # ------------------------------------------------------------ crypto

    @rpc
    async def Encrypt(self, r: pb.EncryptRequest, context: Any) -> pb.EncryptResponse:
        blob, key = await self.s.crypto.encrypt(r.key_id, r.plaintext, dict(r.encryption_context), list(r.grant_tokens),
                                                opt(r, "encryption_algorithm"), r.dry_run)
        return pb.EncryptResponse(ciphertext_blob=blob, key_id=key.arn, encryption_algorithm="SYMMETRIC_DEFAULT")

    @rpc
    async def Decrypt(self, r: pb.DecryptRequest, context: Any) -> pb.DecryptResponse:
        out = await self.s.crypto.decrypt(r.ciphertext_blob, dict(r.encryption_context), opt(r, "key_id"),
                                          list(r.grant_tokens), opt(r, "encryption_algorithm"), r.dry_run)
        return pb.DecryptResponse(key_id=out.key.arn, plaintext=out.plaintext, encryption_algorithm="SYMMETRIC_DEFAULT")

    @rpc
    async def ReEncrypt(self, r: pb.ReEncryptRequest, context: Any) -> pb.ReEncryptResponse:
        blob, source, dest = await self.s.crypto.re_encrypt(
            r.ciphertext_blob, dict(r.source_encryption_context), opt(r, "source_key_id"), r.destination_key_id,
            dict(r.destination_encryption_context), opt(r, "source_encryption_algorithm"),
            opt(r, "destination_encryption_algorithm"), list(r.grant_tokens), r.dry_run)
        return pb.ReEncryptResponse(ciphertext_blob=blob, source_key_id=source.arn, key_id=dest.arn,
                                    source_encryption_algorithm="SYMMETRIC_DEFAULT",
                                    destination_encryption_algorithm="SYMMETRIC_DEFAULT")

    @rpc
    async def GenerateDataKey(self, r: pb.GenerateDataKeyRequest, context: Any) -> pb.GenerateDataKeyResponse:
        blob, plaintext, key = await self.s.crypto.generate_data_key(
            r.key_id, dict(r.encryption_context), opt(r, "number_of_bytes"), opt(r, "key_spec"), with_plaintext=True,
            grant_tokens=list(r.grant_tokens), dry_run=r.dry_run)
        return pb.GenerateDataKeyResponse(ciphertext_blob=blob, plaintext=plaintext, key_id=key.arn)

    @rpc
    async def GenerateDataKeyWithoutPlaintext(self, r: pb.GenerateDataKeyWithoutPlaintextRequest,
                                              context: Any) -> pb.GenerateDataKeyWithoutPlaintextResponse:
        blob, _, key = await self.s.crypto.generate_data_key(
            r.key_id, dict(r.encryption_context), opt(r, "number_of_bytes"), opt(r, "key_spec"), with_plaintext=False,
            grant_tokens=list(r.grant_tokens), dry_run=r.dry_run)
        return pb.GenerateDataKeyWithoutPlaintextResponse(ciphertext_blob=blob, key_id=key.arn)

    @rpc
    async def GenerateRandom(self, r: pb.GenerateRandomRequest, context: Any) -> pb.GenerateRandomResponse:
        data = await self.s.crypto.generate_random(opt(r, "number_of_bytes"), opt(r, "custom_key_store_id"))
        return pb.GenerateRandomResponse(plaintext=data)


class KmsAdminServicer(pb_grpc.KmsAdminServicer):
    def __init__(self, services: Services, gate: Gate | None = None) -> None:
        self.s = services
        self.gate = gate or Gate()

    @rpc
    async def ListOrphanedKeyMaterial(self, r: pb.ListOrphanedKeyMaterialRequest,
                                      context: Any) -> pb.ListOrphanedKeyMaterialResponse:
        found = await self.s.keys.orphans(r.custom_key_store_id, delete=r.delete)
        return pb.ListOrphanedKeyMaterialResponse(orphans=[
            pb.OrphanedKeyMaterial(key_handle=o.key_handle, label=o.label, outcome=outcome) for o, outcome in found])

    @rpc
    async def ListAuditEvents(self, r: pb.ListAuditEventsRequest, context: Any) -> pb.ListAuditEventsResponse:
        events = await self.s.keys.audit_events(r.after_id, r.limit, r.event, r.key_id)
        return pb.ListAuditEventsResponse(events=[pb.AuditEventEntry(
            event_id=e.event_id or 0, timestamp=e.timestamp, event=e.event, key_id=e.key_id or "",
            custom_key_store_id=e.custom_key_store_id or "", details_json=json.dumps(e.details)) for e in events])
