"""What the stores read back: runs with their step history, and operator tasks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hygoshop_workflows.domain.states import Decision, RunState, StepKind, StepState, TaskState

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRecord:
    seq: int
    """Position in the run's history: replay asks for steps in this order."""
    name: str
    kind: StepKind
    state: StepState
    attempts: int
    """Attempts that ended (succeeded or failed). An attempt cut short by a lost worker is
    counted on the run (`RunRecord.lease_losses`), not here."""
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    wake_time: datetime | None = None
    """Timer: when it fires; retry: when the next attempt is due; signal: its deadline."""
    task_id: uuid.UUID | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    tenant_id: uuid.UUID
    run_id: uuid.UUID
    workflow_type: str
    version: int
    business_key: str
    input: JsonObject
    state: RunState
    waiting_on: str
    """Why a WAITING run waits: `timer`, `signal:<name>`, `task:<id>`, `retry:<step>`."""
    cancel_requested: bool
    result: JsonObject | None
    error_type: str
    error_message: str
    lease_losses: int
    """Times in a row a worker lost this run's lease mid-step (reset by each checkpoint)."""
    create_time: datetime
    update_time: datetime
    end_time: datetime | None
    wake_time: datetime | None = None
    """When a PENDING/WAITING run becomes claimable (None: only a signal or a task wakes it)."""
    steps: list[StepRecord] = field(default_factory=list)
    """Filled by `get`; lists leave it empty."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    tenant_id: uuid.UUID
    task_id: uuid.UUID
    run_id: uuid.UUID
    kind: str
    title: str
    payload: JsonObject
    """What the run proposes (the operator approves, rejects or edits it)."""
    state: TaskState
    """Effective state: a claim past its expiry reads as OPEN."""
    claimed_by: str
    claim_expire_time: datetime | None
    decision: Decision | None
    outcome_payload: JsonObject | None
    comment: str
    completed_by: str
    due_time: datetime
    """The SLA: unclaimed past it, the task escalates."""
    escalated: bool
    escalate_time: datetime | None
    create_time: datetime
    update_time: datetime
    end_time: datetime | None
