"""Rules a listing must satisfy, reported as field violations (all of them, not the first)."""

from __future__ import annotations

import re
from decimal import Decimal

from hygoshop_catalog.domain.listing import ListingContent, Money, Variant
from hygoshop_platform.errors import FieldViolation
from hygoshop_platform.money import CURRENCIES

MAX_TITLE = 255
MAX_DESCRIPTION = 20_000
MAX_BRAND = 200
MAX_CATEGORY = 500
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY = 100
MAX_ATTRIBUTE_VALUE = 1_000
MAX_VARIANTS = 100
MAX_SKU = 100
MAX_OPTIONS = 10
MAX_OPTION_TEXT = 100
MAX_IMAGES = 50
MAX_IMAGE_KEY = 1_024
MAX_ALT_TEXT = 500
MAX_MPN = 70
MAX_QUANTITY = 1_000_000_000
MAX_PRICE = Decimal("1000000000")

_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
_GTIN_LENGTHS = (8, 12, 13, 14)


# A regex scan, not a per-character loop: imports check 100,000 rows' worth of text.
_CONTROL = re.compile(r"[\x00-\x1f]")
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _has_control_chars(text: str, allow_newlines: bool = False) -> bool:
    return (_CONTROL_BUT_NEWLINES if allow_newlines else _CONTROL).search(text) is not None


def _text(
    value: str, path: str, limit: int, *, required: bool = False, multiline: bool = False
) -> list[FieldViolation]:
    if required and not value.strip():
        return [FieldViolation(path, "must not be empty")]
    if len(value) > limit:
        return [FieldViolation(path, f"must be at most {limit} characters")]
    if _has_control_chars(value, allow_newlines=multiline):
        return [FieldViolation(path, "must not contain control characters")]
    return []


def gtin_is_valid(gtin: str) -> bool:
    """GS1 check digit: weights 3,1,3,... from the right, excluding the check digit."""
    if not gtin.isdigit() or len(gtin) not in _GTIN_LENGTHS:
        return False
    digits = [int(c) for c in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def validate_money(money: Money, path: str) -> list[FieldViolation]:
    violations = []
    if money.currency not in CURRENCIES:
        violations.append(
            FieldViolation(
                f"{path}.currency_code", "must be an ISO 4217 currency code, upper case (USD)"
            )
        )
    if money.amount < 0:
        violations.append(FieldViolation(path, "must not be negative"))
    elif money.amount >= MAX_PRICE:
        violations.append(FieldViolation(path, f"must be less than {MAX_PRICE}"))
    return violations


def _map(
    values: dict[str, str], path: str, max_entries: int, max_key: int, max_value: int
) -> list[FieldViolation]:
    if len(values) > max_entries:
        return [FieldViolation(path, f"must have at most {max_entries} entries")]
    violations = []
    for key, value in values.items():
        if not key.strip() or len(key) > max_key or _has_control_chars(key):
            violations.append(
                FieldViolation(
                    f"{path}[{key[:40]!r}]", f"key must be 1-{max_key} printable characters"
                )
            )
        elif len(value) > max_value or _has_control_chars(value):
            violations.append(
                FieldViolation(
                    f"{path}[{key!r}]", f"value must be at most {max_value} printable characters"
                )
            )
    return violations


def _variant(variant: Variant, path: str) -> list[FieldViolation]:
    v = []
    if not variant.sku:
        v.append(FieldViolation(f"{path}.sku", "must not be empty"))
    elif len(variant.sku) > MAX_SKU or not _SKU.match(variant.sku):
        v.append(
            FieldViolation(
                f"{path}.sku", f"must be 1-{MAX_SKU} characters of letters, digits and . _ - /"
            )
        )
    v += _map(variant.options, f"{path}.options", MAX_OPTIONS, MAX_OPTION_TEXT, MAX_OPTION_TEXT)
    v += validate_money(variant.price, f"{path}.price")
    if variant.compare_at_price is not None:
        v += validate_money(variant.compare_at_price, f"{path}.compare_at_price")
        if variant.compare_at_price.currency != variant.price.currency:
            v.append(
                FieldViolation(
                    f"{path}.compare_at_price.currency_code", "must be the price's currency"
                )
            )
    for name in ("inventory_quantity", "weight_grams"):
        value = getattr(variant, name)
        if not 0 <= value <= MAX_QUANTITY:
            v.append(FieldViolation(f"{path}.{name}", f"must be between 0 and {MAX_QUANTITY}"))
    for name in ("length_mm", "width_mm", "height_mm"):
        if not 0 <= getattr(variant.dimensions, name) <= MAX_QUANTITY:
            v.append(FieldViolation(f"{path}.dimensions.{name}", "must not be negative"))
    if variant.gtin and not gtin_is_valid(variant.gtin):
        v.append(
            FieldViolation(f"{path}.gtin", "must be a GTIN-8/12/13/14 with a valid check digit")
        )
    v += _text(variant.mpn, f"{path}.mpn", MAX_MPN)
    return v


def validate_content(content: ListingContent, prefix: str = "listing") -> list[FieldViolation]:
    v = _text(content.title, f"{prefix}.title", MAX_TITLE, required=True)
    v += _text(content.description, f"{prefix}.description", MAX_DESCRIPTION, multiline=True)
    v += _text(content.brand, f"{prefix}.brand", MAX_BRAND)
    v += _text(content.category, f"{prefix}.category", MAX_CATEGORY)
    v += _map(
        content.attributes,
        f"{prefix}.attributes",
        MAX_ATTRIBUTES,
        MAX_ATTRIBUTE_KEY,
        MAX_ATTRIBUTE_VALUE,
    )
    if not content.variants:
        v.append(FieldViolation(f"{prefix}.variants", "at least one variant is required"))
    elif len(content.variants) > MAX_VARIANTS:
        v.append(FieldViolation(f"{prefix}.variants", f"must have at most {MAX_VARIANTS} variants"))
    else:
        seen: set[str] = set()
        for i, variant in enumerate(content.variants):
            v += _variant(variant, f"{prefix}.variants[{i}]")
            if variant.sku in seen:
                v.append(
                    FieldViolation(f"{prefix}.variants[{i}].sku", "repeats another variant's sku")
                )
            seen.add(variant.sku)
    if len(content.images) > MAX_IMAGES:
        v.append(FieldViolation(f"{prefix}.images", f"must have at most {MAX_IMAGES} images"))
    for i, image in enumerate(content.images):
        v += _text(image.key, f"{prefix}.images[{i}].key", MAX_IMAGE_KEY, required=True)
        v += _text(image.alt_text, f"{prefix}.images[{i}].alt_text", MAX_ALT_TEXT)
    return v


def text_violations(value: str, path: str, limit: int) -> list[FieldViolation]:
    """One single-line text field's problems (length, control characters)."""
    return _text(value, path, limit)
