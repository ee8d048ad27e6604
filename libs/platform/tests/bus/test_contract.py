"""The bus contract, run unchanged against RabbitMQ and the PostgreSQL transport.

Delivery (events fan out by pattern, a job goes to one consumer, tenant and trace context
travel), ack, retry with backoff, dead letters with their history, poison messages,
redelivery after a consumer is killed -9 before its ack (the inbox keeps the effect
single), the delivery limit for consumers that keep dying, and connection loss.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from hygoshop.events.v1.catalog_pb2 import ListingCreated, ListingImportRequested
from hygoshop_platform.bus import (
    Bus,
    BusSettings,
    ConsumerOptions,
    Delivery,
    PermanentFailure,
    RetryPolicy,
    connect_bus,
    new_event,
    new_job,
    with_inbox,
)
from hygoshop_platform.bus.message import (
    MESSAGE_ID_HEADER,
    SCHEMA_VERSION_HEADER,
    TENANT_HEADER,
    TRACEPARENT_HEADER,
    TYPE_HEADER,
)
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.tenancy import current_caller
from hygoshop_platform.testing.faultproxy import FaultProxy

from .conftest import (
    DELIVERY_LIMIT,
    Received,
    eventually,
    proxied,
    start_child,
    upstream_of,
    wait_for_marker,
)

pytestmark = pytest.mark.integration

FAST = ConsumerOptions(retry=RetryPolicy(max_attempts=3, first_delay=0.2, multiplier=2.0))
IMPORT = "probe.listing_import"


def created(tenant_id: uuid.UUID, listing: str = "L") -> Any:
    return new_event(
        "catalog.listing.created", ListingCreated(listing_id=listing), tenant_id=tenant_id
    )


def job(tenant_id: uuid.UUID, import_id: str = "I") -> Any:
    return new_job(IMPORT, ListingImportRequested(import_id=import_id), tenant_id=tenant_id)


async def test_events_fan_out_by_pattern_and_a_job_goes_to_one_consumer(bus: Bus) -> None:
    tenant = uuid.uuid4()
    listings, everything, jobs = Received(), Received(), Received()
    seen_as: dict[str, tuple[uuid.UUID | None, int]] = {}

    async def on_listing(delivery: Delivery) -> None:
        span = trace.get_current_span().get_span_context()
        seen_as[delivery.envelope.message_id] = (current_caller().tenant_id, span.trace_id)
        listings.add(delivery)

    async def on_any(delivery: Delivery) -> None:
        everything.add(delivery)

    async def on_job(delivery: Delivery) -> None:
        jobs.add(delivery)

    await bus.subscribe("probe.listings", ["catalog.listing.*"], on_listing)
    await bus.subscribe("probe.all", ["#"], on_any)
    # Two consumers of one job type (two processes, say) share its queue.
    await bus.consume_jobs(IMPORT, on_job)
    await bus.consume_jobs(IMPORT, on_job)

    # The producer runs inside a traced request: the consumer must join that trace.
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    producer = SpanContext(trace_id, 0x00F067AA0BA902B7, is_remote=False, trace_flags=TraceFlags(1))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(producer)))
    try:
        listing_event = created(tenant, "L1")
        order_event = new_event(
            "orders.order.placed", ListingCreated(listing_id="O1"), tenant_id=tenant
        )
        the_job = job(tenant)
    finally:
        otel_context.detach(token)
    await bus.publish(listing_event, order_event, the_job)

    await everything.wait_for(lambda: len(everything.deliveries) == 2, "both events")
    await listings.wait_for(lambda: len(listings.deliveries) == 1, "the listing event")
    await jobs.wait_for(lambda: len(jobs.deliveries) == 1, "the job")
    assert sorted(everything.ids()) == sorted([listing_event.message_id, order_event.message_id])

    delivery = listings.deliveries[0]
    assert delivery.unpack(ListingCreated).listing_id == "L1"
    assert delivery.tenant_id == tenant
    assert delivery.attempt == 1
    assert delivery.failures == ()
    assert delivery.headers[MESSAGE_ID_HEADER] == listing_event.message_id
    assert delivery.headers[TYPE_HEADER] == "catalog.listing.created"
    assert delivery.headers[TENANT_HEADER] == str(tenant)
    assert int(delivery.headers[SCHEMA_VERSION_HEADER]) == 1
    assert delivery.headers[TRACEPARENT_HEADER].split("-")[1] == format(trace_id, "032x")
    # The handler ran as the message's tenant, inside the producer's trace.
    assert seen_as[listing_event.message_id] == (tenant, trace_id)
    assert jobs.deliveries[0].unpack(ListingImportRequested).import_id == "I"


async def test_an_acked_message_is_not_delivered_again(bus: Bus) -> None:
    tenant = uuid.uuid4()
    first, second = Received(), Received()

    async def record_first(delivery: Delivery) -> None:
        first.add(delivery)

    async def record_second(delivery: Delivery) -> None:
        second.add(delivery)

    consumer = await bus.consume_jobs(IMPORT, record_first)
    a = job(tenant, "A")
    # An event nobody subscribes to is confirmed too (parked or dropped, never refused).
    await bus.publish(created(tenant), a)
    await first.wait_for(lambda: len(first.deliveries) == 1, "A")
    await consumer.stop()

    await bus.consume_jobs(IMPORT, record_second)
    b = job(tenant, "B")
    await bus.publish(b)
    await second.wait_for(lambda: b.message_id in second.ids(), "B")
    # A queue is first in, first out: had A not been acked it would have come before B.
    assert second.ids() == [b.message_id]


async def test_a_failing_message_is_retried_with_backoff(bus: Bus) -> None:
    received = Received()
    attempts_at: list[float] = []

    async def fail_twice(delivery: Delivery) -> None:
        attempts_at.append(time.monotonic())
        received.add(delivery)
        if delivery.attempt < 3:
            raise RuntimeError(f"vendor timeout on attempt {delivery.attempt}")

    await bus.consume_jobs(IMPORT, fail_twice, FAST)
    await bus.publish(job(uuid.uuid4()))
    await received.wait_for(lambda: len(received.deliveries) == 3, "three attempts")

    assert [d.attempt for d in received.deliveries] == [1, 2, 3]
    last = received.deliveries[-1]
    assert [(f.attempt, f.consumer, f.error) for f in last.failures] == [
        (1, IMPORT, "RuntimeError: vendor timeout on attempt 1"),
        (2, IMPORT, "RuntimeError: vendor timeout on attempt 2"),
    ]
    # Backoff: attempt 2 no sooner than 0.2 s after attempt 1, attempt 3 0.4 s after 2.
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts_at)]
    assert gaps[0] >= 0.2 * 0.9
    assert gaps[1] >= 0.4 * 0.9


async def test_a_poison_message_is_dead_lettered_with_its_history_and_others_flow(
    bus: Bus,
) -> None:
    tenant = uuid.uuid4()
    handled = Received()

    async def handler(delivery: Delivery) -> None:
        import_id = delivery.unpack(ListingImportRequested).import_id
        if import_id == "poison":
            raise ValueError(f"row 7: price is not a number (attempt {delivery.attempt})")
        if import_id == "refused":
            raise PermanentFailure("schema version 9 is unknown")
        handled.add(delivery)

    await bus.consume_jobs(IMPORT, handler, FAST)
    poison, refused = job(tenant, "poison"), job(tenant, "refused")
    good = [job(tenant, f"good-{i}") for i in range(5)]
    await bus.publish(poison, refused, *good)
    await handled.wait_for(lambda: len(handled.deliveries) == 5, "the good jobs")

    queue = bus.job_queue(IMPORT)
    letters: dict[str, Any] = {}

    async def both_dead() -> bool:
        for letter in await bus.take_dead_letters(queue):
            assert letter.envelope is not None
            letters[letter.envelope.message_id] = letter
        return len(letters) == 2

    await eventually(both_dead, "two dead letters")
    history = letters[poison.message_id].failures
    assert [(f.attempt, f.error) for f in history] == [
        (n, f"ValueError: row 7: price is not a number (attempt {n})") for n in (1, 2, 3)
    ]
    assert all(f.consumer == IMPORT and f.time for f in history)
    # A permanent failure is not retried.
    assert [(f.attempt, f.error) for f in letters[refused.message_id].failures] == [
        (1, "PermanentFailure: schema version 9 is unknown")
    ]
    # The queue still flows after the poison.
    later = job(tenant, "later")
    await bus.publish(later)
    await handled.wait_for(lambda: later.message_id in handled.ids(), "a later job")
    assert await bus.take_dead_letters(queue) == []


async def _record_effect(conn: Connection, delivery: Delivery) -> None:
    delivery.unpack(ListingImportRequested)
    await conn.execute(
        "INSERT INTO busprobe.effects (tenant_id, message_id, consumer) VALUES (%s, %s, %s)",
        (delivery.tenant_id, delivery.message_id, delivery.consumer),
    )


async def test_a_consumer_killed_before_its_ack_gets_the_message_redelivered_and_the_effect_happens_once(
    bus: Bus,
    child_config: dict[str, Any],
    probe_pool: Pool,
    admin_query: Callable[..., Awaitable[list[Any]]],
    tmp_path: Path,
) -> None:
    tenant = uuid.uuid4()
    child = start_child(
        "consume", {**child_config, "job_type": IMPORT, "visibility": 1.0}, tmp_path
    )
    try:
        await wait_for_marker(child, "CONSUMING")
        message = job(tenant)
        await bus.publish(message)
        await wait_for_marker(child, f"EFFECT-COMMITTED {message.message_id}")
        child.kill9()
    finally:
        child.stop()

    redelivered = Received()
    handle_once = with_inbox(probe_pool, "busprobe", _record_effect)

    async def handler(delivery: Delivery) -> None:
        await handle_once(delivery)
        redelivered.add(delivery)

    await bus.consume_jobs(IMPORT, handler)
    await redelivered.wait_for(lambda: len(redelivered.deliveries) == 1, "the redelivery")
    assert redelivered.deliveries[0].envelope.message_id == message.message_id
    assert redelivered.deliveries[0].redelivered
    effects = await admin_query(
        "SELECT count(*) FROM busprobe.effects WHERE message_id = %s", (message.message_id,)
    )
    assert effects == [(1,)]
    # Acked this time: a later job is the next and only delivery.
    later = job(tenant, "later")
    await bus.publish(later)
    await redelivered.wait_for(lambda: len(redelivered.deliveries) == 2, "the later job")
    assert redelivered.ids() == [message.message_id, later.message_id]


async def test_a_message_whose_consumers_keep_dying_is_dead_lettered_at_the_delivery_limit(
    bus: Bus,
) -> None:
    holding = Received()

    async def die_holding_it(delivery: Delivery) -> None:
        holding.add(delivery)
        await asyncio.sleep(3600)  # cancelled when its consumer is torn down

    options = ConsumerOptions(visibility_timeout=30.0, stop_grace=0.0)
    message = job(uuid.uuid4())
    await bus.publish(message)
    for deliveries in range(1, DELIVERY_LIMIT + 2):
        consumer = await bus.consume_jobs(IMPORT, die_holding_it, options)
        await holding.wait_for(lambda n=deliveries: len(holding.deliveries) == n, "a delivery")
        await consumer.stop()  # the consumer goes away without acking

    # One more consumer: the message is over the limit and must not reach it.
    await bus.consume_jobs(IMPORT, die_holding_it, options)
    letters: list[Any] = []

    async def dead() -> bool:
        letters.extend(await bus.take_dead_letters(bus.job_queue(IMPORT)))
        return bool(letters)

    await eventually(dead, "the dead letter")
    assert letters[0].envelope.message_id == message.message_id
    assert "delivery limit exceeded" in letters[-1].failures[-1].error
    assert len(holding.deliveries) == DELIVERY_LIMIT + 1


async def test_consumers_and_publishers_recover_from_a_lost_connection(
    bus: Bus, bus_settings: BusSettings
) -> None:
    tenant = uuid.uuid4()
    received = Received()

    async def record(delivery: Delivery) -> None:
        received.add(delivery)

    async with FaultProxy(*upstream_of(bus_settings.url)) as proxy:
        flaky = await connect_bus(
            dataclasses.replace(bus_settings, url=proxied(bus_settings.url, proxy))
        )
        try:
            await flaky.consume_jobs(IMPORT, record)
            before = [job(tenant, f"before-{i}") for i in range(3)]
            await bus.publish(*before)
            await received.wait_for(lambda: len(set(received.ids())) == 3, "jobs before the cut")

            proxy.reset()  # every connection through the proxy is cut with a RST
            during = job(tenant, "during")

            after = [job(tenant, f"after-{i}") for i in range(3)]
            await bus.publish(*after)
            # The publisher retries like the outbox relay does, until the broker confirms.
            for _ in range(100):
                if (await flaky.publish_batch([during]))[0] is None:
                    break
                await asyncio.sleep(0.1)
            expected = {m.message_id for m in [*before, during, *after]}
            await received.wait_for(lambda: set(received.ids()) >= expected, "all jobs")
            assert proxy.connections_made >= 2  # it did reconnect through the proxy
        finally:
            await flaky.delete_namespace()  # the queues its consumer declared
            await flaky.close()


async def test_a_job_naming_another_tenants_resource_has_no_effect(
    bus: Bus, probe_pool: Pool, admin_query: Callable[..., Awaitable[list[Any]]]
) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    item_a, item_b = uuid.uuid4(), uuid.uuid4()
    for tenant, item in ((tenant_a, item_a), (tenant_b, item_b)):
        async with tenant_transaction(probe_pool, tenant) as conn:
            await conn.execute(
                "INSERT INTO busprobe.items (tenant_id, item_id, name) VALUES (%s, %s, 'x')",
                (tenant, item),
            )

    async def touch(conn: Connection, delivery: Delivery) -> None:
        item_id = delivery.unpack(ListingImportRequested).import_id
        cur = await conn.execute(
            "UPDATE busprobe.items SET touches = touches + 1 WHERE item_id = %s", (item_id,)
        )
        if cur.rowcount == 0:
            raise PermanentFailure(f"item {item_id} not found")

    handled = Received()
    handle_once = with_inbox(probe_pool, "busprobe", touch)

    async def handler(delivery: Delivery) -> None:
        await handle_once(delivery)
        handled.add(delivery)

    await bus.consume_jobs(IMPORT, handler, FAST)
    sneaky = job(tenant_a, str(item_b))  # tenant A's envelope, tenant B's item
    honest = job(tenant_a, str(item_a))
    await bus.publish(sneaky, honest)
    await handled.wait_for(lambda: honest.message_id in handled.ids(), "the honest job")
    letters: list[Any] = []

    async def dead() -> bool:
        letters.extend(await bus.take_dead_letters(bus.job_queue(IMPORT)))
        return bool(letters)

    await eventually(dead, "the cross-tenant job's dead letter")
    assert letters[0].envelope.message_id == sneaky.message_id
    assert letters[0].failures[0].error == f"PermanentFailure: item {item_b} not found"
    touches = await admin_query(
        "SELECT item_id, touches FROM busprobe.items WHERE item_id = ANY(%s)", ([item_a, item_b],)
    )
    assert dict(touches) == {item_a: 1, item_b: 0}
    # The failed attempt recorded nothing in the inbox either: its transaction rolled back.
    recorded = await admin_query(
        "SELECT message_id FROM busprobe.inbox WHERE message_id = ANY(%s)",
        ([uuid.UUID(sneaky.message_id), uuid.UUID(honest.message_id)],),
    )
    assert recorded == [(uuid.UUID(honest.message_id),)]
