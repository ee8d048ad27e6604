"""The router's vocabulary: providers, tiers, overrides, budgets, outcomes, health views."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple


class Tier(enum.Enum):
    """A tenant's plan (owned by tenancy); it decides which providers and how they rank."""

    FREE = "free"
    GROWTH = "growth"
    ENTERPRISE = "enterprise"


class HealthState(enum.Enum):
    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ResultClass(enum.Enum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    AUTH_ERROR = "auth_error"
    BAD_REQUEST = "bad_request"


class OverrideAction(enum.Enum):
    PIN = "pin"
    EXCLUDE = "exclude"


class BudgetState(enum.Enum):
    UNLIMITED = "unlimited"
    UNDER = "under"
    NEAR_CAP = "near_cap"
    AT_CAP = "at_cap"


class Rejection(enum.Enum):
    """Why a provider of the category is not a candidate, in filter order."""

    DISABLED = "disabled"
    TIER_NOT_ALLOWED = "tier_not_allowed"
    CAPABILITY_MISSING = "capability_missing"
    EXCLUDED_BY_OVERRIDE = "excluded_by_override"
    AVOIDED_BY_CALLER = "avoided_by_caller"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CIRCUIT_OPEN = "circuit_open"
    COOLING_DOWN = "cooling_down"


@dataclass(frozen=True, slots=True)
class Provider:
    provider_id: str
    """`<category>.<name>`."""
    category: str
    display_name: str
    capabilities: frozenset[str]
    unit_costs: Mapping[str, Decimal]
    """USD list price of one call per capability; a missing capability costs nothing."""
    tiers: frozenset[Tier]
    weight: int = 100
    enabled: bool = True
    offline: bool = False
    """Real local work, no vendor account: the fallback of last resort."""
    seed_version: int = 0
    edited_fields: frozenset[str] = frozenset()
    update_time: datetime | None = None

    def cost_of(self, capability: str) -> Decimal:
        return self.unit_costs.get(capability, Decimal(0))

    @property
    def paid(self) -> bool:
        return any(cost > 0 for cost in self.unit_costs.values())


@dataclass(frozen=True, slots=True)
class Override:
    override_id: uuid.UUID
    category: str
    provider_id: str
    action: OverrideAction
    reason: str = ""
    expire_time: datetime | None = None
    create_time: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expire_time is None or self.expire_time > now


@dataclass(frozen=True, slots=True)
class Budget:
    category: str
    monthly_limit: Decimal
    near_cap_ratio: float = 0.8
    update_time: datetime | None = None


DEFAULT_NEAR_CAP_RATIO = 0.8


def budget_state(budget: Budget | None, month_spend: Decimal) -> BudgetState:
    if budget is None:
        return BudgetState.UNLIMITED
    if month_spend >= budget.monthly_limit:
        return BudgetState.AT_CAP
    if month_spend >= budget.monthly_limit * Decimal(str(budget.near_cap_ratio)):
        return BudgetState.NEAR_CAP
    return BudgetState.UNDER


@dataclass(frozen=True, slots=True)
class Outcome:
    provider_id: str
    result: ResultClass
    latency_ms: float = 0.0
    cost: Decimal = Decimal(0)
    capability: str = ""
    retry_after_s: float | None = None


class HealthView(NamedTuple):
    """What ranking needs to know about a provider's health at one instant.

    A NamedTuple, not a frozen dataclass: one is made per provider per decision, and
    tuples are built about twice as fast (Route's latency budget is tens of microseconds).
    """

    state: HealthState = HealthState.HEALTHY
    error_rate: float = 0.0
    window_calls: int = 0
    mean_latency_ms: float | None = None
    available_at: float | None = None
    """Epoch seconds when an open circuit or a cooldown ends."""
    reason: str = "no failures in the window"


HEALTHY = HealthView()


@dataclass(frozen=True, slots=True)
class TenantRouting:
    """One tenant's routing inputs from the database (overrides, budgets, spend, cooldowns)."""

    overrides: tuple[Override, ...] = ()
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    month_spend: Mapping[str, Decimal] = field(default_factory=dict)
    """Spend of the current month per category."""
    credential_cooldowns: Mapping[str, float] = field(default_factory=dict)
    """provider_id -> epoch seconds until which the tenant's credentials cool down."""
