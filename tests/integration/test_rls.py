"""Row-level security on every tenant table, checked through the services' own roles.

See ../shared/design/reliability.md "Tenancy": meta-guard, cross-tenant matrix, fail-closed,
pool leak. Everything runs against real PostgreSQL as the non-owner application roles.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from hygoshop_catalog.config import SCHEMA as CATALOG
from hygoshop_catalog.domain.listing import ListingContent, Money, Variant
from hygoshop_catalog.store import CatalogStore
from hygoshop_platform.db import (
    UnsafeDatabaseRole,
    assert_safe_role,
    create_engine,
    sqlalchemy_url,
    tenant_transaction,
)
from hygoshop_platform.rls import role_offenders, tenant_table_offenders
from tests.support import SCHEMAS, PlatformDatabase

pytestmark = pytest.mark.integration
SCHEMA_NAMES = [s.schema for s in SCHEMAS]


@pytest.fixture(scope="module")
def admin_engine(platform_db: PlatformDatabase) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(sqlalchemy_url(platform_db.admin_url))
    yield engine
    engine.dispose()


@pytest.fixture
async def catalog_engine(platform_db: PlatformDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(platform_db.app_url(CATALOG), pool_size=2)
    yield engine
    await engine.dispose()


def _content(sku: str) -> ListingContent:
    return ListingContent(
        title=f"Listing {sku}", variants=(Variant(sku=sku, price=Money("USD", Decimal("10"))),)
    )


def test_every_tenant_table_has_forced_rls_with_policies(admin_engine: sqlalchemy.Engine) -> None:
    with admin_engine.connect() as conn:
        assert tenant_table_offenders(conn, SCHEMA_NAMES) == []
        tables = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE column_name = 'tenant_id' AND table_schema = ANY(:s)"
            ),
            {"s": SCHEMA_NAMES},
        ).scalar_one()
    assert tables >= 4  # tenants, api_keys, listings, variants: the guard looked at them


def test_guard_catches_a_table_without_rls(admin_engine: sqlalchemy.Engine) -> None:
    with admin_engine.connect() as conn, conn.begin() as tx:
        conn.execute(text("CREATE TABLE catalog.sneaky (tenant_id uuid, note text)"))
        assert tenant_table_offenders(conn, ["catalog"]) == [
            "catalog.sneaky: row-level security is not enabled",
            "catalog.sneaky: row-level security is not forced",
            "catalog.sneaky: no policy for every command (has [])",
        ]
        tx.rollback()


def test_application_roles_cannot_escape_rls(admin_engine: sqlalchemy.Engine) -> None:
    with admin_engine.connect() as conn:
        for spec in SCHEMAS:
            assert role_offenders(conn, spec.app_role, SCHEMA_NAMES) == []
        # ... and the guard does see an owner for what it is.
        assert role_offenders(conn, CATALOG.owner_role, ["catalog"])


async def test_service_refuses_to_start_as_a_privileged_role(platform_db: PlatformDatabase) -> None:
    engine = create_engine(platform_db.admin_url, pool_size=1)
    try:
        with pytest.raises(UnsafeDatabaseRole, match="superuser=True"):
            await assert_safe_role(engine, "catalog")
    finally:
        await engine.dispose()


async def test_cross_tenant_matrix(catalog_engine: AsyncEngine) -> None:
    store = CatalogStore(catalog_engine)
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    a = await store.create(tenant_a, _content(f"A-{uuid.uuid4().hex[:8]}"), None)
    b = await store.create(tenant_b, _content(f"B-{uuid.uuid4().hex[:8]}"), None)

    async with tenant_transaction(catalog_engine, tenant_a) as conn:
        for table in ("catalog.listings", "catalog.variants"):
            seen = await conn.execute(
                text(f"SELECT tenant_id FROM {table} WHERE listing_id = :b"), {"b": b.listing_id}
            )
            assert seen.all() == []
            updated = await conn.execute(
                text(f"UPDATE {table} SET tenant_id = tenant_id WHERE listing_id = :b"),
                {"b": b.listing_id},
            )
            assert updated.rowcount == 0
            deleted = await conn.execute(
                text(f"DELETE FROM {table} WHERE listing_id = :b"), {"b": b.listing_id}
            )
            assert deleted.rowcount == 0
        # The WHERE clause naming B's tenant does not help either.
        sneaky = await conn.execute(
            text("SELECT 1 FROM catalog.listings WHERE tenant_id = :b"), {"b": tenant_b}
        )
        assert sneaky.all() == []

    statements = [
        # insert with B's id
        (
            "INSERT INTO catalog.listings (tenant_id, listing_id, title, status) VALUES (:b, :new, 'x', 'draft')",
            {"b": tenant_b, "new": uuid.uuid4()},
        ),
        # move A's row to B
        (
            "UPDATE catalog.listings SET tenant_id = :b WHERE listing_id = :a",
            {"b": tenant_b, "a": a.listing_id},
        ),
        (
            "UPDATE catalog.variants SET tenant_id = :b WHERE listing_id = :a",
            {"b": tenant_b, "a": a.listing_id},
        ),
    ]
    for sql, params in statements:
        with pytest.raises(DBAPIError) as info:
            async with tenant_transaction(catalog_engine, tenant_a) as conn:
                await conn.execute(text(sql), params)
        assert getattr(info.value.orig, "sqlstate", None) == "42501", sql

    # B's row is intact, seen from B.
    assert await store.get(tenant_b, b.listing_id) == b


async def test_foreign_key_to_another_tenants_parent_fails(catalog_engine: AsyncEngine) -> None:
    store = CatalogStore(catalog_engine)
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    b = await store.create(tenant_b, _content(f"B-{uuid.uuid4().hex[:8]}"), None)
    with pytest.raises(DBAPIError) as info:
        async with tenant_transaction(catalog_engine, tenant_a) as conn:
            await conn.execute(
                text(
                    "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, currency, price)"
                    " VALUES (:a, :b_listing, 0, 'X', 'USD', 1)"
                ),
                {"a": tenant_a, "b_listing": b.listing_id},
            )
    assert getattr(info.value.orig, "sqlstate", None) == "23503"


async def test_missing_tenant_context_fails_closed(catalog_engine: AsyncEngine) -> None:
    store = CatalogStore(catalog_engine)
    tenant = uuid.uuid4()
    await store.create(tenant, _content(f"C-{uuid.uuid4().hex[:8]}"), None)
    async with catalog_engine.connect() as conn:
        # No setting at all.
        assert (await conn.execute(text("SELECT count(*) FROM catalog.listings"))).scalar_one() == 0
        await conn.commit()
        # A setting local to a finished transaction leaves an empty string behind.
        await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant)})
        assert (await conn.execute(text("SELECT count(*) FROM catalog.listings"))).scalar_one() >= 1
        await conn.commit()
        assert (
            await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
        ).scalar_one() == ""
        assert (await conn.execute(text("SELECT count(*) FROM catalog.listings"))).scalar_one() == 0
        await conn.commit()
        # A malformed id is an error, never rows.
        await conn.execute(text("SELECT set_config('app.tenant_id', 'not-a-uuid', true)"))
        with pytest.raises(DBAPIError) as info:
            await conn.execute(text("SELECT count(*) FROM catalog.listings"))
        assert getattr(info.value.orig, "sqlstate", None) == "22P02"
        await conn.rollback()
        # Writes without a tenant fail.
        with pytest.raises(DBAPIError) as info:
            await conn.execute(
                text(
                    "INSERT INTO catalog.listings (tenant_id, listing_id, title, status) VALUES (:t, :id, 'x', 'draft')"
                ),
                {"t": tenant, "id": uuid.uuid4()},
            )
        assert getattr(info.value.orig, "sqlstate", None) == "42501"
        await conn.rollback()


async def test_pool_never_leaks_a_tenant_between_requests(catalog_engine: AsyncEngine) -> None:
    """10,000 requests over a pool of 2, alternating random tenants, 5% failing mid-transaction."""
    tenants = [uuid.uuid4() for _ in range(4)]
    store = CatalogStore(catalog_engine)
    for tenant in tenants:
        await store.create(tenant, _content(f"P-{uuid.uuid4().hex[:8]}"), None)
    rng = random.Random(7)
    wrong = 0
    failures = 0

    class Boom(Exception):
        pass

    async def request(tenant: uuid.UUID, fail: bool) -> None:
        nonlocal wrong, failures
        try:
            async with tenant_transaction(catalog_engine, tenant) as conn:
                rows = (
                    (await conn.execute(text("SELECT tenant_id FROM catalog.listings")))
                    .scalars()
                    .all()
                )
                wrong += sum(1 for r in rows if r != tenant)
                if fail:
                    raise Boom
        except Boom:
            failures += 1

    for _ in range(10_000 // 8):
        await asyncio.gather(*(request(rng.choice(tenants), rng.random() < 0.05) for _ in range(8)))
    assert wrong == 0
    assert failures > 0
