"""Rules of what a provider edit, an override, a budget and an outcome may say."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from hygoshop_platform.errors import FieldViolation
from hygoshop_router.domain.model import Budget, OverrideAction, Provider, ResultClass

CAPABILITY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_CAPABILITIES = 20
MAX_DISPLAY_NAME = 100
MAX_REASON = 500
MAX_UNIT_COST = Decimal(1000)
"""USD per call; anything above is a typo (a unit error), not a price."""
MAX_CALL_COST = Decimal(10_000)
MAX_MONTHLY_LIMIT = Decimal(10_000_000)
MAX_LATENCY_MS = 600_000.0
MAX_RETRY_AFTER_S = 600.0
MAX_OUTCOMES = 1000
PROVIDER_FIELDS = ("display_name", "capabilities", "unit_costs", "tiers", "weight", "enabled")
BUDGET_FIELDS = ("monthly_limit", "near_cap_ratio")


def validate_provider(provider: Provider, prefix: str = "provider") -> list[FieldViolation]:
    """The whole provider as it would be after an edit (or as the seed file says)."""
    violations: list[FieldViolation] = []
    name = provider.display_name
    if not name.strip() or len(name) > MAX_DISPLAY_NAME or any(ord(c) < 32 for c in name):
        violations.append(
            FieldViolation(
                f"{prefix}.display_name",
                f"must be 1-{MAX_DISPLAY_NAME} characters without control characters",
            )
        )
    if not 1 <= len(provider.capabilities) <= MAX_CAPABILITIES:
        violations.append(
            FieldViolation(f"{prefix}.capabilities", f"must have 1-{MAX_CAPABILITIES} entries")
        )
    violations += [
        FieldViolation(
            f"{prefix}.capabilities", f"{c!r} must be lowercase letters, digits and _ (1-64)"
        )
        for c in sorted(provider.capabilities)
        if not CAPABILITY.match(c)
    ]
    for capability, cost in sorted(provider.unit_costs.items()):
        path = f"{prefix}.unit_costs[{capability!r}]"
        if capability not in provider.capabilities:
            violations.append(FieldViolation(path, "is not one of the provider's capabilities"))
        if not Decimal(0) <= cost <= MAX_UNIT_COST:
            violations.append(FieldViolation(path, f"must be between 0 and {MAX_UNIT_COST} USD"))
    if not provider.tiers:
        violations.append(FieldViolation(f"{prefix}.tiers", "at least one tier is required"))
    if not 1 <= provider.weight <= 1000:
        violations.append(FieldViolation(f"{prefix}.weight", "must be between 1 and 1000"))
    return violations


def validate_override(
    *,
    category: str,
    provider_id: str,
    action: OverrideAction | None,
    reason: str,
    expire_time: datetime | None,
    now: datetime,
    catalog: Mapping[str, Provider],
    categories: Collection[str],
    prefix: str = "routing_override",
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if not category:
        violations.append(FieldViolation(f"{prefix}.category", "is required"))
    elif category not in categories:
        violations.append(
            FieldViolation(f"{prefix}.category", f"unknown; one of {', '.join(sorted(categories))}")
        )
    if not provider_id:
        violations.append(FieldViolation(f"{prefix}.provider_id", "is required"))
    else:
        provider = catalog.get(provider_id)
        if provider is None:
            violations.append(FieldViolation(f"{prefix}.provider_id", "unknown provider"))
        elif category and provider.category != category:
            violations.append(
                FieldViolation(f"{prefix}.provider_id", f"is not a provider of {category!r}")
            )
    if action is None:
        violations.append(FieldViolation(f"{prefix}.action", "must be PIN or EXCLUDE"))
    if len(reason) > MAX_REASON:
        violations.append(
            FieldViolation(f"{prefix}.reason", f"must be at most {MAX_REASON} characters")
        )
    if expire_time is not None and expire_time <= now:
        violations.append(FieldViolation(f"{prefix}.expire_time", "must be in the future"))
    return violations


def validate_budget(
    budget: Budget, categories: Collection[str], prefix: str = "budget"
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if budget.category not in categories:
        violations.append(
            FieldViolation(f"{prefix}.category", f"unknown; one of {', '.join(sorted(categories))}")
        )
    if not Decimal(0) <= budget.monthly_limit <= MAX_MONTHLY_LIMIT:
        violations.append(
            FieldViolation(
                f"{prefix}.monthly_limit", f"must be between 0 and {MAX_MONTHLY_LIMIT} USD"
            )
        )
    if not 0 < budget.near_cap_ratio < 1:
        violations.append(
            FieldViolation(f"{prefix}.near_cap_ratio", "must be between 0 and 1 (exclusive)")
        )
    return violations


def validate_outcome(
    index: int,
    *,
    provider_id: str,
    result: ResultClass | None,
    latency_ms: float,
    cost: Decimal,
    retry_after_s: float | None,
    catalog: Mapping[str, Provider],
) -> list[FieldViolation]:
    path = f"outcomes[{index}]"
    violations: list[FieldViolation] = []
    if provider_id not in catalog:
        violations.append(FieldViolation(f"{path}.provider_id", "unknown provider"))
    if result is None:
        violations.append(FieldViolation(f"{path}.result", "is required"))
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        violations.append(FieldViolation(f"{path}.latency", "must be between 0 and 10 minutes"))
    if cost > MAX_CALL_COST:
        violations.append(FieldViolation(f"{path}.cost", f"must be at most {MAX_CALL_COST} USD"))
    if retry_after_s is not None and not 0 <= retry_after_s <= MAX_RETRY_AFTER_S:
        violations.append(FieldViolation(f"{path}.retry_after", "must be between 0 and 10 minutes"))
    return violations


def unknown_fields(paths: Sequence[str], allowed: Sequence[str]) -> list[FieldViolation]:
    return [
        FieldViolation("update_mask", f"cannot update {p!r}; updatable: {', '.join(allowed)}")
        for p in paths
        if p not in allowed
    ]
