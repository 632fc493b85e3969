"""The KMS calls the load and chaos tools make, over gRPC or the AWS JSON endpoint.

Both clients raise :class:`CallError` named like the AWS exception: the
``x-aws-exception`` trailing metadata of a failed gRPC call, the error code of a
boto3 ``ClientError``; failures below the API (a refused connection, a deadline)
are named after the transport (``grpc.UNAVAILABLE``, ``ReadTimeoutError``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
from botocore.credentials import Credentials

from protos.kms.v1 import auth as kms_auth
from protos.kms.v1 import kms_pb2 as kms
from protos.kms.v1 import kms_pb2_grpc as kms_grpc

from .target import Target


class CallError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


class KmsClient(Protocol):
    async def encrypt(self, key_id: str, plaintext: bytes, ctx: Mapping[str, str]) -> bytes: ...
    async def decrypt(self, blob: bytes, ctx: Mapping[str, str]) -> bytes: ...
    async def generate_data_key(self, key_id: str, ctx: Mapping[str, str], nbytes: int) -> tuple[bytes, bytes]: ...
    async def re_encrypt(self, blob: bytes, ctx: Mapping[str, str], key_id: str,
                         new_ctx: Mapping[str, str]) -> bytes: ...
    async def generate_random(self, nbytes: int, store_id: str) -> bytes: ...
    async def create_key(self, store_id: str, description: str) -> str: ...
    async def close(self) -> None: ...


def grpc_error_name(exc: grpc.aio.AioRpcError) -> str:
    trailing = dict(exc.trailing_metadata() or ())
    return str(trailing.get("x-aws-exception") or f"grpc.{exc.code().name}")


class GrpcClient:
    """kms.v1 over one channel, every call signed (SigV4) with the target's credentials."""

    def __init__(self, target: Target) -> None:
        self.timeout = target.timeout
        credentials = Credentials(target.access_key_id, target.secret_access_key, target.session_token or None)
        self.channel = kms_auth.aio_channel(target.endpoint, credentials, target.region)
        self.stub = kms_grpc.KmsStub(self.channel)

    async def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise CallError(grpc_error_name(exc), exc.details() or "") from None

    async def encrypt(self, key_id: str, plaintext: bytes, ctx: Mapping[str, str]) -> bytes:
        r = await self._call(self.stub.Encrypt, kms.EncryptRequest(key_id=key_id, plaintext=plaintext,
                                                                   encryption_context=ctx))
        return r.ciphertext_blob

    async def decrypt(self, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        r = await self._call(self.stub.Decrypt, kms.DecryptRequest(ciphertext_blob=blob, encryption_context=ctx))
        return r.plaintext

    async def generate_data_key(self, key_id: str, ctx: Mapping[str, str], nbytes: int) -> tuple[bytes, bytes]:
        r = await self._call(self.stub.GenerateDataKey, kms.GenerateDataKeyRequest(
            key_id=key_id, encryption_context=ctx, number_of_bytes=nbytes))
        return r.ciphertext_blob, r.plaintext

    async def re_encrypt(self, blob: bytes, ctx: Mapping[str, str], key_id: str, new_ctx: Mapping[str, str]) -> bytes:
        r = await self._call(self.stub.ReEncrypt, kms.ReEncryptRequest(
            ciphertext_blob=blob, source_encryption_context=ctx, destination_key_id=key_id,
            destination_encryption_context=new_ctx))
        return r.ciphertext_blob

    async def generate_random(self, nbytes: int, store_id: str) -> bytes:
        r = await self._call(self.stub.GenerateRandom, kms.GenerateRandomRequest(
            number_of_bytes=nbytes, custom_key_store_id=store_id))
        return r.plaintext

    async def create_key(self, store_id: str, description: str) -> str:
        r = await self._call(self.stub.CreateKey, kms.CreateKeyRequest(
            origin="AWS_CLOUDHSM", custom_key_store_id=store_id, description=description))
        return r.key_metadata.key_id

    async def close(self) -> None:
        await self.channel.close()


class AwsClient:
    """boto3 (blocking) on a thread pool sized to the callers; botocore's own retries off, so
    every failure shows."""

    def __init__(self, target: Target, concurrency: int) -> None:
        import boto3
        from botocore.config import Config
        workers = max(1, concurrency)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kms-aws")
        self.client = boto3.session.Session().client(
            "kms", endpoint_url=target.aws_endpoint_url, region_name=target.region,
            aws_access_key_id=target.access_key_id, aws_secret_access_key=target.secret_access_key,
            aws_session_token=target.session_token or None, verify=target.ca_bundle or None, config=Config(retries={"total_max_attempts": 1}, max_pool_connections=workers,
                          connect_timeout=min(10.0, target.timeout), read_timeout=target.timeout))

    async def _call(self, name: str, **params: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        def call() -> dict:
            return getattr(self.client, name)(**params)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, call)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise CallError(err.get("Code") or "ClientError", err.get("Message") or str(exc)) from None
        except BotoCoreError as exc:
            raise CallError(type(exc).__name__, str(exc)) from None

    async def encrypt(self, key_id: str, plaintext: bytes, ctx: Mapping[str, str]) -> bytes:
        return (await self._call("encrypt", KeyId=key_id, Plaintext=plaintext, EncryptionContext=dict(ctx)))[
            "CiphertextBlob"]

    async def decrypt(self, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        return (await self._call("decrypt", CiphertextBlob=blob, EncryptionContext=dict(ctx)))["Plaintext"]

    async def generate_data_key(self, key_id: str, ctx: Mapping[str, str], nbytes: int) -> tuple[bytes, bytes]:
        r = await self._call("generate_data_key", KeyId=key_id, EncryptionContext=dict(ctx), NumberOfBytes=nbytes)
        return r["CiphertextBlob"], r["Plaintext"]

    async def re_encrypt(self, blob: bytes, ctx: Mapping[str, str], key_id: str, new_ctx: Mapping[str, str]) -> bytes:
        return (await self._call("re_encrypt", CiphertextBlob=blob, SourceEncryptionContext=dict(ctx),
                                 DestinationKeyId=key_id, DestinationEncryptionContext=dict(new_ctx)))["CiphertextBlob"]

    async def generate_random(self, nbytes: int, store_id: str) -> bytes:
        return (await self._call("generate_random", NumberOfBytes=nbytes, CustomKeyStoreId=store_id))["Plaintext"]

    async def create_key(self, store_id: str, description: str) -> str:
        r = await self._call("create_key", Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, Description=description)
        return r["KeyMetadata"]["KeyId"]

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_client(target: Target, concurrency: int = 16) -> KmsClient:
    return AwsClient(target, concurrency) if target.protocol == "aws" else GrpcClient(target)
