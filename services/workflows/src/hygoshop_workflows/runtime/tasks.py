"""Operator tasks from the operators' side: list, claim (one owner at a time), release,
complete (which wakes the run), and escalation of tasks left unclaimed past their SLA.

A claim is a lease: `claimed_by` plus `claim_expires_at`. Claiming is one conditional
UPDATE (open, or claimed with an expired claim), so of any number of concurrent claims
exactly one matches the row; the others see it claimed and get FAILED_PRECONDITION. Only
the holder of a live claim may release or complete.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from hygoshop_platform.pagination import decode_time_id_token, split_page
from hygoshop_workflows.domain.records import TaskRecord
from hygoshop_workflows.domain.states import Decision, TaskState
from hygoshop_workflows.runtime import events
from hygoshop_workflows.runtime.registry import Registry, check_json
from hygoshop_workflows.runtime.rows import TASK_COLUMNS, TASK_STATE_SQL, task_from_row
from hygoshop_workflows.runtime.sql import notify_runnable

_LIVE_CLAIM = "state = 'claimed' AND claim_expires_at > clock_timestamp()"


class TaskStore:
    def __init__(self, pool: Pool, registry: Registry) -> None:
        self.pool = pool
        self.registry = registry

    async def get(self, tenant_id: uuid.UUID, task_id: uuid.UUID) -> TaskRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await _read(conn, tenant_id, task_id)

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        state: TaskState | None,
        kind: str | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[TaskRecord], str]:
        """Oldest first (the longest-waiting decision on top)."""
        query = ("tasks", state.value if state else "", kind or "")
        after = decode_time_id_token(page_token, query)
        conditions, params = ["tenant_id = %(t)s"], {"t": tenant_id, "n": page_size + 1}
        if state is not None:
            conditions.append(f"({TASK_STATE_SQL}) = %(state)s")
            params["state"] = state.value
        if kind:
            conditions.append("kind = %(kind)s")
            params["kind"] = kind
        if after is not None:
            conditions.append("(create_time, task_id) > (%(at)s, %(id)s)")
            params["at"], params["id"] = after
        async with tenant_transaction(self.pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {TASK_COLUMNS} FROM workflows.operator_tasks"
                f" WHERE {' AND '.join(conditions)} ORDER BY create_time, task_id LIMIT %(n)s",
                params,
            )
            rows = [task_from_row(row) for row in await cur.fetchall()]
        page, token = split_page(
            rows, page_size, lambda t: (t.create_time.isoformat(), str(t.task_id)), query
        )
        return list(page), token

    async def claim(
        self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str, lease_seconds: float
    ) -> TaskRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            cur = await conn.execute(
                "UPDATE workflows.operator_tasks"
                " SET state = 'claimed', claimed_by = %s,"
                "     claim_expires_at = clock_timestamp() + %s * interval '1 second',"
                "     update_time = clock_timestamp()"
                " WHERE tenant_id = %s AND task_id = %s"
                "   AND (state = 'open'"
                "        OR (state = 'claimed' AND claim_expires_at <= clock_timestamp()))"
                f" RETURNING {TASK_COLUMNS}",
                (operator, lease_seconds, tenant_id, task_id),
            )
            row = await cur.fetchone()
            if row is None:
                current = await _read(conn, tenant_id, task_id)
                raise _not_claimable(current, operator)
            task = task_from_row(row)
            await events.add(
                conn,
                events.task_claimed(
                    tenant_id,
                    task_id,
                    task.run_id,
                    kind=task.kind,
                    claimed_by=operator,
                    claim_expire_time=task.claim_expire_time,
                ),
            )
            return task

    async def release(self, tenant_id: uuid.UUID, task_id: uuid.UUID, operator: str) -> TaskRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            cur = await conn.execute(
                "UPDATE workflows.operator_tasks"
                " SET state = 'open', claimed_by = '', claim_expires_at = NULL,"
                "     update_time = clock_timestamp()"
                f" WHERE tenant_id = %s AND task_id = %s AND {_LIVE_CLAIM} AND claimed_by = %s"
                f" RETURNING {TASK_COLUMNS}",
                (tenant_id, task_id, operator),
            )
            row = await cur.fetchone()
            if row is None:
                current = await _read(conn, tenant_id, task_id)
                raise _not_held(current, operator)
            return task_from_row(row)

    async def complete(
        self,
        tenant_id: uuid.UUID,
        task_id: uuid.UUID,
        operator: str,
        decision: Decision,
        *,
        payload: dict[str, Any] | None,
        comment: str,
    ) -> TaskRecord:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            current = await _read(conn, tenant_id, task_id, lock=True)
            if current.state != TaskState.CLAIMED or current.claimed_by != operator:
                raise _not_held(current, operator)
            outcome = self._outcome(current, decision, payload)
            cur = await conn.execute(
                "UPDATE workflows.operator_tasks"
                " SET state = 'completed', decision = %s, outcome_payload = %s, comment = %s,"
                "     completed_by = %s, claim_expires_at = NULL,"
                "     end_time = clock_timestamp(), update_time = clock_timestamp()"
                " WHERE tenant_id = %s AND task_id = %s"
                f" RETURNING {TASK_COLUMNS}",
                (decision.value, Jsonb(outcome), comment[:2000], operator, tenant_id, task_id),
            )
            row = await cur.fetchone()
            assert row is not None  # locked above
            woken = await conn.execute(
                "UPDATE workflows.runs SET state = 'pending', waiting_on = '',"
                " wake_at = clock_timestamp(), update_time = clock_timestamp()"
                " WHERE tenant_id = %s AND run_id = %s AND state = 'waiting'"
                " AND waiting_on = %s",
                (tenant_id, current.run_id, f"task:{task_id}"),
            )
            if woken.rowcount:
                await notify_runnable(conn)
            await events.add(
                conn,
                events.task_completed(
                    tenant_id,
                    task_id,
                    current.run_id,
                    kind=current.kind,
                    decision=decision,
                    completed_by=operator,
                ),
            )
            return task_from_row(row)

    def _outcome(
        self, task: TaskRecord, decision: Decision, payload: dict[str, Any] | None
    ) -> dict[str, Any]:
        if decision == Decision.APPROVE:
            return task.payload
        if decision == Decision.REJECT:
            return {}
        if payload is None:
            raise InvalidArgument([FieldViolation("payload", "is required to edit a task")])
        kind = self.registry.task_kind_named(task.kind)
        if kind is not None:
            check_json(kind.edit_schema, payload, "payload")
        return payload


async def _read(
    conn: Connection, tenant_id: uuid.UUID, task_id: uuid.UUID, *, lock: bool = False
) -> TaskRecord:
    cur = await conn.execute(
        f"SELECT {TASK_COLUMNS} FROM workflows.operator_tasks"
        f" WHERE tenant_id = %s AND task_id = %s{' FOR UPDATE' if lock else ''}",
        (tenant_id, task_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"operator task {task_id} not found")
    return task_from_row(row)


def _not_claimable(task: TaskRecord, operator: str) -> FailedPrecondition:
    if task.state == TaskState.CLAIMED:
        holder = "the caller" if task.claimed_by == operator else "someone else"
        return FailedPrecondition(
            f"operator task {task.task_id} is claimed by {holder} until"
            f" {_iso(task.claim_expire_time)}",
            reason="TASK_CLAIMED",
        )
    return FailedPrecondition(
        f"operator task {task.task_id} is {task.state.value}", reason="TASK_NOT_OPEN"
    )


def _not_held(task: TaskRecord, operator: str) -> FailedPrecondition:
    if task.state in (TaskState.COMPLETED, TaskState.CANCELLED):
        return FailedPrecondition(
            f"operator task {task.task_id} is {task.state.value}", reason="TASK_NOT_OPEN"
        )
    return FailedPrecondition(
        f"operator task {task.task_id} is not claimed by the caller: claim it first",
        reason="TASK_NOT_CLAIMED_BY_CALLER",
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "?"


async def escalate_overdue_tasks(pool: Pool, limit: int = 100) -> int:
    """Mark tasks unclaimed past their SLA escalated, once each, with an event; how many."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM workflows.overdue_tasks(%s)", (limit,))
        overdue = await cur.fetchall()
    escalated = 0
    for row in overdue:
        async with tenant_transaction(pool, row.tenant_id) as conn:
            cur = await conn.execute(
                "UPDATE workflows.operator_tasks"
                " SET escalated = true, escalate_time = clock_timestamp(),"
                "     update_time = clock_timestamp()"
                " WHERE tenant_id = %s AND task_id = %s AND NOT escalated"
                "   AND due_time <= clock_timestamp()"
                f"  AND ({TASK_STATE_SQL}) = 'open'"
                " RETURNING run_id, kind, title, due_time, create_time",
                (row.tenant_id, row.task_id),
            )
            hit = await cur.fetchone()
            if hit is None:
                continue  # claimed meanwhile, or another worker escalated it
            await events.add(
                conn,
                events.task_escalated(
                    row.tenant_id,
                    row.task_id,
                    hit.run_id,
                    kind=hit.kind,
                    title=hit.title,
                    due_time=hit.due_time,
                    create_time=hit.create_time,
                ),
            )
            escalated += 1
    return escalated
