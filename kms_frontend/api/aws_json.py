"""The AWS JSON 1.1 adapter of the KMS frontend: the KMS API as AWS serves it, so boto3, the AWS
CLI and the AWS Encryption SDK work against this frontend with only the endpoint URL changed.

``POST /`` with ``X-Amz-Target: TrentService.<Operation>`` and ``Content-Type:
application/x-amz-json-1.1``, signed with SigV4 (:mod:`.sigv4`). Each request is authenticated,
routed by :data:`ROUTES`, checked against the KMS model botocore ships (:mod:`.aws_model`),
then handed to the same service methods the gRPC adapter calls, in the same way. Binary fields
travel base64, timestamps as epoch seconds. A :class:`~kms_frontend.errors.KmsError` becomes
HTTP ``err.http_status`` (400, 500 internal) with ``{"__type": name, "message": ...}``, which is
what botocore turns into ``client.exceptions.<Name>``. No rules here.

Operations of the KMS model this service does not offer (grants, asymmetric keys, multi-Region...)
answer ``UnsupportedOperationException``; a target outside the model ``UnknownOperationException``.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from plumbing.addresses import split_listen

from .. import errors, observability
from ..service.frontend import Services, changes_state, run_to_end
from ..service.key_stores import UpdateRequest
from ..service.keys import CreateKeyRequest
from ..store.repository import CustomKeyStoreRecord, KeyRecord, Page
from .aws_model import KmsModel, SerializationException
from .sigv4 import REFUSALS, SigV4Verifier

log = logging.getLogger("kms_frontend.aws")

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0")
MAX_BODY_BYTES = 1 << 20  # the largest request (a 128 KiB policy, JSON-escaped) fits easily

Params = dict[str, Any]
Handler = Callable[[Services, Params], Awaitable[Params | None]]


class UnknownOperationException(errors.KmsError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------- records -> AWS JSON shapes


def ts(ms: int | None) -> float | None:
    """Milliseconds since the epoch -> AWS JSON timestamp (epoch seconds)."""
    return None if ms is None else ms / 1000


def store_entry(s: CustomKeyStoreRecord) -> Params:
    entry: Params = {
        "CustomKeyStoreId": s.custom_key_store_id, "CustomKeyStoreName": s.custom_key_store_name,
        "CloudHsmClusterId": s.cloud_hsm_cluster_id, "TrustAnchorCertificate": s.trust_anchor_certificate,
        "ConnectionState": s.connection_state, "CreationDate": ts(s.creation_date),
        "CustomKeyStoreType": s.custom_key_store_type}
    if s.connection_state == "FAILED" and s.connection_error_code:
        entry["ConnectionErrorCode"] = s.connection_error_code
    return entry


def key_metadata(k: KeyRecord, account_id: str) -> Params:
    md: Params = {
        "AWSAccountId": account_id, "KeyId": k.key_id, "Arn": k.arn, "CreationDate": ts(k.creation_date),
        "Enabled": k.key_state == "Enabled", "Description": k.description, "KeyUsage": k.key_usage,
        "KeyState": k.key_state, "Origin": k.origin, "CustomKeyStoreId": k.custom_key_store_id,
        "CloudHsmClusterId": k.cloud_hsm_cluster_id, "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": k.key_spec, "KeySpec": k.key_spec, "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": False}
    if k.key_state == "PendingDeletion" and k.deletion_date is not None:
        md["DeletionDate"] = ts(k.deletion_date)
    return md


def paged(page: Page[Any], field: str, items: list[Any]) -> Params:
    out: Params = {field: items, "Truncated": page.next_marker is not None}
    if page.next_marker:
        out["NextMarker"] = page.next_marker
    return out


def account(s: Services) -> str:
    return s.ctx.settings.account_id


# ---------------------------------------------------------------- routing table: operation -> service call

ROUTES: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if changes_state(name):
            @functools.wraps(fn)
            async def to_the_end(s: Services, p: Params) -> Any:
                return await run_to_end(fn(s, p))
            ROUTES[name] = to_the_end
        else:
            ROUTES[name] = fn
        return fn
    return register


@operation("CreateCustomKeyStore")
async def create_custom_key_store(s: Services, p: Params) -> Params:
    store_id = await s.key_stores.create(p.get("CustomKeyStoreName"), p.get("CloudHsmClusterId"),
                                         p.get("TrustAnchorCertificate"), p.get("KeyStorePassword"),
                                         p.get("CustomKeyStoreType"))
    return {"CustomKeyStoreId": store_id}


@operation("DescribeCustomKeyStores")
async def describe_custom_key_stores(s: Services, p: Params) -> Params:
    page = await s.key_stores.describe(p.get("CustomKeyStoreId"), p.get("CustomKeyStoreName"), p.get("Limit"),
                                       p.get("Marker"))
    return paged(page, "CustomKeyStores", [store_entry(x) for x in page.items])


@operation("UpdateCustomKeyStore")
async def update_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.update(UpdateRequest(p.get("CustomKeyStoreId"), p.get("NewCustomKeyStoreName"),
                                            p.get("KeyStorePassword"), p.get("CloudHsmClusterId")))


@operation("ConnectCustomKeyStore")
async def connect_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.connect(p.get("CustomKeyStoreId"))


@operation("DisconnectCustomKeyStore")
async def disconnect_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.disconnect(p.get("CustomKeyStoreId"))


@operation("DeleteCustomKeyStore")
async def delete_custom_key_store(s: Services, p: Params) -> None:
    await s.key_stores.delete(p.get("CustomKeyStoreId"))


@operation("CreateKey")
async def create_key(s: Services, p: Params) -> Params:
    key = await s.keys.create(CreateKeyRequest(
        custom_key_store_id=p.get("CustomKeyStoreId"), origin=p.get("Origin"), description=p.get("Description"),
        policy=p.get("Policy"), key_usage=p.get("KeyUsage"), key_spec=p.get("KeySpec"),
        customer_master_key_spec=p.get("CustomerMasterKeySpec"), multi_region=bool(p.get("MultiRegion")),
        tags=[(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])],
        bypass_policy_lockout_safety_check=bool(p.get("BypassPolicyLockoutSafetyCheck"))))
    return {"KeyMetadata": key_metadata(key, account(s))}


@operation("DescribeKey")
async def describe_key(s: Services, p: Params) -> Params:
    return {"KeyMetadata": key_metadata(s.keys.describe(p.get("KeyId")), account(s))}


@operation("ListKeys")
async def list_keys(s: Services, p: Params) -> Params:
    page = await s.keys.list(p.get("Limit"), p.get("Marker"))
    return paged(page, "Keys", [{"KeyId": k.key_id, "KeyArn": k.arn} for k in page.items])


@operation("EnableKey")
async def enable_key(s: Services, p: Params) -> None:
    await s.keys.enable(p.get("KeyId"))


@operation("DisableKey")
async def disable_key(s: Services, p: Params) -> None:
    await s.keys.disable(p.get("KeyId"))


@operation("UpdateKeyDescription")
async def update_key_description(s: Services, p: Params) -> None:
    await s.keys.update_description(p.get("KeyId"), p.get("Description"))


@operation("ScheduleKeyDeletion")
async def schedule_key_deletion(s: Services, p: Params) -> Params:
    key, window = await s.keys.schedule_deletion(p.get("KeyId"), p.get("PendingWindowInDays"))
    return {"KeyId": key.arn, "DeletionDate": ts(key.deletion_date), "KeyState": key.key_state,
            "PendingWindowInDays": window}


@operation("CancelKeyDeletion")
async def cancel_key_deletion(s: Services, p: Params) -> Params:
    key = await s.keys.cancel_deletion(p.get("KeyId"))
    return {"KeyId": key.arn}


@operation("EnableKeyRotation")
async def enable_key_rotation(s: Services, p: Params) -> None:
    await s.keys.unsupported(p.get("KeyId"), rotation=True)


@operation("DisableKeyRotation")
async def disable_key_rotation(s: Services, p: Params) -> None:
    await s.keys.unsupported(p.get("KeyId"), rotation=True)


@operation("GetKeyRotationStatus")
async def get_key_rotation_status(s: Services, p: Params) -> Params:
    await s.keys.unsupported(p.get("KeyId"), rotation=True)
    return {}


@operation("GetParametersForImport")
async def get_parameters_for_import(s: Services, p: Params) -> Params:
    await s.keys.unsupported(p.get("KeyId"), rotation=False)
    return {}


@operation("ImportKeyMaterial")
async def import_key_material(s: Services, p: Params) -> Params:
    await s.keys.unsupported(p.get("KeyId"), rotation=False)
    return {}


@operation("CreateAlias")
async def create_alias(s: Services, p: Params) -> None:
    await s.aliases.create(p.get("AliasName"), p.get("TargetKeyId"))


@operation("UpdateAlias")
async def update_alias(s: Services, p: Params) -> None:
    await s.aliases.update(p.get("AliasName"), p.get("TargetKeyId"))


@operation("DeleteAlias")
async def delete_alias(s: Services, p: Params) -> None:
    await s.aliases.delete(p.get("AliasName"))


@operation("ListAliases")
async def list_aliases(s: Services, p: Params) -> Params:
    page = await s.aliases.list(p.get("KeyId"), p.get("Limit"), p.get("Marker"))
    arns = s.catalog.arns
    return paged(page, "Aliases", [
        {"AliasName": a.alias_name, "AliasArn": arns.alias(a.alias_name), "TargetKeyId": a.key_id,
         "CreationDate": ts(a.creation_date), "LastUpdatedDate": ts(a.last_updated_date)} for a in page.items])


@operation("TagResource")
async def tag_resource(s: Services, p: Params) -> None:
    await s.tags.tag(p.get("KeyId"), [(t["TagKey"], t["TagValue"]) for t in p.get("Tags", [])])


@operation("UntagResource")
async def untag_resource(s: Services, p: Params) -> None:
    await s.tags.untag(p.get("KeyId"), list(p.get("TagKeys", [])))


@operation("ListResourceTags")
async def list_resource_tags(s: Services, p: Params) -> Params:
    page = s.tags.list(p.get("KeyId"), p.get("Limit"), p.get("Marker"))
    return paged(page, "Tags", [{"TagKey": k, "TagValue": v} for k, v in page.items])


@operation("GetKeyPolicy")
async def get_key_policy(s: Services, p: Params) -> Params:
    return {"Policy": s.policies.get(p.get("KeyId"), p.get("PolicyName")), "PolicyName": "default"}


@operation("PutKeyPolicy")
async def put_key_policy(s: Services, p: Params) -> None:
    await s.policies.put(p.get("KeyId"), p.get("PolicyName"), p.get("Policy"))


@operation("ListKeyPolicies")
async def list_key_policies(s: Services, p: Params) -> Params:
    page = s.policies.list(p.get("KeyId"), p.get("Limit"), p.get("Marker"))
    return paged(page, "PolicyNames", list(page.items))


@operation("Encrypt")
async def encrypt(s: Services, p: Params) -> Params:
    blob, key = await s.crypto.encrypt(p.get("KeyId"), p.get("Plaintext"), p.get("EncryptionContext", {}),
                                       list(p.get("GrantTokens", [])), p.get("EncryptionAlgorithm"),
                                       bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}


@operation("Decrypt")
async def decrypt(s: Services, p: Params) -> Params:
    out = await s.crypto.decrypt(p.get("CiphertextBlob"), p.get("EncryptionContext", {}), p.get("KeyId"),
                                 list(p.get("GrantTokens", [])), p.get("EncryptionAlgorithm"), bool(p.get("DryRun")))
    return {"KeyId": out.key.arn, "Plaintext": out.plaintext, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}


@operation("ReEncrypt")
async def re_encrypt(s: Services, p: Params) -> Params:
    blob, source, dest = await s.crypto.re_encrypt(
        p.get("CiphertextBlob"), p.get("SourceEncryptionContext", {}), p.get("SourceKeyId"),
        p.get("DestinationKeyId"), p.get("DestinationEncryptionContext", {}), p.get("SourceEncryptionAlgorithm"),
        p.get("DestinationEncryptionAlgorithm"), list(p.get("GrantTokens", [])), bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
            "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"}


@operation("GenerateDataKey")
async def generate_data_key(s: Services, p: Params) -> Params:
    blob, plaintext, key = await s.crypto.generate_data_key(
        p.get("KeyId"), p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=True, grant_tokens=list(p.get("GrantTokens", [])), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": key.arn}


@operation("GenerateDataKeyWithoutPlaintext")
async def generate_data_key_without_plaintext(s: Services, p: Params) -> Params:
    blob, _, key = await s.crypto.generate_data_key(
        p.get("KeyId"), p.get("EncryptionContext", {}), p.get("NumberOfBytes"), p.get("KeySpec"),
        with_plaintext=False, grant_tokens=list(p.get("GrantTokens", [])), dry_run=bool(p.get("DryRun")))
    return {"CiphertextBlob": blob, "KeyId": key.arn}


@operation("GenerateRandom")
async def generate_random(s: Services, p: Params) -> Params:
    return {"Plaintext": await s.crypto.generate_random(p.get("NumberOfBytes"), p.get("CustomKeyStoreId"))}


# ---------------------------------------------------------------- wire format


def to_json(value: Any) -> Any:
    """Blobs -> base64 text; absent (None) members dropped."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


class AwsJsonEndpoint:
    """The aiohttp application serving the KMS API in the frontend's event loop."""

    def __init__(self, services: Services, keys: dict[str, str], listen: str, *, grace: float = 10.0,
                 model: KmsModel | None = None, verifier: SigV4Verifier | None = None) -> None:
        self.services = services
        self.listen, self.grace = listen, grace
        self.host, self.port = split_listen(listen, "--aws-listen")
        self.model = model or KmsModel()
        self.verifier = verifier or SigV4Verifier(keys, services.ctx.settings.region)
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Requests being handled now (read by /metrics)."""
        return self._in_flight

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=self.grace)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, self.host, self.port)
        await self.site.start()
        log.info("AWS JSON endpoint listening", extra={
            "event": "aws_listening", "endpoint_url": self.url, "region": self.services.ctx.settings.region,
            "account_id": self.services.ctx.settings.account_id})

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` seconds), then close.

        The listening socket closes first and open connections stay up until the handlers running
        on them are done: aiohttp's own shutdown stops reading from a connection at once, which
        would strand a request whose body is still arriving.
        """
        if self.site is not None:
            await self.site.stop()
            self.site = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.grace)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # ------------------------------------------------------------ one request

    async def handle(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._handle(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        request_id = observability.new_request_id(
            request.headers.get("X-Request-Id") or request.headers.get("X-Amzn-RequestId"))
        token = observability.REQUEST_ID.set(request_id)
        name = observability.UNKNOWN_OPERATION
        outcome = observability.OK
        try:
            body = await request.read()
            self.verifier.verify(request.method, request.raw_path, request.headers.items(), body)
            name = self._operation(request)
            handler = ROUTES.get(name)
            if handler is None:
                raise errors.UnsupportedOperationException(
                    f"{name} is not supported by this KMS endpoint, which serves custom key stores backed by "
                    "CloudHSM clusters and symmetric encryption keys in them.")
            try:
                document = json.loads(body) if body.strip() else {}
            except (ValueError, UnicodeDecodeError):
                raise SerializationException("The request body is not valid JSON.") from None
            result = await handler(self.services, self.model.parse(name, document))
            if not self.model.has_output(name):
                return self._response(200, None, request_id)
            return self._response(200, to_json(result or {}), request_id)
        except web.HTTPException as exc:
            outcome = f"HTTP{exc.status}"
            raise
        except asyncio.CancelledError:
            outcome = "Cancelled"
            raise
        except errors.KmsError as exc:
            outcome = exc.name
            if isinstance(exc, REFUSALS):
                log.info("request refused", extra={"event": "aws_auth_refused", "error": exc.name,
                                                   "remote": request.remote, "request_id": request_id})
            return self._response(exc.http_status, exc.aws_json_body(), request_id)
        except Exception:
            exc = errors.unexpected(log, name, request_id)
            outcome = exc.name
            return self._response(exc.http_status, exc.aws_json_body(), request_id)
        finally:
            observability.REQUEST_ID.reset(token)
            observability.finish("aws", name, outcome, time.perf_counter() - started, request_id)

    def _operation(self, request: web.Request) -> str:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, name = target.partition(".")
        if (request.method != "POST" or content_type not in ACCEPTED_CONTENT_TYPES
                or prefix != self.model.target_prefix or name not in self.model.operations):
            raise UnknownOperationException(
                f"Unknown operation: expected POST with Content-Type {CONTENT_TYPE} and "
                f"X-Amz-Target {self.model.target_prefix}.<Operation>, got {request.method} with "
                f"Content-Type {content_type or '(none)'!r} and X-Amz-Target {target or '(none)'!r}.")
        return name

    @staticmethod
    def _response(status: int, document: Any, request_id: str) -> web.Response:
        body = b"" if document is None else json.dumps(document).encode()
        return web.Response(status=status, body=body, content_type=CONTENT_TYPE,
                            headers={"x-amzn-RequestId": request_id})
