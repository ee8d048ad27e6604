"""The transactional outbox and its relay under faults, on both transports.

kill -9 of the producing process at each point, transactions committing out of id
order, and a connection cut while the broker's confirms are still on their way. Plus
the outbox's and inbox's row-level security, checked as the service's own role.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hygoshop.events.v1.catalog_pb2 import ListingCreated
from hygoshop_platform.bus import (
    Bus,
    BusSettings,
    Delivery,
    InboxPruner,
    OutboxRelay,
    RetryPolicy,
    add_to_outbox,
    connect_bus,
    new_event,
    prune_inbox,
    record_in_inbox,
)
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.testing.faultproxy import FaultProxy

from .conftest import Received, eventually, proxied, start_child, upstream_of, wait_for_marker

pytestmark = pytest.mark.integration

AdminQuery = Callable[..., Awaitable[list[Any]]]
SCHEMA = "busprobe"
FAST_RETRY = RetryPolicy(first_delay=0.1, multiplier=2.0, max_delay=0.5)


async def add_item(conn: Connection, tenant_id: uuid.UUID, item_id: uuid.UUID) -> str:
    """A state change and its event in one transaction (what a service does); the event's id."""
    await conn.execute(
        "INSERT INTO busprobe.items (tenant_id, item_id, name) VALUES (%s, %s, 'x')",
        (tenant_id, item_id),
    )
    event = new_event(
        "catalog.listing.created", ListingCreated(listing_id=str(item_id)), tenant_id=tenant_id
    )
    await add_to_outbox(conn, SCHEMA, event)
    return event.message_id


async def subscribe_items(bus: Bus, tenant_id: uuid.UUID) -> Received:
    """Collect the published item events of one tenant (other tests' leftovers are ignored)."""
    received = Received()

    async def record(delivery: Delivery) -> None:
        if delivery.tenant_id == tenant_id:
            received.add(delivery)

    await bus.subscribe("probe.items", ["catalog.listing.created"], record)
    return received


def published_items(received: Received) -> list[str]:
    return [d.unpack(ListingCreated).listing_id for d in received.deliveries]


async def pending_rows(admin_query: AdminQuery, tenant_id: uuid.UUID) -> int:
    rows = await admin_query(
        "SELECT count(*) FROM busprobe.outbox WHERE tenant_id = %s", (tenant_id,)
    )
    return int(rows[0][0])


async def test_every_committed_change_is_published_after_a_kill_9_at_each_point(
    bus: Bus,
    child_config: dict[str, Any],
    probe_pool: Pool,
    admin_query: AdminQuery,
    tmp_path: Path,
) -> None:
    tenant = uuid.uuid4()
    received = await subscribe_items(bus, tenant)
    items = {
        mode: uuid.uuid4()
        for mode in ("produce-uncommitted", "produce-committed", "relay-published")
    }

    def run(mode: str) -> Any:
        config = {**child_config, "tenant_id": str(tenant), "item_id": str(items[mode])}
        return start_child(mode, config, tmp_path)

    # 1. Killed inside the transaction: the change and its message roll back together.
    child = run("produce-uncommitted")
    try:
        await wait_for_marker(child, "IN-TRANSACTION")
        child.kill9()
    finally:
        child.stop()
    assert await pending_rows(admin_query, tenant) == 0

    # 2. Killed after the commit, before any relay saw the row.
    child = run("produce-committed")
    try:
        await wait_for_marker(child, "COMMITTED")
        child.kill9()
    finally:
        child.stop()
    assert await pending_rows(admin_query, tenant) == 1

    # 3. Killed after the broker confirmed (both pending rows), before marking them sent.
    child = run("relay-published")
    try:
        await wait_for_marker(child, "PUBLISHED")
        await received.wait_for(lambda: len(received.deliveries) == 2, "the confirmed messages")
        child.kill9()
    finally:
        child.stop()
    assert await pending_rows(admin_query, tenant) == 2  # not marked: they will go again

    # The service restarts: its relay publishes whatever is still in the outbox.
    relay = OutboxRelay(probe_pool, SCHEMA, bus, poll_interval=0.1)
    await relay.start()
    try:
        await eventually(lambda: _is_zero(pending_rows(admin_query, tenant)), "an empty outbox")
    finally:
        await relay.stop()
    await received.wait_for(lambda: len(received.deliveries) == 4, "the re-sent messages")

    committed = await admin_query(
        "SELECT item_id FROM busprobe.items WHERE tenant_id = %s", (tenant,)
    )
    expected = {str(items["produce-committed"]), str(items["relay-published"])}
    assert {str(row[0]) for row in committed} == expected
    # At least once each (twice here: before and after the crash); the rolled-back never.
    assert sorted(published_items(received)) == sorted([*expected, *expected])


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def _has_failed_rows(admin_query: AdminQuery, tenant_id: uuid.UUID) -> bool:
    """The relay tried and failed (its rows carry an error and a later retry time)."""
    rows = await admin_query(
        "SELECT count(*) FROM busprobe.outbox WHERE tenant_id = %s AND attempts > 0",
        (tenant_id,),
    )
    return int(rows[0][0]) > 0


async def test_transactions_committing_out_of_id_order_are_both_published(
    bus: Bus, probe_pool: Pool
) -> None:
    tenant = uuid.uuid4()
    received = await subscribe_items(bus, tenant)
    relay = OutboxRelay(probe_pool, SCHEMA, bus, poll_interval=0.1)
    await relay.start()
    try:
        slow_item, fast_item = uuid.uuid4(), uuid.uuid4()
        async with tenant_transaction(probe_pool, tenant) as slow:
            slow_message = await add_item(slow, tenant, slow_item)
            async with tenant_transaction(probe_pool, tenant) as fast:
                fast_message = await add_item(fast, tenant, fast_item)
                fast_row = await (
                    await fast.execute(
                        "SELECT id FROM busprobe.outbox WHERE message_id = %s", (fast_message,)
                    )
                ).fetchone()
            slow_row = await (
                await slow.execute(
                    "SELECT id FROM busprobe.outbox WHERE message_id = %s", (slow_message,)
                )
            ).fetchone()
            assert slow_row is not None
            assert fast_row is not None
            assert slow_row.id < fast_row.id  # the later commit has the higher id
            # The relay published the later row while the earlier one was uncommitted ...
            await received.wait_for(lambda: received.ids() == [fast_message], "the fast one")
        # ... and still publishes the earlier one once it commits: no "id > last seen".
        await received.wait_for(
            lambda: sorted(received.ids()) == sorted([fast_message, slow_message]), "both"
        )
    finally:
        await relay.stop()
    assert sorted(published_items(received)) == sorted([str(slow_item), str(fast_item)])


async def test_a_connection_cut_before_the_confirms_arrive_loses_nothing(
    bus: Bus, bus_settings: BusSettings, probe_pool: Pool, admin_query: AdminQuery
) -> None:
    tenant = uuid.uuid4()
    received = await subscribe_items(bus, tenant)
    items = [uuid.uuid4() for _ in range(200)]
    for chunk in range(0, len(items), 50):
        async with tenant_transaction(probe_pool, tenant) as conn:
            for item in items[chunk : chunk + 50]:
                await add_item(conn, tenant, item)

    async with FaultProxy(*upstream_of(bus_settings.url)) as proxy:
        flaky = await connect_bus(
            dataclasses.replace(bus_settings, url=proxied(bus_settings.url, proxy))
        )
        relay = OutboxRelay(
            probe_pool, SCHEMA, flaky, batch_size=50, poll_interval=0.1, retry=FAST_RETRY
        )
        try:
            proxy.hold()  # the relay's messages reach the broker; its confirms do not come back
            await relay.start()
            await received.wait_for(lambda: len(received.deliveries) >= 1, "a first message")
            # Published but unconfirmed: nothing may be marked sent.
            assert await pending_rows(admin_query, tenant) == len(items)
            proxy.refuse()  # the broker is unreachable for a while ...
            proxy.reset()  # ... and the connection dies with the confirms in flight
            await eventually(lambda: _has_failed_rows(admin_query, tenant), "failed passes")
            proxy.accept()
            await eventually(lambda: _is_zero(pending_rows(admin_query, tenant)), "an empty outbox")
        finally:
            await relay.stop()
            await flaky.close()
    expected = {str(item) for item in items}
    await received.wait_for(lambda: set(published_items(received)) == expected, "every item")
    assert proxy.connections_made >= 2  # it reconnected and re-sent what was unconfirmed


async def test_outbox_and_inbox_rows_are_confined_to_their_tenant(
    probe_pool: Pool, admin_query: AdminQuery
) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    try:
        messages = {}
        for tenant in (tenant_a, tenant_b):
            async with tenant_transaction(probe_pool, tenant) as conn:
                messages[tenant] = await add_item(conn, tenant, uuid.uuid4())

        # A transaction of A cannot add a message naming B (SQLSTATE 42501) ...
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with tenant_transaction(probe_pool, tenant_a) as conn:
                await add_to_outbox(
                    conn,
                    SCHEMA,
                    new_event("catalog.listing.created", ListingCreated(), tenant_id=tenant_b),
                )
        # ... nor see B's rows; without a tenant it sees none at all.
        async with tenant_transaction(probe_pool, tenant_a) as conn:
            cur = await conn.execute("SELECT message_id FROM busprobe.outbox")
            assert {str(r.message_id) for r in await cur.fetchall()} == {messages[tenant_a]}
        async with probe_pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM busprobe.outbox")
            assert (await cur.fetchone())[0] == 0  # type: ignore[index]
            # Only the relay's function reaches across tenants (and it is all it does).
            async with conn.transaction(force_rollback=True):
                cur = await conn.execute("SELECT envelope FROM busprobe.outbox_claim(1000)")
                claimed = {r.envelope for r in await cur.fetchall()}
                assert len(claimed) >= 2

        # The inbox: A records a message; B's transaction does not see it, pruning does.
        delivery = Delivery(
            envelope=new_event("catalog.listing.created", ListingCreated(), tenant_id=tenant_a),
            consumer="probe.items",
        )
        async with tenant_transaction(probe_pool, tenant_a) as conn:
            assert await record_in_inbox(conn, SCHEMA, delivery)
            assert not await record_in_inbox(conn, SCHEMA, delivery)  # already handled
        async with tenant_transaction(probe_pool, tenant_b) as conn:
            cur = await conn.execute("SELECT count(*) FROM busprobe.inbox")
            assert (await cur.fetchone())[0] == 0  # type: ignore[index]
        assert await prune_inbox(probe_pool, SCHEMA, timedelta(0)) >= 1
        async with tenant_transaction(probe_pool, tenant_a) as conn:
            assert await record_in_inbox(conn, SCHEMA, delivery)  # pruned: recorded afresh
        # What services run: the same prune on a schedule.
        pruner = InboxPruner(probe_pool, SCHEMA, keep=timedelta(0), every=0.05)
        await pruner.start()
        try:
            for _ in range(100):
                if pruner.pruned:
                    break
                await asyncio.sleep(0.02)
        finally:
            await pruner.stop()
        assert pruner.pruned >= 1
        async with tenant_transaction(probe_pool, tenant_a) as conn:
            assert await record_in_inbox(conn, SCHEMA, delivery)  # pruned again
    finally:
        await admin_query(
            "DELETE FROM busprobe.outbox WHERE tenant_id = ANY(%s)", ([tenant_a, tenant_b],)
        )


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("bus_url", ["amqp"], indirect=True)
async def test_a_real_broker_restart_while_publishing_loses_nothing(
    bus: Bus, bus_settings: BusSettings, probe_pool: Pool, admin_query: AdminQuery
) -> None:
    """The machine's RabbitMQ is stopped and started again (`rabbitmqctl stop_app` /
    `start_app`) while the relay publishes: every committed message arrives, none is
    marked sent without a confirm, and producer and consumer reconnect by themselves."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to restart the local broker for this test")
    tenant = uuid.uuid4()
    received = await subscribe_items(bus, tenant)
    items = [uuid.uuid4() for _ in range(300)]
    for chunk in range(0, len(items), 50):
        async with tenant_transaction(probe_pool, tenant) as conn:
            for item in items[chunk : chunk + 50]:
                await add_item(conn, tenant, item)
    publisher = await connect_bus(bus_settings)
    broker_stopped = asyncio.Event()

    async def stop_broker_after_the_first_batch(*_: object) -> None:
        if not broker_stopped.is_set():  # mid-publishing: 10 sent, 290 still to go
            await asyncio.to_thread(_rabbitmqctl, "stop_app")
            broker_stopped.set()

    relay = OutboxRelay(
        probe_pool,
        SCHEMA,
        publisher,
        batch_size=10,
        poll_interval=0.05,
        retry=FAST_RETRY,
        on_published=stop_broker_after_the_first_batch,
    )
    try:
        await relay.start()
        try:
            await asyncio.wait_for(broker_stopped.wait(), timeout=60)
            assert await pending_rows(admin_query, tenant) > 0
            await asyncio.sleep(1.0)  # the relay keeps trying against a stopped broker
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")
        await eventually(
            lambda: _is_zero(pending_rows(admin_query, tenant)), "an empty outbox", within=120
        )
    finally:
        await relay.stop()
        await publisher.close()
    expected = {str(item) for item in items}
    await received.wait_for(
        lambda: set(published_items(received)) == expected, "every item", within=120
    )
