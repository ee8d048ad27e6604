"""The reads a wait makes, in its fenced transaction: the oldest signal of a name not taken
yet (taking it), and an operator task's outcome once it is completed."""

from __future__ import annotations

import uuid
from typing import Any

from hygoshop_platform.db import Connection
from hygoshop_workflows.domain.states import Decision
from hygoshop_workflows.runtime.calls import TaskOutcome
from hygoshop_workflows.runtime.lease import RunLease


async def take_signal(
    conn: Connection, lease: RunLease, name: str, seq: int
) -> dict[str, Any] | None:
    cur = await conn.execute(
        """
        WITH oldest AS (
            SELECT signal_id FROM workflows.signals
             WHERE tenant_id = %(t)s AND run_id = %(r)s AND name = %(name)s
               AND consumed_seq IS NULL
             ORDER BY create_time, signal_id
             LIMIT 1
             FOR UPDATE
        )
        UPDATE workflows.signals s SET consumed_seq = %(seq)s
          FROM oldest WHERE s.tenant_id = %(t)s AND s.signal_id = oldest.signal_id
        RETURNING s.payload
        """,
        {"t": lease.tenant_id, "r": lease.run_id, "name": name, "seq": seq},
    )
    row = await cur.fetchone()
    return dict(row.payload) if row is not None else None


async def completed_outcome(
    conn: Connection, tenant_id: uuid.UUID, task_id: uuid.UUID
) -> TaskOutcome | None:
    cur = await conn.execute(
        "SELECT decision, outcome_payload, comment, completed_by FROM workflows.operator_tasks"
        " WHERE tenant_id = %s AND task_id = %s AND state = 'completed'",
        (tenant_id, task_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return TaskOutcome(
        task_id=task_id,
        decision=Decision(row.decision),
        payload=row.outcome_payload or {},
        comment=row.comment,
        operator=row.completed_by,
    )
