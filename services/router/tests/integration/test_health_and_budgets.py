"""Outcomes through gRPC: health aggregates and survives a restart, spend drives budgets,
rejected credentials cool one tenant's provider and raise one alert."""

from __future__ import annotations

import uuid
from decimal import Decimal

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hygoshop.router.v1 import router_pb2
from hygoshop.tenancy.v1 import tenancy_pb2
from hygoshop_platform.money import decimal_to_money

from .conftest import Platform, tenant_md

pytestmark = pytest.mark.integration


def outcome(
    provider_id: str, result: int, cost: str = "0", capability: str = ""
) -> router_pb2.Outcome:
    return router_pb2.Outcome(
        provider_id=provider_id,
        capability=capability,
        result=result,
        latency=duration_pb2.Duration(nanos=50_000_000),
        cost=decimal_to_money(Decimal(cost), "USD"),
    )


async def report(p: Platform, tenant: uuid.UUID, outcomes: list[router_pb2.Outcome]) -> int:
    reply = await p.stub.ReportOutcomes(
        router_pb2.ReportOutcomesRequest(outcomes=outcomes), metadata=tenant_md(tenant)
    )
    return int(reply.accepted_count)


async def health(p: Platform, provider_id: str, tenant: uuid.UUID) -> router_pb2.ProviderHealth:
    category = provider_id.split(".", maxsplit=1)[0]
    reply = await p.stub.ListProviderHealth(
        router_pb2.ListProviderHealthRequest(category=category),
        metadata=tenant_md(tenant, "routing:read"),
    )
    return next(h for h in reply.provider_health if h.provider_id == provider_id)


async def route(
    p: Platform, tenant: uuid.UUID, category: str, capability: str
) -> router_pb2.RouteDecision:
    reply = await p.stub.Route(
        router_pb2.RouteRequest(category=category, capability=capability),
        metadata=tenant_md(tenant, "catalog:read"),  # whatever scopes the request had
    )
    return reply.decision


async def test_outcomes_of_two_tenants_aggregate_and_the_open_circuit_survives_a_restart(
    platform: Platform,
) -> None:
    a, b = await platform.new_tenant(), await platform.new_tenant()
    errors = [outcome("imagegen.replicate", router_pb2.RESULT_CLASS_SERVER_ERROR)] * 5
    assert await report(platform, a, errors) == 5
    assert (await health(platform, "imagegen.replicate", a)).state == (
        router_pb2.HEALTH_STATE_HEALTHY
    )
    await report(platform, b, errors)  # 10 calls in the window, all failed: opens
    opened = await health(platform, "imagegen.replicate", a)
    assert opened.state == router_pb2.HEALTH_STATE_OPEN
    assert opened.error_rate == 1.0
    assert opened.HasField("cooldown_until")
    decision = await route(platform, a, "imagegen", "generate_image")
    assert "imagegen.replicate" not in [c.provider_id for c in decision.candidates]
    rejected = next(r for r in decision.rejections if r.provider_id == "imagegen.replicate")
    assert rejected.reason == router_pb2.REJECTION_REASON_CIRCUIT_OPEN
    assert "10 of 10 calls failed" in rejected.detail

    await platform.restart_router()
    after = await health(platform, "imagegen.replicate", a)
    assert after.state == router_pb2.HEALTH_STATE_OPEN
    assert after.cooldown_until == opened.cooldown_until
    assert after.window_calls == 10


async def test_a_bad_batch_is_refused_whole_with_field_violations(platform: Platform) -> None:
    tenant = await platform.new_tenant()
    before = await health(platform, "social.ayrshare", tenant)
    bad = [
        outcome("social.ayrshare", router_pb2.RESULT_CLASS_SERVER_ERROR),
        outcome("social.nope", router_pb2.RESULT_CLASS_OK),
        router_pb2.Outcome(provider_id="social.ayrshare"),  # no result
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(platform, tenant, bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    fields = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = {v.field for v in bad_request.field_violations}
    assert fields == {"outcomes[1].provider_id", "outcomes[2].result"}
    assert (await health(platform, "social.ayrshare", tenant)).window_calls == before.window_calls
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await report(platform, tenant, [])
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_spend_near_the_cap_ranks_cheaper_first_and_at_the_cap_paid_drop_out(
    platform: Platform,
) -> None:
    tenant = await platform.new_tenant(tenancy_pb2.TIER_ENTERPRISE)
    write = tenant_md(tenant, "routing:write")
    budget = await platform.stub.UpdateBudget(
        router_pb2.UpdateBudgetRequest(
            budget=router_pb2.Budget(
                category="tax", monthly_limit=decimal_to_money(Decimal(1), "USD")
            ),
            allow_missing=True,
        ),
        metadata=write,
    )
    assert (budget.state, budget.near_cap_ratio) == (router_pb2.BUDGET_STATE_UNDER, 0.8)
    decision = await route(platform, tenant, "tax", "calculate_tax")
    assert decision.budget_state == router_pb2.BUDGET_STATE_UNDER
    assert decision.candidates[0].score.profile == "most_reliable_first"

    await report(platform, tenant, [outcome("tax.avalara", router_pb2.RESULT_CLASS_OK, "0.45")] * 2)
    decision = await route(platform, tenant, "tax", "calculate_tax")
    assert decision.budget_state == router_pb2.BUDGET_STATE_NEAR_CAP
    assert [c.provider_id for c in decision.candidates] == [
        "tax.taxjar",
        "tax.avalara",
        "tax.offline",
    ]
    assert decision.candidates[0].score.profile == "cheapest_first"
    assert "budget near its cap" in decision.candidates[0].reason
    got = await platform.stub.GetBudget(
        router_pb2.GetBudgetRequest(category="tax"), metadata=tenant_md(tenant, "routing:read")
    )
    assert (got.month_spend.units, got.month_spend.nanos) == (0, 900_000_000)

    await report(platform, tenant, [outcome("tax.taxjar", router_pb2.RESULT_CLASS_OK, "0.10")])
    decision = await route(platform, tenant, "tax", "calculate_tax")
    assert decision.budget_state == router_pb2.BUDGET_STATE_AT_CAP
    assert [c.provider_id for c in decision.candidates] == ["tax.offline"]
    assert {r.provider_id: r.reason for r in decision.rejections} == {
        "tax.taxjar": router_pb2.REJECTION_REASON_BUDGET_EXHAUSTED,
        "tax.avalara": router_pb2.REJECTION_REASON_BUDGET_EXHAUSTED,
    }

    # A pin is an override that keeps its provider at the cap.
    await platform.stub.CreateRoutingOverride(
        router_pb2.CreateRoutingOverrideRequest(
            routing_override=router_pb2.RoutingOverride(
                category="tax",
                provider_id="tax.avalara",
                action=router_pb2.OVERRIDE_ACTION_PIN,
                reason="contract",
            )
        ),
        metadata=write,
    )
    decision = await route(platform, tenant, "tax", "calculate_tax")
    assert [c.provider_id for c in decision.candidates] == ["tax.avalara", "tax.offline"]
    assert decision.candidates[0].score.override == router_pb2.OVERRIDE_EFFECT_PINNED

    # Another tenant of the same tier is untouched by this tenant's budget and pin.
    other = await platform.new_tenant(tenancy_pb2.TIER_ENTERPRISE)
    theirs = await route(platform, other, "tax", "calculate_tax")
    assert theirs.budget_state == router_pb2.BUDGET_STATE_UNLIMITED
    assert len(theirs.candidates) == 3


async def test_rejected_credentials_cool_one_tenants_provider_and_raise_one_alert(
    platform: Platform,
) -> None:
    a, b = await platform.new_tenant(), await platform.new_tenant()
    denied = outcome(
        "shipping.easypost", router_pb2.RESULT_CLASS_AUTH_ERROR, capability="buy_label"
    )
    await report(platform, a, [denied] * 3)
    await report(platform, a, [denied])  # still cooling down: no second alert
    mine = await route(platform, a, "shipping", "buy_label")
    rejected = next(r for r in mine.rejections if r.provider_id == "shipping.easypost")
    assert rejected.reason == router_pb2.REJECTION_REASON_COOLING_DOWN
    assert "credentials" in rejected.detail
    theirs = await route(platform, b, "shipping", "buy_label")
    assert "shipping.easypost" in [c.provider_id for c in theirs.candidates]
    # The provider itself stays healthy for everyone (it answered, it just said no).
    assert (await health(platform, "shipping.easypost", b)).state == (
        router_pb2.HEALTH_STATE_HEALTHY
    )
    assert (await health(platform, "shipping.easypost", a)).state == (
        router_pb2.HEALTH_STATE_COOLING_DOWN
    )

    alerts_a = await platform.stub.ListRoutingAlerts(
        router_pb2.ListRoutingAlertsRequest(), metadata=tenant_md(a, "routing:read")
    )
    assert len(alerts_a.routing_alerts) == 1
    alert = alerts_a.routing_alerts[0]
    assert (alert.kind, alert.provider_id, alert.category) == (
        router_pb2.ALERT_KIND_CREDENTIALS_REJECTED,
        "shipping.easypost",
        "shipping",
    )
    assert alert.HasField("cooldown_until")
    alerts_b = await platform.stub.ListRoutingAlerts(
        router_pb2.ListRoutingAlertsRequest(), metadata=tenant_md(b, "routing:read")
    )
    assert list(alerts_b.routing_alerts) == []
