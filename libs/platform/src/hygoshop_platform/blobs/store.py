"""BlobStore: a tenant's objects over boto3's S3 API, async (boto3 calls run in worker threads).

Every method takes a `BlobKey`, so no code path can touch an object outside a tenant's
prefix with an unchecked string. Presigned URLs are signed for `public_endpoint_url` (what
clients reach); everything else goes to `endpoint_url` (what services reach).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from hygoshop_platform.blobs.keys import BlobKey
from hygoshop_platform.blobs.settings import BlobSettings
from hygoshop_platform.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT_CODES = frozenset({"500", "502", "503", "504", "SlowDown", "ServiceUnavailable"})
_TRANSIENT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
)


class BlobNotFound(NotFound):
    """No such object (or it belongs to another tenant: the same answer)."""

    def __init__(self, message: str = "object not found") -> None:
        super().__init__(message, reason="OBJECT_NOT_FOUND")


class BlobStoreUnavailable(Unavailable):
    """Object storage did not answer or answered with a server error; retry later."""

    def __init__(self) -> None:
        super().__init__("object storage is unavailable, retry later", reason="STORAGE_UNAVAILABLE")


class BlobTooLarge(Exception):
    """`get(max_bytes=...)` found a bigger object; nothing was read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object is {size} bytes, the limit is {limit}")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: BlobKey
    size: int
    content_type: str
    etag: str
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """What a client sends to transfer one object directly to or from storage."""

    url: str
    method: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers the client must send exactly as given (they are part of the signature)."""
    expire_time: datetime = field(default_factory=lambda: datetime.now(UTC))


def make_client(
    settings: BlobSettings,
    endpoint_url: str | None = None,
    *,
    max_attempts: int = 3,
    connect_timeout: float = 3.0,
) -> S3Client:
    """A thread-safe boto3 S3 client for `endpoint_url` (default: the internal endpoint)."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style},
        max_pool_connections=settings.max_connections,
        connect_timeout=connect_timeout,
        read_timeout=20,
        retries={"mode": "standard", "max_attempts": max_attempts},
        # Checksums only where S3 demands them: S3-compatible stores differ in support.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session per client: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url or settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        region_name=settings.region,
        config=config,
    )


CORS_MAX_AGE_SECONDS = 3600


def configure_cors(settings: BlobSettings) -> bool:
    """Let the pages of `settings.cors_origins` use presigned URLs from the browser: PUT
    an upload (with the Content-Type it was signed for), GET or HEAD a file. Replaces the
    bucket's CORS rules (idempotent); does nothing, and returns False, without origins."""
    if not settings.cors_origins:
        return False
    client = make_client(settings)
    try:
        client.put_bucket_cors(
            Bucket=settings.bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": list(settings.cors_origins),
                        "AllowedMethods": ["PUT", "GET", "HEAD"],
                        "AllowedHeaders": ["content-type"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": CORS_MAX_AGE_SECONDS,
                    }
                ]
            },
        )
    finally:
        client.close()
    return True


def ensure_bucket(settings: BlobSettings) -> bool:
    """Create the bucket unless it exists (local runs and tests); True when it was created."""
    client = make_client(settings)
    try:
        client.head_bucket(Bucket=settings.bucket)
        return False
    except ClientError as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        if settings.region == "us-east-1":
            client.create_bucket(Bucket=settings.bucket)
        else:
            client.create_bucket(
                Bucket=settings.bucket,
                CreateBucketConfiguration={"LocationConstraint": settings.region},  # type: ignore[typeddict-item]
            )
    except ClientError as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    finally:
        client.close()
    return True


class BlobStore:
    """One bucket, tenant-confined keys, async methods. Create once per process; `close()` it."""

    def __init__(self, settings: BlobSettings) -> None:
        self.settings = settings
        self._client = make_client(settings)
        if settings.signing_endpoint_url != settings.endpoint_url:
            self._signer = make_client(settings, settings.signing_endpoint_url)
        else:
            self._signer = self._client
        # Own threads: slow storage must not starve the loop's default executor.
        self._executor = ThreadPoolExecutor(settings.max_connections, thread_name_prefix="blobs")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()
        if self._signer is not self._client:
            self._signer.close()

    # Presigning is local computation (HMAC over the request): no thread, no network.

    def presign_put(
        self, key: BlobKey, *, content_type: str, size_bytes: int, expires_in: int | None = None
    ) -> PresignedRequest:
        """A PUT URL for exactly `size_bytes` bytes of `content_type`.

        Content-Type and Content-Length are signed: storage refuses a body of another size or
        type with 403 SignatureDoesNotMatch, so the declared limits hold at upload time.
        """
        seconds = expires_in or self.settings.presign_put_seconds
        url = self._signer.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.settings.bucket,
                "Key": key.object_key,
                "ContentType": content_type,
                "ContentLength": size_bytes,
            },
            ExpiresIn=seconds,
        )
        return PresignedRequest(
            url=url,
            method="PUT",
            headers={"Content-Type": content_type, "Content-Length": str(size_bytes)},
            expire_time=_expiry(seconds),
        )

    def presign_get(self, key: BlobKey, *, expires_in: int | None = None) -> PresignedRequest:
        """A GET URL for the object (whether it exists is not checked)."""
        seconds = expires_in or self.settings.presign_get_seconds
        url = self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.settings.bucket, "Key": key.object_key},
            ExpiresIn=seconds,
        )
        return PresignedRequest(url=url, method="GET", expire_time=_expiry(seconds))

    async def head(self, key: BlobKey) -> ObjectInfo | None:
        """Size, type and etag of the object, or None when it does not exist."""
        try:
            reply = await self._run(
                self._client.head_object, Bucket=self.settings.bucket, Key=key.object_key
            )
        except BlobNotFound:
            return None
        return ObjectInfo(
            key=key,
            size=reply["ContentLength"],
            content_type=reply.get("ContentType", "application/octet-stream"),
            etag=reply.get("ETag", "").strip('"'),
            last_modified=reply["LastModified"],
        )

    async def read_range(self, key: BlobKey, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start` (fewer at the end); BlobNotFound if missing."""
        if length <= 0:
            return b""

        def read() -> bytes:
            try:
                reply = self._client.get_object(
                    Bucket=self.settings.bucket,
                    Key=key.object_key,
                    Range=f"bytes={start}-{start + length - 1}",
                )
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # empty object, or start past its end
                    return b""
                raise
            with reply["Body"] as body:
                return body.read()

        return await self._run(read)

    async def get(self, key: BlobKey, *, max_bytes: int | None = None) -> bytes:
        """The whole object; BlobNotFound if missing, BlobTooLarge above `max_bytes`."""

        def read() -> bytes:
            reply = self._client.get_object(Bucket=self.settings.bucket, Key=key.object_key)
            with reply["Body"] as body:
                size = reply["ContentLength"]
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(size, max_bytes)
                return body.read()

        return await self._run(read)

    async def stream(self, key: BlobKey, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks of at most `chunk_size` bytes, without holding it in memory."""
        reply = await self._run(
            self._client.get_object, Bucket=self.settings.bucket, Key=key.object_key
        )
        body = reply["Body"]
        try:
            while chunk := await self._run(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def put(self, key: BlobKey, data: bytes, content_type: str) -> ObjectInfo:
        """Store `data` (server-side writes: results, generated files)."""
        reply = await self._run(
            self._client.put_object,
            Bucket=self.settings.bucket,
            Key=key.object_key,
            Body=data,
            ContentType=content_type,
        )
        return ObjectInfo(
            key=key,
            size=len(data),
            content_type=content_type,
            etag=reply.get("ETag", "").strip('"'),
            last_modified=datetime.now(UTC),
        )

    async def copy(self, source: BlobKey, target: BlobKey) -> None:
        """Server-side copy within one tenant; BlobNotFound when `source` is missing."""
        if source.tenant_id != target.tenant_id:
            raise ValueError("objects are never copied between tenants")
        await self._run(
            self._client.copy_object,
            Bucket=self.settings.bucket,
            Key=target.object_key,
            CopySource={"Bucket": self.settings.bucket, "Key": source.object_key},
        )

    async def delete(self, key: BlobKey) -> None:
        """Remove the object; a missing one is not an error."""
        await self._run(self._client.delete_object, Bucket=self.settings.bucket, Key=key.object_key)

    async def delete_folder(self, folder: BlobKey) -> int:
        """Remove every object under `folder/` (e.g. all files of a deleted record); how many."""
        prefix = folder.object_key + "/"

        def delete_all() -> int:
            deleted = 0
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=prefix
            )
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self._client.delete_objects(
                        Bucket=self.settings.bucket,
                        Delete={"Objects": keys, "Quiet": True},  # type: ignore[typeddict-item]
                    )
                    deleted += len(keys)
            return deleted

        return await self._run(delete_all)

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn` in a worker thread (with our context vars), boto errors as domain errors."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_CODES:
                raise BlobNotFound() from None
            if code in _TRANSIENT_CODES:
                log.warning("object storage answered %s", code)
                raise BlobStoreUnavailable() from exc
            raise
        except _TRANSIENT_ERRORS as exc:
            log.warning("object storage unreachable: %s", type(exc).__name__)
            raise BlobStoreUnavailable() from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _expiry(seconds: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
