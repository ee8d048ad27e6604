"""The import job on real PostgreSQL: an import it cannot process ends FAILED instead of
being retried for ever (and staying RUNNING); a retry-worthy state is left to the retry."""

from __future__ import annotations

import uuid

import pytest

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_catalog import events
from hygoshop_catalog.imports import UNEXPECTED_FAILURE, ListingImports
from hygoshop_platform.bus import Delivery
from hygoshop_platform.db import Pool, tenant_transaction

pytestmark = pytest.mark.integration


def job(tenant: uuid.UUID, import_id: uuid.UUID) -> Delivery:
    return Delivery(events.import_requested(tenant, import_id), consumer=events.IMPORT_JOB)


async def inline_import(imports: ListingImports, tenant: uuid.UUID) -> uuid.UUID:
    listing = catalog_pb2.Listing(
        title="Shirt",
        variants=[catalog_pb2.Variant(sku="S-1")],
    )
    request = catalog_pb2.ImportListingsRequest(
        request_id=f"job-{uuid.uuid4().hex[:8]}",
        inline=catalog_pb2.InlineListings(listings=[listing]),
    )
    return (await imports.start(tenant, request)).import_id


async def test_an_import_the_job_cannot_read_ends_failed(pool: Pool) -> None:
    """Its stored rows are corrupt (not the protobuf they should be): every attempt would
    fail the same way."""
    imports = ListingImports(pool, None)
    tenant = uuid.uuid4()
    import_id = await inline_import(imports, tenant)
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "UPDATE catalog.listing_imports SET inline_rows = %s WHERE import_id = %s",
            (b"\xff\xff\xff\xff", import_id),
        )
    await imports.run_job(job(tenant, import_id))  # returns: nothing left to retry
    record = await imports.get(tenant, import_id)
    assert record is not None
    assert (record.state, record.failure_message) == ("failed", UNEXPECTED_FAILURE)
    assert record.end_time is not None


async def test_a_job_that_may_succeed_later_is_retried_not_failed(pool: Pool) -> None:
    """A file import on a catalog without object storage: the job raises (the bus retries
    it with backoff until storage is configured) and the import is not ended."""
    tenant, import_id = uuid.uuid4(), uuid.uuid4()
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO catalog.listing_imports (tenant_id, import_id, request_id, state,"
            " error_policy, format, upload_key) VALUES (%s, %s, 'later', 'pending',"
            " 'reject_all', 'csv', 'uploads/imports/x/rows.csv')",
            (tenant, import_id),
        )
    imports = ListingImports(pool, None)
    with pytest.raises(RuntimeError, match="object storage is not configured"):
        await imports.run_job(job(tenant, import_id))
    record = await imports.get(tenant, import_id)
    assert record is not None
    assert record.state == "running"
