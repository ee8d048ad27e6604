"""Router's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hygoshop_platform.bus import BusSettings
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import (
    ServiceSettings,
    SettingsError,
    env_float,
    env_int,
    env_optional,
    env_str,
)
from hygoshop_router.domain.health import HealthPolicy
from hygoshop_router.seed import SEED_FILE

SCHEMA = SchemaSpec("router", Path(__file__).parent / "migrations")


@dataclass(frozen=True, slots=True)
class RouterSettings:
    base: ServiceSettings
    tenancy_target: str
    """tenancy's gRPC address (TENANCY_GRPC_TARGET), where tenants' tiers come from."""
    health: HealthPolicy
    """Circuit breaker thresholds (ROUTER_* variables, see `from_env`)."""
    health_persist_seconds: float = 5.0
    """How often changed health is written to PostgreSQL (HEALTH_PERSIST_SECONDS); a
    restart reloads it, losing at most this much."""
    tenant_cache_seconds: float = 2.0
    """How long a tenant's overrides, budgets and spend are reused before being re-read
    (TENANT_CACHE_SECONDS); writes through this process invalidate at once."""
    tier_cache_seconds: float = 30.0
    """How long a tenant's tier is reused (TIER_CACHE_SECONDS)."""
    catalog_refresh_seconds: float = 5.0
    """How often the provider catalog is re-read, for edits made through other processes
    (CATALOG_REFRESH_SECONDS)."""
    seed_file: Path = SEED_FILE
    """The provider catalog file applied at start (ROUTER_SEED_FILE)."""
    bus: BusSettings | None = None
    """The message bus (BUS_URL): publishes the outbox (`router.alert.raised`). Without it
    alerts are still recorded and listed (ListRoutingAlerts); their events wait in the
    outbox until a bus is configured."""
    decision_memo: bool = True
    """Reuse a decision while recomputing it would give the same one (ROUTER_DECISION_MEMO;
    0 recomputes every Route: for measuring the ranking cost, never needed otherwise)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterSettings:
        base = ServiceSettings.from_env("router", env)
        e = base.extra
        tenancy = env_optional("TENANCY_GRPC_TARGET", e)
        if tenancy is None:
            raise SettingsError("environment variable TENANCY_GRPC_TARGET is required")
        defaults = HealthPolicy()
        health = HealthPolicy(
            window_seconds=env_float("ROUTER_WINDOW_SECONDS", defaults.window_seconds, e),
            min_calls=env_int("ROUTER_MIN_CALLS", defaults.min_calls, e),
            error_rate_threshold=env_float(
                "ROUTER_ERROR_RATE_THRESHOLD", defaults.error_rate_threshold, e
            ),
            open_seconds=env_float("ROUTER_OPEN_SECONDS", defaults.open_seconds, e),
            max_open_seconds=env_float("ROUTER_MAX_OPEN_SECONDS", defaults.max_open_seconds, e),
            probe_interval_seconds=env_float(
                "ROUTER_PROBE_INTERVAL_SECONDS", defaults.probe_interval_seconds, e
            ),
            half_open_successes=env_int(
                "ROUTER_HALF_OPEN_SUCCESSES", defaults.half_open_successes, e
            ),
            rate_limit_cooldown_seconds=env_float(
                "ROUTER_RATE_LIMIT_COOLDOWN_SECONDS", defaults.rate_limit_cooldown_seconds, e
            ),
            auth_cooldown_seconds=env_float(
                "ROUTER_AUTH_COOLDOWN_SECONDS", defaults.auth_cooldown_seconds, e
            ),
        )
        if not 0 < health.error_rate_threshold <= 1:
            raise SettingsError("ROUTER_ERROR_RATE_THRESHOLD must be in (0, 1]")
        if health.min_calls < 1 or health.half_open_successes < 1:
            raise SettingsError("ROUTER_MIN_CALLS and ROUTER_HALF_OPEN_SUCCESSES must be >= 1")
        if min(health.window_seconds, health.open_seconds, health.probe_interval_seconds) <= 0:
            raise SettingsError("router windows and periods must be positive")
        seed = env_optional("ROUTER_SEED_FILE", e)
        return cls(
            base=base,
            tenancy_target=tenancy,
            health=health,
            health_persist_seconds=env_float("HEALTH_PERSIST_SECONDS", 5.0, e),
            tenant_cache_seconds=env_float("TENANT_CACHE_SECONDS", 2.0, e),
            tier_cache_seconds=env_float("TIER_CACHE_SECONDS", 30.0, e),
            catalog_refresh_seconds=env_float("CATALOG_REFRESH_SECONDS", 5.0, e),
            seed_file=Path(seed) if seed else SEED_FILE,
            bus=BusSettings.from_env(e) if env_optional("BUS_URL", e) else None,
            decision_memo=env_str("ROUTER_DECISION_MEMO", "1", e) not in ("0", "false", "no"),
        )
