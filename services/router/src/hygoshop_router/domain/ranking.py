"""Route decisions: filter the category's providers, then rank what is left.

Filter, in this order (the first failing rule is the rejection reason): enabled, the tier
allows it, it has the capability, no exclude override, the caller did not ask to avoid it,
the budget is not at its cap (paid providers drop out there unless pinned), its circuit is
not open and it is not cooling down. If health would leave nothing, the least bad eligible
provider stays usable: capacity is never removed all at once.

Rank in groups: a healthy pinned provider first; then one half-open probe (when this call
claims the probe); then healthy providers; then healthy offline providers (the fallback of
last resort, they need no vendor account); then half-open ones; then the least bad. Inside
a group the tier's profile decides (free: cheapest first; enterprise: most reliable first;
growth: a weighted balance), then the weighted score, then the provider's weight. A budget
near its cap ranks cheapest first whatever the tier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from hygoshop_router.domain.model import (
    BudgetState,
    HealthState,
    HealthView,
    OverrideAction,
    Provider,
    Rejection,
    TenantRouting,
    Tier,
    budget_state,
)

CHEAPEST_FIRST = "cheapest_first"
BALANCED = "balanced"
MOST_RELIABLE_FIRST = "most_reliable_first"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    cost: float
    health: float
    latency: float


PROFILES: Mapping[Tier, Profile] = {
    Tier.FREE: Profile(CHEAPEST_FIRST, cost=0.7, health=0.2, latency=0.1),
    Tier.GROWTH: Profile(BALANCED, cost=0.4, health=0.4, latency=0.2),
    Tier.ENTERPRISE: Profile(MOST_RELIABLE_FIRST, cost=0.1, health=0.6, latency=0.3),
}
_ZERO = Decimal(0)
UNKNOWN_LATENCY_SCORE = 0.5
"""A provider without latency data is neither rewarded nor punished much."""
ZERO_HEALTH_ERROR_RATE = 0.5
"""The error rate at which the health score reaches 0 (the default circuit threshold):
a provider failing a third of its calls scores 0.33, not 0.67."""

_PHRASES = {
    CHEAPEST_FIRST: "cheapest first",
    BALANCED: "cost, health and latency balanced",
    MOST_RELIABLE_FIRST: "most reliable first",
}


@dataclass(frozen=True, slots=True)
class RouteQuery:
    category: str
    capability: str
    tier: Tier
    avoid: frozenset[str] = frozenset()
    max_candidates: int = 0
    """0: all candidates."""


# Per-decision values are NamedTuples (immutable, and built about twice as fast as frozen
# dataclasses): a decision makes several per provider and Route is on every vendor call.
class ScoreParts(NamedTuple):
    profile: str
    pinned: bool
    health: HealthView
    unit_cost: Decimal
    budget_state: BudgetState
    cost_score: float
    health_score: float
    latency_score: float
    score: float
    weight: int


class Candidate(NamedTuple):
    provider_id: str
    reason: str
    parts: ScoreParts
    probe: bool = False


class Rejected(NamedTuple):
    provider_id: str
    reason: Rejection
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    query: RouteQuery
    budget_state: BudgetState
    profile: str
    candidates: tuple[Candidate, ...]
    rejections: tuple[Rejected, ...]


def tenant_view(
    provider_id: str, view: HealthView, tenant: TenantRouting, now: float
) -> HealthView:
    """The provider's health as this tenant sees it: its own rejected credentials cool it."""
    until = tenant.credential_cooldowns.get(provider_id)
    if until is None or until <= now or view.state is HealthState.OPEN:
        return view
    return view._replace(
        state=HealthState.COOLING_DOWN,
        available_at=max(until, view.available_at or 0.0),
        reason="the provider rejected this tenant's credentials",
    )


@dataclass(frozen=True, slots=True)
class _Intent:
    """What the tenant's overrides and budget say for this category right now."""

    excluded: Mapping[str, str]
    pinned: str | None
    pin_reason: str
    budget: BudgetState


_NO_INTENT = _Intent({}, None, "", BudgetState.UNLIMITED)


def _intent(query: RouteQuery, tenant: TenantRouting, now: float) -> _Intent:
    if not tenant.overrides and not tenant.budgets:
        return _NO_INTENT
    active = [
        o
        for o in tenant.overrides
        if o.category == query.category
        and (o.expire_time is None or o.expire_time.timestamp() > now)
    ]
    pins = [o for o in active if o.action is OverrideAction.PIN]
    return _Intent(
        excluded={o.provider_id: o.reason for o in active if o.action is OverrideAction.EXCLUDE},
        pinned=pins[0].provider_id if pins else None,
        pin_reason=pins[0].reason if pins else "",
        budget=budget_state(
            tenant.budgets.get(query.category), tenant.month_spend.get(query.category, Decimal(0))
        ),
    )


def _catalog_rejection(provider: Provider, query: RouteQuery) -> Rejected | None:
    """Rules of the catalog: enabled, tier allowed, capability."""
    pid = provider.provider_id
    if not provider.enabled:
        return Rejected(pid, Rejection.DISABLED, "disabled in the provider catalog")
    if query.tier not in provider.tiers:
        allowed = ", ".join(sorted(t.value for t in provider.tiers))
        return Rejected(
            pid, Rejection.TIER_NOT_ALLOWED, f"tier {query.tier.value} not allowed ({allowed})"
        )
    if query.capability not in provider.capabilities:
        return Rejected(pid, Rejection.CAPABILITY_MISSING, f"cannot {query.capability}")
    return None


def _tenant_rejection(provider: Provider, query: RouteQuery, intent: _Intent) -> Rejected | None:
    """Rules of the tenant and the caller: exclusions, avoid hints, the budget cap."""
    pid = provider.provider_id
    if pid in intent.excluded:
        return Rejected(pid, Rejection.EXCLUDED_BY_OVERRIDE, intent.excluded[pid] or "excluded")
    if pid in query.avoid:
        return Rejected(pid, Rejection.AVOIDED_BY_CALLER, "the caller asked to avoid it")
    if (
        intent.budget is BudgetState.AT_CAP
        and provider.cost_of(query.capability) > 0
        and pid != intent.pinned
    ):
        return Rejected(
            pid, Rejection.BUDGET_EXHAUSTED, "the month's budget is spent: paid providers drop out"
        )
    return None


def _unavailable(view: HealthView) -> Rejection | None:
    if view.state is HealthState.OPEN:
        return Rejection.CIRCUIT_OPEN
    if view.state is HealthState.COOLING_DOWN:
        return Rejection.COOLING_DOWN
    return None


def _normalized(values: Sequence[float | None], default: float) -> list[float]:
    """Lower is better: the lowest known value scores 1, the highest 0."""
    known = [v for v in values if v is not None]
    if not known:
        return [default for _ in values]
    low, high = min(known), max(known)
    if high <= low:
        return [default if v is None else 1.0 for v in values]
    return [default if v is None else (high - v) / (high - low) for v in values]


def _least_bad(eligible: Sequence[tuple[Provider, HealthView]]) -> tuple[Provider, HealthView]:
    """The unavailable provider that should recover first (then the lowest error rate)."""
    return min(
        eligible,
        key=lambda pv: (
            pv[1].available_at if pv[1].available_at is not None else math.inf,
            pv[1].error_rate,
            -pv[0].weight,
            pv[0].provider_id,
        ),
    )


def _score(
    query: RouteQuery,
    usable: Sequence[tuple[Provider, HealthView]],
    profile: Profile,
    intent: _Intent,
) -> list[tuple[Provider, ScoreParts, tuple[float, float, int, str]]]:
    """Score parts of each usable provider and its order key inside its group, best first."""
    capability = query.capability
    costs = [p.unit_costs.get(capability, _ZERO) for p, _ in usable]
    cost_scores = _normalized([float(c) for c in costs], 1.0)
    latency_scores = _normalized([v.mean_latency_ms for _, v in usable], UNKNOWN_LATENCY_SCORE)
    name, pinned, budget = profile.name, intent.pinned, intent.budget
    scored = []
    for (p, v), cost, cost_score, latency_score in zip(
        usable, costs, cost_scores, latency_scores, strict=True
    ):
        health_score = max(0.0, 1.0 - v.error_rate / ZERO_HEALTH_ERROR_RATE)
        score = (
            profile.cost * cost_score
            + profile.health * health_score
            + profile.latency * latency_score
        )
        if name == CHEAPEST_FIRST:
            primary = cost_score
        elif name == MOST_RELIABLE_FIRST:
            primary = round(health_score, 2)  # to the percent: noise must not reshuffle
        else:
            primary = score
        parts = ScoreParts(
            name,
            p.provider_id == pinned,
            v,
            cost,
            budget,
            round(cost_score, 4),
            round(health_score, 4),
            round(latency_score, 4),
            round(score, 4),
            p.weight,
        )
        scored.append((p, parts, (-primary, -score, -p.weight, p.provider_id)))
    scored.sort(key=lambda item: item[2])
    return scored


def _group(
    p: Provider, parts: ScoreParts, probe_claimed: bool, phrase: str, pin_reason: str
) -> tuple[int, str]:
    """The group a scored provider falls in (lower first) and the reason it is there."""
    state = parts.health.state
    if probe_claimed:
        return 1, "half-open probe: this call tests whether it recovered"
    if state is HealthState.HEALTHY and parts.pinned:
        return 0, "pinned by override" + (f": {pin_reason}" if pin_reason else "")
    if state is HealthState.HEALTHY and not p.offline:
        return 2, f"healthy; {phrase}"
    if state is HealthState.HEALTHY:
        return 3, "healthy offline fallback (no vendor account needed)"
    return 4, f"after the healthy providers: {parts.health.reason}"


def rank(
    query: RouteQuery,
    providers: Sequence[Provider],
    health: Callable[[str], HealthView],
    tenant: TenantRouting,
    *,
    now: float,
    claim_probe: Callable[[str], bool] = lambda _: False,
) -> Decision:
    """The decision for one tenant. `providers` are the category's; `now` is epoch seconds.

    `claim_probe(provider_id)` is asked for the best half-open candidate only; when it
    says yes, that provider is tried right after a healthy pin (Route claims probes,
    ExplainRoute does not).
    """
    intent = _intent(query, tenant, now)
    profile = PROFILES[Tier.FREE if intent.budget is BudgetState.NEAR_CAP else query.tier]
    rejections: list[Rejected] = []
    eligible: list[tuple[Provider, HealthView]] = []
    for provider in sorted(providers, key=lambda p: p.provider_id):
        if provider.category != query.category:
            continue
        rejected = _catalog_rejection(provider, query) or _tenant_rejection(provider, query, intent)
        if rejected is not None:
            rejections.append(rejected)
            continue
        view = tenant_view(provider.provider_id, health(provider.provider_id), tenant, now)
        eligible.append((provider, view))

    usable = []
    down = []
    for p, v in eligible:
        unavailable = _unavailable(v)
        if unavailable is None:
            usable.append((p, v))
        else:
            down.append((p, v, unavailable))
    rescued = None
    if not usable and eligible:
        usable = [_least_bad(eligible)]  # never remove all capacity at once
        rescued = usable[0][0].provider_id
    rejections += [
        Rejected(p.provider_id, r, v.reason) for p, v, r in down if p.provider_id != rescued
    ]

    phrase = _PHRASES[profile.name] + (
        " (budget near its cap)"
        if intent.budget is BudgetState.NEAR_CAP
        else f" (tier {query.tier.value})"
    )
    probe_taken = False
    ranked: list[tuple[tuple[object, ...], Candidate]] = []
    for p, parts, order in _score(query, usable, profile, intent):
        if p.provider_id == rescued:
            group = 5
            reason = f"every eligible provider is unavailable; least bad: {parts.health.reason}"
            probe = False
        else:
            # Scored best first, so the probe goes to the best half-open provider.
            probe = (
                parts.health.state is HealthState.HALF_OPEN
                and not probe_taken
                and claim_probe(p.provider_id)
            )
            probe_taken = probe_taken or probe
            group, reason = _group(p, parts, probe, phrase, intent.pin_reason)
        ranked.append(((group, *order), Candidate(p.provider_id, reason, parts, probe)))
    ranked.sort(key=lambda item: item[0])
    candidates = tuple(c for _, c in ranked)
    if query.max_candidates > 0:
        candidates = candidates[: query.max_candidates]
    return Decision(query, intent.budget, profile.name, candidates, tuple(rejections))
