"""Catalog's repository: listings and variants in PostgreSQL, one tenant transaction per call."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from hygoshop_catalog import events
from hygoshop_catalog.domain.listing import (
    Dimensions,
    ImageRef,
    Listing,
    ListingContent,
    ListingStatus,
    Money,
    Variant,
)
from hygoshop_platform.bus import add_to_outbox
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.errors import AlreadyExists

SCHEMA = "catalog"

# Variants come back as one JSON array per listing (one round trip); money as text so
# no amount passes through a float.
_SELECT = """
SELECT l.listing_id, l.title, l.description, l.brand, l.category, l.attributes, l.images,
       l.status, l.version, l.create_time, l.update_time,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'sku', v.sku, 'options', v.options, 'currency', v.currency,
                 'price', v.price::text, 'compare_at_price', v.compare_at_price::text,
                 'inventory_quantity', v.inventory_quantity, 'weight_grams', v.weight_grams,
                 'length_mm', v.length_mm, 'width_mm', v.width_mm, 'height_mm', v.height_mm,
                 'gtin', v.gtin, 'mpn', v.mpn) ORDER BY v.position), '[]'::jsonb)
          FROM catalog.variants v
         WHERE v.tenant_id = l.tenant_id AND v.listing_id = l.listing_id) AS variants
  FROM catalog.listings l
"""


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: ListingStatus | None = None
    updated_after: datetime | None = None


def _variant(raw: dict[str, Any]) -> Variant:
    compare_at = raw["compare_at_price"]
    return Variant(
        sku=raw["sku"],
        price=Money(raw["currency"], Decimal(raw["price"])),
        options=dict(raw["options"]),
        compare_at_price=None
        if compare_at is None
        else Money(raw["currency"], Decimal(compare_at)),
        inventory_quantity=raw["inventory_quantity"],
        weight_grams=raw["weight_grams"],
        dimensions=Dimensions(raw["length_mm"], raw["width_mm"], raw["height_mm"]),
        gtin=raw["gtin"],
        mpn=raw["mpn"],
    )


def _listing(row: Any) -> Listing:
    content = ListingContent(
        title=row.title,
        description=row.description,
        brand=row.brand,
        category=row.category,
        attributes=dict(row.attributes),
        images=tuple(
            ImageRef(
                i["key"], i.get("alt_text", ""), i.get("content_type", ""), i.get("size_bytes", 0)
            )
            for i in row.images
        ),
        status=ListingStatus(row.status),
        variants=tuple(_variant(v) for v in row.variants),
    )
    return Listing(row.listing_id, content, row.create_time, row.update_time, row.version)


def _listing_params(content: ListingContent) -> dict[str, Any]:
    return {
        "title": content.title,
        "description": content.description,
        "brand": content.brand,
        "category": content.category,
        "attributes": Jsonb(content.attributes),
        "images": Jsonb(
            [
                {
                    "key": i.key,
                    "alt_text": i.alt_text,
                    "content_type": i.content_type,
                    "size_bytes": i.size_bytes,
                }
                for i in content.images
            ]
        ),
        "status": content.status.value,
    }


class CatalogStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def get(self, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> Listing | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._get(conn, tenant_id, listing_id)

    async def _get(
        self, conn: Connection, tenant_id: uuid.UUID, listing_id: uuid.UUID, *, lock: bool = False
    ) -> Listing | None:
        sql = _SELECT + " WHERE l.tenant_id = %(tenant)s AND l.listing_id = %(id)s"
        if lock:
            sql += " FOR UPDATE OF l"
        cur = await conn.execute(sql, {"tenant": tenant_id, "id": listing_id})
        row = await cur.fetchone()
        return None if row is None else _listing(row)

    async def list(
        self,
        tenant_id: uuid.UUID,
        flt: ListFilter,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Listing]:
        """Newest update first; `after` is the (update_time, listing_id) of the last row seen."""
        where = ["l.tenant_id = %(tenant)s"]
        params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
        if flt.status is not None:
            where.append("l.status = %(status)s")
            params["status"] = flt.status.value
        if flt.updated_after is not None:
            where.append("l.update_time >= %(updated_after)s")
            params["updated_after"] = flt.updated_after
        if after is not None:
            where.append("(l.update_time, l.listing_id) < (%(after_time)s, %(after_id)s)")
            params.update(after_time=after[0], after_id=after[1])
        sql = (
            f"{_SELECT} WHERE {' AND '.join(where)}"
            " ORDER BY l.update_time DESC, l.listing_id DESC LIMIT %(limit)s"
        )
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(sql, params)
            return [_listing(r) for r in await cur.fetchall()]

    async def create(
        self, tenant_id: uuid.UUID, content: ListingContent, request_id: str | None
    ) -> Listing:
        """Insert; with a request id already used by this tenant, return that listing instead."""
        listing_id = uuid.uuid4()
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "INSERT INTO catalog.listings (tenant_id, listing_id, title, description, brand,"
                " category, attributes, images, status, request_id) VALUES (%(tenant)s, %(id)s,"
                " %(title)s, %(description)s, %(brand)s, %(category)s, %(attributes)s, %(images)s,"
                " %(status)s, %(request_id)s)"
                " ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING listing_id",
                {
                    "tenant": tenant_id,
                    "id": listing_id,
                    "request_id": request_id,
                    **_listing_params(content),
                },
            )
            if await cur.fetchone() is None:
                cur = await conn.execute(
                    "SELECT listing_id FROM catalog.listings WHERE tenant_id = %s AND request_id = %s",
                    (tenant_id, request_id),
                )
                existing = await cur.fetchone()
                assert existing is not None
                listing_id = existing.listing_id
                found = await self._get(conn, tenant_id, listing_id)
            else:
                await self._insert_variants(conn, tenant_id, listing_id, content.variants)
                found = await self._get(conn, tenant_id, listing_id)
                assert found is not None
                await add_to_outbox(conn, SCHEMA, events.listing_created(tenant_id, found))
        assert found is not None
        return found

    async def update(
        self,
        tenant_id: uuid.UUID,
        listing_id: uuid.UUID,
        change: Callable[[Listing], tuple[ListingContent, bool]],
        paths: Sequence[str] = (),
    ) -> Listing | None:
        """Lock the listing, let `change(current) -> (content, variants_changed)` decide, write.

        `change` may raise a domain error (validation, etag mismatch): nothing is written.
        `paths` names the changed fields in the `catalog.listing.updated` event.
        """
        async with tenant_transaction(self._pool, tenant_id) as conn:
            current = await self._get(conn, tenant_id, listing_id, lock=True)
            if current is None:
                return None
            content, variants_changed = change(current)
            await conn.execute(
                "UPDATE catalog.listings SET title = %(title)s, description = %(description)s,"
                " brand = %(brand)s, category = %(category)s, attributes = %(attributes)s,"
                " images = %(images)s, status = %(status)s, version = version + 1,"
                " update_time = clock_timestamp()"
                " WHERE tenant_id = %(tenant)s AND listing_id = %(id)s",
                {"tenant": tenant_id, "id": listing_id, **_listing_params(content)},
            )
            if variants_changed:
                await conn.execute(
                    "DELETE FROM catalog.variants WHERE tenant_id = %s AND listing_id = %s",
                    (tenant_id, listing_id),
                )
                await self._insert_variants(conn, tenant_id, listing_id, content.variants)
            updated = await self._get(conn, tenant_id, listing_id)
            assert updated is not None
            await add_to_outbox(conn, SCHEMA, events.listing_updated(tenant_id, updated, paths))
            return updated

    async def delete(self, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "WITH gone AS (DELETE FROM catalog.listings WHERE tenant_id = %s"
                " AND listing_id = %s RETURNING listing_id)"
                " SELECT coalesce(array_agg(v.sku ORDER BY v.position), '{}') AS skus,"
                " count(gone.*) > 0 AS found FROM gone"
                " LEFT JOIN catalog.variants v ON v.tenant_id = %s AND v.listing_id = gone.listing_id",
                (tenant_id, listing_id, tenant_id),
            )
            row = await cur.fetchone()
            if row is None or not row.found:
                return False
            await add_to_outbox(
                conn, SCHEMA, events.listing_deleted(tenant_id, listing_id, row.skus)
            )
            return True

    async def _insert_variants(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        listing_id: uuid.UUID,
        variants: Sequence[Variant],
    ) -> None:
        rows = [
            (
                tenant_id,
                listing_id,
                position,
                v.sku,
                Jsonb(v.options),
                v.price.currency,
                v.price.amount,
                None if v.compare_at_price is None else v.compare_at_price.amount,
                v.inventory_quantity,
                v.weight_grams,
                v.dimensions.length_mm,
                v.dimensions.width_mm,
                v.dimensions.height_mm,
                v.gtin,
                v.mpn,
            )
            for position, v in enumerate(variants)
        ]
        try:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, options,"
                    " currency, price, compare_at_price, inventory_quantity, weight_grams,"
                    " length_mm, width_mm, height_mm, gtin, mpn)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        except pg_errors.UniqueViolation:
            # The only unique key a client can hit here is (tenant_id, sku); say so without
            # echoing database internals (constraint names, values).
            raise AlreadyExists(
                "a variant sku is already used by another listing of this tenant",
                reason="SKU_ALREADY_EXISTS",
            ) from None
