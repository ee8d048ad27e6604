"""ingest: 100,000 listings imported end to end vs a raw bulk upsert of the same rows.

End to end = what a client waits for: create an upload, PUT the JSON Lines file to
object storage, POST /v1/listings:import through Envoy, then poll until the import is
done (the job travels through the outbox and the bus, the consumer parses, validates and
upserts in chunks). Baseline, same run, same table: the rows written straight into
catalog.listings/variants with one `unnest` upsert per 5,000 rows through psycopg, no
parsing or validation. ratio = end-to-end rows/s / baseline rows/s; target >= 0.5.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from deploy.services import StackOptions
from deploy.stack import start_stack
from hygoshop_catalog.config import SCHEMA as CATALOG_SCHEMA
from hygoshop_platform.blobs import ensure_bucket
from hygoshop_platform.infra.rabbitmq import LOCAL_URL, rabbitmq_answers
from hygoshop_platform.infra.s3 import find_or_start_s3
from hygoshop_platform.migrations import app_url
from tests.bench.common import Result, scratch_database

ROWS = 100_000
CHUNK = 5_000


def _rows(prefix: str) -> list[dict[str, object]]:
    return [
        {
            "title": f"Bench item {n}",
            "brand": "Acme",
            "description": "A listing imported by the ingest benchmark.",
            "attributes": {"material": "cotton"},
            "variants": [
                {
                    "sku": f"{prefix}-{n:07d}",
                    "price": {"currencyCode": "USD", "units": str(10 + n % 90), "nanos": 500000000},
                    "inventoryQuantity": n % 50,
                }
            ],
        }
        for n in range(ROWS)
    ]


def _baseline(url: str, rows: list[dict[str, object]]) -> float:
    """Rows/s of the raw upsert: unnest arrays straight into the tables, one statement pair
    per chunk, as the catalog's application role in a tenant transaction."""
    tenant = uuid.uuid4()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            ids = [uuid.uuid4() for _ in chunk]
            variants = [r["variants"][0] for r in chunk]  # type: ignore[index]
            with conn.transaction():
                conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant),))
                conn.execute(
                    "INSERT INTO catalog.listings (tenant_id, listing_id, title, description, brand,"
                    " attributes, status) SELECT %s, i, t, d, b, a::jsonb, 'draft'"
                    " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[]) AS u(i, t, d, b, a)"
                    " ON CONFLICT (tenant_id, listing_id) DO UPDATE SET title = excluded.title",
                    (
                        tenant, ids, [r["title"] for r in chunk], [r["description"] for r in chunk],
                        [r["brand"] for r in chunk], [json.dumps(r["attributes"]) for r in chunk],
                    ),
                )  # fmt: skip
                conn.execute(
                    "INSERT INTO catalog.variants (tenant_id, listing_id, position, sku, currency,"
                    " price, inventory_quantity) SELECT %s, i, 0, s, 'USD', p, q"
                    " FROM unnest(%s::uuid[], %s::text[], %s::numeric[], %s::int[]) AS u(i, s, p, q)"
                    " ON CONFLICT (tenant_id, sku) DO UPDATE SET price = excluded.price",
                    (
                        tenant, ids, [v["sku"] for v in variants],
                        [Decimal(v["price"]["units"]) + Decimal("0.5") for v in variants],
                        [v["inventoryQuantity"] for v in variants],
                    ),
                )  # fmt: skip
    return len(rows) / (time.perf_counter() - started)


def run() -> Result:
    admin_key = "hyg_admin_" + secrets.token_urlsafe(32)
    s3 = find_or_start_s3()
    try:
        with scratch_database("ingest") as db, tempfile.TemporaryDirectory() as tmp:
            blobs = s3.blob_settings(f"bench-{uuid.uuid4().hex[:8]}")
            ensure_bucket(blobs)
            bus_url = LOCAL_URL if rabbitmq_answers(LOCAL_URL) is None else None
            options = StackOptions(
                platform_admin_key=admin_key, s3=blobs, bus_url=bus_url,
                bus_namespace=f"bench{uuid.uuid4().hex[:8]}", bus_expires_seconds=600,
            )  # fmt: skip
            stack = start_stack(db, Path(tmp), options)
            try:
                end_to_end, timings = _end_to_end(stack.gateway_url, admin_key)
                baseline = _baseline(app_url(db, CATALOG_SCHEMA), _rows("RAW"))
            finally:
                stack.stop()
    finally:
        s3.stop()
    return Result(
        name="ingest",
        value=end_to_end,
        unit="rows/s",
        baseline="raw unnest upsert of the same rows",
        baseline_value=baseline,
        extra={
            "rows": ROWS,
            "bus": "rabbitmq" if bus_url else "postgresql",
            **timings,
            "target_ratio": 0.5,
        },
    )


def _end_to_end(gateway: str, admin_key: str) -> tuple[float, dict[str, float]]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=gateway, timeout=60) as http:
        tenant_id = http.post("/v1/tenants", json={"displayName": "bench"}, headers=admin).json()[
            "tenantId"
        ]
        key = http.post(
            f"/v1/tenants/{tenant_id}/apiKeys",
            json={"scopes": ["catalog:read", "catalog:write"]},
            headers=admin,
        ).json()["secret"]
        auth = {"Authorization": f"Bearer {key}"}
        body = "\n".join(json.dumps(r) for r in _rows("E2E")).encode()
        started = time.perf_counter()
        upload = http.post(
            "/v1/uploads",
            json={
                "purpose": "UPLOAD_PURPOSE_IMPORT_FILE",
                "contentType": "application/jsonl",
                "sizeBytes": str(len(body)),
            },
            headers=auth,
        ).json()
        httpx.put(
            upload["url"], content=body, headers=upload["headers"], timeout=120
        ).raise_for_status()
        uploaded = time.perf_counter()
        request = {
            "requestId": str(uuid.uuid4()),
            "errorPolicy": "IMPORT_ERROR_POLICY_SKIP_FAILED_ROWS",
            "uploadKey": upload["key"],
        }
        import_id = http.post("/v1/listings:import", json=request, headers=auth).json()["importId"]
        while True:
            state = http.get(f"/v1/listingImports/{import_id}", headers=auth).json()
            if state["state"] in ("LISTING_IMPORT_STATE_SUCCEEDED", "LISTING_IMPORT_STATE_FAILED"):
                break
            time.sleep(0.05)
        finished = time.perf_counter()
    if state["state"] != "LISTING_IMPORT_STATE_SUCCEEDED" or state["counts"]["created"] != ROWS:
        raise RuntimeError(f"import did not complete: {state}")
    return ROWS / (finished - started), {
        "upload_s": round(uploaded - started, 3),
        "import_s": round(finished - uploaded, 3),
        "file_bytes": len(body),
    }
