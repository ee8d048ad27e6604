"""Proto <-> domain mapping of listings (the only place that knows both shapes)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from google.protobuf import timestamp_pb2
from google.type import money_pb2

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_catalog.domain.listing import (
    Dimensions,
    ImageRef,
    Listing,
    ListingContent,
    ListingStatus,
    Money,
    Variant,
)
from hygoshop_platform.errors import FieldViolation

NANOS = Decimal(1_000_000_000)
STATUS_FROM_PROTO = {
    catalog_pb2.LISTING_STATUS_DRAFT: ListingStatus.DRAFT,
    catalog_pb2.LISTING_STATUS_ACTIVE: ListingStatus.ACTIVE,
    catalog_pb2.LISTING_STATUS_ARCHIVED: ListingStatus.ARCHIVED,
}
STATUS_TO_PROTO = {status: number for number, status in STATUS_FROM_PROTO.items()}


def money_from_proto(money: money_pb2.Money, path: str, violations: list[FieldViolation]) -> Money:
    # google.type.Money: units and nanos must agree in sign; nanos within +-999,999,999.
    if not -999_999_999 <= money.nanos <= 999_999_999:
        violations.append(
            FieldViolation(f"{path}.nanos", "must be between -999999999 and 999999999")
        )
    elif (money.units > 0 and money.nanos < 0) or (money.units < 0 and money.nanos > 0):
        violations.append(FieldViolation(path, "units and nanos must have the same sign"))
    amount = Decimal(money.units) + Decimal(money.nanos) / NANOS
    return Money(money.currency_code, amount)


def money_to_proto(money: Money) -> money_pb2.Money:
    units = int(money.amount)
    nanos = int((money.amount - units) * NANOS)
    return money_pb2.Money(currency_code=money.currency, units=units, nanos=nanos)


def content_from_proto(
    listing: catalog_pb2.Listing, violations: list[FieldViolation], prefix: str = "listing"
) -> ListingContent:
    """Domain content of a request's listing; structural problems go to `violations`."""
    variants = []
    for i, v in enumerate(listing.variants):
        path = f"{prefix}.variants[{i}]"
        if not v.HasField("price"):
            violations.append(FieldViolation(f"{path}.price", "is required"))
        price = money_from_proto(v.price, f"{path}.price", violations)
        compare_at = (
            money_from_proto(v.compare_at_price, f"{path}.compare_at_price", violations)
            if v.HasField("compare_at_price")
            else None
        )
        variants.append(
            Variant(
                sku=v.sku,
                price=price,
                options=dict(v.options),
                compare_at_price=compare_at,
                inventory_quantity=v.inventory_quantity,
                weight_grams=v.weight_grams,
                dimensions=Dimensions(
                    v.dimensions.length_mm, v.dimensions.width_mm, v.dimensions.height_mm
                ),
                gtin=v.gtin,
                mpn=v.mpn,
            )
        )
    status = ListingStatus.DRAFT
    if listing.status != catalog_pb2.LISTING_STATUS_UNSPECIFIED:
        if listing.status in STATUS_FROM_PROTO:
            status = STATUS_FROM_PROTO[listing.status]
        else:
            violations.append(FieldViolation(f"{prefix}.status", "unknown status"))
    return ListingContent(
        title=listing.title,
        description=listing.description,
        brand=listing.brand,
        category=listing.category,
        attributes=dict(listing.attributes),
        images=tuple(ImageRef(i.key, i.alt_text) for i in listing.images),
        status=status,
        variants=tuple(variants),
    )


def _timestamp(value: object) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def image_to_proto(
    image: ImageRef, image_url: Callable[[ImageRef], str] | None
) -> catalog_pb2.ImageRef:
    return catalog_pb2.ImageRef(
        key=image.key,
        alt_text=image.alt_text,
        url=image_url(image) if image_url is not None else "",
        content_type=image.content_type,
        size_bytes=image.size_bytes,
    )


def listing_to_proto(
    listing: Listing, image_url: Callable[[ImageRef], str] | None = None
) -> catalog_pb2.Listing:
    """The listing as clients see it; `image_url` presigns each image's download URL."""
    c = listing.content
    return catalog_pb2.Listing(
        listing_id=str(listing.listing_id),
        title=c.title,
        description=c.description,
        brand=c.brand,
        category=c.category,
        attributes=c.attributes,
        variants=[
            catalog_pb2.Variant(
                sku=v.sku,
                options=v.options,
                price=money_to_proto(v.price),
                compare_at_price=None
                if v.compare_at_price is None
                else money_to_proto(v.compare_at_price),
                inventory_quantity=v.inventory_quantity,
                weight_grams=v.weight_grams,
                dimensions=catalog_pb2.Dimensions(
                    length_mm=v.dimensions.length_mm,
                    width_mm=v.dimensions.width_mm,
                    height_mm=v.dimensions.height_mm,
                ),
                gtin=v.gtin,
                mpn=v.mpn,
            )
            for v in c.variants
        ],
        images=[image_to_proto(i, image_url) for i in c.images],
        status=STATUS_TO_PROTO[c.status],
        create_time=_timestamp(listing.create_time),
        update_time=_timestamp(listing.update_time),
        etag=listing.etag,
    )
