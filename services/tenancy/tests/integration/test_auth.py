"""The auth check against real PostgreSQL and Redis: lookup, revocation, cache behaviour."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
import redis.asyncio as redis

from hygoshop_platform.cache import MemoryCache, RedisCache
from hygoshop_platform.db import Pool, open_pool, tenant_transaction
from hygoshop_tenancy.authz import AuthCache, Authenticator
from hygoshop_tenancy.config import SCHEMA
from hygoshop_tenancy.domain.keys import generate_key
from hygoshop_tenancy.domain.tenants import Tier
from hygoshop_tenancy.store import TenancyStore
from tests.support import PlatformDatabase

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def pool(platform_db: PlatformDatabase) -> AsyncIterator[Pool]:
    pool = await open_pool(platform_db.app_url(SCHEMA), size=2)
    yield pool
    await pool.close()


async def _tenant_with_key(
    store: TenancyStore, scopes: list[str]
) -> tuple[uuid.UUID, uuid.UUID, str]:
    tenant = await store.create_tenant("Acme", Tier.FREE)
    new = generate_key()
    row = await store.create_key(
        tenant.tenant_id, prefix=new.prefix, digest=new.digest, display_name="", scopes=scopes
    )
    assert row is not None
    return tenant.tenant_id, row.key_id, new.secret


async def test_key_resolves_to_its_tenant_and_scopes_only_while_valid(pool: Pool) -> None:
    store = TenancyStore(pool)
    tenant_id, key_id, secret = await _tenant_with_key(store, ["catalog:read"])
    auth = Authenticator(store, AuthCache(MemoryCache(), ttl_seconds=0), admin_key=None)
    principal = await auth.authenticate(secret)
    assert principal is not None
    assert (principal.tenant_id, principal.scopes, principal.key_id) == (
        str(tenant_id),
        ("catalog:read",),
        str(key_id),
    )
    # Right prefix, wrong secret: refused.
    assert await auth.authenticate(secret[:-4] + "AAAA") is None
    assert await store.revoke_key(tenant_id, key_id) is not None
    assert await auth.authenticate(secret) is None


async def test_only_the_digest_is_stored(pool: Pool, platform_db: PlatformDatabase) -> None:
    store = TenancyStore(pool)
    _, key_id, secret = await _tenant_with_key(store, ["admin"])
    with psycopg.connect(platform_db.admin_url) as conn:
        row = conn.execute(
            "SELECT t::text FROM tenancy.api_keys t WHERE key_id = %s", (key_id,)
        ).fetchone()
    assert row is not None
    assert secret not in row[0]
    assert secret.split("_", 2)[2] not in row[0]


async def test_app_role_cannot_read_other_tenants_keys_except_through_the_lookup(
    pool: Pool,
) -> None:
    store = TenancyStore(pool)
    tenant_a, _, _ = await _tenant_with_key(store, ["admin"])
    tenant_b, _, secret_b = await _tenant_with_key(store, ["admin"])
    async with tenant_transaction(pool, tenant_a) as conn:
        cur = await conn.execute("SELECT tenant_id FROM tenancy.api_keys")
        assert {r.tenant_id for r in await cur.fetchall()} == {tenant_a}
        cur = await conn.execute("SELECT tenant_id FROM tenancy.tenants")
        assert {r.tenant_id for r in await cur.fetchall()} == {tenant_a}
    found = await store.lookup_key(secret_b.split("_")[1])
    assert found is not None
    assert found.tenant_id == tenant_b


async def test_revocation_reaches_another_process_at_once_through_redis(pool: Pool) -> None:
    store = TenancyStore(pool)
    tenant_id, key_id, secret = await _tenant_with_key(store, ["catalog:read"])
    namespace = f"test:{uuid.uuid4()}"
    # Two tenancy processes: each has its own authenticator, both share Redis.
    cache_1, cache_2 = RedisCache(REDIS_URL, namespace), RedisCache(REDIS_URL, namespace)
    auth_cache_1 = AuthCache(cache_1, ttl_seconds=300)
    process_1 = Authenticator(store, auth_cache_1, admin_key=None)
    process_2 = Authenticator(store, AuthCache(cache_2, ttl_seconds=300), admin_key=None)
    try:
        assert await process_2.authenticate(secret) is not None  # cached for 5 minutes
        digest = await store.revoke_key(tenant_id, key_id)
        assert digest is not None
        await auth_cache_1.invalidate(digest)  # what DeleteApiKey does in process 1
        assert await process_2.authenticate(secret) is None
        assert await process_1.authenticate(secret) is None
    finally:
        await cache_1.close()
        await cache_2.close()


async def test_in_process_cache_keeps_a_revoked_key_at_most_for_the_ttl(pool: Pool) -> None:
    store = TenancyStore(pool)
    tenant_id, key_id, secret = await _tenant_with_key(store, ["catalog:read"])
    other_process = Authenticator(store, AuthCache(MemoryCache(), ttl_seconds=0.3), admin_key=None)
    assert await other_process.authenticate(secret) is not None
    await store.revoke_key(tenant_id, key_id)
    await asyncio.sleep(0.35)
    assert await other_process.authenticate(secret) is None


async def test_a_cache_outage_is_not_an_auth_outage(pool: Pool) -> None:
    store = TenancyStore(pool)
    _, _, secret = await _tenant_with_key(store, ["catalog:read"])
    dead = RedisCache("redis://127.0.0.1:1/0", "dead")  # nothing listens on port 1
    auth = Authenticator(store, AuthCache(dead, ttl_seconds=5), admin_key=None)
    try:
        assert await auth.authenticate(secret) is not None
        assert await auth.authenticate("hyg_aaaaaaaaaaaa_" + "x" * 43) is None
    finally:
        await dead.close()


async def test_redis_is_really_used(pool: Pool) -> None:
    store = TenancyStore(pool)
    _, _, secret = await _tenant_with_key(store, ["catalog:read"])
    namespace = f"test:{uuid.uuid4()}"
    cache = RedisCache(REDIS_URL, namespace)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await Authenticator(store, AuthCache(cache, ttl_seconds=30), admin_key=None).authenticate(
            secret
        )
        keys = [k async for k in client.scan_iter(f"{namespace}:*")]
        assert len(keys) == 1
        assert 0 < await client.pttl(keys[0]) <= 30_000
    finally:
        await cache.close()
        await client.aclose()
