"""Per-tenant rate limits at the gateway: a free tenant over its limit (2/s, bursts of 5
in this stack) gets 429s with Retry-After and a JSON body; another tenant does not notice;
after the wait the tenant is served again."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.test_rest_api import _create_key, _new_tenant, bearer

pytestmark = pytest.mark.e2e


def test_a_tenant_over_its_rate_limit_gets_429_and_others_do_not(
    http: httpx.Client, admin_key: str
) -> None:
    created = http.post(
        "/v1/tenants",
        json={"displayName": "Throttled", "tier": "TIER_FREE"},
        headers=bearer(admin_key),
    )
    assert created.status_code == 200, created.text
    free_key = _create_key(http, admin_key, created.json()["tenantId"], ["catalog:read"])
    other = _new_tenant(http, admin_key, "Unthrottled")

    answers = [http.get("/v1/listings", headers=bearer(free_key)) for _ in range(15)]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [200] * 5, codes  # the burst
    refused = [a for a in answers if a.status_code == 429]
    assert refused, codes
    assert set(codes) <= {200, 429}
    body = refused[0].json()
    assert body["code"] == 8  # RESOURCE_EXHAUSTED
    assert body["details"][0]["reason"] == "RATE_LIMITED"
    assert body["details"][0]["metadata"]["tier"] == "free"
    wait = int(refused[0].headers["retry-after"])
    assert wait >= 1

    # Meanwhile another tenant is served as usual.
    assert http.get("/v1/listings", headers=bearer(other.read_key)).status_code == 200
    time.sleep(wait)  # what Retry-After asks of a client
    assert http.get("/v1/listings", headers=bearer(free_key)).status_code == 200
