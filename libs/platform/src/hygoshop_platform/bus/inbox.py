"""The inbox: a consumer's effect and the handled message's id commit together.

A service's migration creates `<schema>.inbox` with `inbox_sql("<schema>")`. A handler
wrapped in `with_inbox(pool, "<schema>", handler)` runs inside a tenant transaction of
the envelope's tenant (so RLS confines the effect to that tenant's rows, whatever ids
the payload names) whose first statement records (tenant, consumer, message id). A
redelivery of a handled message finds that row and does nothing; a concurrent duplicate
waits on the row's unique key and then does nothing. If the handler raises, the
transaction, and with it the record, rolls back and the message is retried.

Rows are per tenant with fail-closed RLS like every tenant table. `<schema>.inbox_prune`
(SECURITY DEFINER, owner role policy `inbox_prune`, as for the outbox) deletes records
older than a retention that must exceed how long a message can be redelivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from hygoshop_platform.bus.base import Handler
from hygoshop_platform.bus.message import Delivery
from hygoshop_platform.bus.outbox import checked_schema
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.periodic import Periodic

InboxHandler = Callable[[Connection, Delivery], Awaitable[None]]
"""Does a consumer's effect on `conn`, the tenant transaction that records the message."""


def inbox_sql(schema: str) -> list[str]:
    """Statements for a service's migration: `<schema>.inbox`, its RLS and prune function."""
    from hygoshop_platform.migrations import enable_tenant_rls  # see outbox_sql

    s = checked_schema(schema)
    owner, app, table = f"hygoshop_{s}_owner", f"hygoshop_{s}_app", f"{s}.inbox"
    return [
        f"""
        CREATE TABLE {table} (
            tenant_id   uuid NOT NULL,
            consumer    text NOT NULL,
            message_id  uuid NOT NULL,
            handle_time timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (tenant_id, consumer, message_id)
        )
        """,
        f"CREATE INDEX inbox_by_time ON {table} (handle_time)",
        *enable_tenant_rls(table),
        f"CREATE POLICY inbox_prune ON {table} FOR ALL TO {owner} USING (true) WITH CHECK (true)",
        f"""
        CREATE FUNCTION {s}.inbox_prune(p_older_than interval) RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
            WITH pruned AS (
                DELETE FROM {table} WHERE handle_time < clock_timestamp() - p_older_than
                RETURNING 1
            )
            SELECT count(*) FROM pruned
        $$
        """,
        f"REVOKE ALL ON FUNCTION {s}.inbox_prune(interval) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {s}.inbox_prune(interval) TO {app}",
    ]


async def record_in_inbox(conn: Connection, schema: str, delivery: Delivery) -> bool:
    """Record the message as handled by its consumer in `conn`'s (tenant) transaction.

    True the first time; False when it was handled already (skip the effect). For
    handlers that manage their own transactions; most use `with_inbox`.
    """
    cur = await conn.execute(
        f"INSERT INTO {checked_schema(schema)}.inbox (tenant_id, consumer, message_id)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (delivery.tenant_id, delivery.consumer, delivery.message_id),
    )
    return cur.rowcount == 1


def with_inbox(pool: Pool, schema: str, handler: InboxHandler, *, batch: int = 1) -> Handler:
    """A bus handler that runs `handler(conn, delivery)` at most once per message and
    consumer, in a transaction of the envelope's tenant that also records the message.

    `batch` > 1: this consumer runs one transaction at a time, and the messages that
    arrive meanwhile share the next one, grouped by tenant (up to `batch` per group): one
    commit for many, as group commit does (measured: about 2x the messages/s of one commit
    each, see the `bus` benchmark). Each message is still acked only after the commit that
    holds its effect and its record. If any handler of a group fails, the group rolls back
    and each of its messages runs again alone, so a failure fails only its own message.
    For short handlers (event projections); a long one (an import) would hold back the
    others, so keep the default of 1 (a transaction per message, `prefetch` at once).
    """
    checked_schema(schema)

    async def handle_alone(delivery: Delivery) -> None:
        async with tenant_transaction(pool, delivery.tenant_id) as conn:
            if await record_in_inbox(conn, schema, delivery):
                await handler(conn, delivery)

    if batch <= 1:
        return handle_alone
    from hygoshop_platform.bus.inbox_batch import InboxBatcher

    return InboxBatcher(pool, schema, handler, handle_alone, limit=batch).handle


async def prune_inbox(pool: Pool, schema: str, older_than: timedelta) -> int:
    """Delete every tenant's inbox records older than `older_than`; how many went."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {checked_schema(schema)}.inbox_prune(%s)", (older_than,))
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


class InboxPruner(Periodic):
    """Prunes `<schema>.inbox` every `every` seconds, keeping `keep` of history.

    `keep` must exceed how long a message can come back: broker redeliveries come within
    minutes, but an operator may replay a dead letter days later, so the default is a week.
    Every replica may run one: the prune is one idempotent DELETE.
    """

    def __init__(
        self,
        pool: Pool,
        schema: str,
        *,
        keep: timedelta = timedelta(days=7),
        every: float = 3600.0,
    ) -> None:
        self.schema = checked_schema(schema)
        self.keep = keep
        self.pruned = 0
        self._pool = pool
        super().__init__(f"inbox-pruner-{self.schema}", self._prune, every)

    async def _prune(self) -> None:
        self.pruned += await prune_inbox(self._pool, self.schema, self.keep)
