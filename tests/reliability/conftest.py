"""Fixtures of the fault tests: real worker processes on the platform database, a test's
view of its runs (through the stores, and raw rows through the admin role), a fake vendor.

Worker processes are `python -m hygoshop_workflows worker --definitions tests.workflow_defs`
with short leases (2 s, heartbeat 0.5 s, poll 0.1 s), each named by WORKER_ID, each logging
to a file under the test's tmp_path. They are started from the test's event loop thread
(the main thread: `ManagedProcess` ties their lives to it) and stopped in a thread, so the
fake vendor on the loop keeps answering while a worker shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from hygoshop_platform.db import Pool, open_pool
from hygoshop_platform.infra.processes import ManagedProcess, ProcessGroup
from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.config import SCHEMA
from hygoshop_workflows.domain.records import RunRecord
from hygoshop_workflows.runtime.runs import RunStore
from tests.support import PlatformDatabase
from tests.workflow_defs import registry

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.5
POLL_SECONDS = 0.1
STARTUP_SECONDS = 30.0
"""Bound on a worker process becoming ready (imports alone take ~3 s on a busy 2-core box)."""


class Workers:
    """The worker processes of one test, stopped (resumed first if paused) at its end."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.group = ProcessGroup()
        self.paused: set[int] = set()

    def start(self, name: str) -> ManagedProcess:
        env = {
            "DATABASE_URL": self.database_url,
            # The test's own path too: a worker imports the code the test process does.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "WORKER_ID": name,
            "WORKFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
            "WORKFLOW_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "WORKFLOW_POLL_SECONDS": str(POLL_SECONDS),
            "SHUTDOWN_GRACE_SECONDS": "1",
            "LOG_LEVEL": "INFO",
        }
        argv = [
            sys.executable,
            *("-m", "hygoshop_workflows", "worker", "--definitions", "tests.workflow_defs"),
        ]
        proc = ManagedProcess(name, argv, env, self.log_dir / f"{name}.log", cwd=REPO, grace=5.0)
        return self.group.start(proc)

    async def ready(self, proc: ManagedProcess) -> None:
        """Until the worker logged that it claims (its pool and registry are loaded)."""
        await self.eventually(
            lambda: f"worker {proc.name} runs" in log_of(proc),
            f"{proc.name} ready",
            STARTUP_SECONDS,
        )

    def pause(self, proc: ManagedProcess) -> None:
        """SIGSTOP: the process is frozen, sockets open, heartbeats silent (a zombie)."""
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGSTOP)
        self.paused.add(proc.pid)

    def resume(self, proc: ManagedProcess) -> None:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGCONT)
        self.paused.discard(proc.pid)

    async def stop(self, proc: ManagedProcess) -> int | None:
        """SIGTERM and wait (in a thread: the loop keeps serving the fake vendor)."""
        return await asyncio.to_thread(proc.stop)

    async def stop_all(self) -> None:
        for proc in self.group.processes:
            if proc.pid in self.paused:
                self.resume(proc)
        await asyncio.to_thread(self.group.stop_all)

    def logs(self) -> str:
        """Every worker's last lines, for failure messages."""
        return "\n".join(
            f"--- {p.name} (pid {p.pid}, exit {p.returncode}) ---\n{p.log_tail(15)}"
            for p in self.group.processes
        )

    async def eventually(
        self,
        check: Callable[[], bool | Awaitable[bool]],
        what: str,
        within: float = 20.0,
    ) -> None:
        """Poll `check` (bounded); on timeout fail with the workers' logs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            outcome = check()
            if not isinstance(outcome, bool):
                outcome = await outcome
            if outcome:
                return
            if loop.time() > deadline:
                pytest.fail(f"not within {within:.0f}s: {what}\n{self.logs()}")
            await asyncio.sleep(0.02)


def log_of(proc: ManagedProcess) -> str:
    """Everything a worker process wrote so far."""
    assert proc.log_path is not None
    return proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""


class Observer:
    """The test's view of its runs: the stores (as the application role) and raw rows."""

    def __init__(self, pool: Pool, admin_url: str) -> None:
        self.runs = RunStore(pool, registry)
        self.admin_url = admin_url

    async def run(self, tenant: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        return await self.runs.get(tenant, run_id)

    async def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Raw rows read as the database admin (no row-level security in the way)."""
        async with await psycopg.AsyncConnection.connect(
            self.admin_url, autocommit=True, row_factory=dict_row
        ) as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def run_row(self, run_id: uuid.UUID) -> dict[str, Any]:
        (row,) = await self.rows("SELECT * FROM workflows.runs WHERE run_id = %s", run_id)
        return row

    async def step_rows(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT * FROM workflows.steps WHERE run_id = %s ORDER BY seq", run_id
        )


@pytest.fixture(scope="session")
async def observer_pool(platform_db: PlatformDatabase) -> AsyncIterator[Pool]:
    pool = await open_pool(platform_db.app_url(SCHEMA), size=2, application_name="reliability")
    yield pool
    await pool.close()


@pytest.fixture
def observer(observer_pool: Pool, platform_db: PlatformDatabase) -> Observer:
    return Observer(observer_pool, platform_db.admin_url)


@pytest.fixture
async def workers(
    platform_db: PlatformDatabase, tmp_path: Path, vendor: FakeVendor
) -> AsyncIterator[Workers]:
    # Depends on `vendor` so the vendor outlives the workers: one stopping mid-step can
    # still finish its call.
    started = Workers(platform_db.app_url(SCHEMA), tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    async with FakeVendor("effects") as fake:
        yield fake
