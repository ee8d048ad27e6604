"""Tenancy's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import ServiceSettings, SettingsError, env_float, env_optional
from hygoshop_tenancy.domain.tenants import Tier
from hygoshop_tenancy.ratelimit import DEFAULT_LIMITS, Limit, limits_from_env

SCHEMA = SchemaSpec("tenancy", Path(__file__).parent / "migrations")
MIN_ADMIN_KEY_LENGTH = 32


@dataclass(frozen=True, slots=True)
class TenancySettings:
    base: ServiceSettings
    platform_admin_api_key: str | None
    """Bootstrapped platform admin key (PLATFORM_ADMIN_API_KEY); only its digest is kept."""
    auth_cache_ttl_seconds: float
    """How long an auth decision is cached (AUTH_CACHE_TTL_SECONDS); a revoked key is
    refused at most this long after revocation by processes that did not revoke it."""
    redis_url: str | None
    """Shared introspection cache and rate limits (REDIS_URL); in-process when unset."""
    rate_limits: Mapping[Tier, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    """Requests per second and burst per tier, at the gateway (RATE_LIMIT_<TIER>[_BURST])."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TenancySettings:
        base = ServiceSettings.from_env("tenancy", env)
        admin_key = env_optional("PLATFORM_ADMIN_API_KEY", base.extra)
        if admin_key is not None and len(admin_key) < MIN_ADMIN_KEY_LENGTH:
            raise SettingsError(
                f"PLATFORM_ADMIN_API_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters"
            )
        ttl = env_float("AUTH_CACHE_TTL_SECONDS", 5.0, base.extra)
        if not 0 <= ttl <= 300:
            raise SettingsError("AUTH_CACHE_TTL_SECONDS must be between 0 and 300")
        return cls(
            base=base,
            platform_admin_api_key=admin_key,
            auth_cache_ttl_seconds=ttl,
            redis_url=env_optional("REDIS_URL", base.extra),
            rate_limits=limits_from_env(base.extra),
        )
