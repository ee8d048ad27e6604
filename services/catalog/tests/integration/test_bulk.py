"""Bulk upsert on real PostgreSQL: sku per tenant is the key, conflicts are row errors."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from hygoshop_catalog.bulk import upsert_listings
from hygoshop_catalog.domain.listing import ListingContent, Money, Variant
from hygoshop_catalog.store import CatalogStore, ListFilter
from hygoshop_platform.db import Pool, tenant_transaction

pytestmark = pytest.mark.integration


def listing(title: str, *skus: str, price: str = "10") -> ListingContent:
    return ListingContent(
        title=title,
        variants=tuple(Variant(sku=s, price=Money("USD", Decimal(price))) for s in skus),
    )


async def test_creates_then_updates_by_sku(pool: Pool) -> None:
    tenant = uuid.uuid4()
    store = CatalogStore(pool)
    async with tenant_transaction(pool, tenant) as conn:
        first = await upsert_listings(
            conn, tenant, [(1, listing("Shirt", "S-1", "S-2")), (2, listing("Hat", "H-1"))]
        )
    assert (len(first.created), first.updated, first.errors) == (2, (), ())

    async with tenant_transaction(pool, tenant) as conn:
        second = await upsert_listings(
            conn,
            tenant,
            [(1, listing("Shirt v2", "S-1", "S-3", price="12")), (2, listing("Sock", "K-1"))],
        )
    assert (len(second.created), len(second.updated), second.errors) == (1, 1, ())
    shirt = await store.get(tenant, second.updated[0])
    assert shirt is not None
    assert shirt.content.title == "Shirt v2"
    assert [v.sku for v in shirt.content.variants] == ["S-1", "S-3"]  # replaced, S-2 gone
    assert shirt.version == 2
    assert len(await store.list(tenant, ListFilter(), limit=10, after=None)) == 3


async def test_conflicting_rows_are_row_errors_and_the_rest_lands(pool: Pool) -> None:
    tenant = uuid.uuid4()
    async with tenant_transaction(pool, tenant) as conn:
        await upsert_listings(conn, tenant, [(1, listing("A", "A-1")), (2, listing("B", "B-1"))])
    async with tenant_transaction(pool, tenant) as conn:
        result = await upsert_listings(
            conn,
            tenant,
            [
                (1, listing("A again", "A-1", "B-1")),  # B-1 belongs to listing B
                (2, listing("C", "C-1")),
                (3, listing("C twice", "C-1")),  # same key as row 2: the later row wins
                (4, listing("D", "D-1", "X-1")),
                (5, listing("E", "E-1", "X-1")),  # X-1 also in row 4
            ],
        )
    assert [(e.row, e.field) for e in result.errors] == [(1, "sku"), (2, "sku"), (4, "sku")]
    assert "another listing" in result.errors[0].description
    assert len(result.created) == 2  # rows 3 and 5


async def test_same_sku_in_two_tenants_is_two_listings(pool: Pool) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    for tenant in (tenant_a, tenant_b):
        async with tenant_transaction(pool, tenant) as conn:
            result = await upsert_listings(conn, tenant, [(1, listing("Shared", "SHARED-1"))])
        assert len(result.created) == 1
