"""Marks a slow step attempt in the history while it runs.

A step's row is written when an attempt ends (one write per step keeps throughput up:
most steps take milliseconds). An attempt still running after `after` seconds is also
recorded as RUNNING with its attempt number, so that:

- callers see it (`GetWorkflowRun`: "charge, attempt 2, running since ...");
- an attempt lost with its worker (kill -9, a lost lease) is counted: the next worker
  starts at the following attempt, and a step whose last allowed attempt was lost fails
  with `hygoshop.WorkerLost` instead of being tried once more than its policy allows.

An attempt that dies sooner than `after` leaves no trace and is tried again under the
same attempt number; the run's count of leases lost in a row (`max_lease_losses`) still
bounds that. The mark is not progress: it does not reset that count.

The last attempt a step's policy allows is marked before it starts (`after` = 0), so a
step with `max_attempts=1` (a charge, a sent email) is at most once even when its worker
dies a millisecond into it: the next worker finds the mark and fails the step instead of
calling the vendor again. That costs one more write, only on last attempts.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import psycopg

from hygoshop_workflows.runtime.errors import LeaseLost
from hygoshop_workflows.runtime.lease import RunLease, StepWrite

log = logging.getLogger(__name__)


class InFlightMark:
    """`async with InFlightMark(lease, write, after):` around one attempt's call."""

    def __init__(self, lease: RunLease, write: StepWrite, after: float) -> None:
        self._lease = lease
        self._write = write
        self._after = after
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InFlightMark:
        if self._after <= 0:
            # Committed before the attempt starts; a lost lease stops the attempt here.
            await self._lease.checkpoint(self._write)
            return self
        self._handle = asyncio.get_running_loop().call_later(self._after, self._start)
        return self

    def _start(self) -> None:
        self._task = asyncio.create_task(self._mark(), name=f"mark-{self._write.name}")

    async def _mark(self) -> None:
        try:
            await self._lease.checkpoint(self._write)
        except LeaseLost:
            pass  # the attempt's own end write will find out, and say so
        except (psycopg.Error, OSError) as error:
            log.warning("could not mark step %r as running: %s", self._write.name, error)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        task = self._task
        if task is None or task.done():
            return
        if exc_type is None or issubclass(exc_type, Exception):
            # The attempt ended: its end write must come after the mark, not race it.
            await task
        else:
            task.cancel()  # the run itself is being cancelled (worker stopping, lease lost)
