"""Group commit for the inbox: messages of one tenant that wait share a transaction.

At most `lanes` inbox transactions run at once for a consumer; messages arriving
meanwhile wait, grouped by tenant, and the next free lane takes the tenant that has
waited longest (fair to small tenants), up to `limit` of its messages: one BEGIN, one
inbox INSERT and one COMMIT for the group instead of per message. A tenant never has two transactions in flight, so its
messages take effect in arrival order. Each waiter learns its own outcome: if any handler
of a group fails, the group rolls back and each of its messages runs again alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from hygoshop_platform.bus.base import Handler
from hygoshop_platform.bus.message import Delivery
from hygoshop_platform.db import Connection, Pool, tenant_transaction

Waiter = tuple[Delivery, "asyncio.Future[None]"]
InboxHandlerType = Callable[[Connection, Delivery], Awaitable[None]]


class InboxBatcher:
    """Runs `handler` for waiting messages, a group of one tenant per transaction."""

    def __init__(
        self,
        pool: Pool,
        schema: str,
        handler: InboxHandlerType,
        handle_alone: Handler,
        *,
        limit: int,
        lanes: int = 1,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._handler = handler
        self._handle_alone = handle_alone
        self._limit = limit
        self._lanes = lanes
        self._waiting: dict[uuid.UUID, list[Waiter]] = {}
        self._busy: set[uuid.UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, delivery: Delivery) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(delivery.tenant_id, []).append((delivery, future))
        self._dispatch()
        await asyncio.shield(future)  # a cancelled waiter must not cancel its group

    def _dispatch(self) -> None:
        """Start groups while lanes are free and some idle tenant has messages waiting."""
        while len(self._busy) < self._lanes:
            # Dicts keep insertion order: the first idle tenant has waited longest.
            tenant = next((t for t in self._waiting if t not in self._busy), None)
            if tenant is None:
                return
            waiting = self._waiting.pop(tenant)
            group, rest = waiting[: self._limit], waiting[self._limit :]
            if rest:
                self._waiting[tenant] = rest
            self._busy.add(tenant)
            task = asyncio.create_task(self._run_group(tenant, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_group(self, tenant: uuid.UUID, group: list[Waiter]) -> None:
        try:
            await self._run(tenant, group)
        finally:
            for _, future in group:
                if not future.done():  # cancelled midway: not acked, delivered again
                    future.cancel()
            self._busy.discard(tenant)
            self._dispatch()

    async def _run(self, tenant: uuid.UUID, group: list[Waiter]) -> None:
        try:
            async with tenant_transaction(self._pool, tenant) as conn:
                cur = await conn.execute(
                    f"INSERT INTO {self._schema}.inbox (tenant_id, consumer, message_id)"
                    " SELECT %s, c, m FROM unnest(%s::text[], %s::uuid[]) AS u(c, m)"
                    " ON CONFLICT DO NOTHING RETURNING consumer, message_id",
                    (tenant, [d.consumer for d, _ in group], [d.message_id for d, _ in group]),
                )
                fresh = {(row[0], row[1]) for row in await cur.fetchall()}
                for delivery, _ in group:
                    key = (delivery.consumer, delivery.message_id)
                    if key in fresh:
                        fresh.discard(key)  # the same message twice in a group: once
                        await self._handler(conn, delivery)
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            for delivery, future in group:  # isolate the failure: one transaction each
                await _settle(future, self._handle_alone(delivery))
            return
        for _, future in group:
            if not future.done():
                future.set_result(None)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def _settle(future: asyncio.Future[None], work: Awaitable[None]) -> None:
    try:
        await work
    except Exception as exc:
        _fail(future, exc)
        return
    if not future.done():
        future.set_result(None)
