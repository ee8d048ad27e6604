"""Column lists and row -> record mapping shared by every reader of the workflows schema."""

from __future__ import annotations

from typing import Any

from hygoshop_workflows.domain.records import RunRecord, StepRecord, TaskRecord
from hygoshop_workflows.domain.states import Decision, RunState, StepKind, StepState, TaskState

STEP_COLUMNS = (
    "seq, name, kind, state, attempts, result, error_type, error_message, wake_at, task_id,"
    " start_time, end_time"
)

RUN_COLUMNS = (
    "tenant_id, run_id, workflow_type, version, business_key, input, state, waiting_on,"
    " cancel_requested, result, error_type, error_message, lease_losses, create_time,"
    " update_time, end_time, wake_at"
)

# A claim past its expiry reads as open: claims expire without anyone writing.
TASK_STATE_SQL = (
    "CASE WHEN state = 'claimed' AND claim_expires_at <= clock_timestamp() THEN 'open'"
    " ELSE state END"
)
TASK_COLUMNS = (
    f"tenant_id, task_id, run_id, kind, title, payload, {TASK_STATE_SQL} AS state, claimed_by,"
    " claim_expires_at, decision, outcome_payload, comment, completed_by, due_time, escalated,"
    " escalate_time, create_time, update_time, end_time"
)


def step_from_row(row: Any) -> StepRecord:
    return StepRecord(
        seq=row.seq,
        name=row.name,
        kind=StepKind(row.kind),
        state=StepState(row.state),
        attempts=row.attempts,
        result=row.result,
        error_type=row.error_type,
        error_message=row.error_message,
        wake_time=row.wake_at,
        task_id=row.task_id,
        start_time=row.start_time,
        end_time=row.end_time,
    )


def run_from_row(row: Any, steps: list[StepRecord] | None = None) -> RunRecord:
    return RunRecord(
        tenant_id=row.tenant_id,
        run_id=row.run_id,
        workflow_type=row.workflow_type,
        version=row.version,
        business_key=row.business_key,
        input=row.input,
        state=RunState(row.state),
        waiting_on=row.waiting_on,
        cancel_requested=row.cancel_requested,
        result=row.result,
        error_type=row.error_type,
        error_message=row.error_message,
        lease_losses=row.lease_losses,
        create_time=row.create_time,
        update_time=row.update_time,
        end_time=row.end_time,
        # A running run's wake_at is its lease expiry, not a wake-up: not shown.
        wake_time=row.wake_at if row.state in ("pending", "waiting") else None,
        steps=steps or [],
    )


def task_from_row(row: Any) -> TaskRecord:
    state = TaskState(row.state)
    claimed = state == TaskState.CLAIMED
    return TaskRecord(
        tenant_id=row.tenant_id,
        task_id=row.task_id,
        run_id=row.run_id,
        kind=row.kind,
        title=row.title,
        payload=row.payload,
        state=state,
        claimed_by=row.claimed_by if claimed or state == TaskState.COMPLETED else "",
        claim_expire_time=row.claim_expires_at if claimed else None,
        decision=Decision(row.decision) if row.decision else None,
        outcome_payload=row.outcome_payload,
        comment=row.comment,
        completed_by=row.completed_by,
        due_time=row.due_time,
        escalated=row.escalated,
        escalate_time=row.escalate_time,
        create_time=row.create_time,
        update_time=row.update_time,
        end_time=row.end_time,
    )
