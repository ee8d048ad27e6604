"""Small SQL helpers shared by the runtime's writers."""

from __future__ import annotations

import uuid

from hygoshop_platform.db import Connection

SCHEMA = "workflows"
RUNNABLE_CHANNEL = "hygoshop_workflows_runnable"
"""NOTIFYed when a run becomes claimable now (started, signalled, woken); idle workers
LISTEN on it instead of waiting for their next poll."""


async def notify_runnable(conn: Connection) -> None:
    """Wake idle workers when this transaction commits (NOTIFY is transactional)."""
    await conn.execute("SELECT pg_notify(%s, '')", (RUNNABLE_CHANNEL,))


async def cancel_open_tasks(conn: Connection, tenant_id: uuid.UUID, runs: list[uuid.UUID]) -> None:
    """The ended runs' operator tasks nobody completed: nobody needs to decide them now."""
    await conn.execute(
        "UPDATE workflows.operator_tasks SET state = 'cancelled',"
        " end_time = clock_timestamp(), update_time = clock_timestamp()"
        " WHERE tenant_id = %s AND run_id = ANY(%s) AND state IN ('open', 'claimed')",
        (tenant_id, runs),
    )


async def close_open_steps(conn: Connection, tenant_id: uuid.UUID, runs: list[uuid.UUID]) -> None:
    """The ended runs' steps still in flight, waiting or backing off: they never finish now.
    (Their last error, if any, stays on them.)"""
    await conn.execute(
        "UPDATE workflows.steps SET state = 'cancelled', wake_at = NULL,"
        " end_time = clock_timestamp()"
        " WHERE tenant_id = %s AND run_id = ANY(%s) AND state IN ('running', 'retrying')",
        (tenant_id, runs),
    )
