"""Listing rules: every violation reported with its field path."""

from decimal import Decimal

import pytest

from hygoshop_catalog.domain.listing import ListingContent, Money, Variant
from hygoshop_catalog.domain.validation import gtin_is_valid, validate_content


def _listing(**overrides: object) -> ListingContent:
    values: dict[str, object] = {
        "title": "Linen shirt",
        "variants": (Variant(sku="SHIRT-M", price=Money("USD", Decimal("49.90"))),),
    }
    values.update(overrides)
    return ListingContent(**values)  # type: ignore[arg-type]


def _fields(content: ListingContent) -> list[str]:
    return [v.field for v in validate_content(content)]


def test_minimal_listing_is_valid() -> None:
    assert validate_content(_listing()) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": ""}, "listing.title"),
        ({"title": "   "}, "listing.title"),
        ({"title": "x" * 2000}, "listing.title"),
        ({"variants": ()}, "listing.variants"),
        ({"description": "bell\x07"}, "listing.description"),
        ({"attributes": {"": "x"}}, "listing.attributes['']"),
    ],
)
def test_listing_level_violations(overrides: dict[str, object], field: str) -> None:
    assert field in _fields(_listing(**overrides))


@pytest.mark.parametrize(
    ("variant", "field"),
    [
        (Variant(sku="", price=Money("USD", Decimal(1))), "listing.variants[0].sku"),
        (Variant(sku="has space", price=Money("USD", Decimal(1))), "listing.variants[0].sku"),
        (Variant(sku="A", price=Money("USD", Decimal(-1))), "listing.variants[0].price"),
        (
            Variant(sku="A", price=Money("usd", Decimal(1))),
            "listing.variants[0].price.currency_code",
        ),
        (
            Variant(sku="A", price=Money("ZZZ", Decimal(1))),  # three letters, no currency
            "listing.variants[0].price.currency_code",
        ),
        (
            Variant(sku="A", price=Money("XAU", Decimal(1))),  # gold: not a price currency
            "listing.variants[0].price.currency_code",
        ),
        (
            Variant(
                sku="A", price=Money("USD", Decimal(1)), compare_at_price=Money("EUR", Decimal(2))
            ),
            "listing.variants[0].compare_at_price.currency_code",
        ),
        (
            Variant(sku="A", price=Money("USD", Decimal(1)), inventory_quantity=-5),
            "listing.variants[0].inventory_quantity",
        ),
        (
            Variant(sku="A", price=Money("USD", Decimal(1)), gtin="4006381333932"),
            "listing.variants[0].gtin",
        ),
    ],
)
def test_variant_violations(variant: Variant, field: str) -> None:
    assert field in _fields(_listing(variants=(variant,)))


def test_duplicate_sku_within_a_listing() -> None:
    v = Variant(sku="A", price=Money("USD", Decimal(1)))
    assert "listing.variants[1].sku" in _fields(_listing(variants=(v, v)))


def test_all_violations_are_reported_not_only_the_first() -> None:
    bad = _listing(title="", variants=(Variant(sku="", price=Money("USD", Decimal(-1))),))
    assert len(validate_content(bad)) >= 3


@pytest.mark.parametrize(
    ("gtin", "valid"),
    [
        ("4006381333931", True),
        ("4006381333932", False),
        ("96385074", True),
        ("036000291452", True),
        ("12ab", False),
    ],
)
def test_gtin_check_digit(gtin: str, valid: bool) -> None:
    assert gtin_is_valid(gtin) is valid
