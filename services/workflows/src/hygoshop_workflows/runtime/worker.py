"""The worker: claims runnable runs, replays and advances them, keeps their leases alive.

One asyncio task per held run, up to `concurrency`. The claim loop asks for as many runs
as it has free slots (`workflows.claim_runs`, fair across tenants); when none is runnable
it waits for a NOTIFY (a run was started, signalled or woken), a freed slot, or its poll
interval (timers coming due, leases of dead workers expiring). A heartbeat extends every
held lease in one statement; a run missing from its answer was lost (claimed by another
worker after this one stalled): its task is cancelled, and its writes would be refused
anyway by the fence. Overdue operator tasks are escalated on another interval.

Stopping: no new claims; held runs get `shutdown_grace` seconds to reach a pause or the
end, then are cancelled and handed back (claimable at once by another worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import psycopg

from hygoshop_platform.db import Pool, plain_url
from hygoshop_workflows.config import WorkerOptions
from hygoshop_workflows.domain.states import RunState
from hygoshop_workflows.runtime import events
from hygoshop_workflows.runtime.checkpoints import CheckpointBatcher
from hygoshop_workflows.runtime.context import WorkflowContext
from hygoshop_workflows.runtime.errors import LeaseLost, NonDeterminism, RunCancelled, Suspended
from hygoshop_workflows.runtime.lease import Claim, FinishWrite, RunLease
from hygoshop_workflows.runtime.registry import Registry
from hygoshop_workflows.runtime.retry import error_type
from hygoshop_workflows.runtime.sql import RUNNABLE_CHANNEL
from hygoshop_workflows.runtime.tasks import escalate_overdue_tasks

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        pool: Pool,
        registry: Registry,
        options: WorkerOptions,
        *,
        listen_url: str | None = None,
        shutdown_grace: float = 10.0,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.options = options
        self.name = options.name
        self._listen_url = listen_url
        self._shutdown_grace = shutdown_grace
        self._types = registry.type_versions()
        self._held: dict[asyncio.Task[None], RunLease] = {}
        self._checkpoints = CheckpointBatcher(pool)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self.runs_finished = 0
        self._turned_at = time.monotonic()

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._background = [
            asyncio.create_task(self._heartbeats(), name="workflow-heartbeats"),
            asyncio.create_task(self._escalations(), name="workflow-escalations"),
        ]
        if self._listen_url:
            self._background.append(asyncio.create_task(self._listen(), name="workflow-listen"))
        self._loop_task = asyncio.create_task(self._claim_loop(), name="workflow-claims")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._held:
            _, pending = await asyncio.wait(set(self._held), timeout=self._shutdown_grace)
            for task in pending:
                lease = self._held.get(task)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                if lease is not None:
                    with contextlib.suppress(LeaseLost, psycopg.Error):
                        await lease.release()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- claiming -------------------------------------------------------------------------
    def alive(self) -> bool:
        """Whether the claim loop turned recently (it turns at least every poll interval,
        also while the database is down: a stalled loop means a hung process)."""
        limit = max(10 * self.options.poll_seconds, 30.0)
        return time.monotonic() - self._turned_at < limit

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._turned_at = time.monotonic()
            free = self.options.concurrency - len(self._held)
            claimed: list[Claim] = []
            if free > 0 and self._types:
                try:
                    claimed = await self.claim(free)
                except psycopg.Error:
                    log.exception("claiming runs failed; retrying after the poll interval")
            for claim in claimed:
                lease = RunLease(self.pool, claim, self._checkpoints)
                task = asyncio.create_task(self._execute(lease), name=f"run-{claim.run_id}")
                self._held[task] = lease
                task.add_done_callback(self._on_done)
            if claimed and len(claimed) == free:
                continue  # there may be more: ask again without waiting
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the event fires.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.poll_seconds):
                    await self._wake.wait()

    async def claim(self, limit: int) -> list[Claim]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM workflows.claim_runs(%s, %s, %s, %s)",
                (self.name, self.options.lease_seconds, limit, self._types),
            )
            rows = await cur.fetchall()
        return [
            Claim(
                tenant_id=row.tenant_id,
                run_id=row.run_id,
                workflow_type=row.workflow_type,
                version=row.version,
                business_key=row.business_key,
                input=row.input,
                lease_version=row.lease_version,
                lease_losses=row.lease_losses,
                cancel_requested=row.cancel_requested,
                has_history=row.has_history,
                claimed_at=row.now,
            )
            for row in rows
        ]

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("run task crashed", exc_info=task.exception())

    # -- executing ------------------------------------------------------------------------
    async def _execute(self, lease: RunLease) -> None:
        claim = lease.claim
        definition = self.registry.get(claim.workflow_type, claim.version)
        assert definition is not None, "claimed a type@version this worker does not have"
        try:
            history = await lease.load_history()
            ctx = WorkflowContext(
                lease,
                history,
                self.registry,
                business_key=claim.business_key,
                max_lease_losses=self.options.max_lease_losses,
                running_mark_seconds=self.options.running_mark_seconds,
            )
            await self._advance(lease, ctx, definition.fn)
        except Suspended:
            pass
        except LeaseLost as lost:
            log.warning("worker %s lost run %s: %s", self.name, claim.run_id, lost)

    async def _advance(self, lease: RunLease, ctx: WorkflowContext, fn: Any) -> None:
        claim = lease.claim
        ref = events.RunRef(claim.tenant_id, claim.run_id, claim.workflow_type, claim.business_key)
        try:
            result = await fn(ctx, claim.input)
            ctx.assert_history_consumed()
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"a workflow returns a JSON object or None, not {type(result)}")
            json.dumps(result)  # what cannot be stored fails the run now, not every retry
        except (Suspended, LeaseLost):
            raise
        except NonDeterminism as error:
            # Compensations are code of the same changed definition: not run.
            kind, message = "hygoshop.NonDeterminism", str(error)
            end = FinishWrite(
                RunState.FAILED,
                error_type=kind,
                error_message=message,
                events=(events.run_failed(ref, kind, message),),
            )
        except RunCancelled:
            failures = await ctx.compensate()
            end = FinishWrite(
                RunState.CANCELLED,
                error_message=f"compensations failed: {'; '.join(failures)}" if failures else "",
                events=(events.run_cancelled(ref),),
            )
        except Exception as error:
            failures = await ctx.compensate()
            kind, message = _describe(error)
            if failures:
                message += f" (compensations failed: {'; '.join(failures)})"
            end = FinishWrite(
                RunState.FAILED,
                error_type=kind,
                error_message=message,
                events=(events.run_failed(ref, kind, message),),
            )
        else:
            end = FinishWrite(
                RunState.SUCCEEDED, result=result, events=(events.run_completed(ref, result),)
            )
        end.cancel_tasks = ctx.has_operator_tasks
        await lease.finish(end)
        self.runs_finished += 1

    # -- background duties ----------------------------------------------------------------
    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds)
            held = {lease.run_id: (task, lease) for task, lease in self._held.items()}
            if not held:
                continue
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT * FROM workflows.extend_leases(%s, %s, %s, %s, %s)",
                        (
                            self.name,
                            self.options.lease_seconds,
                            [lease.tenant_id for _, lease in held.values()],
                            list(held),
                            [lease.claim.lease_version for _, lease in held.values()],
                        ),
                    )
                    alive = {row.run_id: row.cancel_requested for row in await cur.fetchall()}
            except psycopg.Error:
                log.exception("extending leases failed; retrying at the next heartbeat")
                continue
            for run_id, (task, lease) in held.items():
                if run_id in alive:
                    lease.cancel_requested = lease.cancel_requested or alive[run_id]
                elif not task.done():
                    log.warning("worker %s lost the lease of run %s", self.name, run_id)
                    task.cancel()

    async def _escalations(self) -> None:
        while True:
            await asyncio.sleep(self.options.escalation_seconds)
            try:
                await escalate_overdue_tasks(self.pool)
            except psycopg.Error:
                log.exception("escalating overdue operator tasks failed")

    async def _listen(self) -> None:
        assert self._listen_url is not None
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    plain_url(self._listen_url), autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {RUNNABLE_CHANNEL}")
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error:
                log.warning("wake-up notifications lost; polling until reconnected")
                await asyncio.sleep(self.options.poll_seconds)


def _describe(error: BaseException) -> tuple[str, str]:
    from hygoshop_workflows.runtime.errors import StepFailed

    if isinstance(error, StepFailed):
        return error.error_type, str(error)
    return error_type(error), str(error) or repr(error)
