"""Proto <-> domain mapping of the router (the only place that knows both shapes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from google.protobuf import duration_pb2, timestamp_pb2
from google.type import money_pb2

from hygoshop.router.v1 import router_pb2
from hygoshop.tenancy.v1 import tenancy_pb2
from hygoshop_platform.errors import FieldViolation
from hygoshop_platform.money import decimal_to_money, money_to_decimal
from hygoshop_router.domain.model import (
    BudgetState,
    HealthState,
    HealthView,
    Override,
    OverrideAction,
    Provider,
    Rejection,
    ResultClass,
    Tier,
    budget_state,
)
from hygoshop_router.domain.ranking import Decision
from hygoshop_router.tenant_store import Alert, BudgetWithSpend

USD = "USD"
TIER_FROM_PROTO = {
    tenancy_pb2.TIER_FREE: Tier.FREE,
    tenancy_pb2.TIER_GROWTH: Tier.GROWTH,
    tenancy_pb2.TIER_ENTERPRISE: Tier.ENTERPRISE,
}
TIER_TO_PROTO = {tier: number for number, tier in TIER_FROM_PROTO.items()}
HEALTH_TO_PROTO = {
    HealthState.HEALTHY: router_pb2.HEALTH_STATE_HEALTHY,
    HealthState.COOLING_DOWN: router_pb2.HEALTH_STATE_COOLING_DOWN,
    HealthState.OPEN: router_pb2.HEALTH_STATE_OPEN,
    HealthState.HALF_OPEN: router_pb2.HEALTH_STATE_HALF_OPEN,
}
RESULT_FROM_PROTO = {
    router_pb2.RESULT_CLASS_OK: ResultClass.OK,
    router_pb2.RESULT_CLASS_RATE_LIMITED: ResultClass.RATE_LIMITED,
    router_pb2.RESULT_CLASS_SERVER_ERROR: ResultClass.SERVER_ERROR,
    router_pb2.RESULT_CLASS_TIMEOUT: ResultClass.TIMEOUT,
    router_pb2.RESULT_CLASS_AUTH_ERROR: ResultClass.AUTH_ERROR,
    router_pb2.RESULT_CLASS_BAD_REQUEST: ResultClass.BAD_REQUEST,
}
ACTION_FROM_PROTO = {
    router_pb2.OVERRIDE_ACTION_PIN: OverrideAction.PIN,
    router_pb2.OVERRIDE_ACTION_EXCLUDE: OverrideAction.EXCLUDE,
}
ACTION_TO_PROTO = {action: number for number, action in ACTION_FROM_PROTO.items()}
BUDGET_TO_PROTO = {
    BudgetState.UNLIMITED: router_pb2.BUDGET_STATE_UNLIMITED,
    BudgetState.UNDER: router_pb2.BUDGET_STATE_UNDER,
    BudgetState.NEAR_CAP: router_pb2.BUDGET_STATE_NEAR_CAP,
    BudgetState.AT_CAP: router_pb2.BUDGET_STATE_AT_CAP,
}
REJECTION_TO_PROTO = {
    Rejection.DISABLED: router_pb2.REJECTION_REASON_DISABLED,
    Rejection.TIER_NOT_ALLOWED: router_pb2.REJECTION_REASON_TIER_NOT_ALLOWED,
    Rejection.CAPABILITY_MISSING: router_pb2.REJECTION_REASON_CAPABILITY_MISSING,
    Rejection.EXCLUDED_BY_OVERRIDE: router_pb2.REJECTION_REASON_EXCLUDED_BY_OVERRIDE,
    Rejection.AVOIDED_BY_CALLER: router_pb2.REJECTION_REASON_AVOIDED_BY_CALLER,
    Rejection.BUDGET_EXHAUSTED: router_pb2.REJECTION_REASON_BUDGET_EXHAUSTED,
    Rejection.CIRCUIT_OPEN: router_pb2.REJECTION_REASON_CIRCUIT_OPEN,
    Rejection.COOLING_DOWN: router_pb2.REJECTION_REASON_COOLING_DOWN,
}


def timestamp(value: datetime | float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def duration_ms(milliseconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(milliseconds * 1e6))
    return d


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


_USD_CACHE: dict[Decimal, money_pb2.Money] = {}


def usd(amount: Decimal) -> money_pb2.Money:
    return decimal_to_money(amount, USD)


def list_price(amount: Decimal) -> money_pb2.Money:
    """USD Money of a list price; the few prices in use are converted once (read-only:
    callers pass it to a constructor, which copies it)."""
    cached = _USD_CACHE.get(amount)
    if cached is None:
        cached = decimal_to_money(amount, USD)
        if len(_USD_CACHE) < 10_000:  # prices, not spends: a small set
            _USD_CACHE[amount] = cached
    return cached


def provider_to_proto(p: Provider) -> router_pb2.Provider:
    message = router_pb2.Provider(
        provider_id=p.provider_id,
        category=p.category,
        display_name=p.display_name,
        capabilities=sorted(p.capabilities),
        tiers=sorted(TIER_TO_PROTO[t] for t in p.tiers),
        weight=p.weight,
        enabled=p.enabled,
        offline=p.offline,
        seed_version=p.seed_version,
        edited_fields=sorted(p.edited_fields),
    )
    for capability, cost in p.unit_costs.items():
        message.unit_costs[capability].CopyFrom(decimal_to_money(cost, USD))
    if p.update_time is not None:
        message.update_time.CopyFrom(timestamp(p.update_time))
    return message


def provider_fields_from_proto(
    message: router_pb2.Provider, paths: tuple[str, ...], current: Provider
) -> tuple[Provider, list[FieldViolation]]:
    """`current` with the masked fields taken from `message`; structural problems listed."""
    violations: list[FieldViolation] = []
    changes: dict[str, object] = {}
    if "display_name" in paths:
        changes["display_name"] = message.display_name
    if "capabilities" in paths:
        changes["capabilities"] = frozenset(message.capabilities)
        if len(set(message.capabilities)) != len(message.capabilities):
            violations.append(FieldViolation("provider.capabilities", "must not repeat"))
    if "unit_costs" in paths:
        changes["unit_costs"] = {
            k: money_to_decimal(v, f"provider.unit_costs[{k!r}]", violations, currency=USD)
            for k, v in message.unit_costs.items()
        }
    if "tiers" in paths:
        tiers = []
        for i, number in enumerate(message.tiers):
            if number in TIER_FROM_PROTO:
                tiers.append(TIER_FROM_PROTO[number])
            else:
                violations.append(FieldViolation(f"provider.tiers[{i}]", "unknown tier"))
        changes["tiers"] = frozenset(tiers)
    if "weight" in paths:
        changes["weight"] = message.weight
    if "enabled" in paths:
        changes["enabled"] = message.enabled
    return replace(current, **changes), violations  # type: ignore[arg-type]


def health_to_proto(p: Provider, view: HealthView) -> router_pb2.ProviderHealth:
    message = router_pb2.ProviderHealth(
        provider_id=p.provider_id,
        category=p.category,
        state=HEALTH_TO_PROTO[view.state],
        error_rate=round(view.error_rate, 4),
        window_calls=view.window_calls,
        state_reason=view.reason,
    )
    if view.mean_latency_ms is not None:
        message.mean_latency.CopyFrom(duration_ms(view.mean_latency_ms))
    if view.available_at is not None:
        message.cooldown_until.CopyFrom(timestamp(view.available_at))
    return message


def override_to_proto(o: Override) -> router_pb2.RoutingOverride:
    message = router_pb2.RoutingOverride(
        override_id=str(o.override_id),
        category=o.category,
        provider_id=o.provider_id,
        action=ACTION_TO_PROTO[o.action],
        reason=o.reason,
    )
    if o.expire_time is not None:
        message.expire_time.CopyFrom(timestamp(o.expire_time))
    if o.create_time is not None:
        message.create_time.CopyFrom(timestamp(o.create_time))
    return message


def budget_to_proto(found: BudgetWithSpend, month: date) -> router_pb2.Budget:
    b = found.budget
    message = router_pb2.Budget(
        category=b.category,
        monthly_limit=usd(b.monthly_limit),
        near_cap_ratio=b.near_cap_ratio,
        month_spend=usd(found.spend),
        month=f"{month.year:04d}-{month.month:02d}",
        state=BUDGET_TO_PROTO[budget_state(b, found.spend)],
    )
    if b.update_time is not None:
        message.update_time.CopyFrom(timestamp(b.update_time))
    return message


def alert_to_proto(a: Alert) -> router_pb2.RoutingAlert:
    message = router_pb2.RoutingAlert(
        alert_id=str(a.alert_id),
        kind=router_pb2.ALERT_KIND_CREDENTIALS_REJECTED,
        provider_id=a.provider_id,
        category=a.category,
        detail=a.detail,
        create_time=timestamp(a.create_time),
    )
    if a.cooldown_until is not None:
        message.cooldown_until.CopyFrom(timestamp(a.cooldown_until))
    return message


def decision_to_proto(decision: Decision, now: float) -> router_pb2.RouteDecision:
    q = decision.query
    tier = TIER_TO_PROTO[q.tier]
    candidates = []
    for c in decision.candidates:
        parts = c.parts
        score = router_pb2.ScoreParts(
            tier=tier,
            profile=parts.profile,
            override=router_pb2.OVERRIDE_EFFECT_PINNED
            if parts.pinned
            else router_pb2.OVERRIDE_EFFECT_NONE,
            health_state=HEALTH_TO_PROTO[parts.health.state],
            error_rate=round(parts.health.error_rate, 4),
            unit_cost=list_price(parts.unit_cost),
            budget_state=BUDGET_TO_PROTO[parts.budget_state],
            cost_score=parts.cost_score,
            health_score=parts.health_score,
            latency_score=parts.latency_score,
            score=parts.score,
            weight=parts.weight,
        )
        if parts.health.mean_latency_ms is not None:
            score.latency.CopyFrom(duration_ms(parts.health.mean_latency_ms))
        candidates.append(
            router_pb2.Candidate(
                provider_id=c.provider_id, reason=c.reason, score=score, probe=c.probe
            )
        )
    return router_pb2.RouteDecision(
        category=q.category,
        capability=q.capability,
        tier=tier,
        budget_state=BUDGET_TO_PROTO[decision.budget_state],
        candidates=candidates,
        rejections=[
            router_pb2.Rejection(
                provider_id=r.provider_id, reason=REJECTION_TO_PROTO[r.reason], detail=r.detail
            )
            for r in decision.rejections
        ],
        decide_time=timestamp(now),
    )
