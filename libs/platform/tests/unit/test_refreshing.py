"""RefreshingCache: TTL, one load per key at a time, stale values when a reload fails."""

from __future__ import annotations

import asyncio

import pytest

from hygoshop_platform.refreshing import RefreshingCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_value_is_reused_until_its_ttl_then_reloaded() -> None:
    clock = Clock()
    cache: RefreshingCache[str, int] = RefreshingCache(1.0, clock=clock)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return loads

    assert await cache.get("k", load) == 1
    clock.now = 0.9
    assert await cache.get("k", load) == 1
    assert cache.peek("k") == 1
    clock.now = 1.0
    assert cache.peek("k") is None
    assert await cache.get("k", load) == 2


async def test_concurrent_misses_share_one_load() -> None:
    cache: RefreshingCache[str, str] = RefreshingCache(10.0)
    release = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await release.wait()
        return "v"

    waiters = [asyncio.create_task(cache.get("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == ["v"] * 20
    assert loads == 1


async def test_a_failed_reload_serves_the_stale_value_within_the_stale_window() -> None:
    clock = Clock()
    cache: RefreshingCache[str, str] = RefreshingCache(1.0, stale_seconds=5.0, clock=clock)

    async def ok() -> str:
        return "old"

    async def broken() -> str:
        raise ConnectionError("down")

    await cache.get("k", ok)
    clock.now = 3.0
    assert await cache.get("k", broken) == "old"
    clock.now = 6.5
    with pytest.raises(ConnectionError):
        await cache.get("k", broken)


async def test_invalidate_forgets_and_discards_a_load_already_running() -> None:
    cache: RefreshingCache[str, str] = RefreshingCache(10.0)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "before the write"

    pending = asyncio.create_task(cache.get("k", slow))
    await asyncio.sleep(0)
    cache.invalidate("k")  # a write happened while the read was in flight
    release.set()
    assert await pending == "before the write"
    assert cache.peek("k") is None  # not stored: the next reader loads afresh


async def test_ttl_for_can_refuse_to_cache_a_value() -> None:
    cache: RefreshingCache[str, str] = RefreshingCache(
        10.0, ttl_for=lambda v: 0.0 if v == "once" else None
    )

    async def once() -> str:
        return "once"

    assert await cache.get("k", once) == "once"
    assert cache.peek("k") is None
