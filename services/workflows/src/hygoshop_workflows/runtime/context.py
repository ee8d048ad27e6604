"""What a workflow function sees: `ctx.step`, `sleep`, `wait_for_signal`, `wait_for_operator`.

Replay: every call takes the next position (`seq`) in the run's history. A position that
is already recorded as finished returns its saved result (or raises its saved failure)
without running anything; the first unfinished position does the work, checkpoints it
(fenced, see `lease.py`) and goes on. A pause (timer, signal, operator task, long retry
backoff) records where it waits and raises `Suspended`: the worker lets the run go, and
a later claim replays the function up to the same point. A recorded position whose name
or kind differs from what the function asks for is `NonDeterminism`: the run fails with
that error rather than mixing two histories.

Step functions receive a `StepCall` whose `idempotency_key` derives from (tenant, run,
step position and name), the same for every attempt and every worker: pass it to vendors
so a step re-run after a crash is recognised as the same request.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from hygoshop_platform.db import Connection
from hygoshop_workflows.domain.records import StepRecord
from hygoshop_workflows.domain.states import StepKind, StepState
from hygoshop_workflows.runtime import events
from hygoshop_workflows.runtime.calls import CompensationFn, StepCall, StepFn, TaskOutcome
from hygoshop_workflows.runtime.errors import (
    NonDeterminism,
    RunCancelled,
    StepFailed,
    Suspended,
)
from hygoshop_workflows.runtime.in_flight import InFlightMark
from hygoshop_workflows.runtime.lease import RunLease, StepWrite
from hygoshop_workflows.runtime.registry import Registry
from hygoshop_workflows.runtime.retry import DEFAULT_RETRY, RetryPolicy, error_type
from hygoshop_workflows.runtime.waits import completed_outcome, take_signal

_KEYS = uuid.UUID("5b0e8a55-2f5c-4c4e-9a39-6f1f8c6f3d21")
"""Namespace of idempotency keys and operator task ids (uuid5): fixed forever."""

WORKER_LOST = "hygoshop.WorkerLost"


class WorkflowContext:
    def __init__(
        self,
        lease: RunLease,
        history: list[StepRecord],
        registry: Registry,
        *,
        business_key: str = "",
        max_lease_losses: int = 5,
        in_place_retry_seconds: float = 1.0,
        running_mark_seconds: float = 0.25,
    ) -> None:
        self._lease = lease
        self._history = {step.seq: step for step in history}
        self._registry = registry
        self._seq = 0
        self._compensations: list[tuple[str, CompensationFn, Any]] = []
        self._compensating = False
        self._created_task = False
        self._in_place_retry_seconds = in_place_retry_seconds
        self._running_mark_seconds = running_mark_seconds
        self._worker_lost = lease.claim.lease_losses >= max_lease_losses
        self.business_key = business_key

    # -- who and when ---------------------------------------------------------------------
    @property
    def tenant_id(self) -> uuid.UUID:
        return self._lease.tenant_id

    @property
    def run_id(self) -> uuid.UUID:
        return self._lease.run_id

    @property
    def workflow_type(self) -> str:
        return self._lease.claim.workflow_type

    def _now(self) -> datetime | None:
        return self._lease.db_now()

    # -- the public API -------------------------------------------------------------------
    async def step(
        self,
        name: str,
        fn: StepFn,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        compensation: CompensationFn | None = None,
    ) -> Any:
        """Run `fn` once for this run (retrying per `retry`) and return its saved result.

        `compensation`, when given, is registered once the step succeeds: if the run later
        fails or is cancelled, compensations run in reverse order of registration.
        """
        result = await self._run_step(name, StepKind.STEP, fn, retry)
        if compensation is not None:
            self._compensations.append((name, compensation, result))
        return result

    def add_compensation(self, name: str, fn: CompensationFn, result: Any = None) -> None:
        """Register an undo that is not tied to one step (runs with the others, in reverse)."""
        self._compensations.append((name, fn, result))

    async def sleep(self, seconds: float, *, name: str = "sleep") -> None:
        """A durable timer: the run holds no worker meanwhile and survives any restart."""
        seq = self._take_seq()
        recorded = self._recorded(seq, name, StepKind.SLEEP)
        if recorded is not None and recorded.state == StepState.SUCCEEDED:
            return
        self._boundary()
        now = self._now()
        if recorded is None and seconds <= 0:
            await self._lease.checkpoint(
                StepWrite(seq, name, StepKind.SLEEP, StepState.SUCCEEDED, attempts=1)
            )
            return
        due = recorded.wake_time if recorded is not None else None
        if due is not None and now is not None and now >= due:
            await self._lease.checkpoint(
                StepWrite(seq, name, StepKind.SLEEP, StepState.SUCCEEDED, attempts=1)
            )
            return
        async with self._lease.fenced() as fence:
            if recorded is None:
                wake = await self._lease.write_step(
                    fence.conn,
                    StepWrite(seq, name, StepKind.SLEEP, StepState.RUNNING, wake_in=seconds),
                )
            else:
                wake = recorded.wake_time
            await self._pause(fence.conn, "timer", wake)
        raise self._suspended()

    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a durable deadline, not asyncio's
    ) -> dict[str, Any] | None:
        """The payload of the oldest signal `name` not yet taken by an earlier wait (signals
        sent before this wait are kept for it), or None once `timeout` seconds passed."""
        seq = self._take_seq()
        recorded = self._recorded(seq, name, StepKind.SIGNAL)
        if recorded is not None and recorded.state == StepState.SUCCEEDED:
            saved = recorded.result or {}
            return None if saved.get("timed_out") else saved.get("payload", {})
        self._boundary()
        payload: dict[str, Any] | None = None
        timed_out = False
        async with self._lease.fenced() as fence:
            payload = await take_signal(fence.conn, self._lease, name, seq)
            if payload is not None:
                await self._lease.write_step(fence.conn, _signal_taken(seq, name, payload))
            else:
                if recorded is None:
                    wake = await self._lease.write_step(
                        fence.conn,
                        StepWrite(seq, name, StepKind.SIGNAL, StepState.RUNNING, wake_in=timeout),
                    )
                else:
                    wake = recorded.wake_time
                if wake is not None and fence.now >= wake:
                    timed_out = True
                    await self._lease.write_step(fence.conn, _signal_taken(seq, name, None))
                else:
                    await self._pause(fence.conn, f"signal:{name}", wake)
        if payload is not None:
            return payload
        if timed_out:
            return None
        raise self._suspended()

    async def wait_for_operator(
        self,
        kind: str,
        *,
        title: str,
        payload: dict[str, Any],
        sla_seconds: float | None = None,
    ) -> TaskOutcome:
        """Create an operator task of `kind` proposing `payload`; the run waits (holding no
        worker) until someone completes it, and gets the decision."""
        seq = self._take_seq()
        recorded = self._recorded(seq, kind, StepKind.OPERATOR_TASK)
        if recorded is not None and recorded.state == StepState.SUCCEEDED:
            return TaskOutcome.from_json(recorded.result)
        self._boundary()
        task_kind = self._registry.task_kind_named(kind)
        if task_kind is None:
            raise ValueError(f"operator task kind {kind!r} is not registered")
        json.dumps(payload)  # refuse what the task could not store, before writing anything
        sla = task_kind.sla_seconds if sla_seconds is None else sla_seconds
        outcome: TaskOutcome | None = None
        async with self._lease.fenced() as fence:
            conn = fence.conn
            if recorded is None or recorded.task_id is None:
                task_id = uuid.uuid5(_KEYS, f"{self.run_id}/{seq}")
                self._created_task = True
                await conn.execute(
                    "INSERT INTO workflows.operator_tasks (tenant_id, task_id, run_id, step_seq,"
                    " kind, title, payload, state, due_time)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'open',"
                    "         clock_timestamp() + %s * interval '1 second')"
                    " ON CONFLICT (tenant_id, run_id, step_seq) DO NOTHING",
                    (
                        self.tenant_id,
                        task_id,
                        self.run_id,
                        seq,
                        kind,
                        title[:500],
                        Jsonb(payload),
                        sla,
                    ),
                )
                await self._lease.write_step(
                    conn,
                    StepWrite(
                        seq, kind, StepKind.OPERATOR_TASK, StepState.RUNNING, task_id=task_id
                    ),
                )
                await events.add(
                    conn,
                    events.task_created(self.tenant_id, task_id, self.run_id, kind, title),
                    events.run_waiting_for_operator(self._ref(), task_id, kind),
                )
            else:
                task_id = recorded.task_id
                outcome = await completed_outcome(conn, self.tenant_id, task_id)
                if outcome is not None:
                    await self._lease.write_step(
                        conn,
                        StepWrite(
                            seq,
                            kind,
                            StepKind.OPERATOR_TASK,
                            StepState.SUCCEEDED,
                            attempts=1,
                            result=outcome.to_json(),
                            task_id=task_id,
                        ),
                    )
            if outcome is None:
                await self._pause(conn, f"task:{task_id}", None)
        if outcome is not None:
            return outcome
        raise self._suspended()

    # -- the runtime's side ---------------------------------------------------------------
    async def compensate(self) -> list[str]:
        """Run the registered compensations, newest first; the failures, described."""
        self._compensating = True
        failures: list[str] = []
        for name, fn, result in reversed(self._compensations):

            async def undo(call: StepCall, fn: CompensationFn = fn, result: Any = result) -> Any:
                return await fn(call, result)

            try:
                await self._run_step(
                    f"compensate:{name}", StepKind.COMPENSATION, undo, DEFAULT_RETRY
                )
            except StepFailed as failure:
                failures.append(str(failure))
        return failures

    @property
    def has_operator_tasks(self) -> bool:
        """Whether this run ever waited for an operator (its tasks may need cancelling)."""
        return self._created_task or any(
            step.kind == StepKind.OPERATOR_TASK for step in self._history.values()
        )

    def assert_history_consumed(self) -> None:
        """After the function returned: it must have asked for every recorded step."""
        extra = sorted(seq for seq in self._history if seq >= self._seq)
        if extra:
            step = self._history[extra[0]]
            raise NonDeterminism(
                f"the history records step {step.name!r} ({step.kind.value}) at position"
                f" {step.seq}, but the workflow finished after {self._seq} steps"
            )

    def _ref(self) -> events.RunRef:
        return events.RunRef(self.tenant_id, self.run_id, self.workflow_type, self.business_key)

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _recorded(self, seq: int, name: str, kind: StepKind) -> StepRecord | None:
        recorded = self._history.get(seq)
        if recorded is None:
            return None
        if (
            recorded.kind == StepKind.COMPENSATION
            and kind != StepKind.COMPENSATION
            and self._lease.cancel_requested
        ):
            # The run was cancelled here last time and compensations followed.
            raise RunCancelled
        if recorded.name != name or recorded.kind != kind:
            raise NonDeterminism(
                f"at position {seq} the history records {recorded.kind.value}"
                f" {recorded.name!r}, the workflow asks for {kind.value} {name!r}"
            )
        return recorded

    async def _pause(self, conn: Connection, waiting_on: str, wake: datetime | None) -> None:
        """Let the run go until `wake` (or a wake-up), unless the fence just read a cancel:
        a cancel that arrived while the run was running (so it woke nothing) must not be
        slept through. The caller then raises `_suspended()`, which is RunCancelled."""
        if not self._cancel_pending():
            await self._lease.suspend(conn, waiting_on, wake)

    def _suspended(self) -> BaseException:
        return RunCancelled() if self._cancel_pending() else Suspended()

    def _cancel_pending(self) -> bool:
        return self._lease.cancel_requested and not self._compensating

    def _boundary(self) -> None:
        """Where a requested cancel takes effect (never inside compensation)."""
        if self._cancel_pending():
            raise RunCancelled

    async def _run_step(self, name: str, kind: StepKind, fn: StepFn, retry: RetryPolicy) -> Any:
        seq = self._take_seq()
        recorded = self._recorded(seq, name, kind)
        if recorded is not None:
            if recorded.state == StepState.SUCCEEDED:
                return recorded.result
            if recorded.state == StepState.FAILED:
                raise StepFailed(name, recorded.error_type, recorded.error_message)
        self._boundary()
        attempts = recorded.attempts if recorded is not None else 0
        if recorded is not None and recorded.state == StepState.RETRYING:
            due, now = recorded.wake_time, self._now()
            if due is not None and now is not None and due > now:
                # Woken early (a signal, a cancel): the backoff is not over yet.
                async with self._lease.fenced() as fence:
                    await self._pause(fence.conn, f"retry:{name}", due)
                raise self._suspended()
        message = self._lost_with_its_worker(recorded, retry)
        if message is not None:
            await self._lease.checkpoint(
                StepWrite(
                    seq,
                    name,
                    kind,
                    StepState.FAILED,
                    attempts=attempts,
                    error_type=WORKER_LOST,
                    error_message=message,
                )
            )
            raise StepFailed(name, WORKER_LOST, message)
        last_error = (recorded.error_type, recorded.error_message) if recorded else ("", "")
        while True:
            attempts += 1
            started = self._now()
            call = StepCall(
                self.tenant_id, self.run_id, name, seq, attempts, self._idempotency_key(seq, name)
            )
            try:
                result = await self._attempt(
                    fn, call, kind, last_error, started, last=attempts >= retry.max_attempts
                )
            except Exception as error:
                kind_of_error, message = error_type(error), str(error) or repr(error)
                if isinstance(error, TypeError) and "JSON serializable" in message:
                    kind_of_error = "hygoshop.StepResultNotJson"
                    retrying = False
                else:
                    retrying = retry.retries(error, attempts)
                if not retrying:
                    await self._lease.checkpoint(
                        StepWrite(
                            seq,
                            name,
                            kind,
                            StepState.FAILED,
                            attempts=attempts,
                            error_type=kind_of_error,
                            start_time=started,
                            error_message=message,
                        )
                    )
                    raise StepFailed(name, kind_of_error, message) from error
                last_error = (kind_of_error, message)
                delay = retry.delay_after(attempts)
                write = StepWrite(
                    seq,
                    name,
                    kind,
                    StepState.RETRYING,
                    attempts=attempts,
                    error_type=kind_of_error,
                    start_time=started,
                    error_message=message,
                    wake_in=delay,
                )
                if delay <= self._in_place_retry_seconds:
                    await self._lease.checkpoint(write)
                    await asyncio.sleep(delay)
                    self._boundary()
                    continue
                async with self._lease.fenced() as fence:
                    wake = await self._lease.write_step(fence.conn, write)
                    await self._pause(fence.conn, f"retry:{name}", wake)
                raise self._suspended() from None
            await self._lease.checkpoint(
                StepWrite(
                    seq,
                    name,
                    kind,
                    StepState.SUCCEEDED,
                    attempts=attempts,
                    result=result,
                    start_time=started,
                )
            )
            return result

    async def _attempt(
        self,
        fn: StepFn,
        call: StepCall,
        kind: StepKind,
        last_error: tuple[str, str],
        started: datetime | None,
        *,
        last: bool,
    ) -> Any:
        """One call of `fn` (marked RUNNING in the history if it runs long, or before it
        starts if it is the `last` attempt allowed); its result, which must be JSON."""
        mark = StepWrite(
            call.seq,
            call.step,
            kind,
            StepState.RUNNING,
            attempts=call.attempt,
            error_type=last_error[0],
            error_message=last_error[1],
            start_time=started,
            progress=False,
        )
        after = 0.0 if last else self._running_mark_seconds
        async with InFlightMark(self._lease, mark, after):
            result = await fn(call)
        json.dumps(result)
        return result

    def _lost_with_its_worker(self, recorded: StepRecord | None, retry: RetryPolicy) -> str | None:
        """Why the step fails without another attempt, if its worker is what failed: the run
        lost too many leases in a row, or the last attempt its policy allows was under way
        (marked RUNNING, see `in_flight.py`) when its worker was lost."""
        if self._worker_lost:
            self._worker_lost = False
            return "the worker running this step was lost too many times in a row"
        if (
            recorded is not None
            and recorded.state == StepState.RUNNING
            and recorded.attempts >= retry.max_attempts
        ):
            return f"attempt {recorded.attempts} of {retry.max_attempts} was lost with its worker"
        return None

    def _idempotency_key(self, seq: int, name: str) -> str:
        return uuid.uuid5(_KEYS, f"{self.tenant_id}/{self.run_id}/{seq}/{name}").hex


def _signal_taken(seq: int, name: str, payload: dict[str, Any] | None) -> StepWrite:
    """A signal wait's end: the signal's payload, or None when its timeout came first."""
    result = {"timed_out": True} if payload is None else {"payload": payload}
    return StepWrite(seq, name, StepKind.SIGNAL, StepState.SUCCEEDED, attempts=1, result=result)
