"""The router end to end: an adapter-like client calls `execute` while a loopback fake
vendor fails and recovers; the explain endpoint over REST (Envoy) shows why traffic moved;
overrides, budgets and explanations stay per tenant.

The client talks gRPC to the stack's router process (as an adapter would); tenants, keys,
overrides and explanations go through Envoy with API keys.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from deploy.stack import Stack
from hygoshop_platform.routing import (
    Attempt,
    ProviderCallError,
    ResultClass,
    RouterClient,
    result_for_status,
)
from hygoshop_platform.tenancy import Caller
from hygoshop_platform.testing.fakevendor import FakeVendor

pytestmark = pytest.mark.e2e
PRIMARY, SECONDARY = "email.sendgrid", "email.postmark"
EXPLAIN = {"category": "email", "capability": "send_email"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class RoutingTenant:
    tenant_id: str
    reader: str
    writer: str
    catalog_only: str


async def new_tenant(
    http: httpx.AsyncClient, admin_key: str, tier: str = "TIER_GROWTH"
) -> RoutingTenant:
    reply = await http.post(
        "/v1/tenants", json={"displayName": "router e2e", "tier": tier}, headers=bearer(admin_key)
    )
    assert reply.status_code == 200, reply.text
    tenant_id = reply.json()["tenantId"]

    async def key(scopes: list[str]) -> str:
        created = await http.post(
            f"/v1/tenants/{tenant_id}/apiKeys", json={"scopes": scopes}, headers=bearer(admin_key)
        )
        assert created.status_code == 200, created.text
        return str(created.json()["secret"])

    return RoutingTenant(
        tenant_id,
        reader=await key(["routing:read"]),
        writer=await key(["routing:read", "routing:write"]),
        catalog_only=await key(["catalog:read"]),
    )


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as client:
        yield client


@pytest.fixture
async def vendors() -> AsyncIterator[dict[str, FakeVendor]]:
    started = {pid: await FakeVendor(pid).start() for pid in (PRIMARY, SECONDARY)}
    yield started
    for vendor in started.values():
        await vendor.stop()


async def explain(gateway: httpx.AsyncClient, key: str) -> dict[str, Any]:
    reply = await gateway.get("/v1/routes:explain", params=EXPLAIN, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["decision"])


def rejection(decision: dict[str, Any], provider_id: str) -> dict[str, Any] | None:
    return next((r for r in decision.get("rejections", []) if r["providerId"] == provider_id), None)


async def until(check: Callable[[], Awaitable[bool]], what: str, attempts: int = 300) -> None:
    """Poll `check` (which does work each round) a bounded number of times."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def test_traffic_leaves_a_failing_provider_and_returns_after_recovery(
    stack: Stack,
    admin_key: str,
    gateway: httpx.AsyncClient,
    vendors: dict[str, FakeVendor],
) -> None:
    tenant = await new_tenant(gateway, admin_key)
    # Keep the tenant's email candidates to the two fake vendors: no other provider ranks.
    for provider_id in ("email.resend", "email.local"):
        reply = await gateway.post(
            "/v1/routingOverrides",
            json={
                "category": "email",
                "providerId": provider_id,
                "action": "OVERRIDE_ACTION_EXCLUDE",
            },
            headers=bearer(tenant.writer),
        )
        assert reply.status_code == 200, reply.text
    decision = await explain(gateway, tenant.reader)
    assert [c["providerId"] for c in decision["candidates"]] == [PRIMARY, SECONDARY]

    caller = Caller(tenant_id=uuid.UUID(tenant.tenant_id), scopes=frozenset({"email:send"}))
    client = RouterClient(stack.grpc_targets["router"][0], cache_seconds=0.2)
    served: list[str] = []
    async with httpx.AsyncClient(timeout=5) as vendor_http:

        async def send(attempt: Attempt) -> str:
            reply = await vendor_http.post(vendors[attempt.provider_id].url, json={"to": "a@b.c"})
            result = result_for_status(reply.status_code)
            if result is not ResultClass.OK:
                raise ProviderCallError(result, f"HTTP {reply.status_code}")
            served.append(attempt.provider_id)
            return attempt.provider_id

        async def execute() -> str:
            return await client.execute("email", "send_email", send, caller=caller)

        try:
            assert [await execute() for _ in range(3)] == [PRIMARY] * 3

            # The primary vendor starts failing: every call still succeeds, on the secondary.
            vendors[PRIMARY].status = 503

            async def circuit_open() -> bool:
                assert await execute() == SECONDARY
                found = rejection(await explain(gateway, tenant.reader), PRIMARY)
                return found is not None and found["reason"] == "REJECTION_REASON_CIRCUIT_OPEN"

            await until(circuit_open, "the primary's circuit opens")
            why = await explain(gateway, tenant.reader)
            assert [c["providerId"] for c in why["candidates"]] == [SECONDARY]
            opened = rejection(why, PRIMARY)
            assert opened is not None
            assert "calls failed (server errors or timeouts)" in opened["detail"]
            assert why["candidates"][0]["reason"].startswith("healthy;")
            assert why["candidates"][0]["score"]["healthState"] == "HEALTH_STATE_HEALTHY"
            health = await gateway.get(
                "/v1/providerHealth", params={"category": "email"}, headers=bearer(tenant.reader)
            )
            primary_health = next(
                h for h in health.json()["providerHealth"] if h["providerId"] == PRIMARY
            )
            assert primary_health["state"] == "HEALTH_STATE_OPEN"
            assert primary_health["cooldownUntil"]

            # While open, the primary gets no traffic at all.
            await until(
                lambda: _first_candidate_is(client, caller, SECONDARY), "the client re-routes"
            )
            hits = vendors[PRIMARY].requests
            assert [await execute() for _ in range(5)] == [SECONDARY] * 5
            assert vendors[PRIMARY].requests == hits

            # Recovery: half-open probes succeed, the circuit closes, traffic comes back.
            vendors[PRIMARY].status = 200

            async def back_on_primary() -> bool:
                await execute()
                return served[-3:] == [PRIMARY] * 3

            await until(back_on_primary, "traffic returns to the primary", attempts=400)
            recovered = await explain(gateway, tenant.reader)
            assert recovered["candidates"][0]["providerId"] == PRIMARY
            assert rejection(recovered, PRIMARY) is None
            health = await gateway.get(
                "/v1/providerHealth", params={"category": "email"}, headers=bearer(tenant.reader)
            )
            primary_health = next(
                h for h in health.json()["providerHealth"] if h["providerId"] == PRIMARY
            )
            assert primary_health["state"] == "HEALTH_STATE_HEALTHY"
            assert "recovered after 3 successful probes" in primary_health["stateReason"]
        finally:
            await client.close()


async def _first_candidate_is(client: RouterClient, caller: Caller, provider_id: str) -> bool:
    decision = await client.route("email", "send_email", caller=caller)
    return bool(decision.candidates) and decision.candidates[0].provider_id == provider_id


async def test_overrides_budgets_and_explanations_are_per_tenant(
    admin_key: str, gateway: httpx.AsyncClient
) -> None:
    a, b = await new_tenant(gateway, admin_key), await new_tenant(gateway, admin_key)
    created = await gateway.post(
        "/v1/routingOverrides",
        json={
            "category": "llm",
            "providerId": "llm.openai",
            "action": "OVERRIDE_ACTION_EXCLUDE",
            "reason": "tenant A's data policy",
        },
        headers=bearer(a.writer),
    )
    assert created.status_code == 200, created.text
    override_id = created.json()["overrideId"]
    budget = await gateway.patch(
        "/v1/budgets/llm",
        params={"allowMissing": "true"},
        json={"monthlyLimit": {"currencyCode": "USD", "units": "25"}},
        headers=bearer(a.writer),
    )
    assert budget.status_code == 200, budget.text
    assert budget.json()["state"] == "BUDGET_STATE_UNDER"

    params = {"category": "llm", "capability": "generate_text"}
    mine = (await gateway.get("/v1/routes:explain", params=params, headers=bearer(a.reader))).json()
    excluded = rejection(mine["decision"], "llm.openai")
    assert excluded == {
        "providerId": "llm.openai",
        "reason": "REJECTION_REASON_EXCLUDED_BY_OVERRIDE",
        "detail": "tenant A's data policy",
    }
    assert mine["decision"]["budgetState"] == "BUDGET_STATE_UNDER"

    theirs = await gateway.get("/v1/routes:explain", params=params, headers=bearer(b.reader))
    assert theirs.status_code == 200
    body = theirs.text
    assert "data policy" not in body
    assert "llm.openai" in [c["providerId"] for c in theirs.json()["decision"]["candidates"]]
    assert theirs.json()["decision"]["budgetState"] == "BUDGET_STATE_UNLIMITED"

    # A's resources answer B exactly like missing ones.
    missing = await gateway.get(f"/v1/routingOverrides/{uuid.uuid4()}", headers=bearer(b.reader))
    foreign = await gateway.get(f"/v1/routingOverrides/{override_id}", headers=bearer(b.reader))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert (
        await gateway.delete(f"/v1/routingOverrides/{override_id}", headers=bearer(b.writer))
    ).status_code == 404
    assert (await gateway.get("/v1/routingOverrides", headers=bearer(b.reader))).json().get(
        "routingOverrides", []
    ) == []
    assert (await gateway.get("/v1/budgets", headers=bearer(b.reader))).json().get(
        "budgets", []
    ) == []
    assert (await gateway.get("/v1/budgets/llm", headers=bearer(b.reader))).status_code == 404
    # ... and A still has them.
    assert (
        await gateway.get(f"/v1/routingOverrides/{override_id}", headers=bearer(a.reader))
    ).status_code == 200


async def test_routing_api_errors_over_rest(admin_key: str, gateway: httpx.AsyncClient) -> None:
    tenant = await new_tenant(gateway, admin_key)
    assert (await gateway.get("/v1/routes:explain", params=EXPLAIN)).status_code == 401
    forbidden = await gateway.get(
        "/v1/routes:explain", params=EXPLAIN, headers=bearer(tenant.catalog_only)
    )
    assert forbidden.status_code == 403
    bad = await gateway.get(
        "/v1/routes:explain", params={"category": "fax"}, headers=bearer(tenant.reader)
    )
    assert bad.status_code == 400
    fields = {
        v["field"]
        for d in bad.json()["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    }
    assert fields == {"category", "capability"}
    # Editing the platform's catalog is for the platform admin only.
    patch = await gateway.patch(
        "/v1/providers/email.resend",
        params={"updateMask": "weight"},
        json={"weight": 5},
        headers=bearer(tenant.writer),
    )
    assert patch.status_code == 403
    invalid = await gateway.patch(
        "/v1/providers/email.resend",
        params={"updateMask": "weight"},
        json={"weight": 5000},
        headers=bearer(admin_key),
    )
    assert invalid.status_code == 400
    listed = await gateway.get(
        "/v1/providers", params={"category": "email"}, headers=bearer(tenant.reader)
    )
    resend = next(p for p in listed.json()["providers"] if p["providerId"] == "email.resend")
    assert resend["weight"] == 100  # unchanged
    assert resend["unitCosts"]["send_email"] == {
        "currencyCode": "USD",
        "units": "0",
        "nanos": 400000,
    }
