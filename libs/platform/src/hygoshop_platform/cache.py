"""Short-TTL key-value cache: Redis when REDIS_URL is set, in-process otherwise.

Used for values that may be a few seconds stale by design (auth introspection, flags).
Deleting a key is how writers invalidate it early (e.g. an API key revocation).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


class KVCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    """A bounded LRU with per-entry expiry, private to one process."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Shared by every process of a service, so an invalidation reaches all of them."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ns = namespace

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(f"{self._ns}:{key}")
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._redis.set(f"{self._ns}:{key}", value, px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, key: str) -> None:
        await self._redis.delete(f"{self._ns}:{key}")

    async def close(self) -> None:
        await self._redis.aclose()


def cache_from_url(url: str | None, namespace: str) -> KVCache:
    return RedisCache(url, namespace) if url else MemoryCache()
