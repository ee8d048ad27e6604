"""Runs from the callers' side: start (idempotent per business key), read, list, cancel,
signal. Each wake-up of a paused run (a signal it waits for, a cancel) locks the run row
first, the same lock a worker's fence takes, so a wake-up and a worker deciding to pause
are ordered and neither is lost.

`start_in` and `signal_in` take the caller's transaction: bus triggers run them inside
the inbox transaction of the event that fired them.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from hygoshop_platform.pagination import decode_time_id_token, split_page
from hygoshop_workflows.domain.records import RunRecord
from hygoshop_workflows.domain.states import RunState
from hygoshop_workflows.runtime import events
from hygoshop_workflows.runtime.registry import Registry, check_json
from hygoshop_workflows.runtime.rows import RUN_COLUMNS, STEP_COLUMNS, run_from_row, step_from_row
from hygoshop_workflows.runtime.sql import notify_runnable

MAX_SIGNALS_PER_RUN = 1000
"""Unconsumed signals a run may hold; more is RESOURCE-abuse, refused."""


class RunStore:
    def __init__(self, pool: Pool, registry: Registry) -> None:
        self.pool = pool
        self.registry = registry

    async def start(
        self,
        tenant_id: uuid.UUID,
        workflow_type: str,
        business_key: str,
        input: dict[str, Any],
        *,
        version: int | None = None,
    ) -> tuple[RunRecord, bool]:
        """The run of (type, business key): created, or the existing one when the same input
        was started before. Another input under a used key is ALREADY_EXISTS."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            run, created = await self.start_in(
                conn, tenant_id, workflow_type, business_key, input, version=version
            )
        if not created and run.input != input:
            raise AlreadyExists(
                f"a {workflow_type} run with business key {business_key!r} already exists"
                " with another input",
                reason="RUN_EXISTS",
                metadata={"run_id": str(run.run_id)},
            )
        return run, created

    async def start_in(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        workflow_type: str,
        business_key: str,
        input: dict[str, Any],
        *,
        version: int | None = None,
    ) -> tuple[RunRecord, bool]:
        definition = (
            self.registry.newest(workflow_type)
            if version is None
            else self.registry.get(workflow_type, version)
        )
        if definition is None:
            field = "workflow_type" if self.registry.newest(workflow_type) is None else "version"
            raise InvalidArgument(
                [FieldViolation(field, f"no workflow {workflow_type!r} of that version exists")]
            )
        if definition.input_schema is not None:
            check_json(definition.input_schema, input, "input")
        cur = await conn.execute(
            "INSERT INTO workflows.runs (tenant_id, run_id, workflow_type, version,"
            " business_key, input, state, wake_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'pending', clock_timestamp())"
            " ON CONFLICT (tenant_id, workflow_type, business_key) DO NOTHING"
            f" RETURNING {RUN_COLUMNS}",
            (
                tenant_id,
                uuid.uuid4(),
                workflow_type,
                definition.version,
                business_key,
                Jsonb(input),
            ),
        )
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(
                f"SELECT {RUN_COLUMNS} FROM workflows.runs"
                " WHERE tenant_id = %s AND workflow_type = %s AND business_key = %s",
                (tenant_id, workflow_type, business_key),
            )
            existing = await cur.fetchone()
            assert existing is not None
            return run_from_row(existing), False
        run = run_from_row(row)
        await notify_runnable(conn)
        await events.add(
            conn,
            events.run_started(
                events.RunRef(tenant_id, run.run_id, run.workflow_type, run.business_key),
                run.version,
            ),
        )
        return run, True

    async def get(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {RUN_COLUMNS} FROM workflows.runs WHERE tenant_id = %s AND run_id = %s",
                (tenant_id, run_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"workflow run {run_id} not found")
            cur = await conn.execute(
                f"SELECT {STEP_COLUMNS} FROM workflows.steps"
                " WHERE tenant_id = %s AND run_id = %s ORDER BY seq",
                (tenant_id, run_id),
            )
            steps = [step_from_row(step) for step in await cur.fetchall()]
        return run_from_row(row, steps)

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        workflow_type: str | None,
        state: RunState | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[RunRecord], str]:
        """Newest first."""
        query = ("runs", workflow_type or "", state.value if state else "")
        after = decode_time_id_token(page_token, query)
        conditions = ["tenant_id = %(t)s"]
        params: dict[str, Any] = {"t": tenant_id, "n": page_size + 1}
        if workflow_type:
            conditions.append("workflow_type = %(type)s")
            params["type"] = workflow_type
        if state is not None:
            conditions.append("state = %(state)s")
            params["state"] = state.value
        if after is not None:
            conditions.append("(create_time, run_id) < (%(at)s, %(id)s)")
            params["at"], params["id"] = after
        async with tenant_transaction(self.pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {RUN_COLUMNS} FROM workflows.runs WHERE {' AND '.join(conditions)}"
                " ORDER BY create_time DESC, run_id DESC LIMIT %(n)s",
                params,
            )
            rows = [run_from_row(row) for row in await cur.fetchall()]
        page, token = split_page(
            rows, page_size, lambda r: (r.create_time.isoformat(), str(r.run_id)), query
        )
        return list(page), token

    async def cancel(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        """Request a cancel: the run stops at its next step boundary and compensates. A
        paused run is woken for it. Cancelling a cancelled run is a no-op."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            state = await _lock_run(conn, tenant_id, run_id)
            if state == RunState.CANCELLED:
                return await self._read(conn, tenant_id, run_id)
            if state.terminal:
                raise FailedPrecondition(
                    f"workflow run {run_id} already {state.value}", reason="RUN_FINISHED"
                )
            await conn.execute(
                "UPDATE workflows.runs SET cancel_requested = true, update_time = clock_timestamp(),"
                " state = CASE WHEN state = 'waiting' THEN 'pending' ELSE state END,"
                " waiting_on = CASE WHEN state = 'waiting' THEN '' ELSE waiting_on END,"
                " wake_at = CASE WHEN state IN ('waiting', 'pending') THEN clock_timestamp()"
                "           ELSE wake_at END"
                " WHERE tenant_id = %s AND run_id = %s",
                (tenant_id, run_id),
            )
            await notify_runnable(conn)
            return await self._read(conn, tenant_id, run_id)

    async def signal(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        name: str,
        payload: dict[str, Any],
        request_id: str | None,
    ) -> RunRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await self.signal_in(
                conn, tenant_id, run_id, name=name, payload=payload, request_id=request_id
            )
            return await self._read(conn, tenant_id, run_id)

    async def signal_in(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        *,
        name: str,
        payload: dict[str, Any],
        request_id: str | None,
    ) -> None:
        """Keep the signal for the run's next wait on `name`; wake the run if it waits now."""
        state = await _lock_run(conn, tenant_id, run_id)
        if state.terminal:
            raise FailedPrecondition(
                f"workflow run {run_id} already {state.value}", reason="RUN_FINISHED"
            )
        cur = await conn.execute(
            "SELECT count(*) AS n FROM workflows.signals"
            " WHERE tenant_id = %s AND run_id = %s AND consumed_seq IS NULL",
            (tenant_id, run_id),
        )
        count = await cur.fetchone()
        if count is not None and count.n >= MAX_SIGNALS_PER_RUN:
            raise FailedPrecondition(
                f"workflow run {run_id} holds {count.n} signals it has not waited for",
                reason="TOO_MANY_SIGNALS",
            )
        await conn.execute(
            "INSERT INTO workflows.signals (tenant_id, signal_id, run_id, name, payload,"
            " request_id) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, run_id, request_id) DO NOTHING",
            (tenant_id, uuid.uuid4(), run_id, name, Jsonb(payload), request_id or None),
        )
        woken = await conn.execute(
            "UPDATE workflows.runs SET state = 'pending', waiting_on = '',"
            " wake_at = clock_timestamp(), update_time = clock_timestamp()"
            " WHERE tenant_id = %s AND run_id = %s AND state = 'waiting' AND waiting_on = %s",
            (tenant_id, run_id, f"signal:{name}"),
        )
        if woken.rowcount:
            await notify_runnable(conn)

    async def run_id_for_key(
        self, conn: Connection, tenant_id: uuid.UUID, workflow_type: str, business_key: str
    ) -> uuid.UUID | None:
        cur = await conn.execute(
            "SELECT run_id FROM workflows.runs"
            " WHERE tenant_id = %s AND workflow_type = %s AND business_key = %s",
            (tenant_id, workflow_type, business_key),
        )
        row = await cur.fetchone()
        return row.run_id if row is not None else None

    async def _read(self, conn: Connection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunRecord:
        cur = await conn.execute(
            f"SELECT {RUN_COLUMNS} FROM workflows.runs WHERE tenant_id = %s AND run_id = %s",
            (tenant_id, run_id),
        )
        row = await cur.fetchone()
        assert row is not None
        return run_from_row(row)


async def _lock_run(conn: Connection, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunState:
    cur = await conn.execute(
        "SELECT state FROM workflows.runs WHERE tenant_id = %s AND run_id = %s FOR UPDATE",
        (tenant_id, run_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"workflow run {run_id} not found")
    return RunState(row.state)
