"""The Listing aggregate: a product's shared content plus its purchasable variants."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


class ListingStatus(enum.Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    """ISO 4217 code, upper case."""
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Dimensions:
    length_mm: int = 0
    width_mm: int = 0
    height_mm: int = 0


@dataclass(frozen=True, slots=True)
class Variant:
    sku: str
    price: Money
    options: dict[str, str] = field(default_factory=dict)
    compare_at_price: Money | None = None
    inventory_quantity: int = 0
    weight_grams: int = 0
    dimensions: Dimensions = Dimensions()
    gtin: str = ""
    mpn: str = ""


@dataclass(frozen=True, slots=True)
class ImageRef:
    key: str
    """Relative to the tenant's storage prefix."""
    alt_text: str = ""
    content_type: str = ""
    """Read from the image's bytes when it was attached."""
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ListingContent:
    """The writable part of a listing, as a client sends it."""

    title: str
    variants: tuple[Variant, ...]
    description: str = ""
    brand: str = ""
    category: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    images: tuple[ImageRef, ...] = ()
    status: ListingStatus = ListingStatus.DRAFT


@dataclass(frozen=True, slots=True)
class Listing:
    listing_id: uuid.UUID
    content: ListingContent
    create_time: datetime
    update_time: datetime
    version: int
    """Incremented by every update; the etag is derived from it."""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


# Field-mask paths a client may update, in proto field names (AIP-134).
UPDATABLE_FIELDS = (
    "title",
    "description",
    "brand",
    "category",
    "attributes",
    "variants",
    "images",
    "status",
)


def apply_update(
    current: ListingContent, new: ListingContent, paths: tuple[str, ...]
) -> ListingContent:
    """The content after replacing the named top-level fields (repeated fields replace whole)."""
    values = {name: getattr(current, name) for name in UPDATABLE_FIELDS}
    for path in paths:
        values[path] = getattr(new, path)
    return ListingContent(**values)
