"""WorkflowService: checks scopes, validates and maps proto <-> domain, calls the stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from hygoshop.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from hygoshop_platform.access import require_tenant
from hygoshop_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    require,
)
from hygoshop_platform.pagination import page_size
from hygoshop_platform.server import Context
from hygoshop_platform.tenancy import current_caller
from hygoshop_workflows.convert import (
    DECISION_FROM_PROTO,
    RUN_STATE_FROM_PROTO,
    TASK_STATE_FROM_PROTO,
    run_to_proto,
    struct_from_proto,
    task_to_proto,
)
from hygoshop_workflows.domain.records import JsonObject, RunRecord, TaskRecord
from hygoshop_workflows.domain.states import Decision, RunState, TaskState

READ = "workflows:read"
WRITE = "workflows:write"
DEFAULT_PAGE_SIZE = 25
MAX_WORKFLOW_TYPE = 100
MAX_BUSINESS_KEY = 200
MAX_SIGNAL_NAME = 100
MAX_REQUEST_ID = 100
MAX_KIND = 100
MAX_COMMENT = 2000
DEFAULT_LEASE_SECONDS = 15 * 60.0
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 24 * 3600.0


class Runs(Protocol):
    """What the API needs of the run store (hygoshop_workflows.runtime.runs.RunStore)."""

    async def start(
        self,
        tenant_id: uuid.UUID,
        workflow_type: str,
        business_key: str,
        input: JsonObject,
        *,
        version: int | None = None,
    ) -> tuple[RunRecord, bool]: ...

    async def get(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord: ...

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        workflow_type: str | None,
        state: RunState | None,
        page_size: int,
        page_token: str,
    ) -> tuple[Sequence[RunRecord], str]: ...

    async def cancel(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord: ...

    async def signal(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        name: str,
        payload: JsonObject,
        request_id: str | None,
    ) -> RunRecord: ...


class Tasks(Protocol):
    """What the API needs of the task store (hygoshop_workflows.runtime.tasks.TaskStore)."""

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        state: TaskState | None,
        kind: str | None,
        page_size: int,
        page_token: str,
    ) -> tuple[Sequence[TaskRecord], str]: ...

    async def get(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> TaskRecord: ...

    async def claim(
        self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str, lease_seconds: float
    ) -> TaskRecord: ...

    async def release(
        self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str
    ) -> TaskRecord: ...

    async def complete(
        self,
        tenant_id: uuid.UUID,
        task_id: uuid.UUID,
        operator: str,
        *,
        decision: Decision,
        payload: JsonObject | None,
        comment: str,
    ) -> TaskRecord: ...


def _id(value: str, field: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        # A malformed id cannot name any run or task: answer as for a missing one.
        if not value:
            raise InvalidArgument([FieldViolation(field, "is required")]) from None
        raise NotFound(f"{what} not found") from None


RUN = "workflow run"
TASK = "operator task"


@contextmanager
def _missing(what: str) -> Iterator[None]:
    """A store's NOT_FOUND names the id; the answer names nothing, so another tenant's id and
    an id that never existed get byte-identical answers (what `_id` says for a bad id)."""
    try:
        yield
    except NotFound:
        raise NotFound(f"{what} not found") from None


def _text(
    value: str, field: str, limit: int, violations: list[FieldViolation], *, required: bool
) -> None:
    if required and not value.strip():
        violations.append(FieldViolation(field, "is required"))
    elif len(value) > limit:
        violations.append(FieldViolation(field, f"must be at most {limit} characters"))


def _operator() -> str:
    """The operator is the API key: claims and decisions are recorded under its id."""
    key_id = current_caller().key_id
    if not key_id:
        raise PermissionDenied("operator tasks need an API key that names its holder")
    return key_id


class WorkflowsApi(workflows_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, runs: Runs, tasks: Tasks) -> None:
        self._runs = runs
        self._tasks = tasks

    # --- runs ----------------------------------------------------------------------------

    async def StartWorkflowRun(
        self, request: workflows_pb2.StartWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        tenant_id = require_tenant(WRITE)
        violations: list[FieldViolation] = []
        _text(request.workflow_type, "workflow_type", MAX_WORKFLOW_TYPE, violations, required=True)
        _text(request.business_key, "business_key", MAX_BUSINESS_KEY, violations, required=True)
        if request.version < 0:
            violations.append(FieldViolation("version", "must not be negative"))
        data = struct_from_proto(request.input, "input", violations)
        require(violations)
        run, _created = await self._runs.start(
            tenant_id,
            request.workflow_type,
            request.business_key,
            data,
            version=request.version or None,
        )
        return run_to_proto(run)

    async def GetWorkflowRun(
        self, request: workflows_pb2.GetWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        tenant_id = require_tenant(READ)
        with _missing(RUN):
            run = await self._runs.get(tenant_id, _id(request.run_id, "run_id", RUN))
        return run_to_proto(run)

    async def ListWorkflowRuns(
        self, request: workflows_pb2.ListWorkflowRunsRequest, context: Context
    ) -> workflows_pb2.ListWorkflowRunsResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE)
        violations: list[FieldViolation] = []
        _text(request.workflow_type, "workflow_type", MAX_WORKFLOW_TYPE, violations, required=False)
        state: RunState | None = None
        if request.state != workflows_pb2.WORKFLOW_RUN_STATE_UNSPECIFIED:
            state = RUN_STATE_FROM_PROTO.get(request.state)
            if state is None:
                violations.append(FieldViolation("state", "unknown state"))
        require(violations)
        runs, next_token = await self._runs.list(
            tenant_id,
            workflow_type=request.workflow_type or None,
            state=state,
            page_size=size,
            page_token=request.page_token,
        )
        return workflows_pb2.ListWorkflowRunsResponse(
            runs=[run_to_proto(r, with_steps=False) for r in runs], next_page_token=next_token
        )

    async def CancelWorkflowRun(
        self, request: workflows_pb2.CancelWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        tenant_id = require_tenant(WRITE)
        with _missing(RUN):
            run = await self._runs.cancel(tenant_id, _id(request.run_id, "run_id", RUN))
        return run_to_proto(run)

    async def SignalWorkflowRun(
        self, request: workflows_pb2.SignalWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        tenant_id = require_tenant(WRITE)
        run_id = _id(request.run_id, "run_id", RUN)
        violations: list[FieldViolation] = []
        _text(request.signal_name, "signal_name", MAX_SIGNAL_NAME, violations, required=True)
        _text(request.request_id, "request_id", MAX_REQUEST_ID, violations, required=False)
        payload = struct_from_proto(request.payload, "payload", violations)
        require(violations)
        with _missing(RUN):
            run = await self._runs.signal(
                tenant_id, run_id, request.signal_name, payload, request.request_id or None
            )
        return run_to_proto(run)

    # --- operator tasks ------------------------------------------------------------------

    async def ListOperatorTasks(
        self, request: workflows_pb2.ListOperatorTasksRequest, context: Context
    ) -> workflows_pb2.ListOperatorTasksResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE)
        violations: list[FieldViolation] = []
        _text(request.kind, "kind", MAX_KIND, violations, required=False)
        state: TaskState | None = None
        if request.state != workflows_pb2.OPERATOR_TASK_STATE_UNSPECIFIED:
            state = TASK_STATE_FROM_PROTO.get(request.state)
            if state is None:
                violations.append(FieldViolation("state", "unknown state"))
        require(violations)
        tasks, next_token = await self._tasks.list(
            tenant_id,
            state=state,
            kind=request.kind or None,
            page_size=size,
            page_token=request.page_token,
        )
        return workflows_pb2.ListOperatorTasksResponse(
            tasks=[task_to_proto(t) for t in tasks], next_page_token=next_token
        )

    async def GetOperatorTask(
        self, request: workflows_pb2.GetOperatorTaskRequest, context: Context
    ) -> workflows_pb2.OperatorTask:
        tenant_id = require_tenant(READ)
        with _missing(TASK):
            task = await self._tasks.get(tenant_id, _id(request.task_id, "task_id", TASK))
        return task_to_proto(task)

    async def ClaimOperatorTask(
        self, request: workflows_pb2.ClaimOperatorTaskRequest, context: Context
    ) -> workflows_pb2.OperatorTask:
        tenant_id = require_tenant(WRITE)
        task_id = _id(request.task_id, "task_id", TASK)
        lease_seconds = DEFAULT_LEASE_SECONDS
        if request.HasField("lease_duration"):
            duration = request.lease_duration
            lease_seconds = duration.seconds + duration.nanos / 1e9
            if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
                raise InvalidArgument(
                    [FieldViolation("lease_duration", "must be between 1 second and 24 hours")]
                )
        with _missing(TASK):
            task = await self._tasks.claim(tenant_id, task_id, _operator(), lease_seconds)
        return task_to_proto(task)

    async def ReleaseOperatorTask(
        self, request: workflows_pb2.ReleaseOperatorTaskRequest, context: Context
    ) -> workflows_pb2.OperatorTask:
        tenant_id = require_tenant(WRITE)
        task_id = _id(request.task_id, "task_id", TASK)
        with _missing(TASK):
            task = await self._tasks.release(tenant_id, task_id, _operator())
        return task_to_proto(task)

    async def CompleteOperatorTask(
        self, request: workflows_pb2.CompleteOperatorTaskRequest, context: Context
    ) -> workflows_pb2.OperatorTask:
        tenant_id = require_tenant(WRITE)
        task_id = _id(request.task_id, "task_id", TASK)
        violations: list[FieldViolation] = []
        decision = DECISION_FROM_PROTO.get(request.decision)
        if request.decision == workflows_pb2.DECISION_UNSPECIFIED:
            violations.append(FieldViolation("decision", "is required"))
        elif decision is None:
            violations.append(FieldViolation("decision", "unknown decision"))
        payload: JsonObject | None = None
        if request.HasField("payload"):
            if decision is Decision.EDIT:
                payload = struct_from_proto(request.payload, "payload", violations)
            elif decision is not None:
                violations.append(FieldViolation("payload", "is only taken with DECISION_EDIT"))
        elif decision is Decision.EDIT:
            violations.append(FieldViolation("payload", "is required with DECISION_EDIT"))
        _text(request.comment, "comment", MAX_COMMENT, violations, required=False)
        require(violations)
        assert decision is not None  # require_valid refused every other case
        with _missing(TASK):
            task = await self._tasks.complete(
                tenant_id,
                task_id,
                _operator(),
                decision=decision,
                payload=payload,
                comment=request.comment,
            )
        return task_to_proto(task)
