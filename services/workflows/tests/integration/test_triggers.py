"""Bus triggers on a real bus (the PostgreSQL transport): `catalog.listing.created` starts a
`test.listing_watch` run once per listing, even when delivered twice; `catalog.listing.updated`
signals it; an update of a listing no run watches is acked and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hygoshop.events.v1 import catalog_pb2
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus import BusSettings, new_event
from hygoshop_platform.bus.pg import PgBus
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.db import tenant_transaction
from hygoshop_workflows.domain.states import RunState
from hygoshop_workflows.runtime.triggers import subscribe_triggers, subscription_name
from tests.support import PlatformDatabase
from tests.workflow_defs import registry

from .conftest import Runtime

pytestmark = pytest.mark.integration

WATCH = "test.listing_watch"
WAIT = 20.0  # upper bound of every wait; each normally takes well under a second


@pytest.fixture
async def bus(platform_db: PlatformDatabase) -> AsyncIterator[PgBus]:
    """A bus in a namespace of its own, so parallel sessions on one database do not meet."""
    settings = BusSettings(platform_db.app_url(BUS_SCHEMA), namespace=f"wf{uuid.uuid4().hex[:12]}")
    connected = await PgBus.connect(settings)
    yield connected
    await connected.delete_namespace()
    await connected.close()


@pytest.fixture
async def triggers(bus: PgBus, runtime: Runtime) -> AsyncIterator[str]:
    """The trigger subscriptions running; the queue of `test.listing_watch`'s."""
    consumers = await subscribe_triggers(bus, runtime.pool, registry)
    definition = registry.newest(WATCH)
    assert definition is not None
    yield bus.subscription_queue(subscription_name(definition))
    for consumer in consumers:
        await consumer.stop()


def created(tenant: uuid.UUID, listing_id: str) -> Envelope:
    return new_event(
        "catalog.listing.created",
        catalog_pb2.ListingCreated(listing_id=listing_id),
        tenant_id=tenant,
    )


def updated(tenant: uuid.UUID, listing_id: str) -> Envelope:
    return new_event(
        "catalog.listing.updated",
        catalog_pb2.ListingUpdated(listing_id=listing_id),
        tenant_id=tenant,
    )


async def settled(bus: PgBus, queue: str) -> None:
    """Wait (bounded) until the queue holds nothing: every message acked, none retrying
    (a retry stays in the queue, hidden) and none dead-lettered."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        async with bus.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM bus.messages WHERE queue = ANY(%s)",
                ([queue, bus.dead_letter_queue(queue)],),
            )
            row = await cur.fetchone()
        assert row is not None
        if row[0] == 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{row[0]} message(s) left"
        await asyncio.sleep(0.05)


async def handled(runtime: Runtime, tenant: uuid.UUID, message_id: str) -> int:
    """How many times the triggers recorded the message in the workflows inbox."""
    async with tenant_transaction(runtime.pool, tenant) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM workflows.inbox WHERE tenant_id = %s AND message_id = %s",
            (tenant, uuid.UUID(message_id)),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row.n)


async def watch_runs(runtime: Runtime, tenant: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    runs, _ = await runtime.runs.list(
        tenant, workflow_type=WATCH, state=None, page_size=10, page_token=""
    )
    return [(r.run_id, r.business_key) for r in runs]


async def test_created_starts_one_run_and_updated_signals_it(
    runtime: Runtime, bus: PgBus, triggers: str
) -> None:
    tenant, listing_id = uuid.uuid4(), str(uuid.uuid4())
    event = created(tenant, listing_id)
    # The same envelope delivered twice (a redelivery), then another event for the listing.
    await bus.publish(event, event)
    await bus.publish(created(tenant, listing_id))
    await settled(bus, triggers)
    assert await handled(runtime, tenant, event.message_id) == 1
    ((run_id, key),) = await watch_runs(runtime, tenant)
    assert key == listing_id

    await runtime.start_worker()
    waiting = await runtime.wait_for(tenant, run_id, lambda r: r.state == RunState.WAITING)
    assert (waiting.state, waiting.waiting_on) == (RunState.WAITING, "signal:updated"), waiting

    await bus.publish(updated(tenant, listing_id))
    done = await runtime.wait_for(tenant, run_id)
    assert done.state == RunState.SUCCEEDED, done
    assert done.result == {"updated": True}
    await settled(bus, triggers)
    assert len(await watch_runs(runtime, tenant)) == 1

    # Events keep coming after the run ended: acked without effect, not dead-lettered.
    late = updated(tenant, listing_id)
    await bus.publish(late)
    await settled(bus, triggers)
    assert await handled(runtime, tenant, late.message_id) == 1
    assert (await runtime.runs.get(tenant, run_id)).result == {"updated": True}


async def test_an_update_of_an_unwatched_listing_is_acked_without_effect(
    runtime: Runtime, bus: PgBus, triggers: str
) -> None:
    tenant, listing_id = uuid.uuid4(), str(uuid.uuid4())
    event = updated(tenant, listing_id)
    await bus.publish(event)
    await settled(bus, triggers)  # acked: not retrying, not dead-lettered
    assert await handled(runtime, tenant, event.message_id) == 1
    assert await watch_runs(runtime, tenant) == []
    async with tenant_transaction(runtime.pool, tenant) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM workflows.signals WHERE tenant_id = %s", (tenant,)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row.n == 0
