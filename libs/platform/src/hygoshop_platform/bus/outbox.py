"""The transactional outbox: messages written with the state change, published by a relay.

A service's migration creates `<schema>.outbox` with `outbox_sql("<schema>")`. Inside its
tenant transaction the service calls `add_to_outbox(conn, "<schema>", envelope, ...)`: the
message commits or rolls back with the change. `OutboxRelay`, started in the service
process, claims committed rows with `FOR UPDATE SKIP LOCKED` (so several replicas share
the work and a row committed late, with a lower id, is still seen: there is no "id >
last seen" cursor), publishes them, and deletes a row only after the broker confirmed it,
in the same transaction that holds its lock. A crash anywhere before that commit leaves
the row (and its lock goes with the session): it is published again, at least once.
Rows the broker refused are kept with a growing delay.

Row-level security: outbox rows carry tenant_id and have the usual fail-closed tenant
policy, so a service can only add messages of the tenant its transaction runs as (an
envelope naming another tenant fails with SQLSTATE 42501). The relay works across
tenants, but the application role gets no policy for that. Instead three SECURITY DEFINER
functions, owned by the schema's owner role, do exactly the relay's work:
`<schema>.outbox_claim(limit)`, `outbox_sent(ids)` and `outbox_failed(ids, error, ...)`.
They run as the owner, whose own policy (`outbox_relay`, for the owner role only) lets
it see every tenant's rows; the application role may execute them and nothing more, and
still cannot read or change other tenants' outbox rows with plain SQL. This is the
pattern of `tenancy.lookup_api_key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import psycopg
from google.protobuf.message import DecodeError

from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus.base import Bus, stop_tasks
from hygoshop_platform.bus.message import describe
from hygoshop_platform.bus.settings import RetryPolicy
from hygoshop_platform.db import Connection, Pool

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"[a-z][a-z0-9_]{0,40}")


def checked_schema(schema: str) -> str:
    """`schema`, refused unless a plain identifier: it is put into SQL text."""
    if not _SCHEMA.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
    return schema


def notify_channel(schema: str) -> str:
    return f"hygoshop_outbox_{checked_schema(schema)}"


def outbox_sql(schema: str) -> list[str]:
    """Statements for a service's migration: `<schema>.outbox`, its RLS and relay functions."""
    # Imported here: migrations pulls in Alembic and SQLAlchemy, which a running service
    # (that only adds to the outbox) does not need to load.
    from hygoshop_platform.migrations import enable_tenant_rls

    s = checked_schema(schema)
    owner, app, table = f"hygoshop_{s}_owner", f"hygoshop_{s}_app", f"{s}.outbox"
    definer = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    return [
        f"""
        CREATE TABLE {table} (
            tenant_id    uuid NOT NULL,
            id           bigint GENERATED ALWAYS AS IDENTITY,
            message_id   uuid NOT NULL,
            type         text NOT NULL,
            envelope     bytea NOT NULL,
            attempts     integer NOT NULL DEFAULT 0,
            last_error   text,
            available_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            create_time  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (tenant_id, id),
            UNIQUE (tenant_id, message_id)
        )
        """,
        f"CREATE INDEX outbox_by_id ON {table} (id)",
        *enable_tenant_rls(table),
        f"CREATE POLICY outbox_relay ON {table} FOR ALL TO {owner} USING (true) WITH CHECK (true)",
        f"""
        CREATE FUNCTION {s}.outbox_claim(p_limit integer)
        RETURNS TABLE (id bigint, envelope bytea, attempts integer)
        LANGUAGE sql VOLATILE {definer}
        AS $$
            SELECT o.id, o.envelope, o.attempts FROM {table} o
             WHERE o.available_at <= clock_timestamp()
             ORDER BY o.id
             LIMIT p_limit
             FOR UPDATE SKIP LOCKED
        $$
        """,
        f"""
        CREATE FUNCTION {s}.outbox_sent(p_ids bigint[]) RETURNS void
        LANGUAGE sql VOLATILE {definer}
        AS $$ DELETE FROM {table} WHERE id = ANY(p_ids) $$
        """,
        f"""
        CREATE FUNCTION {s}.outbox_failed(p_ids bigint[], p_error text,
            p_first_delay double precision, p_multiplier double precision,
            p_max_delay double precision) RETURNS void
        LANGUAGE sql VOLATILE {definer}
        AS $$
            UPDATE {table}
               SET attempts = attempts + 1, last_error = left(p_error, 2000),
                   available_at = clock_timestamp() + least(p_max_delay,
                       p_first_delay * power(p_multiplier, attempts)) * interval '1 second'
             WHERE id = ANY(p_ids)
        $$
        """,
        *(
            statement
            for fn in (
                "outbox_claim(integer)",
                "outbox_sent(bigint[])",
                "outbox_failed(bigint[], text, double precision, double precision,"
                " double precision)",
            )
            for statement in (
                f"REVOKE ALL ON FUNCTION {s}.{fn} FROM PUBLIC",
                f"GRANT EXECUTE ON FUNCTION {s}.{fn} TO {app}",
            )
        ),
    ]


async def add_to_outbox(conn: Connection, schema: str, *envelopes: Envelope) -> None:
    """Add messages to the outbox in the caller's (tenant) transaction; they are published
    after it commits, and never if it rolls back."""
    if not envelopes:
        return
    s = checked_schema(schema)
    await conn.execute(
        f"""
        WITH added AS (
            INSERT INTO {s}.outbox (tenant_id, message_id, type, envelope)
            SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::bytea[])
            RETURNING 1
        )
        SELECT pg_notify(%s, '') FROM (SELECT 1 FROM added LIMIT 1) a
        """,
        (
            [e.tenant_id for e in envelopes],
            [e.message_id for e in envelopes],
            [e.type for e in envelopes],
            [e.SerializeToString() for e in envelopes],
            notify_channel(s),
        ),
    )


OnPublished = Callable[[Sequence[Envelope]], Awaitable[None]]


class OutboxRelay:
    """Publishes a service's outbox from inside the service process until stopped.

    `on_published` runs after the broker confirmed a batch and before the rows are marked
    sent (fault-injection tests kill the process there; metrics could count there).
    """

    def __init__(
        self,
        pool: Pool,
        schema: str,
        bus: Bus,
        *,
        batch_size: int = 200,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        on_published: OnPublished | None = None,
    ) -> None:
        if not isinstance(pool.conninfo, str):
            raise TypeError("the relay needs a pool opened with a connection string")
        self._conninfo = pool.conninfo  # its LISTEN connection goes where the pool goes
        self.pool = pool
        self.schema = checked_schema(schema)
        self.bus = bus
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy(first_delay=0.5, multiplier=2.0, max_delay=30.0)
        self.poll_interval = poll_interval
        self.on_published = on_published
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        if not self._tasks:
            self._stopping = False
            self._tasks = [
                asyncio.create_task(self._run(), name=f"outbox-relay {self.schema}"),
                asyncio.create_task(self._listen(), name=f"outbox-listen {self.schema}"),
            ]

    async def stop(self) -> None:
        """Stop after the batch in flight (its rows are marked, or published again later)."""
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        await stop_tasks(tasks)

    async def relay_once(self) -> int:
        """Claim, publish and mark one batch; the number of messages the broker confirmed."""
        s = self.schema
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT id, envelope FROM {s}.outbox_claim(%s)", (self.batch_size,)
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            ids: list[int] = []
            envelopes: list[Envelope] = []
            broken: dict[int, str] = {}
            for row in rows:
                try:
                    envelopes.append(Envelope.FromString(row[1]))
                    ids.append(row[0])
                except DecodeError as exc:
                    broken[row[0]] = describe(exc)
            results = await self.bus.publish_batch(envelopes)
            sent = [i for i, error in zip(ids, results, strict=True) if error is None]
            failed = {i: describe(e) for i, e in zip(ids, results, strict=True) if e is not None}
            failed.update(broken)
            if sent and self.on_published is not None:
                await self.on_published(
                    [e for e, r in zip(envelopes, results, strict=True) if r is None]
                )
            if sent:
                await conn.execute(f"SELECT {s}.outbox_sent(%s)", (sent,))
            if failed:
                first_error = next(iter(failed.values()))
                log.warning(
                    "outbox %s: %d message(s) not published: %s", s, len(failed), first_error
                )
                await conn.execute(
                    f"SELECT {s}.outbox_failed(%s, %s, %s, %s, %s)",
                    (
                        list(failed),
                        first_error,
                        self.retry.first_delay,
                        self.retry.multiplier,
                        self.retry.max_delay,
                    ),
                )
        return len(sent)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.relay_once()
            except Exception as exc:  # the relay must outlive any one bad pass
                log.warning("outbox %s: relay pass failed: %s", self.schema, describe(exc))
                published = 0
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _listen(self) -> None:
        """Wake the relay when a transaction that added messages commits."""
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="hygoshop-outbox"
                )
                async with conn:
                    await conn.execute(f"LISTEN {notify_channel(self.schema)}")
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("outbox %s: listener lost its connection: %s", self.schema, exc)
                await asyncio.sleep(self.poll_interval)
