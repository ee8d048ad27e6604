"""Route decisions on small, readable cases: tiers, budgets, probes and the reasons given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from hygoshop_router.domain.model import (
    Budget,
    BudgetState,
    HealthState,
    HealthView,
    Override,
    OverrideAction,
    Provider,
    Rejection,
    TenantRouting,
    Tier,
)
from hygoshop_router.domain.ranking import RouteQuery, rank

NOW = 1_800_000_000.0
ALL = frozenset(Tier)


def provider(
    name: str, cost: str, *, tiers: frozenset[Tier] = ALL, offline: bool = False, weight: int = 100
) -> Provider:
    return Provider(
        provider_id=f"email.{name}",
        category="email",
        display_name=name,
        capabilities=frozenset({"send_email"}),
        unit_costs={"send_email": Decimal(cost)},
        tiers=tiers,
        weight=weight,
        offline=offline,
    )


CHEAP = provider("cheap", "0.001")
PRICEY = provider("pricey", "0.01")
LOCAL = provider("local", "0", offline=True, weight=10)
PREMIUM = provider("premium", "0.02", tiers=frozenset({Tier.ENTERPRISE}))
CATALOG = [CHEAP, PRICEY, LOCAL, PREMIUM]


def order(
    tier: Tier,
    health: dict[str, HealthView] | None = None,
    tenant: TenantRouting | None = None,
    claim: bool = False,
) -> list[str]:
    return [c.provider_id.split(".")[1] for c in decide(tier, health, tenant, claim).candidates]


def decide(
    tier: Tier,
    health: dict[str, HealthView] | None = None,
    tenant: TenantRouting | None = None,
    claim: bool = False,
):  # type: ignore[no-untyped-def]
    views = health or {}
    return rank(
        RouteQuery("email", "send_email", tier),
        CATALOG,
        lambda pid: views.get(pid, HealthView()),
        tenant or TenantRouting(),
        now=NOW,
        claim_probe=lambda _: claim,
    )


def test_free_is_cheapest_first_and_never_sees_an_enterprise_provider() -> None:
    decision = decide(Tier.FREE)
    assert [c.provider_id for c in decision.candidates] == [
        "email.cheap",
        "email.pricey",
        "email.local",
    ]
    premium = next(r for r in decision.rejections if r.provider_id == "email.premium")
    assert premium.reason is Rejection.TIER_NOT_ALLOWED
    assert decision.candidates[0].reason == "healthy; cheapest first (tier free)"
    assert decision.candidates[-1].reason.startswith("healthy offline fallback")


def test_enterprise_is_most_reliable_first_even_when_it_costs_more() -> None:
    flaky = {"email.cheap": HealthView(error_rate=0.2, window_calls=50)}
    # Equally reliable: the cheaper first; the flaky one after both, though cheapest.
    assert order(Tier.ENTERPRISE, flaky) == ["pricey", "premium", "cheap", "local"]
    # The free tier still goes cheapest first among healthy providers.
    assert order(Tier.FREE, flaky)[0] == "cheap"


def test_growth_balances_cost_against_health_and_latency() -> None:
    health = {
        "email.cheap": HealthView(error_rate=0.3, window_calls=50, mean_latency_ms=900),
        "email.pricey": HealthView(error_rate=0.0, window_calls=50, mean_latency_ms=100),
    }
    assert order(Tier.GROWTH, health)[:2] == ["pricey", "cheap"]
    assert order(Tier.GROWTH)[:2] == ["cheap", "pricey"]  # equal health: cost decides


def test_pin_goes_first_exclude_disappears_and_both_are_explained() -> None:
    tenant = TenantRouting(
        overrides=(
            Override(uuid.uuid4(), "email", "email.pricey", OverrideAction.PIN, "contract"),
            Override(uuid.uuid4(), "email", "email.cheap", OverrideAction.EXCLUDE, "bounces"),
        )
    )
    decision = decide(Tier.FREE, tenant=tenant)
    assert [c.provider_id for c in decision.candidates] == ["email.pricey", "email.local"]
    assert decision.candidates[0].reason == "pinned by override: contract"
    excluded = next(r for r in decision.rejections if r.provider_id == "email.cheap")
    assert (excluded.reason, excluded.detail) == (Rejection.EXCLUDED_BY_OVERRIDE, "bounces")


def test_an_expired_override_has_no_effect() -> None:
    past = datetime.fromtimestamp(NOW - 1, UTC)
    tenant = TenantRouting(
        overrides=(
            Override(
                uuid.uuid4(), "email", "email.cheap", OverrideAction.EXCLUDE, expire_time=past
            ),
        )
    )
    assert order(Tier.FREE, tenant=tenant)[0] == "cheap"


def test_a_pinned_provider_with_an_open_circuit_is_not_used() -> None:
    tenant = TenantRouting(
        overrides=(Override(uuid.uuid4(), "email", "email.pricey", OverrideAction.PIN),)
    )
    down = {"email.pricey": HealthView(HealthState.OPEN, 1.0, 10, None, NOW + 5, "5xx")}
    decision = decide(Tier.FREE, down, tenant)
    assert "email.pricey" not in [c.provider_id for c in decision.candidates]
    rejected = next(r for r in decision.rejections if r.provider_id == "email.pricey")
    assert rejected.reason is Rejection.CIRCUIT_OPEN


def test_when_every_provider_is_down_the_one_recovering_first_stays() -> None:
    down = {
        "email.cheap": HealthView(HealthState.OPEN, 1.0, 10, None, NOW + 30, "5xx"),
        "email.pricey": HealthView(HealthState.COOLING_DOWN, 0.0, 0, None, NOW + 2, "429"),
        "email.local": HealthView(HealthState.OPEN, 1.0, 10, None, NOW + 60, "5xx"),
    }
    decision = decide(Tier.FREE, down)
    assert [c.provider_id for c in decision.candidates] == ["email.pricey"]
    assert decision.candidates[0].reason.startswith("every eligible provider is unavailable")


def test_a_half_open_provider_gets_one_probe_when_claimed_else_waits_behind() -> None:
    half = {"email.cheap": HealthView(HealthState.HALF_OPEN, reason="probing")}
    probed = decide(Tier.FREE, half, claim=True)
    assert probed.candidates[0].provider_id == "email.cheap"
    assert probed.candidates[0].probe
    assert order(Tier.FREE, half, claim=False) == ["pricey", "local", "cheap"]


def test_near_the_cap_cheaper_ranks_first_at_the_cap_paid_drop_out() -> None:
    flaky = {"email.cheap": HealthView(error_rate=0.2, window_calls=50)}
    budget = {"email": Budget("email", Decimal(10), 0.8)}
    under = TenantRouting(budgets=budget, month_spend={"email": Decimal(1)})
    near = TenantRouting(budgets=budget, month_spend={"email": Decimal(9)})
    at_cap = TenantRouting(budgets=budget, month_spend={"email": Decimal(10)})
    assert decide(Tier.ENTERPRISE, flaky, under).budget_state is BudgetState.UNDER
    assert order(Tier.ENTERPRISE, flaky, under) == ["pricey", "premium", "cheap", "local"]
    near_decision = decide(Tier.ENTERPRISE, flaky, near)
    assert near_decision.budget_state is BudgetState.NEAR_CAP
    assert order(Tier.ENTERPRISE, flaky, near) == ["cheap", "pricey", "premium", "local"]
    assert "budget near its cap" in near_decision.candidates[0].reason
    capped = decide(Tier.ENTERPRISE, flaky, at_cap)
    assert [c.provider_id for c in capped.candidates] == ["email.local"]
    assert {r.reason for r in capped.rejections} == {Rejection.BUDGET_EXHAUSTED}


def test_a_pin_keeps_a_paid_provider_at_the_cap() -> None:
    tenant = TenantRouting(
        overrides=(Override(uuid.uuid4(), "email", "email.pricey", OverrideAction.PIN),),
        budgets={"email": Budget("email", Decimal(5), 0.8)},
        month_spend={"email": Decimal(5)},
    )
    assert order(Tier.FREE, tenant=tenant) == ["pricey", "local"]


def test_the_tenants_rejected_credentials_cool_the_provider_for_that_tenant_only() -> None:
    tenant = TenantRouting(credential_cooldowns={"email.cheap": NOW + 60})
    decision = decide(Tier.FREE, tenant=tenant)
    rejected = next(r for r in decision.rejections if r.provider_id == "email.cheap")
    assert rejected.reason is Rejection.COOLING_DOWN
    assert "credentials" in rejected.detail
    assert order(Tier.FREE)[0] == "cheap"  # another tenant: unaffected


def test_avoid_hints_and_max_candidates() -> None:
    decision = rank(
        RouteQuery("email", "send_email", Tier.FREE, frozenset({"email.cheap"}), 1),
        CATALOG,
        lambda _: HealthView(),
        TenantRouting(),
        now=NOW,
    )
    assert [c.provider_id for c in decision.candidates] == ["email.pricey"]
    assert any(r.reason is Rejection.AVOIDED_BY_CALLER for r in decision.rejections)
