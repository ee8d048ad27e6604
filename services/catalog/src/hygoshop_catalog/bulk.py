"""Bulk upsert of imported listings: COPY into temp tables, then set-based SQL.

The upsert key is the sku per tenant: a row whose first variant's sku already exists
updates that listing (its variants are replaced); otherwise it creates one. A row whose
other skus belong to a different listing, or that repeats a key sku of an earlier row in
the same chunk, is refused as a row error instead of failing the whole chunk. Images are
never imported (they pass their checks only through :attachImage) and an update keeps
the listing's attached images.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from hygoshop_catalog.domain.import_rows import RowError
from hygoshop_catalog.domain.listing import ListingContent
from hygoshop_platform.db import Connection

_TEMP_TABLES = """
CREATE TEMP TABLE imp_listings (
    line_no int PRIMARY KEY, listing_id uuid NOT NULL, key_sku text NOT NULL,
    existing boolean NOT NULL DEFAULT false, title text, description text, brand text,
    category text, attributes jsonb, status text
) ON COMMIT DROP;
CREATE TEMP TABLE imp_variants (
    line_no int, position smallint, sku text, options jsonb, currency char(3),
    price numeric(19, 9), compare_at_price numeric(19, 9), inventory_quantity int,
    weight_grams int, length_mm int, width_mm int, height_mm int, gtin text, mpn text
) ON COMMIT DROP
"""


@dataclass(frozen=True, slots=True)
class UpsertResult:
    created: tuple[uuid.UUID, ...]
    updated: tuple[uuid.UUID, ...]
    errors: tuple[RowError, ...]


async def _copy_rows(conn: Connection, rows: Sequence[tuple[int, ListingContent]]) -> None:
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY imp_listings (line_no, listing_id, key_sku, title, description, brand, category,"
            " attributes, status) FROM STDIN"
        ) as copy:
            for number, c in rows:
                await copy.write_row(
                    (
                        number, uuid.uuid4(), c.variants[0].sku, c.title, c.description, c.brand,
                        c.category, Jsonb(c.attributes), c.status.value,
                    )
                )  # fmt: skip
        async with cur.copy(
            "COPY imp_variants (line_no, position, sku, options, currency, price, compare_at_price,"
            " inventory_quantity, weight_grams, length_mm, width_mm, height_mm, gtin, mpn)"
            " FROM STDIN"
        ) as copy:
            for number, c in rows:
                for position, v in enumerate(c.variants):
                    compare_at = None if v.compare_at_price is None else v.compare_at_price.amount
                    await copy.write_row(
                        (
                            number, position, v.sku, Jsonb(v.options), v.price.currency,
                            v.price.amount, compare_at, v.inventory_quantity, v.weight_grams,
                            v.dimensions.length_mm, v.dimensions.width_mm, v.dimensions.height_mm,
                            v.gtin, v.mpn,
                        )
                    )  # fmt: skip


async def _refuse(
    conn: Connection, sql: str, params: dict[str, object], why: str
) -> list[RowError]:
    """Delete the rows `sql` selects from the temp tables and report them as row errors."""
    cur = await conn.execute(
        f"WITH bad AS ({sql}) DELETE FROM imp_listings i USING bad"
        " WHERE i.line_no = bad.line_no RETURNING i.line_no, bad.sku",
        params,
    )
    rows = await cur.fetchall()
    if rows:
        await conn.execute(
            "DELETE FROM imp_variants WHERE line_no = ANY(%s)", ([r.line_no for r in rows],)
        )
    return [RowError(r.line_no, "sku", why.format(sku=r.sku)) for r in rows]


async def upsert_listings(
    conn: Connection, tenant_id: uuid.UUID, rows: Sequence[tuple[int, ListingContent]]
) -> UpsertResult:
    """Upsert `(row number, content)` pairs inside the caller's tenant transaction."""
    if not rows:
        return UpsertResult((), (), ())
    await conn.execute(_TEMP_TABLES)
    await _copy_rows(conn, rows)
    params: dict[str, object] = {"t": tenant_id}
    errors = await _refuse(
        conn,
        "SELECT line_no, key_sku AS sku FROM (SELECT line_no, key_sku, row_number() OVER"
        " (PARTITION BY key_sku ORDER BY line_no DESC) AS n FROM imp_listings) d WHERE n > 1",
        params,
        "sku {sku} is the key of a later row of this import too; the later row wins",
    )
    await conn.execute(
        "UPDATE imp_listings i SET listing_id = v.listing_id, existing = true"
        " FROM catalog.variants v WHERE v.tenant_id = %(t)s AND v.sku = i.key_sku",
        params,
    )
    errors += await _refuse(
        conn,
        "SELECT DISTINCT iv.line_no, iv.sku FROM imp_variants iv JOIN imp_listings il USING (line_no)"
        " JOIN catalog.variants v ON v.tenant_id = %(t)s AND v.sku = iv.sku"
        " WHERE v.listing_id <> il.listing_id",
        params,
        "sku {sku} belongs to another listing",
    )
    errors += await _refuse(
        conn,
        "SELECT line_no, sku FROM (SELECT iv.line_no, iv.sku, row_number() OVER"
        " (PARTITION BY iv.sku ORDER BY iv.line_no DESC) AS n FROM imp_variants iv) d WHERE n > 1",
        params,
        "sku {sku} appears in another row of this import",
    )
    cur = await conn.execute(
        "INSERT INTO catalog.listings AS l (tenant_id, listing_id, title, description, brand,"
        " category, attributes, status)"
        " SELECT %(t)s, listing_id, title, description, brand, category, attributes, status"
        " FROM imp_listings"
        " ON CONFLICT (tenant_id, listing_id) DO UPDATE SET title = excluded.title,"
        " description = excluded.description, brand = excluded.brand,"
        " category = excluded.category, attributes = excluded.attributes,"
        " status = excluded.status, version = l.version + 1,"
        " update_time = clock_timestamp()"
        " RETURNING l.listing_id, (l.version > 1) AS was_update",
        params,
    )
    written = await cur.fetchall()
    await conn.execute(
        "DELETE FROM catalog.variants v USING imp_listings i"
        " WHERE v.tenant_id = %(t)s AND v.listing_id = i.listing_id AND i.existing",
        params,
    )
    await conn.execute(
        "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, options, currency,"
        " price, compare_at_price, inventory_quantity, weight_grams, length_mm, width_mm,"
        " height_mm, gtin, mpn)"
        " SELECT %(t)s, i.listing_id, v.position, v.sku, v.options, v.currency, v.price,"
        " v.compare_at_price, v.inventory_quantity, v.weight_grams, v.length_mm, v.width_mm,"
        " v.height_mm, v.gtin, v.mpn FROM imp_variants v JOIN imp_listings i USING (line_no)",
        params,
    )
    return UpsertResult(
        created=tuple(r.listing_id for r in written if not r.was_update),
        updated=tuple(r.listing_id for r in written if r.was_update),
        errors=tuple(sorted(errors, key=lambda e: e.row)),
    )
