"""Batch import through the gateway: upload, job on the bus, bulk upsert, progress, errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_rest_api import Tenant, _new_tenant, bearer
from tests.support import PlatformDatabase

pytestmark = pytest.mark.e2e
DONE = ("LISTING_IMPORT_STATE_SUCCEEDED", "LISTING_IMPORT_STATE_FAILED")


def _row(n: int, prefix: str, *, bad: bool = False) -> dict[str, Any]:
    price = {"currencyCode": "USD", "units": "-3" if bad else str(10 + n % 90), "nanos": 0}
    return {
        "title": f"Item {n}",
        "brand": "Acme",
        "variants": [{"sku": f"{prefix}-{n:06d}", "price": price, "inventoryQuantity": n % 7}],
    }


def _upload(http: httpx.Client, tenant: Tenant, body: bytes, content_type: str) -> str:
    reply = http.post(
        "/v1/uploads",
        json={
            "purpose": "UPLOAD_PURPOSE_IMPORT_FILE",
            "contentType": content_type,
            "sizeBytes": str(len(body)),
            "fileName": "rows",
        },
        headers=bearer(tenant.key),
    )
    assert reply.status_code == 200, reply.text
    upload = reply.json()
    put = httpx.put(upload["url"], content=body, headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return str(upload["key"])


def _start(http: httpx.Client, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    reply = http.post("/v1/listings:import", json=body, headers=bearer(tenant.key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _wait(
    http: httpx.Client, tenant: Tenant, import_id: str, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = http.get(f"/v1/listingImports/{import_id}", headers=bearer(tenant.key))
        assert reply.status_code == 200, reply.text
        body = dict(reply.json())
        if body["state"] in DONE:
            return body
        assert time.monotonic() < deadline, f"import still {body['state']}: {body['counts']}"
        time.sleep(0.2)


def _listing_count(platform_db: PlatformDatabase, tenant: Tenant) -> int:
    with psycopg.connect(platform_db.admin_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM catalog.listings WHERE tenant_id = %s", (tenant.tenant_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_ten_thousand_rows_with_one_percent_invalid(
    http: httpx.Client, admin_key: str, platform_db: PlatformDatabase
) -> None:
    tenant = _new_tenant(http, admin_key, "Importer")
    rows = [_row(n, "IMP", bad=n % 100 == 37) for n in range(1, 10_001)]
    key = _upload(
        http, tenant, "\n".join(json.dumps(r) for r in rows).encode(), "application/jsonl"
    )
    request_id = str(uuid.uuid4())
    body = {
        "requestId": request_id,
        "errorPolicy": "IMPORT_ERROR_POLICY_SKIP_FAILED_ROWS",
        "uploadKey": key,
    }
    started = _start(http, tenant, body)
    assert started["state"] in (
        "LISTING_IMPORT_STATE_PENDING",
        "LISTING_IMPORT_STATE_RUNNING",
        *DONE,
    )
    assert started["source"] == key
    assert started["format"] == "IMPORT_FORMAT_JSON_LINES"

    done = _wait(http, tenant, started["importId"])
    assert done["state"] == "LISTING_IMPORT_STATE_SUCCEEDED", done
    assert done["counts"] == {"received": 10_000, "created": 9_900, "updated": 0, "failed": 100}
    first = done["errors"][0]
    assert (first["row"], first["field"]) == (37, "variants[0].price")
    assert len(done["errors"]) == 100
    assert all(e["row"] % 100 == 37 for e in done["errors"])
    assert done["startTime"]
    assert done["endTime"]
    assert _listing_count(platform_db, tenant) == 9_900

    # The same request id again: the same import, nothing created twice.
    again = _start(http, tenant, body)
    assert again["importId"] == started["importId"]
    time.sleep(0.5)
    assert _listing_count(platform_db, tenant) == 9_900

    # A new import of the same file updates by sku instead of creating.
    rerun = _wait(
        http, tenant, _start(http, tenant, {**body, "requestId": str(uuid.uuid4())})["importId"]
    )
    assert rerun["counts"] == {"received": 10_000, "created": 0, "updated": 9_900, "failed": 100}
    assert _listing_count(platform_db, tenant) == 9_900


def test_reject_all_writes_nothing_when_a_row_is_bad(
    http: httpx.Client, admin_key: str, platform_db: PlatformDatabase
) -> None:
    tenant = _new_tenant(http, admin_key, "Strict")
    listings = [_row(n, "STRICT", bad=n == 3) for n in range(1, 6)]
    done = _wait(
        http,
        tenant,
        _start(http, tenant, {"requestId": "r1", "inline": {"listings": listings}})["importId"],
    )
    assert done["state"] == "LISTING_IMPORT_STATE_FAILED"
    assert done["errorPolicy"] == "IMPORT_ERROR_POLICY_REJECT_ALL"
    assert [(e["row"], e["field"]) for e in done["errors"]] == [(3, "variants[0].price")]
    assert "nothing was imported" in done["failureMessage"]
    assert _listing_count(platform_db, tenant) == 0


def test_csv_upload(http: httpx.Client, admin_key: str, platform_db: PlatformDatabase) -> None:
    tenant = _new_tenant(http, admin_key, "Csv")
    csv_body = (
        b"title,sku,price,currency,status\nShirt,CSV-1,19.90,USD,active\nHat,CSV-2,abc,USD,\n"
    )
    key = _upload(http, tenant, csv_body, "text/csv")
    body = {
        "requestId": "csv-1",
        "errorPolicy": "IMPORT_ERROR_POLICY_SKIP_FAILED_ROWS",
        "uploadKey": key,
    }
    done = _wait(http, tenant, _start(http, tenant, body)["importId"])
    assert done["counts"] == {"received": 2, "created": 1, "updated": 0, "failed": 1}
    assert [(e["row"], e["field"]) for e in done["errors"]] == [(2, "price")]
    listing = http.get("/v1/listings", headers=bearer(tenant.key)).json()["listings"][0]
    assert listing["status"] == "LISTING_STATUS_ACTIVE"
    assert listing["variants"][0]["price"] == {
        "currencyCode": "USD",
        "units": "19",
        "nanos": 900000000,
    }


def test_limits_and_bad_requests_are_refused_up_front(http: httpx.Client, admin_key: str) -> None:
    tenant = _new_tenant(http, admin_key, "Limits")
    too_many = {"requestId": "big", "inline": {"listings": [{"title": "x"}] * 1_001}}
    reply = http.post("/v1/listings:import", json=too_many, headers=bearer(tenant.key))
    assert reply.status_code == 400
    assert "inline.listings" in reply.text
    for body, field in (
        ({"inline": {"listings": [_row(1, "L")]}}, "request_id"),
        ({"requestId": "x"}, "source"),
        ({"requestId": "x", "uploadKey": "../../etc/passwd"}, "upload_key"),
    ):
        bad = http.post("/v1/listings:import", json=body, headers=bearer(tenant.key))
        assert bad.status_code == 400, bad.text
        assert field in bad.text
    assert (
        http.post(
            "/v1/listings:import",
            json={"requestId": "x", "uploadKey": "uploads/imports/none/rows"},
            headers=bearer(tenant.key),
        ).status_code
        == 404
    )
    # Nothing was accepted: the import endpoint created no import for these requests.
    assert (
        http.post("/v1/listings:import", json=too_many, headers=bearer(tenant.read_key)).status_code
        == 403
    )


def test_tenant_b_cannot_see_a_import_or_use_a_upload(http: httpx.Client, admin_key: str) -> None:
    tenant_a = _new_tenant(http, admin_key, "ImportA")
    tenant_b = _new_tenant(http, admin_key, "ImportB")
    key = _upload(http, tenant_a, json.dumps(_row(1, "A")).encode(), "application/jsonl")
    started = _start(http, tenant_a, {"requestId": "a-1", "uploadKey": key})
    foreign = http.get(f"/v1/listingImports/{started['importId']}", headers=bearer(tenant_b.key))
    missing = http.get(f"/v1/listingImports/{uuid.uuid4()}", headers=bearer(tenant_b.key))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    with_a_key = http.post(
        "/v1/listings:import",
        json={"requestId": "b-1", "uploadKey": key},
        headers=bearer(tenant_b.key),
    )
    assert with_a_key.status_code == 404
    full_key = f"tenants/{tenant_a.tenant_id}/{key}"
    assert (
        http.post(
            "/v1/listings:import",
            json={"requestId": "b-2", "uploadKey": full_key},
            headers=bearer(tenant_b.key),
        ).status_code
        == 404
    )
