"""Import rows: every format maps to the same listing, and errors name row and field."""

from decimal import Decimal

from hygoshop_catalog.domain.import_rows import (
    parse_csv,
    parse_json_array,
    parse_json_lines,
    parse_json_object,
)
from hygoshop_catalog.domain.listing import ListingStatus

JSON_ROW = (
    '{"title": "Linen shirt", "status": "LISTING_STATUS_ACTIVE", "attributes": {"material": "linen"},'
    ' "variants": [{"sku": "S-1", "options": {"size": "M"}, "inventoryQuantity": 3,'
    ' "price": {"currencyCode": "USD", "units": "49", "nanos": 900000000}}]}'
)
CSV_HEADER = "title,sku,price,currency,status,options,attributes,inventory_quantity\n"


def test_json_lines_and_csv_describe_the_same_listing() -> None:
    [from_json] = list(parse_json_lines([JSON_ROW]))
    [from_csv] = list(
        parse_csv([CSV_HEADER, "Linen shirt,S-1,49.90,USD,active,size=M,material=linen,3\n"])
    )
    assert from_json.errors == from_csv.errors == ()
    assert from_json.content == from_csv.content
    assert from_json.content is not None
    variant = from_json.content.variants[0]
    assert (variant.price.amount, variant.options) == (Decimal("49.9"), {"size": "M"})
    assert from_json.content.status is ListingStatus.ACTIVE


def test_json_errors_name_row_and_field() -> None:
    lines = [
        JSON_ROW,
        "",
        "{not json",
        '{"title": "", "variants": []}',
        '{"title": "x", "color": "red"}',
    ]
    rows = {r.row: r for r in parse_json_lines(lines)}
    assert rows[1].content is not None
    assert 2 not in rows  # blank lines are skipped, numbering follows the file's lines
    assert rows[3].errors[0].field == ""
    assert "not valid JSON" in rows[3].errors[0].description
    assert {e.field for e in rows[4].errors} == {"title", "variants"}
    assert (rows[5].errors[0].field, rows[5].errors[0].description) == ("color", "unknown field")


def test_negative_price_and_bad_types() -> None:
    negative = parse_json_object(
        7,
        {"title": "t", "variants": [{"sku": "A", "price": {"currencyCode": "USD", "units": "-1"}}]},
    )
    assert [(e.row, e.field) for e in negative.errors] == [(7, "variants[0].price")]
    typed = parse_json_object(8, {"title": 5, "variants": []})
    assert typed.errors[0].field == "title"


def test_csv_errors_name_the_column() -> None:
    rows = list(
        parse_csv(
            [
                CSV_HEADER,
                "Shirt,S-1,abc,USD,,,,\n",
                "Shirt,S-2,1.00,usd,,,,\n",
                "Shirt,S-3,1.00,USD,,,,-4\n",
                ",S-4,1.00,USD,,,,\n",
            ]
        )
    )
    assert [(r.row, r.errors[0].field) for r in rows] == [
        (1, "price"),
        (2, "currency"),
        (3, "inventory_quantity"),
        (4, "title"),
    ]


def test_csv_header_problems_stop_the_file() -> None:
    [row] = list(parse_csv(["title,sku,colour\n", "a,b,c\n"]))
    assert row.row == 0
    assert "missing columns" in row.errors[0].description


def test_json_array_file() -> None:
    rows = list(parse_json_array(f"[{JSON_ROW}, 3]"))
    assert rows[0].content is not None
    assert rows[1].errors[0].description == "must be a JSON object (one listing)"
    assert next(iter(parse_json_array("{}"))).row == 0


def test_images_cannot_be_smuggled_in_by_key() -> None:
    row = parse_json_object(1, {"title": "t", "images": [{"key": "x.png"}], "variants": []})
    assert row.errors[0].field == "images"


def test_json_nested_too_deeply_is_an_error_not_a_crash() -> None:
    """Before, json.loads' RecursionError escaped the parser and the import job crashed
    over and over, the import stuck RUNNING."""
    (array,) = parse_json_array("[" * 3000 + "]" * 3000)
    assert (array.row, array.errors[0].description) == (
        0,
        "the file is not valid JSON: values nested too deeply",
    )
    deep_line = '{"title":' * 3000 + '"x"' + "}" * 3000
    rows = list(parse_json_lines([deep_line + "\n", JSON_ROW + "\n"]))
    assert rows[0].errors[0].description == "is not valid JSON: values nested too deeply"
    assert rows[1].content is not None  # the next line is read as usual


def test_unreadable_csv_stops_with_an_error_on_its_row() -> None:
    """A cell over csv's size limit cannot be read past: the rows before it stand, the
    row is an error that says the rest was not read (before: csv.Error crashed the job)."""
    lines = [
        "sku,title,price,currency\n",
        "S-1,Shirt,10,USD\n",
        "S-2," + "x" * 200_000 + ",1,USD\n",
        "S-3,T,1,USD\n",
    ]
    rows = list(parse_csv(lines))
    assert [(r.row, r.content is not None) for r in rows] == [(1, True), (2, False)]
    assert "the rest of the file was not read" in rows[1].errors[0].description
