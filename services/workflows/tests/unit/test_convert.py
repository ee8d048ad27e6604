"""Runs, steps and tasks reach clients field for field; JSON payloads survive Struct exactly."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import struct_pb2

from hygoshop.workflows.v1 import workflows_pb2
from hygoshop_platform.errors import FieldViolation
from hygoshop_workflows.convert import (
    DECISION_FROM_PROTO,
    DECISION_TO_PROTO,
    RUN_STATE_FROM_PROTO,
    RUN_STATE_TO_PROTO,
    STEP_KIND_TO_PROTO,
    STEP_STATE_TO_PROTO,
    TASK_STATE_FROM_PROTO,
    TASK_STATE_TO_PROTO,
    run_to_proto,
    step_to_proto,
    struct_from_proto,
    struct_to_proto,
    task_to_proto,
    value_to_proto,
)
from hygoshop_workflows.domain.records import RunRecord, StepRecord, TaskRecord
from hygoshop_workflows.domain.states import Decision, RunState, StepKind, StepState, TaskState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TENANT = uuid.uuid4()


def _run(**overrides: object) -> RunRecord:
    fields: dict[str, object] = {
        "tenant_id": TENANT,
        "run_id": uuid.uuid4(),
        "workflow_type": "listing_change_approval",
        "version": 2,
        "business_key": "listing-42",
        "input": {"listing_id": "42", "price": {"units": 19, "currency": "EUR"}},
        "state": RunState.WAITING,
        "waiting_on": "signal:paid",
        "cancel_requested": False,
        "result": None,
        "error_type": "",
        "error_message": "",
        "lease_losses": 1,
        "create_time": T0,
        "update_time": T0 + timedelta(seconds=5),
        "end_time": None,
        "wake_time": T0 + timedelta(hours=1),
    }
    fields.update(overrides)
    return RunRecord(**fields)  # type: ignore[arg-type]


def _task(**overrides: object) -> TaskRecord:
    fields: dict[str, object] = {
        "tenant_id": TENANT,
        "task_id": uuid.uuid4(),
        "run_id": uuid.uuid4(),
        "kind": "listing_change_approval",
        "title": "Approve the new price",
        "payload": {"price": 21.5},
        "state": TaskState.OPEN,
        "claimed_by": "",
        "claim_expire_time": None,
        "decision": None,
        "outcome_payload": None,
        "comment": "",
        "completed_by": "",
        "due_time": T0 + timedelta(hours=4),
        "escalated": False,
        "escalate_time": None,
        "create_time": T0,
        "update_time": T0,
        "end_time": None,
    }
    fields.update(overrides)
    return TaskRecord(**fields)  # type: ignore[arg-type]


def _proto_values(enum: object) -> set[int]:
    descriptor = enum.DESCRIPTOR  # type: ignore[attr-defined]
    return {v.number for v in descriptor.values if v.number != 0}


def test_every_domain_state_has_a_proto_value_and_back() -> None:
    assert set(RUN_STATE_TO_PROTO) == set(RunState)
    assert set(RUN_STATE_FROM_PROTO) == _proto_values(workflows_pb2.WorkflowRunState)
    assert set(TASK_STATE_TO_PROTO) == set(TaskState)
    assert set(TASK_STATE_FROM_PROTO) == _proto_values(workflows_pb2.OperatorTaskState)
    assert set(DECISION_TO_PROTO) == set(Decision)
    assert set(DECISION_FROM_PROTO) == _proto_values(workflows_pb2.Decision)
    assert set(STEP_KIND_TO_PROTO) == set(StepKind)
    assert set(STEP_KIND_TO_PROTO.values()) == _proto_values(workflows_pb2.WorkflowStepKind)
    assert set(STEP_STATE_TO_PROTO) == set(StepState)
    assert set(STEP_STATE_TO_PROTO.values()) == _proto_values(workflows_pb2.WorkflowStepState)
    # Same names on both sides, so no mapping is crossed by mistake.
    for state, number in RUN_STATE_TO_PROTO.items():
        assert workflows_pb2.WorkflowRunState.Name(number).endswith(state.name)
    for task_state, number in TASK_STATE_TO_PROTO.items():
        assert workflows_pb2.OperatorTaskState.Name(number).endswith(task_state.name)
    for decision, number in DECISION_TO_PROTO.items():
        assert workflows_pb2.Decision.Name(number).endswith(decision.name)
    for kind, number in STEP_KIND_TO_PROTO.items():
        assert workflows_pb2.WorkflowStepKind.Name(number).endswith(kind.name)
    for step_state, number in STEP_STATE_TO_PROTO.items():
        assert workflows_pb2.WorkflowStepState.Name(number).endswith(step_state.name)


def test_run_to_proto_carries_every_field() -> None:
    run = _run()
    message = run_to_proto(run)
    assert message.run_id == str(run.run_id)
    assert (message.workflow_type, message.version, message.business_key) == (
        "listing_change_approval",
        2,
        "listing-42",
    )
    assert struct_from_proto(message.input, "input", []) == run.input
    assert message.state == workflows_pb2.WORKFLOW_RUN_STATE_WAITING
    assert (message.waiting_on, message.cancel_requested, message.lease_losses) == (
        "signal:paid",
        False,
        1,
    )
    assert not message.HasField("result")
    assert not message.HasField("end_time")
    assert message.create_time.ToDatetime(tzinfo=UTC) == T0
    assert message.update_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=5)
    assert message.wake_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=1)


def test_a_finished_run_has_its_result_error_and_end_time() -> None:
    failed = run_to_proto(
        _run(
            state=RunState.FAILED,
            waiting_on="",
            error_type="VendorError",
            error_message="503 after 5 attempts",
            end_time=T0 + timedelta(minutes=3),
            wake_time=None,
        )
    )
    assert failed.state == workflows_pb2.WORKFLOW_RUN_STATE_FAILED
    assert (failed.error_type, failed.error_message) == ("VendorError", "503 after 5 attempts")
    assert failed.end_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=3)
    assert not failed.HasField("wake_time")
    done = run_to_proto(_run(state=RunState.SUCCEEDED, result={"applied": True, "n": 3}))
    assert struct_from_proto(done.result, "result", []) == {"applied": True, "n": 3}


def test_steps_keep_their_order_and_any_json_result() -> None:
    task_id = uuid.uuid4()
    steps = [
        StepRecord(
            seq=0,
            name="load",
            kind=StepKind.STEP,
            state=StepState.SUCCEEDED,
            attempts=1,
            result={"sku": "A"},
            start_time=T0,
            end_time=T0 + timedelta(seconds=1),
        ),
        StepRecord(
            seq=1,
            name="ids",
            kind=StepKind.STEP,
            state=StepState.SUCCEEDED,
            attempts=2,
            result=[1, "b"],
        ),
        StepRecord(
            seq=2, name="count", kind=StepKind.STEP, state=StepState.SUCCEEDED, attempts=1, result=7
        ),
        StepRecord(
            seq=3,
            name="charge",
            kind=StepKind.STEP,
            state=StepState.RETRYING,
            attempts=2,
            error_type="Timeout",
            error_message="no answer in 10s",
            wake_time=T0 + timedelta(seconds=30),
        ),
        StepRecord(
            seq=4,
            name="approve",
            kind=StepKind.OPERATOR_TASK,
            state=StepState.RUNNING,
            attempts=0,
            task_id=task_id,
        ),
    ]
    message = run_to_proto(_run(steps=steps))
    assert [s.name for s in message.steps] == ["load", "ids", "count", "charge", "approve"]
    load, ids, count, charge, approve = message.steps
    assert load.state == workflows_pb2.WORKFLOW_STEP_STATE_SUCCEEDED
    assert load.kind == workflows_pb2.WORKFLOW_STEP_KIND_STEP
    assert load.result.struct_value["sku"] == "A"
    assert load.end_time.ToDatetime(tzinfo=UTC) - load.start_time.ToDatetime(
        tzinfo=UTC
    ) == timedelta(seconds=1)
    assert [v.WhichOneof("kind") for v in ids.result.list_value.values] == [
        "number_value",
        "string_value",
    ]
    assert count.result.number_value == 7
    assert charge.state == workflows_pb2.WORKFLOW_STEP_STATE_RETRYING
    assert (charge.attempts, charge.error_type, charge.error_message) == (
        2,
        "Timeout",
        "no answer in 10s",
    )
    assert charge.wake_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=30)
    assert not charge.HasField("result")
    assert approve.kind == workflows_pb2.WORKFLOW_STEP_KIND_OPERATOR_TASK
    assert approve.task_id == str(task_id)
    assert run_to_proto(_run(steps=steps), with_steps=False).steps == []


def test_a_step_that_returned_null_has_no_result() -> None:
    step = StepRecord(seq=0, name="n", kind=StepKind.SLEEP, state=StepState.SUCCEEDED, attempts=1)
    message = step_to_proto(step)
    assert not message.HasField("result")
    assert message.task_id == ""


def test_task_to_proto_open_and_completed() -> None:
    task = _task()
    open_task = task_to_proto(task)
    assert (open_task.task_id, open_task.run_id) == (str(task.task_id), str(task.run_id))
    assert (open_task.kind, open_task.title) == ("listing_change_approval", "Approve the new price")
    assert struct_from_proto(open_task.payload, "payload", []) == {"price": 21.5}
    assert open_task.state == workflows_pb2.OPERATOR_TASK_STATE_OPEN
    assert open_task.decision == workflows_pb2.DECISION_UNSPECIFIED
    assert not open_task.HasField("outcome_payload")
    assert not open_task.HasField("claim_expire_time")
    assert open_task.due_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=4)

    done = task_to_proto(
        _task(
            state=TaskState.COMPLETED,
            claimed_by="key-1",
            claim_expire_time=T0 + timedelta(minutes=15),
            decision=Decision.EDIT,
            outcome_payload={"price": 20},
            comment="rounded",
            completed_by="key-1",
            escalated=True,
            escalate_time=T0 + timedelta(hours=4, seconds=2),
            end_time=T0 + timedelta(hours=5),
        )
    )
    assert done.state == workflows_pb2.OPERATOR_TASK_STATE_COMPLETED
    assert done.decision == workflows_pb2.DECISION_EDIT
    assert struct_from_proto(done.outcome_payload, "p", []) == {"price": 20}
    assert (done.claimed_by, done.completed_by, done.comment) == ("key-1", "key-1", "rounded")
    assert done.claim_expire_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=15)
    assert done.escalated
    assert done.escalate_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=4, seconds=2)
    assert done.end_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=5)


def test_struct_round_trip_keeps_json_types() -> None:
    data = {
        "count": 3,
        "ratio": 0.25,
        "big": 2**53,
        "name": "shirt",
        "on": False,
        "none": None,
        "nested": {"list": [1, 2.5, "x", None, {"deep": True}], "empty": {}},
    }
    violations: list[FieldViolation] = []
    back = struct_from_proto(struct_to_proto(data), "input", violations)
    assert violations == []
    assert back == data
    # Whole numbers come back as ints, not floats (Struct carries doubles only).
    assert type(back["count"]) is int
    assert type(back["nested"]["list"][0]) is int
    assert type(back["ratio"]) is float


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_violations_with_their_path(bad: float) -> None:
    struct = struct_pb2.Struct()
    struct.update({"ok": 1, "items": [{"price": 0}]})
    struct["items"][0]["price"] = bad
    violations: list[FieldViolation] = []
    struct_from_proto(struct, "payload", violations)
    assert [v.field for v in violations] == ["payload.items[0].price"]


def test_value_to_proto_takes_any_json_value() -> None:
    assert value_to_proto("done").string_value == "done"
    assert value_to_proto(None).WhichOneof("kind") == "null_value"
    assert value_to_proto([1, {"a": "b"}]).list_value.values[1].struct_value["a"] == "b"
