"""Proto <-> domain mapping of runs, steps and operator tasks (the only place that knows both)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from hygoshop.workflows.v1 import workflows_pb2
from hygoshop_platform.errors import FieldViolation
from hygoshop_workflows.domain.records import JsonObject, RunRecord, StepRecord, TaskRecord
from hygoshop_workflows.domain.states import Decision, RunState, StepKind, StepState, TaskState

RUN_STATE_FROM_PROTO = {
    workflows_pb2.WORKFLOW_RUN_STATE_PENDING: RunState.PENDING,
    workflows_pb2.WORKFLOW_RUN_STATE_RUNNING: RunState.RUNNING,
    workflows_pb2.WORKFLOW_RUN_STATE_WAITING: RunState.WAITING,
    workflows_pb2.WORKFLOW_RUN_STATE_SUCCEEDED: RunState.SUCCEEDED,
    workflows_pb2.WORKFLOW_RUN_STATE_FAILED: RunState.FAILED,
    workflows_pb2.WORKFLOW_RUN_STATE_CANCELLED: RunState.CANCELLED,
}
RUN_STATE_TO_PROTO = {state: number for number, state in RUN_STATE_FROM_PROTO.items()}

STEP_KIND_TO_PROTO = {
    StepKind.STEP: workflows_pb2.WORKFLOW_STEP_KIND_STEP,
    StepKind.SLEEP: workflows_pb2.WORKFLOW_STEP_KIND_SLEEP,
    StepKind.SIGNAL: workflows_pb2.WORKFLOW_STEP_KIND_SIGNAL,
    StepKind.OPERATOR_TASK: workflows_pb2.WORKFLOW_STEP_KIND_OPERATOR_TASK,
    StepKind.COMPENSATION: workflows_pb2.WORKFLOW_STEP_KIND_COMPENSATION,
}
STEP_STATE_TO_PROTO = {
    StepState.RUNNING: workflows_pb2.WORKFLOW_STEP_STATE_RUNNING,
    StepState.RETRYING: workflows_pb2.WORKFLOW_STEP_STATE_RETRYING,
    StepState.SUCCEEDED: workflows_pb2.WORKFLOW_STEP_STATE_SUCCEEDED,
    StepState.FAILED: workflows_pb2.WORKFLOW_STEP_STATE_FAILED,
    StepState.CANCELLED: workflows_pb2.WORKFLOW_STEP_STATE_CANCELLED,
}

TASK_STATE_FROM_PROTO = {
    workflows_pb2.OPERATOR_TASK_STATE_OPEN: TaskState.OPEN,
    workflows_pb2.OPERATOR_TASK_STATE_CLAIMED: TaskState.CLAIMED,
    workflows_pb2.OPERATOR_TASK_STATE_COMPLETED: TaskState.COMPLETED,
    workflows_pb2.OPERATOR_TASK_STATE_CANCELLED: TaskState.CANCELLED,
}
TASK_STATE_TO_PROTO = {state: number for number, state in TASK_STATE_FROM_PROTO.items()}

DECISION_FROM_PROTO = {
    workflows_pb2.DECISION_APPROVE: Decision.APPROVE,
    workflows_pb2.DECISION_REJECT: Decision.REJECT,
    workflows_pb2.DECISION_EDIT: Decision.EDIT,
}
DECISION_TO_PROTO = {decision: number for number, decision in DECISION_FROM_PROTO.items()}

_EXACT_FLOAT_INT = 2**53
"""Integers up to this size survive a trip through a JSON (double) number unchanged."""


# --- JSON values -------------------------------------------------------------------------


def _from_json_number(value: float, path: str, violations: list[FieldViolation]) -> float | int:
    if not math.isfinite(value):
        violations.append(FieldViolation(path, "numbers must be finite (JSON has no NaN)"))
        return 0
    # Struct numbers are doubles: `3` arrives as 3.0. Whole numbers come back as ints so a
    # payload reads the same as the JSON a client sent (and "integer" schemas accept it).
    if value.is_integer() and abs(value) <= _EXACT_FLOAT_INT:
        return int(value)
    return value


def value_from_proto(value: struct_pb2.Value, path: str, violations: list[FieldViolation]) -> Any:
    """A Struct Value as plain JSON data (dict, list, str, int, float, bool, None)."""
    which = value.WhichOneof("kind")
    if which == "struct_value":
        return struct_from_proto(value.struct_value, path, violations)
    if which == "list_value":
        return [
            value_from_proto(item, f"{path}[{i}]", violations)
            for i, item in enumerate(value.list_value.values)
        ]
    if which == "number_value":
        return _from_json_number(value.number_value, path, violations)
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    return None  # null_value, or a Value with nothing set


def struct_from_proto(
    struct: struct_pb2.Struct, path: str, violations: list[FieldViolation]
) -> JsonObject:
    """A request's Struct as a dict; non-finite numbers go to `violations` under `path`."""
    return {
        key: value_from_proto(item, f"{path}.{key}", violations)
        for key, item in struct.fields.items()
    }


def struct_to_proto(data: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(dict(data), struct)
    return struct


def value_to_proto(data: Any) -> struct_pb2.Value:
    """Any JSON value (a step's result may be a list, a string, a number ...)."""
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


def timestamp_or_none(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


# --- records -----------------------------------------------------------------------------


def step_to_proto(step: StepRecord) -> workflows_pb2.WorkflowStep:
    return workflows_pb2.WorkflowStep(
        name=step.name,
        kind=STEP_KIND_TO_PROTO[step.kind],
        state=STEP_STATE_TO_PROTO[step.state],
        attempts=step.attempts,
        result=None if step.result is None else value_to_proto(step.result),
        error_type=step.error_type,
        error_message=step.error_message,
        wake_time=timestamp_or_none(step.wake_time),
        task_id="" if step.task_id is None else str(step.task_id),
        start_time=timestamp_or_none(step.start_time),
        end_time=timestamp_or_none(step.end_time),
    )


def run_to_proto(run: RunRecord, *, with_steps: bool = True) -> workflows_pb2.WorkflowRun:
    """The run as clients see it; lists pass `with_steps=False` (their records have none)."""
    return workflows_pb2.WorkflowRun(
        run_id=str(run.run_id),
        workflow_type=run.workflow_type,
        version=run.version,
        business_key=run.business_key,
        input=struct_to_proto(run.input),
        state=RUN_STATE_TO_PROTO[run.state],
        waiting_on=run.waiting_on,
        cancel_requested=run.cancel_requested,
        result=None if run.result is None else struct_to_proto(run.result),
        error_type=run.error_type,
        error_message=run.error_message,
        lease_losses=run.lease_losses,
        create_time=timestamp_or_none(run.create_time),
        update_time=timestamp_or_none(run.update_time),
        end_time=timestamp_or_none(run.end_time),
        wake_time=timestamp_or_none(run.wake_time),
        steps=[step_to_proto(s) for s in run.steps] if with_steps else [],
    )


def task_to_proto(task: TaskRecord) -> workflows_pb2.OperatorTask:
    return workflows_pb2.OperatorTask(
        task_id=str(task.task_id),
        run_id=str(task.run_id),
        kind=task.kind,
        title=task.title,
        payload=struct_to_proto(task.payload),
        state=TASK_STATE_TO_PROTO[task.state],
        claimed_by=task.claimed_by,
        claim_expire_time=timestamp_or_none(task.claim_expire_time),
        decision=workflows_pb2.DECISION_UNSPECIFIED
        if task.decision is None
        else DECISION_TO_PROTO[task.decision],
        outcome_payload=None
        if task.outcome_payload is None
        else struct_to_proto(task.outcome_payload),
        comment=task.comment,
        completed_by=task.completed_by,
        due_time=timestamp_or_none(task.due_time),
        escalated=task.escalated,
        escalate_time=timestamp_or_none(task.escalate_time),
        create_time=timestamp_or_none(task.create_time),
        update_time=timestamp_or_none(task.update_time),
        end_time=timestamp_or_none(task.end_time),
    )
