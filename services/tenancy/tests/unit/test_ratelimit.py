"""GCRA per tenant: bursts, the sustained rate, the wait it answers, limits from env."""

from __future__ import annotations

import pytest

from hygoshop_platform.settings import SettingsError
from hygoshop_tenancy.domain.tenants import Tier
from hygoshop_tenancy.ratelimit import DEFAULT_LIMITS, Limit, MemoryRateLimiter, limits_from_env


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit(per_second=2, burst=3)
    assert [await limiter.admit("a", limit) for _ in range(3)] == [None, None, None]
    wait = await limiter.admit("a", limit)
    assert wait == pytest.approx(0.5)  # one interval until the next slot
    assert await limiter.admit("b", limit) is None  # another tenant has its own budget
    clock.now += 0.5
    assert await limiter.admit("a", limit) is None
    assert await limiter.admit("a", limit) == pytest.approx(0.5)
    clock.now += 10  # a quiet spell refills the burst, not more
    assert [await limiter.admit("a", limit) for _ in range(4)][-1] == pytest.approx(0.5)


async def test_a_refused_request_does_not_use_up_the_budget() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit(per_second=1, burst=1)
    assert await limiter.admit("a", limit) is None
    for _ in range(5):
        assert await limiter.admit("a", limit) == pytest.approx(1.0)
    clock.now += 1.0
    assert await limiter.admit("a", limit) is None


async def test_no_limit_admits_everything() -> None:
    limiter = MemoryRateLimiter(clock=Clock())
    assert all([await limiter.admit("a", Limit(0, 1)) is None for _ in range(1000)])


async def test_old_keys_are_forgotten_past_the_bound() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(max_keys=2, clock=clock)
    limit = Limit(per_second=1, burst=1)
    for key in ("a", "b", "c"):
        assert await limiter.admit(key, limit) is None
    assert await limiter.admit("a", limit) is None  # "a" was evicted: a fresh budget
    assert await limiter.admit("c", limit) == pytest.approx(1.0)


def test_limits_come_from_the_environment_with_a_double_burst_by_default() -> None:
    assert limits_from_env({}) == DEFAULT_LIMITS
    limits = limits_from_env({"RATE_LIMIT_FREE": "5", "RATE_LIMIT_ENTERPRISE_BURST": "9000"})
    assert limits[Tier.FREE] == Limit(5, 10)
    assert limits[Tier.ENTERPRISE] == Limit(1000, 9000)
    assert limits_from_env({"RATE_LIMIT_GROWTH": "0"})[Tier.GROWTH].unlimited


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RATE_LIMIT_FREE": "-1"}, "RATE_LIMIT_FREE"),
        ({"RATE_LIMIT_FREE": "lots"}, "RATE_LIMIT_FREE"),
        ({"RATE_LIMIT_GROWTH_BURST": "0"}, "RATE_LIMIT_GROWTH_BURST"),
    ],
)
def test_bad_limits_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        limits_from_env(env)
