"""The runtime on real PostgreSQL: stores and in-process workers over the platform database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import pytest

from hygoshop_platform.db import Pool, open_pool
from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.config import SCHEMA, WorkerOptions
from hygoshop_workflows.domain.records import RunRecord
from hygoshop_workflows.runtime.registry import Registry
from hygoshop_workflows.runtime.runs import RunStore
from hygoshop_workflows.runtime.tasks import TaskStore
from hygoshop_workflows.runtime.worker import Worker
from tests.support import PlatformDatabase
from tests.workflow_defs import registry

FAST = WorkerOptions(
    lease_seconds=2.0,
    heartbeat_seconds=0.5,
    concurrency=8,
    poll_seconds=0.1,
    escalation_seconds=0.2,
    worker_id="test-worker",
)


@dataclass
class Runtime:
    pool: Pool
    url: str
    runs: RunStore
    tasks: TaskStore
    workers: list[Worker] = field(default_factory=list)

    async def start_worker(
        self, options: WorkerOptions = FAST, name: str = "", definitions: Registry = registry
    ) -> Worker:
        if name:
            options = replace(options, worker_id=name)
        worker = Worker(self.pool, definitions, options, listen_url=self.url, shutdown_grace=2.0)
        await worker.start()
        self.workers.append(worker)
        return worker

    async def wait_for(
        self,
        tenant: uuid.UUID,
        run_id: uuid.UUID,
        until: Callable[[RunRecord], bool] = lambda r: r.state.terminal,
        within: float = 20.0,
    ) -> RunRecord:
        """Poll the run (bounded) until `until` holds; the last read either way."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            run = await self.runs.get(tenant, run_id)
            if until(run) or asyncio.get_running_loop().time() > deadline:
                return run
            await asyncio.sleep(0.05)


async def crash(worker: Worker) -> None:
    """Stop `worker` as a killed process stops: nothing released, its leases left to expire."""
    # Python 3.11's asyncio.wait_for swallows a cancel that lands as its awaitable finishes
    # (the claim loop's wake-up wait, woken by the very run tasks cancelled here): the flag
    # ends the claim loop then too.
    worker._stopping.set()
    flushing = worker._checkpoints._flushing  # group commits in flight die with the process
    tasks = [t for t in (worker._loop_task, flushing, *worker._background, *worker._held) if t]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="session")
async def runtime_pool(platform_db: PlatformDatabase) -> AsyncIterator[tuple[Pool, str]]:
    url = platform_db.app_url(SCHEMA)
    pool = await open_pool(url, size=12, application_name="workflows-test")
    yield pool, url
    await pool.close()


@pytest.fixture
async def runtime(runtime_pool: tuple[Pool, str]) -> AsyncIterator[Runtime]:
    pool, url = runtime_pool
    rt = Runtime(pool, url, RunStore(pool, registry), TaskStore(pool, registry))
    yield rt
    for worker in rt.workers:
        await worker.stop()


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    async with FakeVendor("effects") as fake:
        yield fake


def tenant() -> uuid.UUID:
    return uuid.uuid4()
