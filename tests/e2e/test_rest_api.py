"""The public REST API through Envoy: auth, tenancy isolation, listings, errors.

Everything here is a real HTTP call to Envoy, which calls tenancy (ext_authz) and the
catalog over gRPC, which use PostgreSQL through their application roles.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import AUTH_CACHE_TTL_SECONDS

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    key: str
    """catalog:read + catalog:write"""
    read_key: str
    """catalog:read only"""
    admin_key: str
    """the tenant's `admin` key"""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create_key(http: httpx.Client, admin_key: str, tenant_id: str, scopes: list[str]) -> str:
    reply = http.post(
        f"/v1/tenants/{tenant_id}/apiKeys",
        json={"scopes": scopes, "displayName": "test"},
        headers=bearer(admin_key),
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["apiKey"]["scopes"] == scopes
    return str(body["secret"])


def _new_tenant(http: httpx.Client, admin_key: str, name: str) -> Tenant:
    reply = http.post(
        "/v1/tenants", json={"displayName": name, "tier": "TIER_GROWTH"}, headers=bearer(admin_key)
    )
    assert reply.status_code == 200, reply.text
    tenant_id = reply.json()["tenantId"]
    return Tenant(
        tenant_id=tenant_id,
        key=_create_key(http, admin_key, tenant_id, ["catalog:read", "catalog:write"]),
        read_key=_create_key(http, admin_key, tenant_id, ["catalog:read"]),
        admin_key=_create_key(http, admin_key, tenant_id, ["admin"]),
    )


@pytest.fixture(scope="module")
def tenant_a(http: httpx.Client, admin_key: str) -> Tenant:
    return _new_tenant(http, admin_key, "Tenant A")


@pytest.fixture(scope="module")
def tenant_b(http: httpx.Client, admin_key: str) -> Tenant:
    return _new_tenant(http, admin_key, "Tenant B")


def listing_body(sku: str, title: str = "Linen shirt", units: int = 49) -> dict[str, Any]:
    return {
        "title": title,
        "brand": "Acme",
        "description": "Breathable linen.",
        "attributes": {"material": "linen"},
        "variants": [
            {
                "sku": sku,
                "options": {"size": "M"},
                "price": {"currencyCode": "USD", "units": str(units), "nanos": 900000000},
                "compareAtPrice": {"currencyCode": "USD", "units": "59"},
                "inventoryQuantity": 12,
                "weightGrams": 250,
                "dimensions": {"lengthMm": 300, "widthMm": 200, "heightMm": 20},
                "gtin": "4006381333931",
            }
        ],
    }


def create(http: httpx.Client, tenant: Tenant, sku: str | None = None, **kw: Any) -> dict[str, Any]:
    reply = http.post(
        "/v1/listings",
        json=listing_body(sku or f"SKU-{uuid.uuid4().hex[:10]}", **kw),
        headers=bearer(tenant.key),
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_admin_reads_tenant_and_lists_keys(
    http: httpx.Client, admin_key: str, tenant_a: Tenant
) -> None:
    tenant = http.get(f"/v1/tenants/{tenant_a.tenant_id}", headers=bearer(admin_key)).json()
    assert tenant["displayName"] == "Tenant A"
    assert tenant["tier"] == "TIER_GROWTH"
    keys = http.get(f"/v1/tenants/{tenant_a.tenant_id}/apiKeys", headers=bearer(admin_key)).json()
    assert len(keys["apiKeys"]) == 3
    assert all("secret" not in k and "digest" not in k for k in keys["apiKeys"])


def test_listing_lifecycle(http: httpx.Client, tenant_a: Tenant) -> None:
    created = create(http, tenant_a)
    listing_id = created["listingId"]
    assert uuid.UUID(listing_id)
    assert created["status"] == "LISTING_STATUS_DRAFT"
    assert created["variants"][0]["price"] == {
        "currencyCode": "USD",
        "units": "49",
        "nanos": 900000000,
    }

    got = http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key))
    assert got.status_code == 200
    assert got.json() == created

    patched = http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "title,status"},
        json={
            "title": "Linen shirt, washed",
            "status": "LISTING_STATUS_ACTIVE",
            "brand": "ignored: not in mask",
        },
        headers=bearer(tenant_a.key),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["title"], body["status"], body["brand"]) == (
        "Linen shirt, washed",
        "LISTING_STATUS_ACTIVE",
        "Acme",
    )
    assert body["variants"] == created["variants"]
    assert body["etag"] != created["etag"]

    stale = http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "title"},
        json={"title": "x", "etag": created["etag"]},
        headers=bearer(tenant_a.key),
    )
    assert stale.status_code == 409

    deleted = http.delete(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key))
    assert deleted.status_code == 200
    assert http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key)).status_code == 404


def test_list_paginates_and_filters(http: httpx.Client, admin_key: str) -> None:
    tenant = _new_tenant(http, admin_key, "Paging")
    ids = [create(http, tenant)["listingId"] for _ in range(5)]
    first = http.get("/v1/listings", params={"pageSize": 3}, headers=bearer(tenant.key)).json()
    assert len(first["listings"]) == 3
    second = http.get(
        "/v1/listings",
        params={"pageSize": 3, "pageToken": first["nextPageToken"]},
        headers=bearer(tenant.key),
    ).json()
    assert len(second["listings"]) == 2
    assert not second.get("nextPageToken")
    seen = [item["listingId"] for item in first["listings"] + second["listings"]]
    assert seen == list(reversed(ids))  # newest update first, nothing twice

    http.patch(
        f"/v1/listings/{ids[0]}",
        params={"updateMask": "status"},
        json={"status": "LISTING_STATUS_ACTIVE"},
        headers=bearer(tenant.key),
    )
    active = http.get(
        "/v1/listings", params={"status": "LISTING_STATUS_ACTIVE"}, headers=bearer(tenant.key)
    ).json()
    assert [item["listingId"] for item in active["listings"]] == [ids[0]]
    future = http.get(
        "/v1/listings", params={"updatedAfter": "2999-01-01T00:00:00Z"}, headers=bearer(tenant.key)
    ).json()
    assert future.get("listings", []) == []

    bad = http.get("/v1/listings", params={"pageToken": "garbage"}, headers=bearer(tenant.key))
    assert bad.status_code == 400


def test_other_tenant_gets_the_same_404_as_a_missing_id(
    http: httpx.Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    foreign = http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_b.key))
    missing = http.get(f"/v1/listings/{uuid.uuid4()}", headers=bearer(tenant_b.key))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    for reply in (
        http.patch(
            f"/v1/listings/{listing_id}",
            params={"updateMask": "title"},
            json={"title": "x"},
            headers=bearer(tenant_b.key),
        ),
        http.delete(f"/v1/listings/{listing_id}", headers=bearer(tenant_b.key)),
    ):
        assert reply.status_code == 404
    # A's listing is untouched and B's list does not show it.
    assert (
        http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key)).json()["title"]
        == "Linen shirt"
    )
    listed = http.get("/v1/listings", headers=bearer(tenant_b.key)).json().get("listings", [])
    assert listing_id not in {item["listingId"] for item in listed}
    # B's admin key cannot see A's tenant or keys either.
    assert (
        http.get(
            f"/v1/tenants/{tenant_a.tenant_id}", headers=bearer(tenant_b.admin_key)
        ).status_code
        == 404
    )
    assert (
        http.get(
            f"/v1/tenants/{tenant_a.tenant_id}/apiKeys", headers=bearer(tenant_b.admin_key)
        ).status_code
        == 404
    )


def test_spoofed_tenant_header_is_ignored(
    http: httpx.Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    reply = http.get(
        f"/v1/listings/{listing_id}",
        headers={
            **bearer(tenant_b.key),
            "x-hygoshop-tenant-id": tenant_a.tenant_id,
            "x-hygoshop-scopes": "admin",
        },
    )
    assert reply.status_code == 404


def test_sku_is_unique_per_tenant_not_globally(
    http: httpx.Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    sku = f"SHARED-{uuid.uuid4().hex[:8]}"
    create(http, tenant_a, sku=sku)
    create(http, tenant_b, sku=sku)
    again = http.post("/v1/listings", json=listing_body(sku), headers=bearer(tenant_a.key))
    assert again.status_code == 409
    assert "constraint" not in again.text
    assert "variants_" not in again.text


def test_create_is_idempotent_per_request_id(http: httpx.Client, tenant_a: Tenant) -> None:
    request_id = str(uuid.uuid4())
    first = http.post(
        "/v1/listings",
        params={"requestId": request_id},
        json=listing_body(f"I-{request_id[:8]}"),
        headers=bearer(tenant_a.key),
    )
    second = http.post(
        "/v1/listings",
        params={"requestId": request_id},
        json=listing_body(f"I-{request_id[:8]}"),
        headers=bearer(tenant_a.key),
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["listingId"] == second.json()["listingId"]


def test_output_only_fields_in_the_body_are_not_persisted(
    http: httpx.Client, tenant_a: Tenant
) -> None:
    body = listing_body(f"M-{uuid.uuid4().hex[:8]}")
    forced_id = str(uuid.uuid4())
    body.update(
        listingId=forced_id, createTime="2000-01-01T00:00:00Z", etag='W/"999"', tenantId="someone"
    )
    reply = http.post("/v1/listings", json=body, headers=bearer(tenant_a.key))
    assert reply.status_code == 200
    created = reply.json()
    assert created["listingId"] != forced_id
    assert not created["createTime"].startswith("2000")
    assert created["etag"] == 'W/"1"'


def test_no_key_is_401_with_json(http: httpx.Client) -> None:
    for reply in (
        http.get("/v1/listings"),
        http.get("/v1/listings", headers={"Authorization": "Bearer nope"}),
    ):
        assert reply.status_code == 401
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json()["message"]


def test_scopes_are_enforced(http: httpx.Client, tenant_a: Tenant, admin_key: str) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    assert (
        http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.read_key)).status_code == 200
    )
    write = http.post("/v1/listings", json=listing_body("RO-1"), headers=bearer(tenant_a.read_key))
    assert write.status_code == 403
    assert write.json()["details"][0]["reason"] == "PERMISSION_DENIED"
    assert (
        http.delete(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.read_key)).status_code
        == 403
    )
    # Only the platform admin creates tenants; a tenant key cannot mint keys without `admin`.
    assert (
        http.post(
            "/v1/tenants", json={"displayName": "x"}, headers=bearer(tenant_a.admin_key)
        ).status_code
        == 403
    )
    assert (
        http.post(
            f"/v1/tenants/{tenant_a.tenant_id}/apiKeys",
            json={"scopes": ["admin"]},
            headers=bearer(tenant_a.key),
        ).status_code
        == 403
    )
    # The platform admin does not read tenant data by accident.
    assert http.get(f"/v1/listings/{listing_id}", headers=bearer(admin_key)).status_code == 403


def test_revoked_key_is_refused_within_the_ttl(http: httpx.Client, tenant_a: Tenant) -> None:
    key = _create_key(http, tenant_a.admin_key, tenant_a.tenant_id, ["catalog:read"])
    assert http.get("/v1/listings", headers=bearer(key)).status_code == 200  # now cached
    keys = http.get(
        f"/v1/tenants/{tenant_a.tenant_id}/apiKeys", headers=bearer(tenant_a.admin_key)
    ).json()["apiKeys"]
    key_id = next(k["keyId"] for k in keys if key.split("_")[1] == k["prefix"])
    revoked_at = time.monotonic()
    assert (
        http.delete(
            f"/v1/tenants/{tenant_a.tenant_id}/apiKeys/{key_id}", headers=bearer(tenant_a.admin_key)
        ).status_code
        == 200
    )
    while http.get("/v1/listings", headers=bearer(key)).status_code != 401:
        assert time.monotonic() - revoked_at < AUTH_CACHE_TTL_SECONDS + 1, (
            "revoked key still accepted after the TTL"
        )
        time.sleep(0.1)
    listed = http.get(
        f"/v1/tenants/{tenant_a.tenant_id}/apiKeys", headers=bearer(tenant_a.admin_key)
    ).json()["apiKeys"]
    assert next(k for k in listed if k["keyId"] == key_id)["revokeTime"]


def test_malformed_json_is_400_with_json_body(http: httpx.Client, tenant_a: Tenant) -> None:
    reply = http.post(
        "/v1/listings",
        content=b'{"title": "x", "variants": [',
        headers={**bearer(tenant_a.key), "content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/json")
    assert "message" in reply.json()


def _count(http: httpx.Client, tenant: Tenant) -> int:
    return len(
        http.get("/v1/listings", params={"pageSize": 100}, headers=bearer(tenant.key))
        .json()
        .get("listings", [])
    )


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["variants"][0]["price"].update(units="-5"), "listing.variants[0].price"),
        (lambda b: b.update(title=""), "listing.title"),
        (lambda b: b.update(title="x" * 2000), "listing.title"),
        (lambda b: b.update(variants=[]), "listing.variants"),
        (lambda b: b["variants"][0].update(gtin="123"), "listing.variants[0].gtin"),
    ],
)
def test_invalid_field_is_400_naming_it_and_stores_nothing(
    http: httpx.Client, admin_key: str, mutate: Any, field: str
) -> None:
    tenant = _new_tenant(http, admin_key, "Validation")
    body = listing_body(f"V-{uuid.uuid4().hex[:8]}")
    mutate(body)
    reply = http.post("/v1/listings", json=body, headers=bearer(tenant.key))
    assert reply.status_code == 400, reply.text
    error = reply.json()
    bad_request = next(d for d in error["details"] if d["@type"].endswith("BadRequest"))
    assert field in [v["field"] for v in bad_request["fieldViolations"]]
    assert _count(http, tenant) == 0


def test_unknown_route_and_openapi_and_health(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    spec = http.get("/openapi.json").json()
    assert "/v1/listings/{listing_id}" in str(spec["paths"]) or "/v1/listings/{listingId}" in str(
        spec["paths"]
    )
    missing = http.get("/v1/nothing-here", headers={"Authorization": "Bearer x"})
    assert missing.status_code in (401, 404)
    assert missing.headers["content-type"].startswith("application/json")
