"""workflow_steps: steps/s of 10-step no-op workflows on two workers vs a raw job loop and pgqueuer.

Three measurements on one fresh database, each with WORKERS worker processes, in ROUNDS
interleaved rounds (so the shared machine's noise hits all alike); the best round counts:

- raw (the baseline of `ratio`): RAW_JOBS rows in a plain jobs table, one job per step,
  drained by a `FOR UPDATE SKIP LOCKED` loop that claims RAW_BATCH jobs in one statement
  (state ready -> running) and completes them in a second (running -> done), each
  statement its own commit. Jobs/s from the insert of the jobs to the last completion.
- pgqueuer: the throughput strategy of pgqueuer's own benchmark (`tools/benchmark.py` in
  its repository; the wheel ships no benchmark), once per worker process: one producer
  enqueueing batches of PGQ_ENQUEUE_BATCH for PGQ_SECONDS while PGQ_DEQUEUE consumers (a
  connection and a `PgQueuer` each, `run(batch_size=PGQ_DEQUEUE_BATCH)`) count the jobs
  they get. Jobs/s = jobs consumed by all processes / elapsed. The psycopg driver: the
  tool defaults to asyncpg, which is not a dependency of ours.
- workflow: WF_RUNS runs of `bench.ten_steps` (tests/bench/workflow_defs.py) spread over
  WF_TENANTS tenants, executed by two `python -m hygoshop_workflows worker` processes;
  steps/s = 10 * runs / (first start -> every run succeeded). The runs are started in one
  transaction per tenant; warm-up runs go through first, so worker start-up is not counted.

ratio = workflow steps/s / raw jobs/s; targets: ratio >= 0.3 and steps/s > pgqueuer jobs/s.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import itertools
import math
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg
import uvloop

from tests.bench.common import REPO, Result, cpu_seconds, scratch_database

WORKERS = 2
STEPS = 10
ROUNDS = 3
RAW_JOBS = 20_000
RAW_BATCH = 10
PGQ_SECONDS = 8.0
PGQ_DEQUEUE = 5
PGQ_DEQUEUE_BATCH = 10
PGQ_ENQUEUE_BATCH = 10
WF_RUNS = 500
WF_CONCURRENCY = 64
"""Runs each worker process holds at once (WORKFLOW_CONCURRENCY)."""
WF_WARMUP_RUNS = 20
WF_TENANTS = 4
WF_TYPE = "bench.ten_steps"
WF_DEFINITIONS = "tests.bench.workflow_defs"
LIMIT = 90.0
"""Seconds any one measurement may take before the benchmark gives up."""

_MP = multiprocessing.get_context("spawn")


def _join(procs: list[Any]) -> None:
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


# --- raw: a plain FOR UPDATE SKIP LOCKED claim-and-complete loop ---------------------------

RAW_SCHEMA = """
CREATE SCHEMA bench_raw;
CREATE TABLE bench_raw.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run int NOT NULL,
    step int NOT NULL,
    state text NOT NULL DEFAULT 'ready',
    worker int,
    update_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_ready ON bench_raw.jobs (id) WHERE state = 'ready';
"""

_CLAIM = (
    "UPDATE bench_raw.jobs SET state = 'running', worker = %s, update_time = now()"
    " WHERE id IN (SELECT id FROM bench_raw.jobs WHERE state = 'ready'"
    "  ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id"
)
_COMPLETE = (
    "UPDATE bench_raw.jobs SET state = 'done', update_time = now()"
    " WHERE id = ANY(%s) AND state = 'running'"
)


def _raw_worker(url: str, worker: int, start: Barrier, results: Any) -> None:
    """Claim a batch, "run" it (nothing to do), complete it; until nothing is ready."""
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        start.wait(LIMIT)
        while True:
            ids = [row[0] for row in conn.execute(_CLAIM, (worker, RAW_BATCH))]
            if not ids:
                break
            conn.execute(_COMPLETE, (ids,))
            done += len(ids)
    results.put(done)


def prepare_raw(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(RAW_SCHEMA)


def measure_raw(admin_url: str) -> float:
    """Jobs/s of the raw batched loop: RAW_JOBS jobs inserted, then drained by WORKERS."""
    start = _MP.Barrier(WORKERS + 1)
    results = _MP.Queue()
    procs = [
        _MP.Process(target=_raw_worker, args=(admin_url, w, start, results), daemon=True)
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("TRUNCATE bench_raw.jobs")
            started = time.perf_counter()
            # Inserted before the workers are let go: an empty queue is how they know to stop.
            conn.execute(
                "INSERT INTO bench_raw.jobs (run, step)"
                " SELECT n / %s, n %% %s FROM generate_series(0, %s - 1) AS n",
                (STEPS, STEPS, RAW_JOBS),
            )
            start.wait(LIMIT)
            done = sum(results.get(timeout=LIMIT) for _ in procs)
            elapsed = time.perf_counter() - started
            left = conn.execute("SELECT count(*) FROM bench_raw.jobs WHERE state <> 'done'")
            not_done = left.fetchone()
    finally:
        _join(procs)
    if done != RAW_JOBS or not_done is None or not_done[0] != 0:
        raise RuntimeError(f"raw loop completed {done} of {RAW_JOBS} jobs ({not_done} left)")
    return RAW_JOBS / elapsed


# --- pgqueuer: its own benchmark's throughput strategy, once per worker process ------------


def pgqueuer_missing() -> str | None:
    """Why pgqueuer cannot be measured here (None: it can)."""
    try:
        importlib.import_module("pgqueuer")
    except ImportError as exc:
        return f"pgqueuer is not installed ({exc})"
    return None


def prepare_pgqueuer(admin_url: str) -> None:
    from pgqueuer import PsycopgDriver, Queries

    async def install() -> None:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await Queries(PsycopgDriver(conn)).install()

    asyncio.run(install())


def _pgq_process(url: str, seconds: float, start: Barrier, results: Any) -> None:
    results.put(uvloop.run(_pgq_throughput(url, seconds, start)))


async def _pgq_throughput(url: str, seconds: float, start: Barrier) -> tuple[int, float]:
    """One copy of pgqueuer's ThroughputStrategy: 1 producer, PGQ_DEQUEUE consumers."""
    from pgqueuer import PgQueuer, PsycopgDriver, Queries
    from pgqueuer.models import Job

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    consumed = itertools.count()
    consumers = [PgQueuer(PsycopgDriver(await connect())) for _ in range(PGQ_DEQUEUE)]
    for pgq in consumers:

        @pgq.entrypoint("asyncfetch")
        async def asyncfetch(job: Job) -> None:
            next(consumed)

        # The tool's second entrypoint was a sync one; pgqueuer 1.6 accepts async only.
        @pgq.entrypoint("syncfetch")
        async def syncfetch(job: Job) -> None:
            next(consumed)

    producer = Queries(PsycopgDriver(await connect()))
    shutdown = asyncio.Event()
    serial = itertools.count()

    async def produce() -> None:
        entrypoints = ["syncfetch", "asyncfetch"] * PGQ_ENQUEUE_BATCH
        while not shutdown.is_set():
            await producer.enqueue(
                random.sample(entrypoints, k=PGQ_ENQUEUE_BATCH),
                [f"{next(serial)}".encode() for _ in range(PGQ_ENQUEUE_BATCH)],
                [0] * PGQ_ENQUEUE_BATCH,
            )

    async def stop_after_timer() -> None:
        await asyncio.sleep(seconds)
        shutdown.set()
        for pgq in consumers:
            pgq.shutdown.set()

    await asyncio.to_thread(start.wait, LIMIT)
    started = time.perf_counter()
    await asyncio.gather(
        *(pgq.run(batch_size=PGQ_DEQUEUE_BATCH) for pgq in consumers),
        produce(),
        stop_after_timer(),
    )
    return next(consumed), time.perf_counter() - started


def measure_pgqueuer(admin_url: str, seconds: float = PGQ_SECONDS) -> float:
    """Jobs/s consumed by WORKERS processes each running pgqueuer's throughput strategy."""
    from pgqueuer import PsycopgDriver, Queries

    async def empty_queue() -> None:  # what the tool's setup does before each run
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            queries = Queries(PsycopgDriver(conn))
            await queries.clear_statistics_log()
            await queries.clear_queue()

    asyncio.run(empty_queue())
    start = _MP.Barrier(WORKERS)
    results = _MP.Queue()
    procs = [
        _MP.Process(target=_pgq_process, args=(admin_url, seconds, start, results), daemon=True)
        for _ in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        figures: list[tuple[int, float]] = [results.get(timeout=seconds + LIMIT) for _ in procs]
    finally:
        _join(procs)
    return sum(count for count, _ in figures) / max(elapsed for _, elapsed in figures)


# --- the workflow engine --------------------------------------------------------------------


def workflow_engine_missing() -> str | None:
    """Why the workflow engine cannot be measured yet (None: it can)."""
    try:
        importlib.import_module("hygoshop_workflows.runtime.runs")
        importlib.import_module(WF_DEFINITIONS)
        if importlib.util.find_spec("hygoshop_workflows.__main__") is None:
            return "hygoshop_workflows has no __main__ (no `worker` command yet)"
    except ImportError as exc:
        return f"the workflow engine is not importable ({exc})"
    return None


async def _start_runs(url: str, tenants: list[uuid.UUID], keys: list[str]) -> None:
    """Start one `bench.ten_steps` run per business key, spread over `tenants`: one
    transaction per tenant (as a bus trigger or a bulk import would), so the runs become
    claimable together and the timing is the engine's, as the raw loop's bulk insert is."""
    from hygoshop_platform.db import open_pool, tenant_transaction
    from hygoshop_workflows.runtime.runs import RunStore

    definitions: Any = importlib.import_module(WF_DEFINITIONS)
    pool = await open_pool(url, size=len(tenants), application_name="bench-workflow-start")
    try:
        store = RunStore(pool, definitions.registry)

        async def start(tenant: uuid.UUID, tenant_keys: list[str]) -> None:
            async with tenant_transaction(pool, tenant) as conn:
                for key in tenant_keys:
                    await store.start_in(conn, tenant, WF_TYPE, key, {})

        await asyncio.gather(*(start(t, keys[i :: len(tenants)]) for i, t in enumerate(tenants)))
    finally:
        await pool.close()


def _wait_for_runs(admin_url: str, prefix: str, count: int, workers: list[Any]) -> None:
    """Until every run whose business key starts with `prefix` has succeeded."""
    deadline = time.monotonic() + LIMIT
    with psycopg.connect(admin_url, autocommit=True) as conn:  # the admin role: no RLS
        while True:
            states: dict[str, int] = dict(
                conn.execute(
                    "SELECT state, count(*) FROM workflows.runs"
                    " WHERE business_key LIKE %s GROUP BY state",
                    (prefix + "%",),
                ).fetchall()
            )
            if states.get("succeeded", 0) == count:
                return
            if states.get("failed") or states.get("cancelled"):
                raise RuntimeError(f"bench runs ended otherwise: {states}")
            for worker in workers:
                if not worker.running:
                    raise worker.failure("a workflow worker exited during the benchmark")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench runs not done after {LIMIT}s: {states}")
            time.sleep(0.02)


class WorkflowBench:
    """Worker processes running on a migrated database; `measure` times one batch of runs."""

    def __init__(self, admin_url: str, url: str, workers: list[Any]) -> None:
        self.admin_url = admin_url
        self.url = url
        self.workers = workers
        self.tenants = [uuid.uuid4() for _ in range(WF_TENANTS)]
        self._batches = itertools.count()

    def measure(self, runs: int) -> dict[str, float]:
        prefix = f"bench{next(self._batches)}-"
        keys = [f"{prefix}{n}" for n in range(runs)]
        cpu = self._worker_cpu()
        started = time.perf_counter()
        uvloop.run(_start_runs(self.url, self.tenants, keys))
        start_s = time.perf_counter() - started
        _wait_for_runs(self.admin_url, prefix, runs, self.workers)
        elapsed = time.perf_counter() - started
        cpu = self._worker_cpu() - cpu
        return {
            "steps_per_s": STEPS * runs / elapsed,
            "elapsed_s": elapsed,
            "start_runs_s": start_s,
            "worker_cpu_ms_per_step": cpu * 1e3 / (STEPS * runs),
        }

    def _worker_cpu(self) -> float:
        """CPU seconds the worker processes have used (PostgreSQL's share is not in it)."""
        return sum(cpu_seconds(w.pid) for w in self.workers)


@contextmanager
def workflow_workers(admin_url: str, workers: int = WORKERS) -> Iterator[WorkflowBench]:
    """Migrate the `workflows` schema, start `workers` worker processes (as the application
    role), put WF_WARMUP_RUNS runs through them; stop them on exit."""
    from hygoshop_platform.infra.processes import ManagedProcess, ProcessGroup
    from hygoshop_platform.migrations import app_url, upgrade
    from hygoshop_workflows.config import SCHEMA

    upgrade(admin_url, SCHEMA, app_password="bench")
    url = app_url(admin_url, SCHEMA, "bench")
    env = {
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "WORKFLOW_CONCURRENCY": str(WF_CONCURRENCY),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "hygoshop_workflows", "worker", "--definitions", WF_DEFINITIONS]
    with ProcessGroup() as group:
        procs = [
            group.add(ManagedProcess(f"workflow-worker-{n}", argv, env, cwd=REPO))
            for n in range(workers)
        ]
        group.start_all()
        bench = WorkflowBench(admin_url, url, procs)
        bench.measure(WF_WARMUP_RUNS)
        yield bench


def measure_workflow_steps(
    admin_url: str, *, runs: int = WF_RUNS, rounds: int = 1, workers: int = WORKERS
) -> list[dict[str, float]]:
    """THE WORKFLOW ENGINE PART on its own: `rounds` batches of `runs` ten-step runs on
    `workers` worker processes; steps/s and timings of each batch."""
    with workflow_workers(admin_url, workers) as bench:
        return [bench.measure(runs) for _ in range(rounds)]


# --- the benchmark --------------------------------------------------------------------------


def run() -> Result:
    raw: list[float] = []
    pgq: list[float] = []
    flows: list[dict[str, float]] = []
    pgq_missing = pgqueuer_missing()
    wf_missing = workflow_engine_missing()
    for reason in filter(None, [pgq_missing, wf_missing]):
        print(f"workflow_steps: not measured: {reason}", flush=True)
    with scratch_database("wfsteps") as db, ExitStack() as stack:
        prepare_raw(db)
        if pgq_missing is None:
            prepare_pgqueuer(db)
        bench = stack.enter_context(workflow_workers(db)) if wf_missing is None else None
        for _ in range(ROUNDS):
            raw.append(measure_raw(db))
            if pgq_missing is None:
                pgq.append(measure_pgqueuer(db))
            if bench is not None:
                flows.append(bench.measure(WF_RUNS))
            print(
                f"workflow_steps round: raw {raw[-1]:,.0f} jobs/s"
                + (f", pgqueuer {pgq[-1]:,.0f} jobs/s" if pgq else "")
                + (f", workflow {flows[-1]['steps_per_s']:,.0f} steps/s" if flows else ""),
                flush=True,
            )
    best_raw, best_pgq = max(raw), max(pgq, default=math.nan)
    steps = max((f["steps_per_s"] for f in flows), default=math.nan)
    print(
        f"workflow_steps: raw {best_raw:,.0f} jobs/s, pgqueuer {best_pgq:,.0f} jobs/s,"
        f" workflow {steps:,.0f} steps/s; ratio = steps/s / raw jobs/s = {steps / best_raw:.2f},"
        f" steps/s / pgqueuer jobs/s = {steps / best_pgq:.2f}",
        flush=True,
    )
    return Result(
        name="workflow_steps",
        value=steps,
        unit="steps/s",
        baseline=f"raw SKIP LOCKED loop (batches of {RAW_BATCH})",
        baseline_value=best_raw,
        extra={
            "workers": WORKERS,
            "rounds": ROUNDS,
            "raw": {
                "jobs": RAW_JOBS,
                "batch": RAW_BATCH,
                "rounds_jobs_per_s": [round(v, 1) for v in raw],
            },
            "pgqueuer": (
                {
                    "jobs_per_s": round(best_pgq, 1),
                    "rounds_jobs_per_s": [round(v, 1) for v in pgq],
                    "seconds": PGQ_SECONDS,
                    "per_process": f"1 producer (batches of {PGQ_ENQUEUE_BATCH}),"
                    f" {PGQ_DEQUEUE} consumers (batches of {PGQ_DEQUEUE_BATCH}), psycopg",
                }
                if pgq
                else {"not_measured": pgq_missing}
            ),
            "steps_vs_pgqueuer": round(steps / best_pgq, 3) if pgq and flows else None,
            "workflow": (
                {
                    "runs": WF_RUNS,
                    "steps_per_run": STEPS,
                    "tenants": WF_TENANTS,
                    "rounds": [{k: round(v, 3) for k, v in f.items()} for f in flows],
                }
                if flows
                else {"not_measured": wf_missing}
            ),
            "target_ratio": 0.3,
            "target": "steps/s above pgqueuer jobs/s",
        },
    )
