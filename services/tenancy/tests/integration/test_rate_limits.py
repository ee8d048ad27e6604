"""Rate limits on real Redis: one budget per tenant across processes; an outage admits."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from hygoshop_tenancy.authz import Principal, TenantRateLimits
from hygoshop_tenancy.domain.tenants import Tier
from hygoshop_tenancy.ratelimit import DEFAULT_LIMITS, Limit, RedisRateLimiter

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_two_processes_share_one_budget_per_tenant() -> None:
    namespace = f"test:rate:{uuid.uuid4().hex}"
    first, second = RedisRateLimiter(REDIS_URL, namespace), RedisRateLimiter(REDIS_URL, namespace)
    limit = Limit(per_second=0.5, burst=4)  # a slot every 2 s: none refills during the test
    try:
        answers = [await (first, second)[i % 2].admit("tenant-a", limit) for i in range(6)]
        assert answers[:4] == [None] * 4
        assert all(wait is not None and 0 < wait <= 2.0 for wait in answers[4:]), answers
        assert await second.admit("tenant-b", limit) is None
    finally:
        await first.close()
        await second.close()


async def test_a_limiter_outage_admits_and_a_refusal_is_a_429() -> None:
    principal = Principal("t-1", ("catalog:read",), "k-1", Tier.FREE)
    dead = RedisRateLimiter("redis://127.0.0.1:1/0", "dead")  # nothing listens on port 1
    try:
        assert await TenantRateLimits(dead, DEFAULT_LIMITS).check(principal) is None
    finally:
        await dead.close()

    live = RedisRateLimiter(REDIS_URL, f"test:rate:{uuid.uuid4().hex}")
    try:
        limits = TenantRateLimits(live, {**DEFAULT_LIMITS, Tier.FREE: Limit(1, 1)})
        assert await limits.check(principal) is None
        refused = await limits.check(principal)
        assert refused is not None
        http = refused.denied_response
        assert http.status.code == 429
        headers = {h.header.key: h.header.value for h in http.headers}
        assert headers["retry-after"] == "1"
        body = json.loads(http.body)
        assert body["code"] == 8  # RESOURCE_EXHAUSTED
        assert body["details"][0]["reason"] == "RATE_LIMITED"
        admin = Principal(None, ("platform:admin",), "platform-admin")
        assert all([await limits.check(admin) is None for _ in range(5)])  # not limited
    finally:
        await live.close()


def test_principals_cached_before_tiers_still_decode() -> None:
    old = json.dumps(["t-1", ["catalog:read"], "k-1"]).encode()
    assert Principal.decode(old) == Principal("t-1", ("catalog:read",), "k-1", None)
    new = Principal("t-1", ("catalog:read",), "k-1", Tier.GROWTH)
    assert Principal.decode(new.encode()) == new
