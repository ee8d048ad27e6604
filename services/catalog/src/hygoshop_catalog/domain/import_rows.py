"""Rows of a listing import (JSON objects, JSON Lines, CSV) -> listing content or row errors.

Pure and fast on purpose: an import reads up to 100,000 rows, so rows are mapped from
plain dicts straight to the domain (no protobuf JSON parser, which costs ~10x more per
row) and then checked by the same rules as the API (`validation.validate_content`).

Formats:
- JSON / JSON Lines: one listing per object, in the REST API's proto3 JSON shape
  (lowerCamelCase; snake_case is accepted too), e.g. `{"title": "Shirt", "variants":
  [{"sku": "S-1", "price": {"currencyCode": "USD", "units": "49", "nanos": 900000000}}]}`.
- CSV: a header row, then one listing with one variant per row. Columns (only `title`,
  `sku`, `price` and `currency` are required): title, description, brand, category,
  status, sku, price (a decimal such as 49.90), currency, compare_at_price,
  inventory_quantity, weight_grams, length_mm, width_mm, height_mm, gtin, mpn,
  options and attributes (`key=value;key=value`).
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hygoshop_catalog.domain.listing import (
    Dimensions,
    ListingContent,
    ListingStatus,
    Money,
    Variant,
)
from hygoshop_catalog.domain.validation import validate_content

NANOS = Decimal(1_000_000_000)
MAX_ROW_ERRORS = 20
"""Errors kept per row; a row rarely has more that are worth reading."""

CSV_COLUMNS = (
    "title", "description", "brand", "category", "status", "sku", "price", "currency",
    "compare_at_price", "inventory_quantity", "weight_grams", "length_mm", "width_mm",
    "height_mm", "gtin", "mpn", "options", "attributes",
)  # fmt: skip
CSV_REQUIRED = ("title", "sku", "price", "currency")
_STATUS = {
    "listing_status_draft": ListingStatus.DRAFT,
    "listing_status_active": ListingStatus.ACTIVE,
    "listing_status_archived": ListingStatus.ARCHIVED,
    "draft": ListingStatus.DRAFT,
    "active": ListingStatus.ACTIVE,
    "archived": ListingStatus.ARCHIVED,
}
_LISTING_KEYS = {
    "title", "description", "brand", "category", "attributes", "variants", "status",
}  # fmt: skip
_VARIANT_KEYS = {
    "sku", "options", "price", "compare_at_price", "inventory_quantity", "weight_grams",
    "dimensions", "gtin", "mpn",
}  # fmt: skip
# Output-only fields a client may echo back from a GET: ignored, like the API does.
_IGNORED_KEYS = {"listing_id", "create_time", "update_time", "etag"}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    """1-based: the line of a JSON Lines file, the data row of a CSV, the index + 1 in JSON."""
    field: str
    description: str


@dataclass(frozen=True, slots=True)
class ParsedRow:
    row: int
    content: ListingContent | None
    """None when the row has errors."""
    errors: tuple[RowError, ...] = ()


class _RowProblem(Exception):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.field = field
        self.description = description


@functools.lru_cache(maxsize=1024)  # the same few keys on every row
def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _normalize(obj: dict[str, Any], allowed: set[str], path: str) -> dict[str, Any]:
    out = {}
    for key, value in obj.items():
        name = _snake(key)
        if name in allowed:
            out[name] = value
        elif name == "images" and not path:
            # Images pass content checks only through :attachImage, never by key in a file.
            raise _RowProblem("images", "cannot be imported; attach images with :attachImage")
        elif name not in _IGNORED_KEYS:
            raise _RowProblem(f"{path}{key}", "unknown field")
    return out


def _str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _RowProblem(field, "must be a string")
    return value


def _int(value: Any, field: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise _RowProblem(field, "must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _RowProblem(field, "must be an integer") from None


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _RowProblem(field, "must be an object of strings")
    return dict(value)


def _money(value: Any, field: str) -> Money:
    if not isinstance(value, dict):
        raise _RowProblem(field, "must be an object with currencyCode, units and nanos")
    money = _normalize(value, {"currency_code", "units", "nanos"}, f"{field}.")
    units, nanos = (
        _int(money.get("units"), f"{field}.units"),
        _int(money.get("nanos"), f"{field}.nanos"),
    )
    if not -999_999_999 <= nanos <= 999_999_999:
        raise _RowProblem(f"{field}.nanos", "must be between -999999999 and 999999999")
    if (units > 0 and nanos < 0) or (units < 0 and nanos > 0):
        raise _RowProblem(field, "units and nanos must have the same sign")
    currency = _str(money.get("currency_code"), f"{field}.currency_code")
    return Money(currency, Decimal(units) + Decimal(nanos) / NANOS)


def _status(value: Any, field: str) -> ListingStatus:
    if value in (None, "", "LISTING_STATUS_UNSPECIFIED"):
        return ListingStatus.DRAFT
    status = _STATUS.get(str(value).lower())
    if status is None:
        raise _RowProblem(field, "unknown status")
    return status


def _variant(raw: Any, path: str) -> Variant:
    if not isinstance(raw, dict):
        raise _RowProblem(path, "must be an object")
    v = _normalize(raw, _VARIANT_KEYS, f"{path}.")
    if v.get("price") is None:
        raise _RowProblem(f"{path}.price", "is required")
    dims = v.get("dimensions") or {}
    if not isinstance(dims, dict):
        raise _RowProblem(f"{path}.dimensions", "must be an object")
    dims = _normalize(dims, {"length_mm", "width_mm", "height_mm"}, f"{path}.dimensions.")
    compare_at = v.get("compare_at_price")
    return Variant(
        sku=_str(v.get("sku"), f"{path}.sku"),
        price=_money(v["price"], f"{path}.price"),
        options=_str_map(v.get("options"), f"{path}.options"),
        compare_at_price=None
        if compare_at is None
        else _money(compare_at, f"{path}.compare_at_price"),
        inventory_quantity=_int(v.get("inventory_quantity"), f"{path}.inventory_quantity"),
        weight_grams=_int(v.get("weight_grams"), f"{path}.weight_grams"),
        dimensions=Dimensions(
            _int(dims.get("length_mm"), f"{path}.dimensions.length_mm"),
            _int(dims.get("width_mm"), f"{path}.dimensions.width_mm"),
            _int(dims.get("height_mm"), f"{path}.dimensions.height_mm"),
        ),
        gtin=_str(v.get("gtin"), f"{path}.gtin"),
        mpn=_str(v.get("mpn"), f"{path}.mpn"),
    )


def _content_from_json(obj: Any) -> ListingContent:
    if not isinstance(obj, dict):
        raise _RowProblem("", "must be a JSON object (one listing)")
    listing = _normalize(obj, _LISTING_KEYS, "")
    variants = listing.get("variants") or []
    if not isinstance(variants, list):
        raise _RowProblem("variants", "must be an array")
    return ListingContent(
        title=_str(listing.get("title"), "title"),
        description=_str(listing.get("description"), "description"),
        brand=_str(listing.get("brand"), "brand"),
        category=_str(listing.get("category"), "category"),
        attributes=_str_map(listing.get("attributes"), "attributes"),
        variants=tuple(_variant(v, f"variants[{i}]") for i, v in enumerate(variants)),
        status=_status(listing.get("status"), "status"),
    )


def _checked(row: int, build: Any, rename: Any = None) -> ParsedRow:
    """Run `build()` and the listing rules; field paths are relative to the row's listing."""
    try:
        content = build()
    except _RowProblem as problem:
        return ParsedRow(
            row, None, (RowError(row, _renamed(problem.field, rename), problem.description),)
        )
    violations = validate_content(content, prefix="")
    if not violations:
        return ParsedRow(row, content)
    errors = tuple(
        RowError(row, _renamed(v.field.lstrip("."), rename), v.description)
        for v in violations[:MAX_ROW_ERRORS]
    )
    return ParsedRow(row, None, errors)


def _renamed(field: str, rename: Any) -> str:
    return rename(field) if rename else field


def parse_json_object(row: int, obj: Any) -> ParsedRow:
    return _checked(row, lambda: _content_from_json(obj))


def _reason(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "values nested too deeply"
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"


def parse_json_lines(lines: Iterable[str | bytes]) -> Iterator[ParsedRow]:
    """One listing per non-empty line; the row number is the line number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        # JSONDecodeError; UnicodeDecodeError for bad bytes; RecursionError for deep nesting
        except (ValueError, RecursionError) as exc:
            yield ParsedRow(
                number, None, (RowError(number, "", f"is not valid JSON: {_reason(exc)}"),)
            )
            continue
        yield parse_json_object(number, obj)


def parse_json_array(text: str | bytes) -> Iterator[ParsedRow]:
    """A JSON array of listings (a `.json` upload); row = index + 1."""
    try:
        items = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield ParsedRow(0, None, (RowError(0, "", f"the file is not valid JSON: {_reason(exc)}"),))
        return
    if not isinstance(items, list):
        yield ParsedRow(0, None, (RowError(0, "", "the file must hold a JSON array of listings"),))
        return
    for index, obj in enumerate(items, start=1):
        yield parse_json_object(index, obj)


def _pairs(value: str, field: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        key, sep, val = part.partition("=")
        if not sep:
            raise _RowProblem(field, "must be key=value pairs separated by ';'")
        out[key.strip()] = val.strip()
    return out


def _decimal(value: str, field: str) -> Decimal:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise _RowProblem(field, "must be a decimal number such as 49.90") from None
    if not amount.is_finite():
        raise _RowProblem(field, "must be a decimal number such as 49.90")
    return amount


def _csv_content(record: dict[str, str]) -> ListingContent:
    currency = record.get("currency", "").strip()
    compare_at = record.get("compare_at_price", "").strip()
    variant = Variant(
        sku=record.get("sku", "").strip(),
        price=Money(currency, _decimal(record.get("price", ""), "price")),
        options=_pairs(record.get("options", ""), "options"),
        compare_at_price=Money(currency, _decimal(compare_at, "compare_at_price"))
        if compare_at
        else None,
        inventory_quantity=_int(record.get("inventory_quantity", "").strip(), "inventory_quantity"),
        weight_grams=_int(record.get("weight_grams", "").strip(), "weight_grams"),
        dimensions=Dimensions(
            _int(record.get("length_mm", "").strip(), "length_mm"),
            _int(record.get("width_mm", "").strip(), "width_mm"),
            _int(record.get("height_mm", "").strip(), "height_mm"),
        ),
        gtin=record.get("gtin", "").strip(),
        mpn=record.get("mpn", "").strip(),
    )
    return ListingContent(
        title=record.get("title", ""),
        description=record.get("description", ""),
        brand=record.get("brand", ""),
        category=record.get("category", ""),
        attributes=_pairs(record.get("attributes", ""), "attributes"),
        status=_status(record.get("status", "").strip(), "status"),
        variants=(variant,),
    )


def _csv_column(field: str) -> str:
    """`variants[0].price.currency_code` -> `currency`: name the CSV column, not the model path."""
    if not field.startswith("variants[0]"):
        return field.split("[", 1)[0].split(".", 1)[0]
    rest = field.removeprefix("variants[0]").lstrip(".")
    if rest.startswith(("price.currency_code", "compare_at_price.currency_code")):
        return "currency"
    if rest.startswith("dimensions."):
        return rest.split(".")[1]
    return rest.split(".", 1)[0].split("[", 1)[0] or "sku"


def parse_csv(lines: Iterable[str]) -> Iterator[ParsedRow]:
    """Header row, then one listing per row; the row number counts data rows from 1."""
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_REQUIRED if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        problem = f"missing columns {missing}" if missing else f"unknown columns {unknown}"
        yield ParsedRow(
            0, None, (RowError(0, "header", f"{problem}; columns: {', '.join(CSV_COLUMNS)}"),)
        )
        return
    reader.fieldnames = header
    number = 0
    try:
        for number, record in enumerate(reader, start=1):
            if None in record:
                yield ParsedRow(
                    number, None, (RowError(number, "", "has more cells than the header"),)
                )
                continue
            yield _checked(number, lambda r=record: _csv_content(r), _csv_column)
    except csv.Error as exc:  # a cell over csv's size limit, a NUL byte: no way to go on
        row = number + 1
        message = f"is not valid CSV ({exc}); the rest of the file was not read"
        yield ParsedRow(row, None, (RowError(row, "", message),))
