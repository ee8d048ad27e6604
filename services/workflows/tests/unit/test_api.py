"""WorkflowsApi: scopes, request validation and proto <-> domain translation.

The stores here are small in-memory stand-ins of RunStore / TaskStore that record what
they were asked and answer with records: this tests the translation layer only. The
stores' behaviour (idempotent start, claim races, tenancy) is tested against PostgreSQL
in the integration and end-to-end tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2

from hygoshop.workflows.v1 import workflows_pb2 as pb
from hygoshop_platform.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from hygoshop_platform.tenancy import Caller, reset_caller, set_caller
from hygoshop_workflows.api import WorkflowsApi
from hygoshop_workflows.domain.records import JsonObject, RunRecord, StepRecord, TaskRecord
from hygoshop_workflows.domain.states import Decision, RunState, StepKind, StepState, TaskState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TENANT = uuid.uuid4()
KEY_ID = "6f1c1f0e-0000-4000-8000-000000000001"
CTX: Any = None  # the servicer never uses the gRPC context


class StandInRuns:
    """Records calls; knows the runs it was given; raises NotFound like the real store."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.runs: dict[tuple[uuid.UUID, uuid.UUID], RunRecord] = {}
        self.next_token = ""

    def _get(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        try:
            return self.runs[(tenant_id, run_id)]
        except KeyError:
            raise NotFound("workflow run not found") from None

    async def start(
        self,
        tenant_id: uuid.UUID,
        workflow_type: str,
        business_key: str,
        input: JsonObject,
        *,
        version: int | None = None,
    ) -> tuple[RunRecord, bool]:
        self.calls.append(
            ("start", (tenant_id, workflow_type, business_key, input), {"version": version})
        )
        run = make_run(
            tenant_id, workflow_type=workflow_type, business_key=business_key, input=input
        )
        self.runs[(tenant_id, run.run_id)] = run
        return run, True

    async def get(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        self.calls.append(("get", (tenant_id, run_id), {}))
        return self._get(tenant_id, run_id)

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        workflow_type: str | None,
        state: RunState | None,
        page_size: int,
        page_token: str,
    ) -> tuple[Sequence[RunRecord], str]:
        kwargs = {
            "workflow_type": workflow_type,
            "state": state,
            "page_size": page_size,
            "page_token": page_token,
        }
        self.calls.append(("list", (tenant_id,), kwargs))
        runs = [r for (t, _), r in self.runs.items() if t == tenant_id]
        return [replace(r, steps=[]) for r in runs][:page_size], self.next_token

    async def cancel(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        self.calls.append(("cancel", (tenant_id, run_id), {}))
        return replace(self._get(tenant_id, run_id), cancel_requested=True)

    async def signal(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        name: str,
        payload: JsonObject,
        request_id: str | None,
    ) -> RunRecord:
        self.calls.append(("signal", (tenant_id, run_id, name, payload, request_id), {}))
        return self._get(tenant_id, run_id)


class StandInTasks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.tasks: dict[tuple[uuid.UUID, uuid.UUID], TaskRecord] = {}

    def _get(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> TaskRecord:
        try:
            return self.tasks[(tenant_id, task_id)]
        except KeyError:
            raise NotFound("operator task not found") from None

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        state: TaskState | None,
        kind: str | None,
        page_size: int,
        page_token: str,
    ) -> tuple[Sequence[TaskRecord], str]:
        kwargs = {"state": state, "kind": kind, "page_size": page_size, "page_token": page_token}
        self.calls.append(("list", (tenant_id,), kwargs))
        return [t for (tenant, _), t in self.tasks.items() if tenant == tenant_id], "next"

    async def get(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> TaskRecord:
        self.calls.append(("get", (tenant_id, task_id), {}))
        return self._get(tenant_id, task_id)

    async def claim(
        self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str, lease_seconds: float
    ) -> TaskRecord:
        self.calls.append(("claim", (tenant_id, task_id, operator, lease_seconds), {}))
        return replace(
            self._get(tenant_id, task_id),
            state=TaskState.CLAIMED,
            claimed_by=operator,
            claim_expire_time=T0 + timedelta(seconds=lease_seconds),
        )

    async def release(self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str) -> TaskRecord:
        self.calls.append(("release", (tenant_id, task_id, operator), {}))
        return self._get(tenant_id, task_id)

    async def complete(
        self,
        tenant_id: uuid.UUID,
        task_id: uuid.UUID,
        operator: str,
        *,
        decision: Decision,
        payload: JsonObject | None,
        comment: str,
    ) -> TaskRecord:
        self.calls.append(
            ("complete", (tenant_id, task_id, operator, decision, payload, comment), {})
        )
        return replace(
            self._get(tenant_id, task_id),
            state=TaskState.COMPLETED,
            decision=decision,
            outcome_payload=payload,
            comment=comment,
            completed_by=operator,
        )


def make_run(tenant_id: uuid.UUID = TENANT, **overrides: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "run_id": uuid.uuid4(),
        "workflow_type": "listing_change_approval",
        "version": 1,
        "business_key": "listing-1",
        "input": {},
        "state": RunState.PENDING,
        "waiting_on": "",
        "cancel_requested": False,
        "result": None,
        "error_type": "",
        "error_message": "",
        "lease_losses": 0,
        "create_time": T0,
        "update_time": T0,
        "end_time": None,
    }
    return RunRecord(**(fields | overrides))


def make_task(tenant_id: uuid.UUID = TENANT) -> TaskRecord:
    return TaskRecord(
        tenant_id=tenant_id,
        task_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        kind="listing_change_approval",
        title="Approve",
        payload={"price": 10},
        state=TaskState.OPEN,
        claimed_by="",
        claim_expire_time=None,
        decision=None,
        outcome_payload=None,
        comment="",
        completed_by="",
        due_time=T0 + timedelta(hours=1),
        escalated=False,
        escalate_time=None,
        create_time=T0,
        update_time=T0,
        end_time=None,
    )


@contextmanager
def calling_as(
    *scopes: str, tenant_id: uuid.UUID | None = TENANT, key_id: str | None = KEY_ID
) -> Iterator[None]:
    token = set_caller(Caller(tenant_id=tenant_id, scopes=frozenset(scopes), key_id=key_id))
    try:
        yield
    finally:
        reset_caller(token)


@pytest.fixture
def runs() -> StandInRuns:
    return StandInRuns()


@pytest.fixture
def tasks() -> StandInTasks:
    return StandInTasks()


@pytest.fixture
def api(runs: StandInRuns, tasks: StandInTasks) -> WorkflowsApi:
    return WorkflowsApi(runs, tasks)


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def violated(exc: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in exc.value.violations}


# --- scopes ------------------------------------------------------------------------------


async def test_reads_need_the_read_scope_and_writes_the_write_scope(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    run = make_run()
    runs.runs[(TENANT, run.run_id)] = run
    with calling_as("workflows:read"):
        assert (
            await api.GetWorkflowRun(pb.GetWorkflowRunRequest(run_id=str(run.run_id)), CTX)
        ).run_id
        await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(), CTX)
        await api.ListOperatorTasks(pb.ListOperatorTasksRequest(), CTX)
        with pytest.raises(PermissionDenied, match="workflows:write"):
            await api.StartWorkflowRun(
                pb.StartWorkflowRunRequest(workflow_type="t", business_key="k"), CTX
            )
        with pytest.raises(PermissionDenied, match="workflows:write"):
            await api.CancelWorkflowRun(pb.CancelWorkflowRunRequest(run_id=str(run.run_id)), CTX)
    with calling_as("catalog:read"), pytest.raises(PermissionDenied, match="workflows:read"):
        await api.GetOperatorTask(pb.GetOperatorTaskRequest(task_id=str(uuid.uuid4())), CTX)
    with calling_as("admin"):  # a tenant admin key holds every scope of its tenant
        await api.CancelWorkflowRun(pb.CancelWorkflowRunRequest(run_id=str(run.run_id)), CTX)
    with calling_as(tenant_id=None), pytest.raises(Unauthenticated):
        await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(), CTX)
    with calling_as("platform:admin", tenant_id=None), pytest.raises(PermissionDenied):
        await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(), CTX)


# --- runs --------------------------------------------------------------------------------


async def test_start_passes_the_request_and_returns_the_run(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    request = pb.StartWorkflowRunRequest(
        workflow_type="listing_change_approval",
        business_key="listing-7",
        input=struct({"listing_id": "7", "changes": {"price": 12, "tags": ["a"]}}),
    )
    with calling_as("workflows:write"):
        run = await api.StartWorkflowRun(request, CTX)
        pinned = pb.StartWorkflowRunRequest(workflow_type="t", business_key="k", version=3)
        await api.StartWorkflowRun(pinned, CTX)
    first, second = runs.calls
    assert first == (
        "start",
        (
            TENANT,
            "listing_change_approval",
            "listing-7",
            {"listing_id": "7", "changes": {"price": 12, "tags": ["a"]}},
        ),
        {"version": None},  # 0: the newest registered version
    )
    assert second[2] == {"version": 3}
    assert run.business_key == "listing-7"
    assert run.state == pb.WORKFLOW_RUN_STATE_PENDING
    assert uuid.UUID(run.run_id)


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"business_key": "k"}, {"workflow_type"}),
        ({"workflow_type": "  ", "business_key": "k"}, {"workflow_type"}),
        ({"workflow_type": "t" * 101, "business_key": "k"}, {"workflow_type"}),
        ({"workflow_type": "t"}, {"business_key"}),
        ({"workflow_type": "t", "business_key": "k" * 201}, {"business_key"}),
        ({"workflow_type": "t", "business_key": "k", "version": -1}, {"version"}),
        ({}, {"workflow_type", "business_key"}),
    ],
)
async def test_start_refuses_invalid_requests_naming_the_fields(
    api: WorkflowsApi, runs: StandInRuns, request_fields: dict[str, Any], fields: set[str]
) -> None:
    with calling_as("workflows:write"), pytest.raises(InvalidArgument) as exc:
        await api.StartWorkflowRun(pb.StartWorkflowRunRequest(**request_fields), CTX)
    assert violated(exc) == fields
    assert runs.calls == []


async def test_start_accepts_a_200_character_business_key(api: WorkflowsApi) -> None:
    with calling_as("workflows:write"):
        run = await api.StartWorkflowRun(
            pb.StartWorkflowRunRequest(workflow_type="t", business_key="k" * 200), CTX
        )
    assert run.business_key == "k" * 200


async def test_start_refuses_a_non_finite_number_in_the_input(api: WorkflowsApi) -> None:
    request = pb.StartWorkflowRunRequest(workflow_type="t", business_key="k")
    request.input["price"] = float("nan")
    with calling_as("workflows:write"), pytest.raises(InvalidArgument) as exc:
        await api.StartWorkflowRun(request, CTX)
    assert violated(exc) == {"input.price"}


async def test_get_returns_the_step_history(api: WorkflowsApi, runs: StandInRuns) -> None:
    step = StepRecord(
        seq=0,
        name="load",
        kind=StepKind.STEP,
        state=StepState.SUCCEEDED,
        attempts=1,
        result={"a": 1},
    )
    run = make_run(steps=[step], state=RunState.RUNNING)
    runs.runs[(TENANT, run.run_id)] = run
    with calling_as("workflows:read"):
        got = await api.GetWorkflowRun(pb.GetWorkflowRunRequest(run_id=str(run.run_id)), CTX)
    assert got.state == pb.WORKFLOW_RUN_STATE_RUNNING
    assert [(s.name, s.attempts) for s in got.steps] == [("load", 1)]


async def test_malformed_ids_answer_not_found_and_empty_ids_invalid_argument(
    api: WorkflowsApi, runs: StandInRuns, tasks: StandInTasks
) -> None:
    with calling_as("workflows:read", "workflows:write"):
        with pytest.raises(NotFound):
            await api.GetWorkflowRun(pb.GetWorkflowRunRequest(run_id="not-a-uuid"), CTX)
        with pytest.raises(NotFound):
            await api.ClaimOperatorTask(pb.ClaimOperatorTaskRequest(task_id="nope"), CTX)
        with pytest.raises(InvalidArgument) as exc:
            await api.CancelWorkflowRun(pb.CancelWorkflowRunRequest(), CTX)
        assert violated(exc) == {"run_id"}
        with pytest.raises(InvalidArgument) as exc:
            await api.GetOperatorTask(pb.GetOperatorTaskRequest(), CTX)
        assert violated(exc) == {"task_id"}
        # A well-formed id the store does not know: NOT_FOUND, worded like a malformed one.
        with pytest.raises(NotFound):
            await api.GetWorkflowRun(pb.GetWorkflowRunRequest(run_id=str(uuid.uuid4())), CTX)
    assert [c[0] for c in runs.calls] == ["get"]
    assert tasks.calls == []


async def test_list_runs_maps_filters_and_pages(api: WorkflowsApi, runs: StandInRuns) -> None:
    step = StepRecord(seq=0, name="s", kind=StepKind.STEP, state=StepState.RUNNING, attempts=0)
    run = make_run(steps=[step])
    runs.runs[(TENANT, run.run_id)] = run
    runs.next_token = "tok2"
    with calling_as("workflows:read"):
        page = await api.ListWorkflowRuns(
            pb.ListWorkflowRunsRequest(
                workflow_type="listing_change_approval",
                state=pb.WORKFLOW_RUN_STATE_WAITING,
                page_size=10,
                page_token="tok1",
            ),
            CTX,
        )
        await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(page_size=1000), CTX)
    filtered, unfiltered = runs.calls
    assert filtered[2] == {
        "workflow_type": "listing_change_approval",
        "state": RunState.WAITING,
        "page_size": 10,
        "page_token": "tok1",
    }
    assert unfiltered[2] == {
        "workflow_type": None,
        "state": None,
        "page_size": 100,
        "page_token": "",
    }
    assert [r.run_id for r in page.runs] == [str(run.run_id)]
    assert list(page.runs[0].steps) == []
    assert page.next_page_token == "tok2"


async def test_list_runs_default_page_size_and_bad_filters(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    with calling_as("workflows:read"):
        await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(), CTX)
        assert runs.calls[0][2]["page_size"] == 25
        with pytest.raises(InvalidArgument) as exc:
            await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(state=99), CTX)  # type: ignore[arg-type]
        assert violated(exc) == {"state"}
        with pytest.raises(InvalidArgument) as exc:
            await api.ListWorkflowRuns(pb.ListWorkflowRunsRequest(page_size=-1), CTX)
        assert violated(exc) == {"page_size"}


async def test_cancel_returns_the_run_with_cancel_requested(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    run = make_run()
    runs.runs[(TENANT, run.run_id)] = run
    with calling_as("workflows:write"):
        got = await api.CancelWorkflowRun(pb.CancelWorkflowRunRequest(run_id=str(run.run_id)), CTX)
    assert got.cancel_requested
    assert runs.calls == [("cancel", (TENANT, run.run_id), {})]


async def test_signal_passes_name_payload_and_request_id(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    run = make_run()
    runs.runs[(TENANT, run.run_id)] = run
    with calling_as("workflows:write"):
        await api.SignalWorkflowRun(
            pb.SignalWorkflowRunRequest(
                run_id=str(run.run_id),
                signal_name="order_placed",
                payload=struct({"order_id": "o-1", "total": 30}),
                request_id="req-1",
            ),
            CTX,
        )
        await api.SignalWorkflowRun(
            pb.SignalWorkflowRunRequest(run_id=str(run.run_id), signal_name="ping"), CTX
        )
    assert runs.calls == [
        (
            "signal",
            (TENANT, run.run_id, "order_placed", {"order_id": "o-1", "total": 30}, "req-1"),
            {},
        ),
        ("signal", (TENANT, run.run_id, "ping", {}, None), {}),
    ]


async def test_signal_refuses_a_missing_name_and_a_long_request_id(
    api: WorkflowsApi, runs: StandInRuns
) -> None:
    request = pb.SignalWorkflowRunRequest(run_id=str(uuid.uuid4()), request_id="r" * 101)
    with calling_as("workflows:write"), pytest.raises(InvalidArgument) as exc:
        await api.SignalWorkflowRun(request, CTX)
    assert violated(exc) == {"signal_name", "request_id"}
    assert runs.calls == []


# --- operator tasks ----------------------------------------------------------------------


async def test_list_tasks_maps_filters(api: WorkflowsApi, tasks: StandInTasks) -> None:
    task = make_task()
    tasks.tasks[(TENANT, task.task_id)] = task
    with calling_as("workflows:read"):
        page = await api.ListOperatorTasks(
            pb.ListOperatorTasksRequest(
                state=pb.OPERATOR_TASK_STATE_OPEN, kind="listing_change_approval", page_token="t"
            ),
            CTX,
        )
        await api.ListOperatorTasks(pb.ListOperatorTasksRequest(), CTX)
        with pytest.raises(InvalidArgument) as exc:
            await api.ListOperatorTasks(pb.ListOperatorTasksRequest(state=42), CTX)  # type: ignore[arg-type]
        assert violated(exc) == {"state"}
    assert [t.task_id for t in page.tasks] == [str(task.task_id)]
    assert page.next_page_token == "next"
    assert tasks.calls[0][2] == {
        "state": TaskState.OPEN,
        "kind": "listing_change_approval",
        "page_size": 25,
        "page_token": "t",
    }
    assert tasks.calls[1][2] == {"state": None, "kind": None, "page_size": 25, "page_token": ""}


async def test_claim_as_the_calling_key_with_the_default_or_asked_lease(
    api: WorkflowsApi, tasks: StandInTasks
) -> None:
    task = make_task()
    tasks.tasks[(TENANT, task.task_id)] = task
    with calling_as("workflows:write"):
        claimed = await api.ClaimOperatorTask(
            pb.ClaimOperatorTaskRequest(task_id=str(task.task_id)), CTX
        )
        await api.ClaimOperatorTask(
            pb.ClaimOperatorTaskRequest(
                task_id=str(task.task_id),
                lease_duration=duration_pb2.Duration(seconds=90, nanos=500_000_000),
            ),
            CTX,
        )
        await api.ClaimOperatorTask(
            pb.ClaimOperatorTaskRequest(
                task_id=str(task.task_id), lease_duration=duration_pb2.Duration(seconds=86400)
            ),
            CTX,
        )
    assert [c[1][2:] for c in tasks.calls] == [(KEY_ID, 900.0), (KEY_ID, 90.5), (KEY_ID, 86400.0)]
    assert claimed.state == pb.OPERATOR_TASK_STATE_CLAIMED
    assert claimed.claimed_by == KEY_ID


@pytest.mark.parametrize(
    "duration",
    [
        duration_pb2.Duration(),
        duration_pb2.Duration(nanos=999_999_999),
        duration_pb2.Duration(seconds=-60),
        duration_pb2.Duration(seconds=86401),
    ],
)
async def test_claim_refuses_a_lease_out_of_range(
    api: WorkflowsApi, tasks: StandInTasks, duration: duration_pb2.Duration
) -> None:
    request = pb.ClaimOperatorTaskRequest(task_id=str(uuid.uuid4()), lease_duration=duration)
    with calling_as("workflows:write"), pytest.raises(InvalidArgument) as exc:
        await api.ClaimOperatorTask(request, CTX)
    assert violated(exc) == {"lease_duration"}
    assert tasks.calls == []


async def test_task_writes_need_a_key_that_names_the_operator(
    api: WorkflowsApi, tasks: StandInTasks
) -> None:
    task = make_task()
    tasks.tasks[(TENANT, task.task_id)] = task
    with calling_as("workflows:write", key_id=None), pytest.raises(PermissionDenied):
        await api.ReleaseOperatorTask(pb.ReleaseOperatorTaskRequest(task_id=str(task.task_id)), CTX)
    assert tasks.calls == []
    with calling_as("workflows:write"):
        await api.ReleaseOperatorTask(pb.ReleaseOperatorTaskRequest(task_id=str(task.task_id)), CTX)
    assert tasks.calls == [("release", (TENANT, task.task_id, KEY_ID), {})]


async def test_complete_maps_each_decision(api: WorkflowsApi, tasks: StandInTasks) -> None:
    task = make_task()
    tasks.tasks[(TENANT, task.task_id)] = task
    task_id = str(task.task_id)
    with calling_as("workflows:write"):
        approved = await api.CompleteOperatorTask(
            pb.CompleteOperatorTaskRequest(
                task_id=task_id, decision=pb.DECISION_APPROVE, comment="ok"
            ),
            CTX,
        )
        await api.CompleteOperatorTask(
            pb.CompleteOperatorTaskRequest(task_id=task_id, decision=pb.DECISION_REJECT), CTX
        )
        edited = await api.CompleteOperatorTask(
            pb.CompleteOperatorTaskRequest(
                task_id=task_id, decision=pb.DECISION_EDIT, payload=struct({"price": 11})
            ),
            CTX,
        )
    assert [c[1][2:] for c in tasks.calls] == [
        (KEY_ID, Decision.APPROVE, None, "ok"),
        (KEY_ID, Decision.REJECT, None, ""),
        (KEY_ID, Decision.EDIT, {"price": 11}, ""),
    ]
    assert approved.decision == pb.DECISION_APPROVE
    assert approved.completed_by == KEY_ID
    assert edited.decision == pb.DECISION_EDIT
    assert edited.outcome_payload["price"] == 11


async def test_an_empty_edit_payload_is_a_payload(api: WorkflowsApi, tasks: StandInTasks) -> None:
    task = make_task()
    tasks.tasks[(TENANT, task.task_id)] = task
    request = pb.CompleteOperatorTaskRequest(task_id=str(task.task_id), decision=pb.DECISION_EDIT)
    request.payload.SetInParent()  # `"payload": {}` in JSON: present, with no fields
    with calling_as("workflows:write"):
        await api.CompleteOperatorTask(request, CTX)
    assert tasks.calls[0][1][4] == {}


@pytest.mark.parametrize(
    "case",
    [
        (pb.DECISION_UNSPECIFIED, None, "", {"decision"}),
        (7, None, "", {"decision"}),
        (pb.DECISION_EDIT, None, "", {"payload"}),
        (pb.DECISION_APPROVE, {"price": 1}, "", {"payload"}),
        (pb.DECISION_REJECT, None, "c" * 2001, {"comment"}),
        (pb.DECISION_EDIT, {"price": float("inf")}, "", {"payload.price"}),
    ],
)
async def test_complete_refuses_invalid_decisions(
    api: WorkflowsApi,
    tasks: StandInTasks,
    case: tuple[int, dict[str, Any] | None, str, set[str]],
) -> None:
    decision, payload, comment, fields = case
    request = pb.CompleteOperatorTaskRequest(
        task_id=str(uuid.uuid4()),
        decision=decision,  # type: ignore[arg-type]
        comment=comment,
        payload=None if payload is None else struct(payload),
    )
    with calling_as("workflows:write"), pytest.raises(InvalidArgument) as exc:
        await api.CompleteOperatorTask(request, CTX)
    assert violated(exc) == fields
    assert tasks.calls == []
