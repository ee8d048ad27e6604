"""Abandoned uploads expire, on real PostgreSQL and S3: the sweeper deletes the files of
uploads past their retention and nothing else, keeps what an unfinished import reads, and
loses nothing when storage fails."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_catalog.domain.uploads import UploadPurpose
from hygoshop_catalog.imports import ListingImports
from hygoshop_catalog.media import Media
from hygoshop_catalog.store import CatalogStore
from hygoshop_catalog.upload_expiry import UploadSweeper, hold_upload, sweep_expired_uploads
from hygoshop_platform.blobs import BlobKey, BlobSettings, BlobStore, BlobStoreUnavailable
from hygoshop_platform.db import Pool, tenant_transaction
from hygoshop_platform.infra import free_port
from hygoshop_platform.testing.s3 import MakeBucket

pytestmark = pytest.mark.integration

CSV = b"sku,title,price,currency\nS-1,Shirt,10,USD\n"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;"


@pytest.fixture(scope="module")
def bucket(make_bucket: MakeBucket) -> BlobSettings:
    return make_bucket("uploads")


@pytest.fixture
async def blobs(bucket: BlobSettings) -> AsyncIterator[BlobStore]:
    store = BlobStore(bucket)
    yield store
    store.close()


def media(pool: Pool, blobs: BlobStore, retention: timedelta) -> Media:
    return Media(pool, CatalogStore(pool), blobs, retention)


FILES = {
    UploadPurpose.IMPORT_FILE: ("text/csv", CSV),
    UploadPurpose.LISTING_IMAGE: ("image/gif", GIF),
}


async def uploaded(
    pool: Pool,
    blobs: BlobStore,
    retention: timedelta,
    tenant: uuid.UUID | None = None,
    purpose: UploadPurpose = UploadPurpose.IMPORT_FILE,
) -> BlobKey:
    """Sign an upload kept for `retention` and send its file, as a client would."""
    content_type, data = FILES[purpose]
    key, _, _ = await media(pool, blobs, retention).create_upload(
        tenant or uuid.uuid4(), purpose, content_type, len(data), "file"
    )
    await blobs.put(key, data, content_type)
    return key


async def recorded(pool: Pool, key: BlobKey) -> bool:
    async with tenant_transaction(pool, key.tenant_id) as conn:
        cur = await conn.execute("SELECT 1 FROM catalog.uploads WHERE upload_key = %s", (key.path,))
        return await cur.fetchone() is not None


async def test_an_upload_is_recorded_with_its_delete_time(pool: Pool, blobs: BlobStore) -> None:
    before = datetime.now(UTC)
    key, presigned, delete_time = await media(pool, blobs, timedelta(hours=6)).create_upload(
        uuid.uuid4(), UploadPurpose.LISTING_IMAGE, "image/png", 100, "a.png"
    )
    assert await recorded(pool, key)
    assert before + timedelta(hours=6) - timedelta(seconds=5) < delete_time
    assert delete_time < datetime.now(UTC) + timedelta(hours=6, seconds=5)
    assert presigned.expire_time < delete_time  # the URL dies before the upload is swept


async def test_expired_uploads_go_and_the_others_stay(pool: Pool, blobs: BlobStore) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    expired = [
        await uploaded(pool, blobs, timedelta(0), tenant_a),
        await uploaded(pool, blobs, timedelta(0), tenant_b, UploadPurpose.LISTING_IMAGE),
    ]
    kept = await uploaded(pool, blobs, timedelta(days=1), tenant_a)
    # Small batches: the sweep goes on until no expired upload is left.
    swept = await sweep_expired_uploads(pool, blobs, batch=1)
    assert swept >= 2  # other tests' expired uploads may go in the same sweep
    for key in expired:
        assert await blobs.head(key) is None
        assert not await recorded(pool, key)
    assert await blobs.head(kept) is not None
    assert await recorded(pool, kept)


async def test_an_upload_an_unfinished_import_reads_is_kept(pool: Pool, blobs: BlobStore) -> None:
    tenant = uuid.uuid4()
    key = await uploaded(pool, blobs, timedelta(0), tenant)
    imports = ListingImports(pool, blobs)
    started = await imports.start(
        tenant,
        catalog_pb2.ImportListingsRequest(
            request_id="expiry-1", upload_key=f"tenants/{tenant}/{key.path}"
        ),
    )
    assert started.upload_key == key.path  # stored as the key CreateUpload named
    await sweep_expired_uploads(pool, blobs)
    assert await blobs.head(key) is not None  # pending: kept although expired

    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "UPDATE catalog.listing_imports SET state = 'succeeded' WHERE import_id = %s",
            (started.import_id,),
        )
    await sweep_expired_uploads(pool, blobs)
    assert await blobs.head(key) is None  # the import ended: the upload expires as usual
    assert not await recorded(pool, key)


async def test_a_sweep_skips_an_upload_an_import_is_taking(pool: Pool, blobs: BlobStore) -> None:
    """The import's transaction holds the upload while it checks and records it: a sweep
    that runs meanwhile passes it over instead of deleting the file under it."""
    tenant = uuid.uuid4()
    key = await uploaded(pool, blobs, timedelta(0), tenant)
    async with tenant_transaction(pool, tenant) as conn:
        await hold_upload(conn, key)
        await asyncio.wait_for(sweep_expired_uploads(pool, blobs), 10)
        assert await blobs.head(key) is not None
    await sweep_expired_uploads(pool, blobs)  # released (no import recorded): it goes now
    assert await blobs.head(key) is None


async def test_a_storage_outage_loses_no_record(
    pool: Pool, blobs: BlobStore, bucket: BlobSettings
) -> None:
    """Files that could not be deleted keep their records: the next sweep deletes them."""
    key = await uploaded(pool, blobs, timedelta(0))
    down = dataclasses.replace(bucket, endpoint_url=f"http://127.0.0.1:{free_port()}")
    broken = BlobStore(down)
    try:
        with pytest.raises(BlobStoreUnavailable):
            await sweep_expired_uploads(pool, broken)
    finally:
        broken.close()
    assert await recorded(pool, key)
    assert await blobs.head(key) is not None
    await sweep_expired_uploads(pool, blobs)
    assert await blobs.head(key) is None
    assert not await recorded(pool, key)


async def test_the_sweeper_runs_on_its_schedule(pool: Pool, blobs: BlobStore) -> None:
    key = await uploaded(pool, blobs, timedelta(0))
    sweeper = UploadSweeper(pool, blobs, every=0.05)
    await sweeper.start()
    try:
        for _ in range(200):
            if not await recorded(pool, key):
                break
            await asyncio.sleep(0.02)
    finally:
        await sweeper.stop()
    assert not await recorded(pool, key)
    assert await blobs.head(key) is None
    assert sweeper.swept >= 1
