"""Exact reuse of route decisions: a decision is kept only while recomputing it would give
the same result.

A decision is a pure function of the catalog, the tenant's tier and routing state, the
health of the category's providers and the time. The memo keys on the first three by
identity or version and on health by a per-category version bumped by every outcome;
time matters only at known instants (an open period or cooldown ends, a health bucket
leaves the window, an override or credential cooldown expires), so an entry is valid
until the earliest of them. Decisions involving a half-open provider are never kept:
handing out a probe is a side effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from hygoshop_router.domain.model import HealthState, HealthView, Provider, TenantRouting, Tier
from hygoshop_router.domain.ranking import Decision

MAX_AGE_SECONDS = 5.0
"""A safety net on top of the exact validity: no decision is reused longer than this."""


@dataclass(frozen=True, slots=True)
class MemoInputs:
    """What a decision was computed from, besides health at the time."""

    tier: Tier
    tenant: TenantRouting
    """Compared by identity: the engine reuses one object until it reloads the tenant."""
    catalog_version: int
    health_version: int
    """The category's health version: any outcome for it makes a new one."""

    def same_as(self, other: MemoInputs) -> bool:
        return (
            self.tier is other.tier
            and self.tenant is other.tenant
            and self.catalog_version == other.catalog_version
            and self.health_version == other.health_version
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    decision: Decision
    inputs: MemoInputs
    valid_until: float


def valid_until(
    decision: Decision,
    *,
    providers: Sequence[Provider],
    health: Callable[[str], HealthView],
    next_change: Callable[[str], float],
    tenant: TenantRouting,
    now: float,
) -> float:
    """Until when `decision` stays exactly what `rank` would compute (now: not at all)."""
    until = now + MAX_AGE_SECONDS
    for p in providers:
        if health(p.provider_id).state is HealthState.HALF_OPEN:
            return now
        until = min(until, next_change(p.provider_id))
    for provider_id, cooldown in tenant.credential_cooldowns.items():
        if cooldown > now and provider_id.startswith(decision.query.category + "."):
            until = min(until, cooldown)
    for o in tenant.overrides:
        if o.category == decision.query.category and o.expire_time is not None:
            expiry = o.expire_time.timestamp()
            if expiry > now:
                until = min(until, expiry)
    return until if math.isfinite(until) else now


class DecisionMemo:
    def __init__(self, max_entries: int = 20_000) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._max = max_entries

    def get(self, key: Hashable, inputs: MemoInputs, now: float) -> Decision | None:
        entry = self._entries.get(key)
        if entry is None or now >= entry.valid_until or not entry.inputs.same_as(inputs):
            return None
        return entry.decision

    def put(
        self,
        key: Hashable,
        decision: Decision,
        inputs: MemoInputs,
        *,
        valid_until: float,
        now: float,
    ) -> None:
        if valid_until <= now:
            self._entries.pop(key, None)
            return
        self._entries[key] = _Entry(decision, inputs, valid_until)
        if len(self._entries) > self._max:
            # Oldest insertions first: a bounded memo, not a precise LRU.
            for stale in list(self._entries)[: self._max // 10]:
                del self._entries[stale]
