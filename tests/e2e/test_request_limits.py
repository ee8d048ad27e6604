"""Request limits at the edge and input no service can parse: an oversized body, an
out-of-range page size, a string that is not UTF-8, JSON nested too deeply. Each is a
clear JSON error (or, for a too large page, the largest page) and changes nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.test_rest_api import Tenant, _new_tenant, bearer, listing_body
from tests.e2e.workflow_api import new_tenant, start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant_a(http: httpx.Client, admin_key: str) -> Tenant:
    return _new_tenant(http, admin_key, "Limits")


@pytest.mark.parametrize("size", [2 << 20, 10_000_000])
def test_a_body_over_the_gateways_limit_is_413_json_and_stores_nothing(
    http: httpx.Client, tenant_a: Tenant, size: int
) -> None:
    """1 MiB at the gateway. (Before its buffer filter, 2 MiB reached the service and
    10 MB came back as a 429 naming the service's gRPC message limit.)"""
    before = http.get("/v1/listings", params={"pageSize": 100}, headers=bearer(tenant_a.key))
    body = listing_body(f"HUGE-{size}")
    body["description"] = "x" * size
    reply = http.post("/v1/listings", json=body, headers=bearer(tenant_a.key))
    assert reply.status_code == 413, reply.text[:300]
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert "SERVER" not in error["message"]
    after = http.get("/v1/listings", params={"pageSize": 100}, headers=bearer(tenant_a.key))
    assert after.json().get("listings") == before.json().get("listings")


def test_the_largest_inline_import_fits_under_the_limit(
    http: httpx.Client, tenant_a: Tenant
) -> None:
    """1,000 inline listings (the most a request may carry) with long descriptions: about
    0.6 MB, accepted."""
    listings = [
        {
            "title": f"Large {n}",
            "description": "d" * 500,
            "variants": [
                {"sku": f"LARGE-{n:04d}", "price": {"currencyCode": "USD", "units": "10"}}
            ],
        }
        for n in range(1_000)
    ]
    body = {"requestId": "largest-inline", "inline": {"listings": listings}}
    assert 500_000 < len(json.dumps(body)) < 1 << 20
    reply = http.post("/v1/listings:import", json=body, headers=bearer(tenant_a.key))
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["importId"]


def test_page_sizes_out_of_range(http: httpx.Client, tenant_a: Tenant) -> None:
    negative = http.get("/v1/listings", params={"pageSize": -1}, headers=bearer(tenant_a.key))
    assert negative.status_code == 400, negative.text
    assert "page_size" in negative.text
    huge = http.get("/v1/listings", params={"pageSize": 100000}, headers=bearer(tenant_a.key))
    assert huge.status_code == 200, huge.text  # the largest page instead (AIP-158)


def test_input_no_service_can_parse_is_400_not_500(http: httpx.Client, admin_key: str) -> None:
    tenant = new_tenant(http, admin_key)  # with workflows scopes
    not_utf8 = http.get(
        "/v1/workflowRuns", params={"pageToken": b"\x00\xff"}, headers=bearer(tenant.key)
    )
    nested: dict[str, object] = {}
    for _ in range(90):  # more levels than the services' protobuf parser takes
        nested = {"a": nested}
    too_deep = start(http, tenant.key, "deep-1", nested)
    # attributes is map<string, string>: the gateway's transcoder lets an object through
    # as bytes the service's parser refuses.
    body = listing_body("OBJ-1")
    body["attributes"] = {"k": {"nested": [1]}}
    wrong_type = http.post("/v1/listings", json=body, headers=bearer(tenant.key))
    for reply in (not_utf8, too_deep, wrong_type):
        assert reply.status_code == 400, reply.text[:300]
        assert reply.json()["code"] == 3
        assert "Error parsing" not in reply.text
    runs = http.get("/v1/workflowRuns", headers=bearer(tenant.key)).json()
    assert runs.get("workflowRuns", []) == []  # nothing was started
