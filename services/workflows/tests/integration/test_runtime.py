"""The runtime end to end in-process: steps, replay, retries, compensations, timers,
signals, operator tasks, cancel and idempotent start, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from hygoshop_platform.db import tenant_transaction
from hygoshop_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.domain.states import (
    TERMINAL_STEP_STATES,
    Decision,
    RunState,
    StepKind,
    StepState,
    TaskState,
)
from hygoshop_workflows.runtime import Registry, StepCall, WorkflowContext
from hygoshop_workflows.runtime.runs import RunStore

from .conftest import Runtime

pytestmark = pytest.mark.integration


def new_tenant() -> uuid.UUID:
    return uuid.uuid4()


async def test_steps_run_once_each_and_are_recorded(runtime: Runtime, vendor: FakeVendor) -> None:
    tenant = new_tenant()
    run, created = await runtime.runs.start(
        tenant, "test.vendor_steps", "order-1", {"vendor_url": vendor.url, "steps": 3}
    )
    assert created
    assert run.state == RunState.PENDING
    await runtime.start_worker()
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED, done
    assert done.result == {"steps": 3}
    assert [(s.name, s.state, s.attempts) for s in done.steps] == [
        (f"effect-{i}", StepState.SUCCEEDED, 1) for i in range(3)
    ]
    assert all(s.end_time is not None and s.start_time is not None for s in done.steps)
    assert vendor.effects == 3
    assert sum(vendor.idempotency_keys.values()) == 3


async def test_start_is_idempotent_per_business_key(runtime: Runtime, vendor: FakeVendor) -> None:
    tenant = new_tenant()
    input = {"vendor_url": vendor.url, "steps": 1}
    first, created = await runtime.runs.start(tenant, "test.vendor_steps", "k", input)
    again, created_again = await runtime.runs.start(tenant, "test.vendor_steps", "k", input)
    assert created
    assert not created_again
    assert again.run_id == first.run_id
    with pytest.raises(AlreadyExists):
        await runtime.runs.start(tenant, "test.vendor_steps", "k", {**input, "steps": 2})
    other_tenant, created_other = await runtime.runs.start(
        new_tenant(), "test.vendor_steps", "k", input
    )
    assert created_other
    assert other_tenant.run_id != first.run_id


async def test_start_refuses_unknown_types_and_bad_input(runtime: Runtime) -> None:
    tenant = new_tenant()
    with pytest.raises(InvalidArgument) as unknown:
        await runtime.runs.start(tenant, "no.such_type", "k", {})
    assert unknown.value.violations[0].field == "workflow_type"
    with pytest.raises(InvalidArgument) as version:
        await runtime.runs.start(tenant, "test.timer", "k", {}, version=9)
    assert version.value.violations[0].field == "version"
    runs, _ = await runtime.runs.list(
        tenant, workflow_type=None, state=None, page_size=10, page_token=""
    )
    assert runs == []


async def test_a_signal_sent_before_the_wait_is_received(runtime: Runtime) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(tenant, "test.signal_wait", "s-1", {})
    # No worker yet: the run has not reached its wait when both signals arrive.
    await runtime.runs.signal(tenant, run.run_id, "go", {"n": 1}, "req-1")
    await runtime.runs.signal(tenant, run.run_id, "go", {"n": 1}, "req-1")  # a retried request
    await runtime.runs.signal(tenant, run.run_id, "go", {"n": 2}, None)
    await runtime.start_worker()
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED, done
    assert done.result == {"first": {"n": 1}, "second": {"n": 2}}


async def test_a_signal_wakes_a_waiting_run_and_a_wait_times_out(runtime: Runtime) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(tenant, "test.signal_wait", "s-2", {"timeout": 0.5})
    await runtime.start_worker()
    waiting = await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    assert waiting.waiting_on == "signal:go"
    await runtime.runs.signal(tenant, run.run_id, "go", {"n": 7}, None)
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.result == {"first": {"n": 7}, "second": None}  # the second wait timed out
    with pytest.raises(FailedPrecondition):
        await runtime.runs.signal(tenant, run.run_id, "go", {}, None)


async def test_a_durable_timer_holds_no_worker_and_fires(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(
        tenant, "test.timer", "t-1", {"vendor_url": vendor.url, "seconds": 0.4}
    )
    await runtime.start_worker()
    waiting = await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    assert waiting.waiting_on == "timer"
    assert waiting.wake_time is not None
    assert vendor.paths == []
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED
    assert [s.kind for s in done.steps] == [StepKind.SLEEP, StepKind.STEP]
    assert vendor.paths == ["/after-timer"]


async def test_retries_then_compensations_in_reverse_then_failed(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(
        tenant, "test.saga", "saga-1", {"vendor_url": vendor.url, "fail_times": 10}
    )
    await runtime.start_worker()
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.FAILED
    assert done.error_type == "ConnectionError"
    assert "ship" in done.error_message
    assert "attempt 3" in done.error_message
    assert vendor.paths == [
        "/do/reserve",
        "/do/charge",
        "/flaky/1",
        "/flaky/2",
        "/flaky/3",
        "/undo/charge",
        "/undo/reserve",
    ]
    by_name = {s.name: s for s in done.steps}
    assert by_name["ship"].state == StepState.FAILED
    assert by_name["ship"].attempts == 3
    assert [s.name for s in done.steps if s.kind == StepKind.COMPENSATION] == [
        "compensate:charge",
        "compensate:reserve",
    ]


async def test_a_step_that_recovers_within_its_retries_succeeds(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(
        tenant, "test.saga", "saga-2", {"vendor_url": vendor.url, "fail_times": 2}
    )
    await runtime.start_worker()
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED, done
    ship = next(s for s in done.steps if s.name == "ship")
    assert ship.attempts == 3
    assert ship.state == StepState.SUCCEEDED
    assert not [p for p in vendor.paths if p.startswith("/undo")]


async def test_operator_task_claim_complete_wakes_the_run(runtime: Runtime) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(tenant, "test.approval", "refund-1", {"amount": 40})
    await runtime.start_worker()
    waiting = await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    assert waiting.waiting_on.startswith("task:")
    tasks, _ = await runtime.tasks.list(
        tenant, state=TaskState.OPEN, kind="test_review", page_size=10, page_token=""
    )
    assert len(tasks) == 1
    assert tasks[0].payload == {"amount": 40}
    task = tasks[0]
    with pytest.raises(FailedPrecondition):  # not claimed yet
        await runtime.tasks.complete(
            tenant, task.task_id, "op-1", Decision.APPROVE, payload=None, comment=""
        )
    claimed = await runtime.tasks.claim(tenant, task.task_id, "op-1", 60)
    assert claimed.state == TaskState.CLAIMED
    assert claimed.claimed_by == "op-1"
    with pytest.raises(FailedPrecondition):
        await runtime.tasks.claim(tenant, task.task_id, "op-2", 60)
    with pytest.raises(NotFound):
        await runtime.tasks.claim(new_tenant(), task.task_id, "op-3", 60)
    with pytest.raises(InvalidArgument) as bad:
        await runtime.tasks.complete(
            tenant, task.task_id, "op-1", Decision.EDIT, payload={"amount": -5}, comment=""
        )
    assert bad.value.violations[0].field == "payload.amount"
    done_task = await runtime.tasks.complete(
        tenant,
        task.task_id,
        "op-1",
        Decision.EDIT,
        payload={"amount": 25},
        comment="partial refund",
    )
    assert done_task.state == TaskState.COMPLETED
    assert done_task.completed_by == "op-1"
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED, done
    assert done.result == {"decision": "edit", "payload": {"amount": 25}, "by": "op-1"}


async def test_a_released_or_expired_claim_can_be_taken_by_another(runtime: Runtime) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(tenant, "test.approval", "refund-2", {"amount": 1})
    await runtime.start_worker()
    await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    (task,), _ = await runtime.tasks.list(tenant, state=None, kind=None, page_size=5, page_token="")
    await runtime.tasks.claim(tenant, task.task_id, "op-1", 60)
    with pytest.raises(FailedPrecondition):
        await runtime.tasks.release(tenant, task.task_id, "op-2")
    released = await runtime.tasks.release(tenant, task.task_id, "op-1")
    assert released.state == TaskState.OPEN
    await runtime.tasks.claim(tenant, task.task_id, "op-2", 0.2)
    await asyncio.sleep(0.3)
    assert (await runtime.tasks.get(tenant, task.task_id)).state == TaskState.OPEN
    taken = await runtime.tasks.claim(tenant, task.task_id, "op-3", 60)
    assert taken.claimed_by == "op-3"


async def test_an_unclaimed_task_past_its_sla_escalates_once(runtime: Runtime) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(
        tenant, "test.approval", "urgent-1", {"amount": 1, "kind": "test_urgent"}
    )
    await runtime.start_worker()
    await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    (task,), _ = await runtime.tasks.list(
        tenant, state=None, kind="test_urgent", page_size=5, page_token=""
    )
    for _ in range(100):
        task = await runtime.tasks.get(tenant, task.task_id)
        if task.escalated:
            break
        await asyncio.sleep(0.05)
    assert task.escalated
    assert task.escalate_time is not None
    await asyncio.sleep(0.5)  # more escalation passes: still one event
    async with tenant_transaction(runtime.pool, tenant) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM workflows.outbox WHERE type = 'workflows.task.escalated'"
        )
        row = await cur.fetchone()
    assert row is not None
    assert row.n == 1


async def test_cancel_stops_a_waiting_run(runtime: Runtime, vendor: FakeVendor) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(tenant, "test.approval", "refund-3", {"amount": 1})
    await runtime.start_worker()
    await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    requested = await runtime.runs.cancel(tenant, run.run_id)
    assert requested.cancel_requested
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.CANCELLED
    assert [(s.kind, s.state) for s in done.steps] == [
        (StepKind.OPERATOR_TASK, StepState.CANCELLED)
    ]
    (task,), _ = await runtime.tasks.list(tenant, state=None, kind=None, page_size=5, page_token="")
    assert task.state == TaskState.CANCELLED
    assert (await runtime.runs.cancel(tenant, run.run_id)).state == RunState.CANCELLED
    with pytest.raises(NotFound):
        await runtime.runs.cancel(new_tenant(), run.run_id)


async def test_cancel_during_a_backoff_compensates_and_closes_the_step(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = new_tenant()
    run, _ = await runtime.runs.start(
        tenant, "test.saga", "saga-3", {"vendor_url": vendor.url, "fail_times": 1, "slow_retry": 1}
    )
    await runtime.start_worker()
    waiting = await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    assert waiting.waiting_on == "retry:ship"
    assert waiting.steps[-1].state == StepState.RETRYING
    await runtime.runs.cancel(tenant, run.run_id)
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.CANCELLED
    assert vendor.paths == [
        "/do/reserve",
        "/do/charge",
        "/flaky/1",
        "/undo/charge",
        "/undo/reserve",
    ]
    ship = next(s for s in done.steps if s.name == "ship")
    assert (ship.state, ship.attempts, ship.wake_time) == (StepState.CANCELLED, 1, None)
    assert ship.error_type == "ConnectionError"  # why it was backing off stays on it
    assert ship.end_time is not None
    assert all(s.state in TERMINAL_STEP_STATES for s in done.steps)


def _changing_definition(first_step: str) -> Registry:
    """`test.changing@1` whose first step is named `first_step`: two builds of one version
    that disagree, as a definition edited under running runs would."""
    changing = Registry()

    async def noop(call: StepCall) -> str:
        return call.step

    @changing.workflow("test.changing", version=1)
    async def flow(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
        await ctx.step(first_step, noop)
        await ctx.wait_for_signal("go")
        return {}

    return changing


async def test_a_replay_that_asks_for_other_steps_fails_the_run_clearly(
    runtime: Runtime,
) -> None:
    tenant = new_tenant()
    before, after = _changing_definition("reserve"), _changing_definition("hold")
    old_store = RunStore(runtime.pool, before)
    run, _ = await old_store.start(tenant, "test.changing", "nd-1", {})
    old = await runtime.start_worker(definitions=before)
    await runtime.wait_for(tenant, run.run_id, lambda r: r.state == RunState.WAITING)
    await old.stop()
    runtime.workers.remove(old)
    await old_store.signal(tenant, run.run_id, "go", {}, None)
    await runtime.start_worker(definitions=after)  # replays "reserve" as "hold"
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.FAILED
    assert done.error_type == "hygoshop.NonDeterminism"
    assert "'reserve'" in done.error_message
    assert "'hold'" in done.error_message
    assert [s.name for s in done.steps] == ["reserve", "go"]  # nothing of the new build ran
