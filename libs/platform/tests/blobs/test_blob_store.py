"""BlobStore against a real S3 endpoint (SeaweedFS from the wheel unless S3_ENDPOINT_URL)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from hygoshop_platform.blobs import (
    BlobKey,
    BlobNotFound,
    BlobSettings,
    BlobStore,
    BlobStoreUnavailable,
    BlobTooLarge,
    configure_cors,
    make_client,
)
from hygoshop_platform.infra import free_port
from hygoshop_platform.testing.s3 import MakeBucket

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture(scope="module")
def bucket(make_bucket: MakeBucket) -> BlobSettings:
    return make_bucket("blobs")


@pytest.fixture
async def blobs(bucket: BlobSettings) -> AsyncIterator[BlobStore]:
    store = BlobStore(bucket)
    yield store
    store.close()


@pytest.fixture
async def web() -> AsyncIterator[httpx.AsyncClient]:
    """A client like a browser's: no credentials, only the presigned URLs."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def tenant_key(path: str, tenant: uuid.UUID | None = None) -> BlobKey:
    return BlobKey.parse(tenant or uuid.uuid4(), path)


async def test_presigned_put_then_get_round_trip(blobs: BlobStore, web: httpx.AsyncClient) -> None:
    key = BlobKey.new_upload(uuid.uuid4(), "images", "shirt.png")
    upload = blobs.presign_put(key, content_type="image/png", size_bytes=len(PNG))
    assert upload.method == "PUT"
    assert upload.headers == {"Content-Type": "image/png", "Content-Length": str(len(PNG))}
    sent = await web.put(upload.url, content=PNG, headers=dict(upload.headers))
    assert sent.status_code == 200, sent.text

    info = await blobs.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (len(PNG), "image/png")
    assert await blobs.read_range(key, 0, 8) == PNG[:8]
    assert await blobs.get(key) == PNG
    download = await web.get(blobs.presign_get(key).url)
    assert download.status_code == 200
    assert download.content == PNG


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (PNG + b"more", "image/png"),  # bigger than declared
        (PNG[:-1], "image/png"),  # smaller than declared
        (PNG, "text/html"),  # another type than declared
    ],
)
async def test_upload_must_match_the_signed_size_and_type(
    blobs: BlobStore, web: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    key = BlobKey.new_upload(uuid.uuid4(), "images", "x.png")
    upload = blobs.presign_put(key, content_type="image/png", size_bytes=len(PNG))
    sent = await web.put(upload.url, content=body, headers={"Content-Type": content_type})
    assert sent.status_code == 403
    assert await blobs.head(key) is None


async def test_a_tenant_cannot_reach_another_tenants_object(blobs: BlobStore) -> None:
    owner, intruder = uuid.uuid4(), uuid.uuid4()
    mine = tenant_key("uploads/secret.txt", owner)
    await blobs.put(mine, b"owner's data", "text/plain")

    for spelled in (mine.path, mine.object_key):
        theirs = BlobKey.parse(intruder, spelled)
        assert theirs.object_key.startswith(f"tenants/{intruder}/")
        assert await blobs.head(theirs) is None
        with pytest.raises(BlobNotFound):
            await blobs.get(theirs)
        with pytest.raises(BlobNotFound):
            await blobs.copy(theirs, tenant_key("stolen", intruder))
    assert await blobs.get(mine) == b"owner's data"
    with pytest.raises(ValueError, match="between tenants"):
        await blobs.copy(mine, tenant_key("copy", intruder))


async def test_streaming_ranges_limits_copy_and_delete(blobs: BlobStore) -> None:
    tenant = uuid.uuid4()
    data = bytes(range(256)) * 40
    source = tenant_key("imports/rows.bin", tenant)
    await blobs.put(source, data, "application/octet-stream")

    chunks = [chunk async for chunk in blobs.stream(source, chunk_size=1000)]
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= 1000
    assert await blobs.read_range(source, len(data) - 3, 100) == data[-3:]
    assert await blobs.read_range(source, len(data) + 5, 10) == b""
    with pytest.raises(BlobTooLarge):
        await blobs.get(source, max_bytes=len(data) - 1)

    target = tenant_key("listings/l1/copy.bin", tenant)
    await blobs.copy(source, target)
    await blobs.put(tenant_key("listings/l1/other.bin", tenant), b"x", "text/plain")
    await blobs.put(tenant_key("listings/l10/keep.bin", tenant), b"y", "text/plain")
    assert await blobs.get(target) == data
    assert await blobs.delete_folder(tenant_key("listings/l1", tenant)) == 2
    assert await blobs.head(target) is None
    assert await blobs.head(tenant_key("listings/l10/keep.bin", tenant)) is not None
    await blobs.delete(source)
    await blobs.delete(source)  # deleting what is gone is fine
    with pytest.raises(BlobNotFound):
        await blobs.get(source)


async def test_credentials_are_checked(
    blobs: BlobStore, bucket: BlobSettings, web: httpx.AsyncClient
) -> None:
    key = tenant_key("private.txt")
    await blobs.put(key, b"private", "text/plain")
    assert bucket.endpoint_url is not None
    anonymous = await web.get(f"{bucket.endpoint_url}/{bucket.bucket}/{key.object_key}")
    assert anonymous.status_code == 403
    forged = make_client(dataclasses.replace(bucket, secret_access_key="not-the-secret"))
    with pytest.raises(ClientError) as refused:
        forged.get_object(Bucket=bucket.bucket, Key=key.object_key)
    assert refused.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
    tampered = blobs.presign_get(key).url.replace("private.txt", "other.txt")
    assert (await web.get(tampered)).status_code == 403


async def test_presigned_urls_use_the_public_endpoint(
    bucket: BlobSettings, web: httpx.AsyncClient
) -> None:
    # Clients reach storage under another name than services do (here: localhost).
    assert bucket.endpoint_url is not None
    internal = urlsplit(bucket.endpoint_url)
    if internal.hostname != "127.0.0.1":
        pytest.skip(reason="needs the loopback SeaweedFS to have a second name for the same server")
    public = urlunsplit(internal._replace(netloc=f"localhost:{internal.port}"))
    store = BlobStore(dataclasses.replace(bucket, public_endpoint_url=public))
    try:
        key = tenant_key("uploads/a.txt")
        upload = store.presign_put(key, content_type="text/plain", size_bytes=5)
        assert upload.url.startswith(public + "/")
        sent = await web.put(upload.url, content=b"hello", headers=dict(upload.headers))
        assert sent.is_success
        download = store.presign_get(key).url
        assert download.startswith(public + "/")
        assert (await web.get(download)).content == b"hello"
        assert await store.get(key) == b"hello"  # services still use the internal endpoint
    finally:
        store.close()


async def test_unreachable_storage_is_unavailable_not_missing(bucket: BlobSettings) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = BlobStore(dataclasses.replace(bucket, endpoint_url=dead))
    try:
        with pytest.raises(BlobStoreUnavailable):
            await store.head(tenant_key("x"))
    finally:
        store.close()


async def preflight(web: httpx.AsyncClient, url: str, origin: str, method: str) -> httpx.Response:
    """What a browser asks before a cross-origin PUT with a Content-Type."""
    return await web.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )


async def test_browser_origins_are_allowed_by_the_buckets_cors_rules(
    make_bucket: MakeBucket, web: httpx.AsyncClient
) -> None:
    allowed = "https://admin.shop.example"
    plain = make_bucket("nocors")
    assert configure_cors(plain) is False  # no origins: the bucket is left alone
    settings = dataclasses.replace(make_bucket("cors"), cors_origins=(allowed,))
    assert configure_cors(settings) is True
    assert configure_cors(settings) is True  # idempotent
    store = BlobStore(settings)
    try:
        key = BlobKey.new_upload(uuid.uuid4(), "images", "shirt.png")
        upload = store.presign_put(key, content_type="image/png", size_bytes=len(PNG))
        asked = await preflight(web, upload.url, allowed, "PUT")
        assert asked.status_code == 200, asked.text
        assert asked.headers["access-control-allow-origin"] == allowed
        assert "PUT" in asked.headers["access-control-allow-methods"]
        sent = await web.put(upload.url, content=PNG, headers={**upload.headers, "Origin": allowed})
        assert sent.status_code == 200, sent.text
        assert sent.headers["access-control-allow-origin"] == allowed
        download = store.presign_get(key).url
        assert (await preflight(web, download, allowed, "GET")).status_code == 200
        # Another site's page gets no permission. (A bucket without rules answers as its
        # server likes: S3 and R2 refuse every origin, SeaweedFS allows any.)
        other = await preflight(web, upload.url, "https://evil.example", "PUT")
        assert "access-control-allow-origin" not in other.headers
    finally:
        store.close()
