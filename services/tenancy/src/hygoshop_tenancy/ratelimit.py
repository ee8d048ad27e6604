"""Per-tenant request rate limits, applied by the gateway's auth check before a request
reaches any service (and so before any vendor is called).

Each tier has a sustained rate and a burst (`Limit`); a tenant's requests over it are
answered 429 with `Retry-After`. The algorithm is GCRA (the generic cell rate
algorithm: a token bucket kept as one timestamp per tenant, the "theoretical arrival
time"): a request is admitted when, after it, the tenant would be no more than `burst`
emission intervals ahead of now.

`RedisRateLimiter` keeps that timestamp in Redis (one atomic script call, Redis's own
clock) so every tenancy replica counts against one limit; `MemoryRateLimiter` keeps it
in the process, so with N replicas a tenant gets up to N times its limit. A Redis outage
admits the request (logged): rate limiting is protection, and must not become an outage.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from hygoshop_platform.settings import SettingsError, env_float, env_int
from hygoshop_tenancy.domain.tenants import Tier


@dataclass(frozen=True, slots=True)
class Limit:
    per_second: float
    """Sustained requests per second; 0 means no limit."""
    burst: int
    """Requests admitted at once after a quiet spell."""

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0

    @property
    def interval(self) -> float:
        """Seconds between requests at the sustained rate."""
        return 1.0 / self.per_second


DEFAULT_LIMITS: Mapping[Tier, Limit] = {
    Tier.FREE: Limit(10, 20),
    Tier.GROWTH: Limit(100, 200),
    Tier.ENTERPRISE: Limit(1000, 2000),
}


def limits_from_env(env: Mapping[str, str]) -> dict[Tier, Limit]:
    """RATE_LIMIT_<TIER> (requests/s, 0 = none) and RATE_LIMIT_<TIER>_BURST (default 2x)."""
    limits = {}
    for tier, default in DEFAULT_LIMITS.items():
        name = f"RATE_LIMIT_{tier.name}"
        rate = env_float(name, default.per_second, env)
        if rate < 0:
            raise SettingsError(f"{name} must be >= 0 (0: no limit)")
        burst = env_int(f"{name}_BURST", max(1, math.ceil(2 * rate)), env)
        if burst < 1:
            raise SettingsError(f"{name}_BURST must be >= 1")
        limits[tier] = Limit(rate, burst)
    return limits


def next_arrival(tat: float, now: float, limit: Limit) -> tuple[float, float | None]:
    """GCRA: the tenant's theoretical arrival time after one more request at `now`, and
    None when it is admitted, else the seconds until it would be."""
    new_tat = max(tat, now) + limit.interval
    ahead = new_tat - now - limit.burst * limit.interval
    return (new_tat, None) if ahead <= 1e-9 else (tat, ahead)


class RateLimiter(Protocol):
    async def admit(self, key: str, limit: Limit) -> float | None:
        """None when the request is admitted, else the seconds to wait before retrying."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """GCRA per key in this process; the least recently seen keys go past `max_keys`."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max = max_keys
        self._clock = clock

    async def admit(self, key: str, limit: Limit) -> float | None:
        if limit.unlimited:
            return None
        now = self._clock()
        tat, wait = next_arrival(self._tats.get(key, now), now, limit)
        self._tats[key] = tat
        self._tats.move_to_end(key)
        while len(self._tats) > self._max:
            self._tats.popitem(last=False)
        return wait

    async def close(self) -> None:
        self._tats.clear()


# KEYS[1]: the key; ARGV: interval (µs), burst. Redis's clock, so replicas agree.
# Returns -1 when admitted, else the microseconds to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now - burst * interval
if ahead > 0 then return ahead end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return -1
"""


class RedisRateLimiter:
    """GCRA per key in Redis, shared by every process that uses the same namespace."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_GCRA)
        self._ns = namespace

    async def admit(self, key: str, limit: Limit) -> float | None:
        if limit.unlimited:
            return None
        interval_us = max(1, round(limit.interval * 1_000_000))
        wait_us = int(
            await self._script(keys=[f"{self._ns}:{key}"], args=[interval_us, limit.burst])
        )
        return None if wait_us < 0 else wait_us / 1_000_000

    async def close(self) -> None:
        await self._redis.aclose()


def limiter_from_url(url: str | None, namespace: str) -> RateLimiter:
    return RedisRateLimiter(url, namespace) if url else MemoryRateLimiter()
