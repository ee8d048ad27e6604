"""Money and listings survive the proto <-> domain mapping exactly."""

from decimal import Decimal

from google.type import money_pb2

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_catalog.convert import content_from_proto, money_from_proto, money_to_proto
from hygoshop_catalog.domain.listing import (
    ListingContent,
    ListingStatus,
    Money,
    Variant,
    apply_update,
)
from hygoshop_platform.errors import FieldViolation


def test_money_round_trip_is_exact() -> None:
    violations: list[FieldViolation] = []
    money = money_from_proto(
        money_pb2.Money(currency_code="EUR", units=19, nanos=990_000_000), "p", violations
    )
    assert violations == []
    assert money == Money("EUR", Decimal("19.99"))
    assert money_to_proto(money) == money_pb2.Money(
        currency_code="EUR", units=19, nanos=990_000_000
    )


def test_money_with_mixed_signs_is_a_violation() -> None:
    violations: list[FieldViolation] = []
    money_from_proto(money_pb2.Money(currency_code="EUR", units=1, nanos=-5), "p", violations)
    assert [v.field for v in violations] == ["p"]


def test_missing_price_and_unknown_status_are_violations() -> None:
    violations: list[FieldViolation] = []
    listing = catalog_pb2.Listing(title="t", variants=[catalog_pb2.Variant(sku="A")], status=99)  # type: ignore[arg-type]
    content_from_proto(listing, violations)
    assert {v.field for v in violations} == {"listing.variants[0].price", "listing.status"}


def test_unspecified_status_defaults_to_draft() -> None:
    listing = catalog_pb2.Listing(title="t")
    assert content_from_proto(listing, []).status is ListingStatus.DRAFT


def test_apply_update_replaces_only_masked_fields() -> None:
    v = (Variant(sku="A", price=Money("USD", Decimal(1))),)
    current = ListingContent(title="old", variants=v, brand="Acme")
    new = ListingContent(title="new", variants=(), brand="")
    updated = apply_update(current, new, ("title",))
    assert (updated.title, updated.brand, updated.variants) == ("new", "Acme", v)
