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
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import text

from hygoshop_catalog.config import SCHEMA as CATALOG
from hygoshop_catalog.domain.listing import ListingContent, Money, Variant
from hygoshop_catalog.store import CatalogStore
from hygoshop_platform.db import (
    Pool,
    UnsafeDatabaseRole,
    assert_safe_role,
    open_pool,
    tenant_transaction,
)
from hygoshop_platform.infra import to_sqlalchemy_url
from hygoshop_platform.rls import role_offenders, tenant_table_offenders
from tests.support import SCHEMAS, PlatformDatabase

pytestmark = pytest.mark.integration
SCHEMA_NAMES = [s.schema for s in SCHEMAS]


@pytest.fixture(scope="module")
def admin_engine(platform_db: PlatformDatabase) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(to_sqlalchemy_url(platform_db.admin_url))
    yield engine
    engine.dispose()


@pytest.fixture
async def catalog_pool(platform_db: PlatformDatabase) -> AsyncIterator[Pool]:
    pool = await open_pool(platform_db.app_url(CATALOG), size=2)
    yield pool
    await pool.close()


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
    pool = await open_pool(platform_db.admin_url, size=1)
    try:
        with pytest.raises(UnsafeDatabaseRole, match="superuser=True"):
            await assert_safe_role(pool, "catalog")
    finally:
        await pool.close()


async def test_cross_tenant_matrix(catalog_pool: Pool) -> None:
    store = CatalogStore(catalog_pool)
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    a = await store.create(tenant_a, _content(f"A-{uuid.uuid4().hex[:8]}"), None)
    b = await store.create(tenant_b, _content(f"B-{uuid.uuid4().hex[:8]}"), None)

    async with tenant_transaction(catalog_pool, tenant_a) as conn:
        for table in ("catalog.listings", "catalog.variants"):
            seen = await conn.execute(
                f"SELECT tenant_id FROM {table} WHERE listing_id = %s", (b.listing_id,)
            )
            assert await seen.fetchall() == []
            updated = await conn.execute(
                f"UPDATE {table} SET tenant_id = tenant_id WHERE listing_id = %s", (b.listing_id,)
            )
            assert updated.rowcount == 0
            deleted = await conn.execute(
                f"DELETE FROM {table} WHERE listing_id = %s", (b.listing_id,)
            )
            assert deleted.rowcount == 0
        # A WHERE clause naming B's tenant does not help either.
        sneaky = await conn.execute(
            "SELECT 1 FROM catalog.listings WHERE tenant_id = %s", (tenant_b,)
        )
        assert await sneaky.fetchall() == []

    statements: list[tuple[str, tuple[object, ...]]] = [
        # insert with B's id
        (
            "INSERT INTO catalog.listings (tenant_id, listing_id, title, status)"
            " VALUES (%s, %s, 'x', 'draft')",
            (tenant_b, uuid.uuid4()),
        ),
        # move A's rows to B
        (
            "UPDATE catalog.listings SET tenant_id = %s WHERE listing_id = %s",
            (tenant_b, a.listing_id),
        ),
        (
            "UPDATE catalog.variants SET tenant_id = %s WHERE listing_id = %s",
            (tenant_b, a.listing_id),
        ),
    ]
    for sql, params in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # SQLSTATE 42501
            async with tenant_transaction(catalog_pool, tenant_a) as conn:
                await conn.execute(sql, params)

    # Both rows are intact, each seen from its own tenant.
    assert await store.get(tenant_b, b.listing_id) == b
    assert await store.get(tenant_a, a.listing_id) == a


async def test_foreign_key_to_another_tenants_parent_fails(catalog_pool: Pool) -> None:
    store = CatalogStore(catalog_pool)
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    b = await store.create(tenant_b, _content(f"B-{uuid.uuid4().hex[:8]}"), None)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        async with tenant_transaction(catalog_pool, tenant_a) as conn:
            await conn.execute(
                "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, currency, price)"
                " VALUES (%s, %s, 0, 'X', 'USD', 1)",
                (tenant_a, b.listing_id),
            )


async def _count(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM catalog.listings")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_missing_tenant_context_fails_closed(catalog_pool: Pool) -> None:
    store = CatalogStore(catalog_pool)
    tenant = uuid.uuid4()
    await store.create(tenant, _content(f"C-{uuid.uuid4().hex[:8]}"), None)
    async with catalog_pool.connection() as conn:
        # No setting at all.
        assert await _count(conn) == 0
        await conn.commit()
        # A setting local to a finished transaction leaves an empty string behind.
        await conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant),))
        assert await _count(conn) >= 1
        await conn.commit()
        cur = await conn.execute("SELECT current_setting('app.tenant_id', true)")
        assert (await cur.fetchone())[0] == ""  # type: ignore[index]
        assert await _count(conn) == 0
        await conn.commit()
        # A malformed id is an error, never rows.
        await conn.execute("SELECT set_config('app.tenant_id', 'not-a-uuid', true)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):  # 22P02
            await _count(conn)
        await conn.rollback()
        # Writes without a tenant fail.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(
                "INSERT INTO catalog.listings (tenant_id, listing_id, title, status)"
                " VALUES (%s, %s, 'x', 'draft')",
                (tenant, uuid.uuid4()),
            )
        await conn.rollback()


async def test_pool_never_leaks_a_tenant_between_requests(catalog_pool: Pool) -> None:
    """10,000 requests over a pool of 2, alternating random tenants, 5% failing mid-transaction."""
    tenants = [uuid.uuid4() for _ in range(4)]
    store = CatalogStore(catalog_pool)
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
            async with tenant_transaction(catalog_pool, tenant) as conn:
                cur = await conn.execute("SELECT tenant_id FROM catalog.listings")
                wrong += sum(1 for row in await cur.fetchall() if row.tenant_id != tenant)
                if fail:
                    raise Boom
        except Boom:
            failures += 1

    for _ in range(10_000 // 8):
        await asyncio.gather(*(request(rng.choice(tenants), rng.random() < 0.05) for _ in range(8)))
    assert wrong == 0
    assert failures > 0
