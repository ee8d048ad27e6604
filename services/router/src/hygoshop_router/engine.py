"""The router at run time: catalog and health in memory, tenant state cached, decisions made.

Route decisions read only memory on the hot path: the catalog (re-read every few
seconds), the health book (fed by outcomes, persisted periodically and reloaded at
start), the tenant's tier (cached from tenancy) and the tenant's overrides, budgets,
spend and credential cooldowns (cached for a couple of seconds, invalidated by writes
through this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from hygoshop_platform.refreshing import RefreshingCache
from hygoshop_router.domain.health import HealthBook, credential_cooldown_until
from hygoshop_router.domain.memo import DecisionMemo, MemoInputs, valid_until
from hygoshop_router.domain.model import (
    HealthView,
    Outcome,
    Provider,
    ResultClass,
    TenantRouting,
    Tier,
)
from hygoshop_router.domain.ranking import Decision, RouteQuery, rank, tenant_view
from hygoshop_router.seed import Seed
from hygoshop_router.store import ProviderStore
from hygoshop_router.tenant_store import AuthFailure, TenantStore, month_of
from hygoshop_router.tiers import TenancyTiers

log = logging.getLogger(__name__)
TENANT_STALE_SECONDS = 300.0
"""How long cached tenant state keeps routing when PostgreSQL cannot be read."""


class RouterEngine:
    def __init__(
        self,
        providers: ProviderStore,
        tenants: TenantStore,
        tiers: TenancyTiers,
        health: HealthBook,
        *,
        tenant_cache_seconds: float,
        health_persist_seconds: float,
        catalog_refresh_seconds: float,
        decision_memo: bool = True,
    ) -> None:
        self.providers = providers
        self.tenants = tenants
        self.tiers = tiers
        self.health = health
        self._tenant_cache: RefreshingCache[uuid.UUID, TenantRouting] = RefreshingCache(
            tenant_cache_seconds, stale_seconds=TENANT_STALE_SECONDS
        )
        self._persist_every = health_persist_seconds
        self._refresh_every = catalog_refresh_seconds
        self.catalog: dict[str, Provider] = {}
        self.by_category: dict[str, list[Provider]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._memo = DecisionMemo() if decision_memo else None
        self._catalog_version = 0
        self._health_versions: dict[str, int] = defaultdict(int)
        """Per category: bumped by every outcome, so a kept decision never outlives one."""

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, seed: Seed) -> None:
        written = await self.providers.apply_seed(seed)
        log.info("provider catalog seed version %d applied (%d providers)", seed.version, written)
        await self.reload_catalog()
        self.health.restore(await self.providers.load_health())
        self._tasks = [
            asyncio.create_task(self._every(self._persist_every, self.persist_health)),
            asyncio.create_task(self._every(self._refresh_every, self.reload_catalog)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.persist_health(force=True)

    async def _every(self, seconds: float, job: object) -> None:
        assert callable(job)
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # the next round retries; never let the loop die
                log.warning("periodic %s failed", getattr(job, "__name__", job), exc_info=True)

    async def persist_health(self, force: bool = False) -> None:
        if self.health.dirty or force:
            await self.providers.save_health(self.health.snapshot())

    async def reload_catalog(self) -> None:
        providers = await self.providers.list_providers()
        by_category: dict[str, list[Provider]] = defaultdict(list)
        for p in providers:
            by_category[p.category].append(p)
        self.catalog = {p.provider_id: p for p in providers}
        self.by_category = dict(by_category)
        self._catalog_version += 1

    def replace_provider(self, provider: Provider) -> None:
        """An edit made through this process is visible to its next decision."""
        self.catalog[provider.provider_id] = provider
        self.by_category[provider.category] = [
            provider if p.provider_id == provider.provider_id else p
            for p in self.by_category.get(provider.category, [])
        ]
        self._catalog_version += 1

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(self.by_category)

    # --- tenant state ----------------------------------------------------------------------

    async def tenant_routing(self, tenant_id: uuid.UUID) -> TenantRouting:
        cached = self._tenant_cache.peek(tenant_id)
        if cached is not None:
            return cached
        return await self._tenant_cache.get(
            tenant_id, lambda: self.tenants.routing(tenant_id, datetime.now(UTC))
        )

    def invalidate_tenant(self, tenant_id: uuid.UUID) -> None:
        self._tenant_cache.invalidate(tenant_id)

    def tenant_health(
        self, provider_id: str, tenant: TenantRouting | None, now: float
    ) -> HealthView:
        view = self.health.view(provider_id, now)
        return view if tenant is None else tenant_view(provider_id, view, tenant, now)

    # --- decisions and outcomes ------------------------------------------------------------

    async def decide(
        self,
        tenant_id: uuid.UUID,
        category: str,
        capability: str,
        *,
        avoid: frozenset[str] = frozenset(),
        max_candidates: int = 0,
        probes: bool,
    ) -> tuple[Decision, float]:
        """The decision for the tenant. `probes`: may hand out a half-open probe (Route
        does, ExplainRoute does not). Returns it with the time it was made (epoch s)."""
        tier: Tier = await self.tiers.tier(tenant_id)
        tenant = await self.tenant_routing(tenant_id)
        now = time.time()
        key = (tenant_id, category, capability, avoid, max_candidates)
        inputs = MemoInputs(tier, tenant, self._catalog_version, self._health_versions[category])
        kept = None if self._memo is None else self._memo.get(key, inputs, now)
        if kept is not None:
            return kept, now
        health = self.health
        providers = self.by_category.get(category, ())
        decision = rank(
            RouteQuery(category, capability, tier, avoid, max_candidates),
            providers,
            lambda pid: health.view(pid, now),
            tenant,
            now=now,
            claim_probe=(lambda pid: health.claim_probe(pid, now)) if probes else (lambda _: False),
        )
        if self._memo is None:
            return decision, now
        until = valid_until(
            decision,
            providers=providers,
            health=lambda pid: health.view(pid, now),
            next_change=lambda pid: health.next_change(pid, now),
            tenant=tenant,
            now=now,
        )
        self._memo.put(key, decision, inputs, valid_until=until, now=now)
        return decision, now

    async def report(self, tenant_id: uuid.UUID, outcomes: Sequence[Outcome]) -> int:
        """Feed health (in memory, at once) and the tenant's spend and cooldowns (durable)."""
        now = time.time()
        spend: dict[str, tuple[Decimal, int]] = {}
        failures: dict[str, AuthFailure] = {}
        for outcome in outcomes:
            provider = self.catalog[outcome.provider_id]
            self.health.record(outcome, now)
            self._health_versions[provider.category] += 1
            amount, calls = spend.get(provider.category, (Decimal(0), 0))
            spend[provider.category] = (amount + outcome.cost, calls + 1)
            if outcome.result is ResultClass.AUTH_ERROR:
                failures[provider.provider_id] = AuthFailure(
                    provider.provider_id,
                    provider.category,
                    datetime.fromtimestamp(credential_cooldown_until(self.health.policy, now), UTC),
                    f"{provider.display_name} rejected this tenant's credentials "
                    f"({outcome.capability or 'a call'}); check the credentials stored for it",
                )
        moment = datetime.fromtimestamp(now, UTC)
        alerts = await self.tenants.record(
            tenant_id, month_of(moment), spend, list(failures.values()), moment
        )
        for alert in alerts:
            # Recorded (ListRoutingAlerts) and published (router.alert.raised); logged too.
            log.warning(
                "routing alert %s: tenant %s, provider %s: %s",
                alert.kind,
                tenant_id,
                alert.provider_id,
                alert.detail,
            )
        if any(amount for amount, _ in spend.values()) or failures:
            self.invalidate_tenant(tenant_id)
        return len(outcomes)
