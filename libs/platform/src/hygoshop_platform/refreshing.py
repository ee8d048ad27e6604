"""An in-process cache of loaded values: a short TTL, one load per key at a time
(concurrent misses share it), and the last value served for a while when a reload fails.

For hot paths that read slowly-changing data per request (a tenant's tier, routing
settings, route decisions): a hit is a dict lookup and a clock read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RefreshingCache(Generic[K, V]):
    def __init__(
        self,
        ttl_seconds: float,
        *,
        stale_seconds: float = 0.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        ttl_for: Callable[[V], float | None] | None = None,
    ) -> None:
        """`stale_seconds`: how long past its TTL a value may still answer when loading fails.
        `ttl_for(value)`: a TTL for this value instead of `ttl_seconds` (None: the default)."""
        self.ttl = ttl_seconds
        self._ttl_for = ttl_for
        self._stale = stale_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._generation: dict[K, int] = {}

    def peek(self, key: K) -> V | None:
        """The fresh value of `key`, without loading."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        pending = self._pending.get(key)
        if pending is None:
            # The generation when the read was asked for, not when the task first runs.
            generation = self._generation.get(key, 0)
            pending = asyncio.ensure_future(self._load(key, load, generation))
            # Retrieve the exception even if every waiter was cancelled (no loop warning).
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._pending[key] = pending
        # Shielded: one cancelled caller must not cancel the load the others wait for.
        return await asyncio.shield(pending)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], generation: int) -> V:
        try:
            value = await load()
        except Exception:
            entry = self._entries.get(key)
            if entry is not None and entry[0] + self._stale > self._clock():
                return entry[1]
            raise
        finally:
            self._pending.pop(key, None)
        if self._generation.get(key, 0) == generation:
            self.put(key, value, None if self._ttl_for is None else self._ttl_for(value))
        return value

    def put(self, key: K, value: V, ttl_seconds: float | None = None) -> None:
        ttl = self.ttl if ttl_seconds is None else ttl_seconds
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + ttl, value)
        while len(self._entries) > self._max:
            self._entries.pop(next(iter(self._entries)))

    def invalidate(self, key: K) -> None:
        """Forget `key`; a load already running for it will not store its (older) result."""
        self._entries.pop(key, None)
        self._generation[key] = self._generation.get(key, 0) + 1
        if len(self._generation) > self._max:
            self._generation.clear()  # bounded; a lost generation only skips one invalidation

    def clear(self) -> None:
        for key in list(self._entries):
            self.invalidate(key)
