"""Property tests of route decisions: what must hold for any catalog, health and tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hygoshop_router.domain.model import (
    Budget,
    BudgetState,
    HealthState,
    HealthView,
    Override,
    OverrideAction,
    Provider,
    TenantRouting,
    Tier,
)
from hygoshop_router.domain.ranking import CHEAPEST_FIRST, Decision, RouteQuery, rank

NOW = 1_800_000_000.0
CATEGORY = "cat"
CAPABILITY = "a"
PRICES = [Decimal(0), Decimal("0.001"), Decimal("0.01"), Decimal("0.1"), Decimal(1)]


@dataclass(frozen=True)
class Scenario:
    providers: list[Provider]
    health: dict[str, HealthView]
    tenant: TenantRouting
    query: RouteQuery

    def decide(self) -> Decision:
        return rank(
            self.query,
            self.providers,
            lambda pid: self.health[pid],
            self.tenant,
            now=NOW,
        )

    @property
    def by_id(self) -> dict[str, Provider]:
        return {p.provider_id: p for p in self.providers}

    def override_ids(self, action: OverrideAction) -> set[str]:
        return {o.provider_id for o in self.tenant.overrides if o.action is action}

    @property
    def pinned(self) -> str | None:
        pins = self.override_ids(OverrideAction.PIN)
        return next(iter(pins)) if pins else None

    @property
    def budget(self) -> BudgetState:
        return self.decide().budget_state

    def statically_eligible(self) -> list[Provider]:
        """What the filters before health must let through, written from the rules."""
        excluded = self.override_ids(OverrideAction.EXCLUDE)
        at_cap = self.budget is BudgetState.AT_CAP
        return [
            p
            for p in self.providers
            if p.enabled
            and self.query.tier in p.tiers
            and CAPABILITY in p.capabilities
            and p.provider_id not in excluded
            and p.provider_id not in self.query.avoid
            and not (at_cap and p.cost_of(CAPABILITY) > 0 and p.provider_id != self.pinned)
        ]


# Strategies built once: hypothesis validates a strategy each time one is constructed.
# Weighted toward providers that can serve the query, so each property has many cases.
_CAPABILITIES = st.sampled_from([{"a"}, {"a"}, {"a", "b"}, {"a", "b"}, {"b"}])
_PRICE = st.sampled_from(PRICES)
_TIERS = st.sampled_from(
    [set(Tier)] * 5 + [{Tier.FREE}, {Tier.GROWTH, Tier.ENTERPRISE}, {Tier.ENTERPRISE}]
)
_WEIGHT = st.integers(min_value=1, max_value=1000)
_ENABLED = st.sampled_from([True] * 9 + [False])
_OFFLINE = st.sampled_from([False, False, False, False, True])
# Most providers healthy, so properties about healthy ones get enough examples.
_STATE = st.sampled_from([HealthState.HEALTHY] * 6 + list(HealthState)[1:] + [HealthState.OPEN])
_RATE = st.floats(min_value=0, max_value=1)
_CALLS = st.integers(min_value=0, max_value=100)
_LATENCY = st.none() | st.floats(min_value=1, max_value=5000)
_WAIT = st.floats(min_value=0.5, max_value=300)
_TIER = st.sampled_from(list(Tier))
_RATIO = st.sampled_from([0.5, 0.8, 0.95])
_LIMIT = st.integers(min_value=0, max_value=100)
_SPEND = st.integers(min_value=0, max_value=120)
_HAS_BUDGET = st.sampled_from([False, False, True])


@st.composite
def providers(draw: st.DrawFn) -> list[Provider]:
    count = draw(st.integers(min_value=2, max_value=8))
    result = []
    for i in range(count):
        capabilities = draw(_CAPABILITIES)
        result.append(
            Provider(
                provider_id=f"{CATEGORY}.p{i}",
                category=CATEGORY,
                display_name=f"P{i}",
                capabilities=frozenset(capabilities),
                unit_costs={c: draw(_PRICE) for c in sorted(capabilities)},
                tiers=frozenset(draw(_TIERS)),
                weight=draw(_WEIGHT),
                enabled=draw(_ENABLED),
                offline=draw(_OFFLINE),
            )
        )
    return result


@st.composite
def health_view(draw: st.DrawFn) -> HealthView:
    state = draw(_STATE)
    unavailable = state in (HealthState.OPEN, HealthState.COOLING_DOWN)
    return HealthView(
        state=state,
        error_rate=draw(_RATE),
        window_calls=draw(_CALLS),
        mean_latency_ms=draw(_LATENCY),
        available_at=NOW + draw(_WAIT) if unavailable else None,
    )


_HEALTH = health_view()


@st.composite
def scenarios(draw: st.DrawFn, tier: Tier | None = None, pinned: bool = False) -> Scenario:
    """Any scenario; `tier` fixes the tenant's tier, `pinned` forces a pin override."""
    catalog = draw(providers())
    ids = [p.provider_id for p in catalog]
    some_ids = st.sets(st.sampled_from(ids), max_size=2)
    health = {pid: draw(_HEALTH) for pid in ids}
    excluded = draw(some_ids)
    pin = draw(st.sampled_from(ids if pinned else [None, *ids, *ids]))
    overrides = [
        Override(uuid.uuid4(), CATEGORY, pid, OverrideAction.EXCLUDE, "no") for pid in excluded
    ]
    if pin is not None and pin not in excluded:  # one override per provider (store rule)
        overrides.append(Override(uuid.uuid4(), CATEGORY, pin, OverrideAction.PIN, "ours"))
    budgets: dict[str, Budget] = {}
    spend: dict[str, Decimal] = {}
    if draw(_HAS_BUDGET):
        budgets[CATEGORY] = Budget(CATEGORY, Decimal(draw(_LIMIT)), draw(_RATIO))
        spend[CATEGORY] = Decimal(draw(_SPEND))
    cooldowns = {pid: NOW + 30 for pid in draw(some_ids) if pid.endswith(("1", "4"))}
    avoid = frozenset(pid for pid in draw(some_ids) if pid.endswith(("2", "5")))
    return Scenario(
        catalog,
        health,
        TenantRouting(tuple(overrides), budgets, spend, cooldowns),
        RouteQuery(CATEGORY, CAPABILITY, tier or draw(_TIER), avoid),
    )


def effective_state(s: Scenario, pid: str) -> HealthState:
    """The tenant's view: its rejected credentials cool a provider down for it."""
    state = s.health[pid].state
    if pid in s.tenant.credential_cooldowns and state is not HealthState.OPEN:
        return HealthState.COOLING_DOWN
    return state


UNAVAILABLE = (HealthState.OPEN, HealthState.COOLING_DOWN)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(scenarios())
def test_never_a_provider_the_tier_forbids(s: Scenario) -> None:
    for c in s.decide().candidates:
        assert s.query.tier in s.by_id[c.provider_id].tiers


@PROPERTY_SETTINGS
@given(scenarios())
def test_excluded_or_avoided_providers_never_appear(s: Scenario) -> None:
    banned = s.override_ids(OverrideAction.EXCLUDE) | s.query.avoid
    assert not banned & {c.provider_id for c in s.decide().candidates}


@PROPERTY_SETTINGS
@given(scenarios(pinned=True))
def test_a_healthy_eligible_pinned_provider_is_first(s: Scenario) -> None:
    pin = s.pinned
    eligible = {p.provider_id for p in s.statically_eligible()}
    if pin is None or pin not in eligible or effective_state(s, pin) is not HealthState.HEALTHY:
        return
    decision = s.decide()
    assert decision.candidates[0].provider_id == pin
    assert decision.candidates[0].parts.pinned


@PROPERTY_SETTINGS
@given(scenarios())
def test_open_or_cooling_providers_are_out_unless_all_eligible_are(s: Scenario) -> None:
    eligible = s.statically_eligible()
    states = {p.provider_id: effective_state(s, p.provider_id) for p in eligible}
    candidates = s.decide().candidates
    if any(state not in UNAVAILABLE for state in states.values()):
        assert all(states[c.provider_id] not in UNAVAILABLE for c in candidates)
    elif eligible:
        # Never all capacity removed: exactly the least bad one stays usable.
        assert len(candidates) == 1
        assert candidates[0].provider_id in states
    else:
        assert candidates == ()


@PROPERTY_SETTINGS
@given(scenarios(tier=Tier.FREE) | scenarios())
def test_cheapest_first_profile_orders_healthy_providers_by_cost(s: Scenario) -> None:
    decision = s.decide()
    if decision.profile != CHEAPEST_FIRST:
        return
    assert s.query.tier is Tier.FREE or decision.budget_state is BudgetState.NEAR_CAP
    healthy = [
        c
        for c in decision.candidates
        if c.parts.health.state is HealthState.HEALTHY and not c.parts.pinned
    ]
    online = [c for c in healthy if not s.by_id[c.provider_id].offline]
    costs = [c.parts.unit_cost for c in online]
    assert costs == sorted(costs)
    # Offline providers are the fallback of last resort: after every healthy vendor.
    positions = [healthy.index(c) for c in online]
    offline = [i for i, c in enumerate(healthy) if s.by_id[c.provider_id].offline]
    assert not positions or not offline or max(positions) < min(offline)


@PROPERTY_SETTINGS
@given(scenarios())
def test_at_the_budget_cap_paid_providers_drop_out_unless_pinned(s: Scenario) -> None:
    decision = s.decide()
    if decision.budget_state is not BudgetState.AT_CAP:
        return
    for c in decision.candidates:
        assert c.parts.unit_cost == 0 or c.provider_id == s.pinned


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_provider_is_either_a_candidate_or_rejected_with_a_reason(s: Scenario) -> None:
    decision = s.decide()
    listed = [c.provider_id for c in decision.candidates] + [
        r.provider_id for r in decision.rejections
    ]
    assert sorted(listed) == sorted(s.by_id)
    assert all(r.detail for r in decision.rejections)
    assert all(c.reason for c in decision.candidates)


@PROPERTY_SETTINGS
@given(scenarios(tier=Tier.ENTERPRISE))
def test_most_reliable_first_for_enterprise(s: Scenario) -> None:
    decision = s.decide()
    if s.query.tier is not Tier.ENTERPRISE or decision.budget_state is BudgetState.NEAR_CAP:
        return
    healthy_online = [
        c
        for c in decision.candidates
        if c.parts.health.state is HealthState.HEALTHY
        and not c.parts.pinned
        and not s.by_id[c.provider_id].offline
    ]
    reliability = [round(c.parts.health_score, 2) for c in healthy_online]
    assert reliability == sorted(reliability, reverse=True)
