"""Deterministic cases of what the state machine (test_state_machine.py) can only meet by
chance: a replay must not run a finished step again, and a cancel read at a pause's fence
must not be slept through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from hygoshop_platform.db import Pool
from hygoshop_workflows.config import WorkerOptions
from hygoshop_workflows.domain.records import RunRecord
from hygoshop_workflows.domain.states import RunState, StepState
from hygoshop_workflows.runtime.runs import RunStore
from hygoshop_workflows.runtime.worker import Worker

from .state_machine_support import LEDGER, REGISTRY, THINK_THEN_WAIT

pytestmark = pytest.mark.integration

# Heartbeats far apart: in the cancel case only the wait's own fence can tell the worker.
OPTIONS = WorkerOptions(lease_seconds=10.0, heartbeat_seconds=5.0, poll_seconds=0.05)


async def _wait(
    runs: RunStore, tenant: uuid.UUID, run_id: uuid.UUID, until: Callable[[RunRecord], bool]
) -> RunRecord:
    for _ in range(200):
        run = await runs.get(tenant, run_id)
        if until(run):
            break
        await asyncio.sleep(0.025)
    return run


async def _started(pool: Pool, url: str, name: str) -> Worker:
    options = replace(OPTIONS, worker_id=name)
    worker = Worker(pool, REGISTRY, options, listen_url=url, shutdown_grace=0.5)
    await worker.start()
    return worker


async def _run(
    runtime_pool: tuple[Pool, str], input: dict[str, Any], name: str
) -> tuple[RunStore, uuid.UUID, RunRecord, Worker]:
    pool, url = runtime_pool
    runs = RunStore(pool, REGISTRY)
    tenant = uuid.uuid4()
    run, _ = await runs.start(tenant, THINK_THEN_WAIT, name, input)
    return runs, tenant, run, await _started(pool, url, name)


async def test_a_replay_returns_finished_steps_without_running_them(
    runtime_pool: tuple[Pool, str],
) -> None:
    runs, tenant, run, worker = await _run(runtime_pool, {"think": 0.0}, "replay")
    try:
        waiting = await _wait(runs, tenant, run.run_id, lambda r: r.state == RunState.WAITING)
        assert [(s.name, s.state) for s in waiting.steps] == [
            ("A", StepState.SUCCEEDED),
            ("go", StepState.RUNNING),
        ]
        await runs.signal(tenant, run.run_id, "go", {"n": 1}, None)
        done = await _wait(runs, tenant, run.run_id, lambda r: r.state.terminal)
        assert done.state == RunState.SUCCEEDED, done
        assert done.result == {"go": {"n": 1}}
        # The replay after the signal must take A's saved result, not call A again.
        assert LEDGER.calls[(run.run_id, "A")] == 1, "a finished step ran again on replay"
    finally:
        await worker.stop()


async def test_a_cancel_that_arrives_between_two_waits_is_not_lost(
    runtime_pool: tuple[Pool, str],
) -> None:
    """The run finishes step A, then its own code runs (here 0.5 s) before it waits for a
    signal. A cancel lands meanwhile: the run is RUNNING, so the cancel only sets
    `cancel_requested` and wakes nothing. The worker's flag is stale (last fence or
    heartbeat), so the wait's own fence is the first to read the cancel: it must cancel
    the run there, not pause it (the run would wait for a signal that may never come)."""
    runs, tenant, run, worker = await _run(runtime_pool, {"think": 0.5}, "cancel-window")
    try:
        await _wait(
            runs,
            tenant,
            run.run_id,
            lambda r: bool(r.steps) and r.steps[0].state == StepState.SUCCEEDED,
        )
        requested = await runs.cancel(tenant, run.run_id)
        assert requested.cancel_requested
        assert requested.state == RunState.RUNNING  # in its own code, before the wait
        done = await _wait(runs, tenant, run.run_id, lambda r: r.state.terminal)
        assert done.state == RunState.CANCELLED, (
            f"lost cancel: the run is {done.state.value} on {done.waiting_on!r} with"
            f" cancel_requested={done.cancel_requested}: the wait's fence read the cancel"
            " and suspended anyway"
        )
    finally:
        await worker.stop()
