"""Workers that die in the middle of a step, in-process (`crash` leaves leases to expire, as
kill -9 does; tests/reliability does it to real processes): a slow attempt shows in the
history while it runs, an attempt lost with its worker is counted, and a step that kills
every worker that runs it ends the run instead of looping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.config import WorkerOptions
from hygoshop_workflows.domain.records import RunRecord, StepRecord
from hygoshop_workflows.domain.states import RunState, StepState
from hygoshop_workflows.runtime.context import WORKER_LOST

from .conftest import FAST, Runtime, crash

pytestmark = pytest.mark.integration

SHORT = replace(FAST, lease_seconds=0.4, heartbeat_seconds=0.1, poll_seconds=0.05)
"""Leases that run out quickly after a crash."""


def slow_step(run: RunRecord) -> StepRecord | None:
    return next((s for s in run.steps if s.name == "slow"), None)


def running_attempt(attempt: int) -> Callable[[RunRecord], bool]:
    def check(run: RunRecord) -> bool:
        step = slow_step(run)
        return step is not None and (step.state, step.attempts) == (StepState.RUNNING, attempt)

    return check


async def crash_in_each_attempt(
    runtime: Runtime,
    tenant: uuid.UUID,
    run_id: uuid.UUID,
    options: WorkerOptions,
    crashes: int,
) -> None:
    """Start a worker, let it get into attempt n of "slow" (marked in the history), kill it;
    `crashes` times, then start one that is left alive."""
    for attempt in range(1, crashes + 1):
        worker = await runtime.start_worker(options, name=f"doomed-{attempt}")
        seen = await runtime.wait_for(tenant, run_id, running_attempt(attempt))
        assert running_attempt(attempt)(seen), seen
        await crash(worker)
        runtime.workers.remove(worker)
    await runtime.start_worker(options, name="survivor")


async def test_a_slow_attempt_shows_as_running_with_the_last_error(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = uuid.uuid4()
    run, _ = await runtime.runs.start(
        tenant,
        "test.slow_step",
        "slow-1",
        {"vendor_url": vendor.url, "fail_times": 1, "hold_seconds": 1.0},
    )
    await runtime.start_worker(SHORT)
    during = await runtime.wait_for(tenant, run.run_id, running_attempt(2))
    step = slow_step(during)
    assert step is not None
    assert step.state == StepState.RUNNING, during
    assert step.attempts == 2
    assert step.error_type == "ConnectionError"  # why attempt 1 failed
    assert step.start_time is not None
    assert step.end_time is None
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.SUCCEEDED, done
    step = slow_step(done)
    assert step is not None
    assert (step.state, step.attempts, step.error_type) == (StepState.SUCCEEDED, 2, "")
    assert done.result == {"slow": 2}


async def test_an_attempt_lost_with_its_worker_counts_against_max_attempts(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    tenant = uuid.uuid4()
    run, _ = await runtime.runs.start(
        tenant,
        "test.slow_step",
        "slow-2",
        {"vendor_url": vendor.url, "hold_seconds": 30, "max_attempts": 2},
    )
    await crash_in_each_attempt(runtime, tenant, run.run_id, SHORT, crashes=2)
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.FAILED, done
    assert done.error_type == WORKER_LOST
    step = slow_step(done)
    assert step is not None
    assert (step.state, step.attempts) == (StepState.FAILED, 2)
    assert step.error_message == "attempt 2 of 2 was lost with its worker"
    # Two attempts, as the policy allows (not a third), then "before" was undone.
    assert vendor.paths == ["/before", "/slow/1", "/slow/2", "/undo/before"]


async def test_a_step_that_kills_every_worker_fails_after_max_lease_losses(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    """Its attempts are allowed 10 times, but 3 lost leases in a row end it, although a
    step ("before") was recorded, so every new worker loads the history first."""
    options = replace(SHORT, max_lease_losses=3)
    tenant = uuid.uuid4()
    run, _ = await runtime.runs.start(
        tenant,
        "test.slow_step",
        "slow-3",
        {"vendor_url": vendor.url, "hold_seconds": 30, "max_attempts": 10},
    )
    await crash_in_each_attempt(runtime, tenant, run.run_id, options, crashes=3)
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.FAILED, done
    assert done.error_type == WORKER_LOST
    step = slow_step(done)
    assert step is not None
    assert (step.state, step.attempts) == (StepState.FAILED, 3)
    assert "lost too many times in a row" in step.error_message
    assert vendor.paths == ["/before", "/slow/1", "/slow/2", "/slow/3", "/undo/before"]


async def test_a_last_attempt_lost_at_once_is_not_tried_again(
    runtime: Runtime, vendor: FakeVendor
) -> None:
    """`max_attempts=1` is at most once: the last attempt is marked before it starts, so a
    worker killed a moment into it (long before a slow attempt's mark) is not followed by a
    second call of the vendor."""
    options = replace(SHORT, running_mark_seconds=60.0)
    tenant = uuid.uuid4()
    run, _ = await runtime.runs.start(
        tenant,
        "test.slow_step",
        "slow-4",
        {"vendor_url": vendor.url, "hold_seconds": 30, "max_attempts": 1},
    )
    doomed = await runtime.start_worker(options, name="doomed")
    await wait_until(lambda: "/slow/1" in vendor.paths)
    await crash(doomed)
    runtime.workers.remove(doomed)
    await runtime.start_worker(options, name="survivor")
    done = await runtime.wait_for(tenant, run.run_id)
    assert done.state == RunState.FAILED, done
    assert done.error_type == WORKER_LOST
    step = slow_step(done)
    assert step is not None
    assert (step.state, step.attempts) == (StepState.FAILED, 1)
    assert step.error_message == "attempt 1 of 1 was lost with its worker"
    assert vendor.paths == ["/before", "/slow/1", "/undo/before"]


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
