"""Domain events of runs and operator tasks, written to the workflows outbox.

Types: `workflows.run.{started,waiting_for_operator,completed,failed,cancelled}` and
`workflows.task.{created,claimed,completed,escalated}`. Each is added in the transaction
of the change it reports, so it is published if and only if the change committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2

from hygoshop.events.v1 import workflows_pb2 as ev
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop.workflows.v1 import workflows_pb2 as api
from hygoshop_platform.bus import add_to_outbox, new_event
from hygoshop_platform.db import Connection
from hygoshop_workflows.convert import timestamp_or_none
from hygoshop_workflows.domain.states import Decision

SCHEMA = "workflows"

RUN_STARTED = "workflows.run.started"
RUN_WAITING_FOR_OPERATOR = "workflows.run.waiting_for_operator"
RUN_COMPLETED = "workflows.run.completed"
RUN_FAILED = "workflows.run.failed"
RUN_CANCELLED = "workflows.run.cancelled"
TASK_CREATED = "workflows.task.created"
TASK_CLAIMED = "workflows.task.claimed"
TASK_COMPLETED = "workflows.task.completed"
TASK_ESCALATED = "workflows.task.escalated"


@dataclass(frozen=True, slots=True)
class RunRef:
    """What every run event names."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    workflow_type: str
    business_key: str


_DECISIONS = {
    Decision.APPROVE: api.DECISION_APPROVE,
    Decision.REJECT: api.DECISION_REJECT,
    Decision.EDIT: api.DECISION_EDIT,
}


async def add(conn: Connection, *envelopes: Envelope) -> None:
    await add_to_outbox(conn, SCHEMA, *envelopes)


def run_started(run: RunRef, version: int) -> Envelope:
    return new_event(
        RUN_STARTED,
        ev.WorkflowRunStarted(
            run_id=str(run.run_id),
            workflow_type=run.workflow_type,
            version=version,
            business_key=run.business_key,
        ),
        tenant_id=run.tenant_id,
    )


def run_waiting_for_operator(run: RunRef, task_id: uuid.UUID, task_kind: str) -> Envelope:
    return new_event(
        RUN_WAITING_FOR_OPERATOR,
        ev.WorkflowRunWaitingForOperator(
            run_id=str(run.run_id),
            workflow_type=run.workflow_type,
            business_key=run.business_key,
            task_id=str(task_id),
            task_kind=task_kind,
        ),
        tenant_id=run.tenant_id,
    )


def run_completed(run: RunRef, result: dict[str, Any] | None) -> Envelope:
    payload = ev.WorkflowRunCompleted(
        run_id=str(run.run_id), workflow_type=run.workflow_type, business_key=run.business_key
    )
    if result is not None:
        struct = struct_pb2.Struct()
        struct.update(result)
        payload.result.CopyFrom(struct)
    return new_event(RUN_COMPLETED, payload, tenant_id=run.tenant_id)


def run_failed(run: RunRef, error_type: str, error_message: str) -> Envelope:
    return new_event(
        RUN_FAILED,
        ev.WorkflowRunFailed(
            run_id=str(run.run_id),
            workflow_type=run.workflow_type,
            business_key=run.business_key,
            error_type=error_type,
            error_message=error_message[:2000],
        ),
        tenant_id=run.tenant_id,
    )


def run_cancelled(run: RunRef) -> Envelope:
    return new_event(
        RUN_CANCELLED,
        ev.WorkflowRunCancelled(
            run_id=str(run.run_id), workflow_type=run.workflow_type, business_key=run.business_key
        ),
        tenant_id=run.tenant_id,
    )


def task_created(
    tenant_id: uuid.UUID, task_id: uuid.UUID, run_id: uuid.UUID, kind: str, title: str
) -> Envelope:
    return new_event(
        TASK_CREATED,
        ev.OperatorTaskCreated(task_id=str(task_id), run_id=str(run_id), kind=kind, title=title),
        tenant_id=tenant_id,
    )


def task_claimed(
    tenant_id: uuid.UUID,
    task_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    kind: str,
    claimed_by: str,
    claim_expire_time: datetime | None,
) -> Envelope:
    return new_event(
        TASK_CLAIMED,
        ev.OperatorTaskClaimed(
            task_id=str(task_id),
            run_id=str(run_id),
            kind=kind,
            claimed_by=claimed_by,
            claim_expire_time=timestamp_or_none(claim_expire_time),
        ),
        tenant_id=tenant_id,
    )


def task_completed(
    tenant_id: uuid.UUID,
    task_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    kind: str,
    decision: Decision,
    completed_by: str,
) -> Envelope:
    return new_event(
        TASK_COMPLETED,
        ev.OperatorTaskCompleted(
            task_id=str(task_id),
            run_id=str(run_id),
            kind=kind,
            decision=_DECISIONS[decision],
            completed_by=completed_by,
        ),
        tenant_id=tenant_id,
    )


def task_escalated(
    tenant_id: uuid.UUID,
    task_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    kind: str,
    title: str,
    due_time: datetime,
    create_time: datetime,
) -> Envelope:
    return new_event(
        TASK_ESCALATED,
        ev.OperatorTaskEscalated(
            task_id=str(task_id),
            run_id=str(run_id),
            kind=kind,
            title=title,
            due_time=timestamp_or_none(due_time),
            create_time=timestamp_or_none(create_time),
        ),
        tenant_id=tenant_id,
    )
