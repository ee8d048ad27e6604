"""Catalog's repository: listings and variants in PostgreSQL, one tenant transaction per call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hygoshop_catalog.domain.listing import (
    Dimensions,
    ImageRef,
    Listing,
    ListingContent,
    ListingStatus,
    Money,
    Variant,
)
from hygoshop_platform.db import tenant_transaction
from hygoshop_platform.errors import AlreadyExists

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
        images=tuple(ImageRef(i["key"], i.get("alt_text", "")) for i in row.images),
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
        "attributes": json.dumps(content.attributes),
        "images": json.dumps([{"key": i.key, "alt_text": i.alt_text} for i in content.images]),
        "status": content.status.value,
    }


class CatalogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> Listing | None:
        async with tenant_transaction(self._engine, tenant_id) as conn:
            return await self._get(conn, tenant_id, listing_id)

    async def _get(
        self,
        conn: AsyncConnection,
        tenant_id: uuid.UUID,
        listing_id: uuid.UUID,
        *,
        lock: bool = False,
    ) -> Listing | None:
        sql = _SELECT + " WHERE l.tenant_id = :tenant AND l.listing_id = :id"
        if lock:
            sql += " FOR UPDATE OF l"
        row = (await conn.execute(text(sql), {"tenant": tenant_id, "id": listing_id})).one_or_none()
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
        where = ["l.tenant_id = :tenant"]
        params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
        if flt.status is not None:
            where.append("l.status = :status")
            params["status"] = flt.status.value
        if flt.updated_after is not None:
            where.append("l.update_time >= :updated_after")
            params["updated_after"] = flt.updated_after
        if after is not None:
            where.append("(l.update_time, l.listing_id) < (:after_time, :after_id)")
            params.update(after_time=after[0], after_id=after[1])
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY l.update_time DESC, l.listing_id DESC LIMIT :limit"
        async with tenant_transaction(self._engine, tenant_id) as conn:
            return [_listing(r) for r in await conn.execute(text(sql), params)]

    async def create(
        self, tenant_id: uuid.UUID, content: ListingContent, request_id: str | None
    ) -> Listing:
        """Insert; with a request id already used by this tenant, return that listing instead."""
        listing_id = uuid.uuid4()
        async with tenant_transaction(self._engine, tenant_id) as conn:
            inserted = (
                await conn.execute(
                    text(
                        "INSERT INTO catalog.listings (tenant_id, listing_id, title, description, brand,"
                        " category, attributes, images, status, request_id) VALUES (:tenant, :id, :title,"
                        " :description, :brand, :category, CAST(:attributes AS jsonb),"
                        " CAST(:images AS jsonb), :status, :request_id)"
                        " ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING listing_id"
                    ),
                    {
                        "tenant": tenant_id,
                        "id": listing_id,
                        "request_id": request_id,
                        **_listing_params(content),
                    },
                )
            ).one_or_none()
            if inserted is None:
                existing = (
                    await conn.execute(
                        text(
                            "SELECT listing_id FROM catalog.listings WHERE tenant_id = :t AND request_id = :r"
                        ),
                        {"t": tenant_id, "r": request_id},
                    )
                ).one()
                listing_id = existing.listing_id
            else:
                await self._insert_variants(conn, tenant_id, listing_id, content.variants)
            found = await self._get(conn, tenant_id, listing_id)
        assert found is not None
        return found

    async def update(
        self,
        tenant_id: uuid.UUID,
        listing_id: uuid.UUID,
        change: Any,
    ) -> Listing | None:
        """Lock the listing, let `change(current) -> (content, variants_changed)` decide, write.

        `change` may raise a domain error (validation, etag mismatch): nothing is written.
        """
        async with tenant_transaction(self._engine, tenant_id) as conn:
            current = await self._get(conn, tenant_id, listing_id, lock=True)
            if current is None:
                return None
            content, variants_changed = change(current)
            await conn.execute(
                text(
                    "UPDATE catalog.listings SET title = :title, description = :description,"
                    " brand = :brand, category = :category, attributes = CAST(:attributes AS jsonb),"
                    " images = CAST(:images AS jsonb), status = :status, version = version + 1,"
                    " update_time = clock_timestamp() WHERE tenant_id = :tenant AND listing_id = :id"
                ),
                {"tenant": tenant_id, "id": listing_id, **_listing_params(content)},
            )
            if variants_changed:
                await conn.execute(
                    text("DELETE FROM catalog.variants WHERE tenant_id = :t AND listing_id = :id"),
                    {"t": tenant_id, "id": listing_id},
                )
                await self._insert_variants(conn, tenant_id, listing_id, content.variants)
            return await self._get(conn, tenant_id, listing_id)

    async def delete(self, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> bool:
        async with tenant_transaction(self._engine, tenant_id) as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM catalog.listings WHERE tenant_id = :t AND listing_id = :id RETURNING 1"
                ),
                {"t": tenant_id, "id": listing_id},
            )
            return result.first() is not None

    async def _insert_variants(
        self,
        conn: AsyncConnection,
        tenant_id: uuid.UUID,
        listing_id: uuid.UUID,
        variants: Sequence[Variant],
    ) -> None:
        rows = [
            {
                "tenant": tenant_id,
                "listing": listing_id,
                "position": position,
                "sku": v.sku,
                "options": json.dumps(v.options),
                "currency": v.price.currency,
                "price": v.price.amount,
                "compare_at": None if v.compare_at_price is None else v.compare_at_price.amount,
                "inventory": v.inventory_quantity,
                "weight": v.weight_grams,
                "length": v.dimensions.length_mm,
                "width": v.dimensions.width_mm,
                "height": v.dimensions.height_mm,
                "gtin": v.gtin,
                "mpn": v.mpn,
            }
            for position, v in enumerate(variants)
        ]
        try:
            await conn.execute(
                text(
                    "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, options,"
                    " currency, price, compare_at_price, inventory_quantity, weight_grams, length_mm,"
                    " width_mm, height_mm, gtin, mpn) VALUES (:tenant, :listing, :position, :sku,"
                    " CAST(:options AS jsonb), :currency, :price, :compare_at, :inventory, :weight,"
                    " :length, :width, :height, :gtin, :mpn)"
                ),
                rows,
            )
        except IntegrityError as exc:
            # The only unique key a client can hit here is (tenant_id, sku); say which sku
            # without echoing database internals.
            if getattr(exc.orig, "sqlstate", None) == "23505":
                raise AlreadyExists(
                    "a variant sku is already used by another listing of this tenant",
                    reason="SKU_ALREADY_EXISTS",
                ) from None
            raise
