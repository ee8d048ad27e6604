"""The in-process cache expires, evicts least recently used, and deletes on demand."""

import asyncio

from hygoshop_platform.cache import MemoryCache


async def test_entries_expire_after_their_ttl() -> None:
    cache = MemoryCache()
    await cache.set("k", b"v", ttl_seconds=0.05)
    assert await cache.get("k") == b"v"
    await asyncio.sleep(0.08)
    assert await cache.get("k") is None


async def test_least_recently_used_entry_is_evicted() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    await cache.get("a")
    await cache.set("c", b"3", 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"


async def test_delete_invalidates() -> None:
    cache = MemoryCache()
    await cache.set("k", b"v", 60)
    await cache.delete("k")
    assert await cache.get("k") is None
