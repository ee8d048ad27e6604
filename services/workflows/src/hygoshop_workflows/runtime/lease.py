"""A run held by this worker: every write it makes is fenced by the lease version.

Each write opens a tenant transaction whose first statement is the fence: an UPDATE of the
run row that matches only while `lease_version` is still the one this worker claimed and
the run is still running. It also takes the run's row lock, which is what orders a
worker's "nothing arrived, so I wait" against a concurrent signal, task completion or
cancel (they lock the same row first). A fence that matches no row means another worker
claimed the run since (this one was too slow: paused, partitioned, or its heartbeats
failed): `LeaseLost`, and nothing of the transaction commits. A zombie cannot overwrite a
newer result.

Times that decide anything (timers, retry backoff, signal deadlines) are the database's
clock, the one claiming compares with, never the worker's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus import add_to_outbox
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_workflows.domain.records import StepRecord
from hygoshop_workflows.domain.states import RunState, StepKind, StepState
from hygoshop_workflows.runtime.checkpoints import CheckpointBatcher, batchable
from hygoshop_workflows.runtime.errors import LeaseLost
from hygoshop_workflows.runtime.rows import STEP_COLUMNS, step_from_row
from hygoshop_workflows.runtime.sql import (
    SCHEMA,
    cancel_open_tasks,
    close_open_steps,
    notify_runnable,
)


@dataclass(frozen=True, slots=True)
class Claim:
    tenant_id: uuid.UUID
    run_id: uuid.UUID
    workflow_type: str
    version: int
    business_key: str
    input: dict[str, Any]
    lease_version: int
    lease_losses: int
    cancel_requested: bool = False
    has_history: bool = True
    """False for a run no step was recorded for yet: nothing to replay, nothing to load."""
    claimed_at: datetime | None = None
    """The database's clock at the claim."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What the fence statement read while taking the run's row lock."""

    conn: Connection
    cancel_requested: bool
    now: datetime
    """The database's clock at the fence."""


_FENCE = """
    UPDATE workflows.runs SET update_time = clock_timestamp(),
           lease_losses = CASE WHEN %s THEN 0 ELSE lease_losses END
     WHERE tenant_id = %s AND run_id = %s AND lease_version = %s AND state = 'running'
    RETURNING cancel_requested, clock_timestamp() AS now
"""
"""A write that makes progress resets the count of leases lost in a row."""

_UPSERT_STEP = """
    INSERT INTO workflows.steps AS s (tenant_id, run_id, seq, name, kind, state, attempts,
        result, error_type, error_message, wake_at, task_id, start_time, end_time)
    VALUES (%(tenant_id)s, %(run_id)s, %(seq)s, %(name)s, %(kind)s, %(state)s, %(attempts)s,
        %(result)s, %(error_type)s, %(error_message)s,
        CASE WHEN %(wake_in)s::float8 IS NULL THEN %(wake_at)s::timestamptz
             ELSE clock_timestamp() + %(wake_in)s::float8 * interval '1 second' END,
        %(task_id)s, coalesce(%(start_time)s, clock_timestamp()),
        CASE WHEN %(state)s IN ('succeeded', 'failed') THEN clock_timestamp() END)
    ON CONFLICT (tenant_id, run_id, seq) DO UPDATE
       SET state = excluded.state, attempts = excluded.attempts, result = excluded.result,
           error_type = excluded.error_type, error_message = excluded.error_message,
           wake_at = excluded.wake_at, task_id = coalesce(excluded.task_id, s.task_id),
           end_time = excluded.end_time
     WHERE s.state NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING s.wake_at
"""


@dataclass(slots=True)
class StepWrite:
    seq: int
    name: str
    kind: StepKind
    state: StepState
    attempts: int = 0
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    wake_at: datetime | None = None
    wake_in: float | None = None
    """Seconds from the database's now (instead of `wake_at`)."""
    task_id: uuid.UUID | None = None
    start_time: datetime | None = None
    progress: bool = True
    """False for a mark that an attempt is under way (`in_flight.py`): it is not progress,
    so it leaves the run's count of leases lost in a row as it is."""


@dataclass(slots=True)
class FinishWrite:
    state: RunState
    result: dict[str, Any] | None = None
    error_type: str = ""
    error_message: str = ""
    events: tuple[Envelope, ...] = ()
    cancel_tasks: bool = True
    """Cancel the run's open operator tasks (False when it never created one)."""


class RunLease:
    def __init__(self, pool: Pool, claim: Claim, batcher: CheckpointBatcher | None = None) -> None:
        self.pool = pool
        self.claim = claim
        self._batcher = batcher
        self.cancel_requested = False
        self._db_now: datetime | None = None
        self._read_at = 0.0
        if claim.claimed_at is not None:
            self.saw(claim.cancel_requested, claim.claimed_at)

    def saw(self, cancel_requested: bool, db_now: datetime) -> None:
        """What a fence read: the cancel flag, and the database's clock."""
        self.cancel_requested = cancel_requested
        self._db_now, self._read_at = db_now, time.monotonic()

    def db_now(self) -> datetime | None:
        """The database's clock, estimated from its last reading at a fence."""
        if self._db_now is None:
            return None
        return self._db_now + timedelta(seconds=time.monotonic() - self._read_at)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.claim.tenant_id

    @property
    def run_id(self) -> uuid.UUID:
        return self.claim.run_id

    async def load_history(self) -> list[StepRecord]:
        """The run's recorded steps in order, and its cancel flag (fenced: a run claimed
        away between claim and load is not replayed)."""
        if not self.claim.has_history:
            return []
        # Reading is not progress: a run whose step keeps killing its worker must go on
        # counting lost leases across these loads (or it would loop forever).
        async with self.fenced(progress=False) as fence:
            cur = await fence.conn.execute(
                f"SELECT {STEP_COLUMNS} FROM workflows.steps"
                " WHERE tenant_id = %s AND run_id = %s ORDER BY seq",
                (self.tenant_id, self.run_id),
            )
            return [step_from_row(row) for row in await cur.fetchall()]

    @asynccontextmanager
    async def fenced(self, *, progress: bool = True) -> AsyncIterator[Fence]:
        """A tenant transaction that commits only while this worker holds the run."""
        async with tenant_transaction(self.pool, self.tenant_id) as conn:
            cur = await conn.execute(
                _FENCE, (progress, self.tenant_id, self.run_id, self.claim.lease_version)
            )
            row = await cur.fetchone()
            if row is None:
                raise LeaseLost(
                    f"run {self.run_id} is no longer held at lease {self.claim.lease_version}"
                )
            self.saw(row.cancel_requested, row.now)
            yield Fence(conn, row.cancel_requested, row.now)

    async def write_step(self, conn: Connection, step: StepWrite) -> datetime | None:
        """Insert or advance a step (never one that already ended); its wake time."""
        cur = await conn.execute(
            _UPSERT_STEP,
            {
                "tenant_id": self.tenant_id,
                "run_id": self.run_id,
                "seq": step.seq,
                "name": step.name,
                "kind": step.kind.value,
                "state": step.state.value,
                "attempts": step.attempts,
                "result": Jsonb(step.result) if step.result is not None else None,
                "error_type": step.error_type,
                "error_message": step.error_message[:4000],
                "wake_at": step.wake_at,
                "wake_in": step.wake_in,
                "task_id": step.task_id,
                "start_time": step.start_time,
            },
        )
        row = await cur.fetchone()
        return row.wake_at if row is not None else None

    async def checkpoint(self, step: StepWrite) -> None:
        """Record a step; returns once committed (group-committed with other runs' steps
        when the worker has a batcher)."""
        if self._batcher is not None and batchable(step):
            await self._batcher.write(self, step)
            return
        async with self.fenced(progress=step.progress) as fence:
            await self.write_step(fence.conn, step)

    async def suspend(self, conn: Connection, waiting_on: str, wake_at: datetime | None) -> None:
        """Let the run go until `wake_at` (None: until a signal, a task or a cancel wakes it)."""
        await conn.execute(
            "UPDATE workflows.runs SET state = 'waiting', waiting_on = %s, wake_at = %s,"
            " lease_owner = NULL, update_time = clock_timestamp()"
            " WHERE tenant_id = %s AND run_id = %s",
            (waiting_on, wake_at, self.tenant_id, self.run_id),
        )

    async def release(self) -> None:
        """Hand the run back unfinished (this worker is stopping): claimable at once."""
        async with self.fenced() as fence:
            await fence.conn.execute(
                "UPDATE workflows.runs SET state = 'pending', wake_at = clock_timestamp(),"
                " lease_owner = NULL WHERE tenant_id = %s AND run_id = %s",
                (self.tenant_id, self.run_id),
            )
            await notify_runnable(fence.conn)

    async def finish(self, end: FinishWrite) -> None:
        """End the run; its unfinished steps and open operator tasks are cancelled with it."""
        if self._batcher is not None:
            await self._batcher.finish(self, end)
            return
        async with self.fenced() as fence:
            await fence.conn.execute(
                "UPDATE workflows.runs SET state = %s, result = %s, error_type = %s,"
                " error_message = %s, wake_at = NULL, lease_owner = NULL, waiting_on = '',"
                " end_time = clock_timestamp(), update_time = clock_timestamp()"
                " WHERE tenant_id = %s AND run_id = %s",
                (
                    end.state.value,
                    Jsonb(end.result) if end.result is not None else None,
                    end.error_type,
                    end.error_message[:4000],
                    self.tenant_id,
                    self.run_id,
                ),
            )
            await close_open_steps(fence.conn, self.tenant_id, [self.run_id])
            if end.cancel_tasks:
                await cancel_open_tasks(fence.conn, self.tenant_id, [self.run_id])
            await add_to_outbox(fence.conn, SCHEMA, *end.events)
