"""A chore a service runs in the background on a schedule (pruning, expiring, sweeping).

`Periodic(name, job, every)` runs `job()` once at `start()`, then every `every` seconds
until `stop()`. A run that raises is logged and the chore goes on at the next turn: a
background loop must not die quietly on the first database or storage hiccup. Chores are
written to be idempotent, so every replica of a service may run its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every: float) -> None:
        if every <= 0:
            raise ValueError(f"{name}: the interval must be positive, not {every}")
        self.name = name
        self.every = every
        self.runs = 0
        """Turns that ended without an error."""
        self._job = job
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self._job()
                self.runs += 1
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, self.every)
            await asyncio.sleep(self.every)
