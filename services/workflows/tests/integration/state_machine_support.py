"""What the state machine test (test_state_machine.py) drives and watches with: its workflow
types, the ledger their steps write to (every call a step function receives, as a vendor
honouring idempotency keys would see them), workers that can crash or turn zombie, and an
audit trigger that logs every state change the database commits."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.rows import namedtuple_row

from hygoshop_platform.db import TENANT_SETTING, Pool, open_pool, plain_url
from hygoshop_workflows.config import SCHEMA
from hygoshop_workflows.domain.records import RunRecord, StepRecord, TaskRecord
from hygoshop_workflows.domain.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_RUN_STATES,
    TERMINAL_STEP_STATES,
    Decision,
    RunState,
    StepState,
    TaskState,
    check_transition,
)
from hygoshop_workflows.runtime import Registry, RetryPolicy, StepCall, TaskKind, WorkflowContext
from hygoshop_workflows.runtime.lease import Claim
from hygoshop_workflows.runtime.retry import DEFAULT_RETRY
from hygoshop_workflows.runtime.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    TASK_COLUMNS,
    run_from_row,
    step_from_row,
    task_from_row,
)
from hygoshop_workflows.runtime.runs import RunStore
from hygoshop_workflows.runtime.tasks import TaskStore
from hygoshop_workflows.runtime.worker import Worker
from tests.support import PlatformDatabase

FLOW = "prop.flow"
THINK_THEN_WAIT = "prop.think_then_wait"

RETRY = RetryPolicy(initial_interval=0.02, backoff=2.0, max_interval=0.05, max_attempts=3)
MAX_ATTEMPTS = {"A": 3, "B": 3, "C": 3, "compensate:A": DEFAULT_RETRY.max_attempts}

S = TypeVar("S")


class VendorDown(Exception):
    """What the flaky step raises: retryable."""


@dataclass
class Ledger:
    calls: Counter[tuple[uuid.UUID, str]] = field(default_factory=Counter)
    """(run, step) -> executions begun, by any worker."""
    live_calls: Counter[tuple[uuid.UUID, str]] = field(default_factory=Counter)
    """Of those, the ones begun by a worker whose heartbeats were alive."""
    effects: Counter[tuple[uuid.UUID, str]] = field(default_factory=Counter)
    """(run, step) -> executions that took effect (returned without error)."""
    keys: defaultdict[tuple[uuid.UUID, str], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    """(run, step) -> the idempotency keys its calls carried (one, or the runtime is wrong)."""
    on_zombie: Callable[[], bool] = lambda: False
    """Whether the current asyncio task runs on a zombie worker (set by the machine)."""

    def begin(self, call: StepCall) -> int:
        """Count a call; its number among the calls of this (run, step)."""
        step = (call.run_id, call.step)
        self.calls[step] += 1
        if not self.on_zombie():
            self.live_calls[step] += 1
        self.keys[step].add(call.idempotency_key)
        return self.calls[step]


LEDGER = Ledger()
"""Module-wide: step functions are module code. Keyed by run id, so runs never mix."""


def _effect(hold: float = 0.0, fail_until: int = 0) -> Callable[[StepCall], Awaitable[str]]:
    """A side effect that takes `hold` seconds and refuses its first `fail_until` attempts
    (by attempt number, which the runtime derives from the recorded history)."""

    async def effect(call: StepCall) -> str:
        execution = LEDGER.begin(call)
        if hold:
            await asyncio.sleep(hold)
        if call.attempt <= fail_until:
            raise VendorDown(f"{call.step} refused attempt {call.attempt}")
        LEDGER.effects[(call.run_id, call.step)] += 1
        # Each execution answers differently: the run must go on with the answer its
        # history recorded, whichever execution that was (and never two of them).
        return f"{call.step}:{execution}"

    return effect


async def _undo(call: StepCall, result: Any) -> str:
    return await _effect()(call)


REGISTRY = Registry()
REGISTRY.task_kind(
    TaskKind(
        "prop_review",
        edit_schema={
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 0}},
            "required": ["amount"],
            "additionalProperties": False,
        },
        sla_seconds=3600,
    )
)


@REGISTRY.workflow(FLOW, version=1)
async def flow(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    """A (undone if the run fails or is cancelled), a signal, B (refuses `fail_b` attempts
    of its 3), an operator's decision, C. `think`: the workflow's own code between two
    durable calls (computing, not a durable pause; it runs again on every replay)."""
    think = float(input["think"])
    a = await ctx.step("A", _effect(float(input["hold"])), retry=RETRY, compensation=_undo)
    await asyncio.sleep(think)
    go = await ctx.wait_for_signal("go")
    b = await ctx.step("B", _effect(fail_until=int(input["fail_b"])), retry=RETRY)
    await asyncio.sleep(think)
    outcome = await ctx.wait_for_operator(
        "prop_review", title=f"review {ctx.business_key}", payload={"amount": input["amount"]}
    )
    c = await ctx.step("C", _effect(float(input["hold"])), retry=RETRY)
    return {
        "a": a,
        "go": go,
        "b": b,
        "decision": outcome.decision.value,
        "payload": outcome.payload,
        "by": outcome.operator,
        "c": c,
    }


@REGISTRY.workflow(THINK_THEN_WAIT, version=1)
async def think_then_wait(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    await ctx.step("A", _effect(), retry=RETRY)
    await asyncio.sleep(float(input["think"]))
    return {"go": await ctx.wait_for_signal("go")}


def reachable(table: dict[S, frozenset[S]]) -> dict[S, frozenset[S]]:
    """The transitive closure of a transition table: every state reachable in >= 1 moves."""
    closure: dict[S, frozenset[S]] = {}
    for start, moves in table.items():
        seen: set[S] = set()
        todo = list(moves)
        while todo:
            state = todo.pop()
            if state not in seen:
                seen.add(state)
                todo.extend(table[state])
        closure[start] = frozenset(seen)
    return closure


# The tables the audit log's writes are checked against: (state enum, direct edges, ended).
TABLES: dict[str, tuple[Any, Any, frozenset[Any]]] = {
    "runs": (RunState, RUN_TRANSITIONS, TERMINAL_RUN_STATES),
    "steps": (StepState, STEP_TRANSITIONS, TERMINAL_STEP_STATES),
    "operator_tasks": (
        TaskState,
        TASK_TRANSITIONS,
        frozenset({TaskState.COMPLETED, TaskState.CANCELLED}),
    ),
}
FIRST_STATE = {"runs": RunState.PENDING, "operator_tasks": TaskState.OPEN}
"""The state a new row must have (a step may be first written in any state)."""

# Installed by the test as the admin role, dropped after it. Logs each INSERT, and each
# UPDATE that changes a state or touches a row whose state had ended, with OLD and NEW.
AUDIT_SQL = """
DROP SCHEMA IF EXISTS prop_audit CASCADE;
CREATE SCHEMA prop_audit;
CREATE TABLE prop_audit.writes (
    id bigserial PRIMARY KEY, tbl text NOT NULL, tenant_id uuid NOT NULL,
    row_key text NOT NULL, old_state text, new_state text NOT NULL);
CREATE FUNCTION prop_audit.record() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r jsonb := to_jsonb(NEW);
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = NEW.state
       AND OLD.state NOT IN ('succeeded', 'failed', 'cancelled', 'completed') THEN
        RETURN NULL;
    END IF;
    INSERT INTO prop_audit.writes (tbl, tenant_id, row_key, old_state, new_state)
    VALUES (TG_TABLE_NAME, NEW.tenant_id, concat_ws('/', r->>'run_id', r->>'seq', r->>'task_id'),
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state);
    RETURN NULL;
END $$;
CREATE TRIGGER prop_audit AFTER INSERT OR UPDATE ON workflows.runs
    FOR EACH ROW EXECUTE FUNCTION prop_audit.record();
CREATE TRIGGER prop_audit AFTER INSERT OR UPDATE ON workflows.steps
    FOR EACH ROW EXECUTE FUNCTION prop_audit.record();
CREATE TRIGGER prop_audit AFTER INSERT OR UPDATE ON workflows.operator_tasks
    FOR EACH ROW EXECUTE FUNCTION prop_audit.record();
"""
DROP_AUDIT_SQL = """
DROP TRIGGER IF EXISTS prop_audit ON workflows.runs;
DROP TRIGGER IF EXISTS prop_audit ON workflows.steps;
DROP TRIGGER IF EXISTS prop_audit ON workflows.operator_tasks;
DROP SCHEMA IF EXISTS prop_audit CASCADE;
"""


async def check_audit(audit: psycopg.AsyncConnection[Any], tenant: uuid.UUID, after: int) -> int:
    """Check the tenant's writes logged since audit id `after` against the tables' direct
    edges (exact: every committed write is there); the last id read."""
    cur = await audit.execute(
        "SELECT id, tbl, row_key, old_state, new_state FROM prop_audit.writes"
        " WHERE tenant_id = %s AND id > %s ORDER BY id",
        (tenant, after),
    )
    for write in await cur.fetchall():
        after = write.id
        states, table, ended = TABLES[write.tbl]
        new = states(write.new_state)
        where = f"{write.tbl} {write.row_key}"
        if write.old_state is None:
            first = FIRST_STATE.get(write.tbl, new)
            assert new == first, f"{where} created {new.value}, not {first.value}"
            continue
        old = states(write.old_state)
        assert old not in ended, f"{where} written after it ended ({old} -> {new})"
        check_transition(table, old, new)
    return after


class RecordingWorker(Worker):
    """A worker that reports its claims: a claim's `lease_losses` > 0 says the previous
    holder lost the run mid-flight, which bounds how often a step may have been re-run."""

    def __init__(self, *args: Any, claims: list[Claim], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims = claims

    async def claim(self, limit: int) -> list[Claim]:
        claimed = await super().claim(limit)
        self.claims.extend(claimed)
        return claimed


def stall_heartbeats(worker: Worker) -> None:
    """Make `worker` a zombie: it goes on executing but its leases are no longer extended,
    so other workers take its runs and only the fence stops its late writes."""
    for task in worker._background:
        if task.get_name() == "workflow-heartbeats":
            task.cancel()


@dataclass
class Env:
    """An event loop of the test's own (hypothesis drives the machine synchronously), with
    a pool of the application role and an admin connection that reads the audit log."""

    loop: asyncio.AbstractEventLoop
    pool: Pool
    url: str
    audit: psycopg.AsyncConnection[Any]
    runs: RunStore
    tasks: TaskStore


async def open_env(loop: asyncio.AbstractEventLoop, db: PlatformDatabase) -> Env:
    url = db.app_url(SCHEMA)
    audit = await psycopg.AsyncConnection.connect(
        plain_url(db.admin_url), autocommit=True, row_factory=namedtuple_row
    )
    await audit.execute(AUDIT_SQL)
    pool = await open_pool(url, size=12, application_name="workflows-state-machine")
    return Env(loop, pool, url, audit, RunStore(pool, REGISTRY), TaskStore(pool, REGISTRY))


async def close_env(env: Env) -> None:
    await env.pool.close()
    await env.audit.execute(DROP_AUDIT_SQL)
    await env.audit.close()


async def snapshot(pool: Pool, tenant: uuid.UUID) -> tuple[list[RunRecord], list[TaskRecord]]:
    """The tenant's runs (with their steps) and operator tasks, as the application role
    reads them, all as of one instant (a run and its task are compared consistently)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(tenant)))
        cur = await conn.execute(
            f"SELECT run_id, {STEP_COLUMNS} FROM workflows.steps WHERE tenant_id = %s ORDER BY seq",
            (tenant,),
        )
        steps: defaultdict[uuid.UUID, list[StepRecord]] = defaultdict(list)
        for row in await cur.fetchall():
            steps[row.run_id].append(step_from_row(row))
        cur = await conn.execute(
            f"SELECT {RUN_COLUMNS} FROM workflows.runs WHERE tenant_id = %s", (tenant,)
        )
        runs = [run_from_row(row, steps[row.run_id]) for row in await cur.fetchall()]
        cur = await conn.execute(
            f"SELECT {TASK_COLUMNS} FROM workflows.operator_tasks WHERE tenant_id = %s",
            (tenant,),
        )
        tasks = [task_from_row(row) for row in await cur.fetchall()]
    return runs, tasks


# -- what the machine remembers of each run, task and worker ----------------------------
@dataclass
class RunModel:
    key: str
    run_id: uuid.UUID
    input: dict[str, Any]
    signals: list[dict[str, Any]] = field(default_factory=list)
    """Payloads of the accepted signals, oldest first (a repeated request id is one signal)."""
    request_ids: set[str] = field(default_factory=set)
    cancel_requested: bool = False
    state: RunState = RunState.PENDING
    waiting_on: str = ""
    ended: tuple[Any, ...] | None = None
    """What the run looked like when first seen ended: it must never change."""
    steps: dict[int, StepRecord] = field(default_factory=dict)
    frozen: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Step name -> (executions by live workers, by all) when it was first seen succeeded."""


@dataclass
class TaskModel:
    task_id: uuid.UUID
    run_id: uuid.UUID
    payload: dict[str, Any]
    state: TaskState = TaskState.OPEN
    holder: str | None = None
    """The operator whose claim last succeeded (and was not released since)."""
    live_claim_until: float = 0.0
    """Loop time before which that claim cannot have expired."""
    outcome: tuple[Decision, dict[str, Any], str] | None = None
    """(decision, outcome payload, operator) of our one successful complete call."""


@dataclass
class Slot:
    worker: RecordingWorker
    status: str  # live | zombie | crashed
