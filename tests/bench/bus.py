"""bus: messages/s through our bus (publish with confirms -> consume, inbox, ack) vs raw aio-pika.

Both sides move the same envelopes through a quorum queue on the same RabbitMQ in the
same run, publishing in windows of WINDOW concurrent confirmed publishes while one
consumer with prefetch PREFETCH acks each message. Ours adds what a service pays: the
envelope is parsed, trace and tenant restored, and the message id recorded in the
inbox in a tenant transaction (one durable PostgreSQL commit per message) before the
ack; waiting messages of a tenant share that commit (`with_inbox(..., batch=64)`), the
setting for short handlers. ratio = best of ROUNDS interleaved runs each; target >= 0.7.
Also measured, not in the ratio: one commit per message (batch=1), the PostgreSQL
transport, and the outbox relay (rows committed first, then relayed and consumed).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import aio_pika
import uvloop

from hygoshop.events.v1.catalog_pb2 import ListingImportRequested
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus import (
    Bus,
    BusSettings,
    ConsumerOptions,
    Delivery,
    OutboxRelay,
    add_to_outbox,
    connect_bus,
    new_job,
    with_inbox,
)
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.db import Connection, open_pool, tenant_transaction
from hygoshop_platform.infra.rabbitmq import find_rabbitmq
from hygoshop_platform.migrations import app_url, upgrade
from hygoshop_platform.testing.busprobe import BUSPROBE_SCHEMA
from tests.bench.common import Result, scratch_database

MESSAGES = 5000
WINDOW = 200
PREFETCH = 64
DB_POOL = 16
JOB = "bench.job"
LIMIT = 120.0
ROUNDS = 4
INBOX_BATCH = 64
T = TypeVar("T")


def _envelopes(count: int, tenants: Sequence[uuid.UUID]) -> list[Envelope]:
    return [
        new_job(
            JOB,
            ListingImportRequested(import_id=str(uuid.uuid4())),
            tenant_id=tenants[i % len(tenants)],
        )
        for i in range(count)
    ]


async def _publish_in_windows(
    publish: Callable[[Sequence[T]], Awaitable[None]], items: Sequence[T]
) -> None:
    for start in range(0, len(items), WINDOW):
        await publish(items[start : start + WINDOW])


class Run(NamedTuple):
    per_second: float
    cpu_ms_per_message: float
    """CPU time of this process (client side) per message: steadier than the rate on a
    machine shared with other work."""


async def raw_aio_pika(url: str, envelopes: Sequence[Envelope]) -> Run:
    """Messages/s: aio-pika publish with confirms + consume with manual acks, nothing else."""
    queue_name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(url)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=PREFETCH)
        queue = await consumer.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == len(envelopes):
                done.set()

        tag = await queue.consume(on_message)
        bodies = [e.SerializeToString() for e in envelopes]

        async def publish(window: Sequence[bytes]) -> None:
            await asyncio.gather(
                *(
                    publisher.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue_name,
                    )
                    for body in window
                )
            )

        started, cpu = time.perf_counter(), time.process_time()
        await _publish_in_windows(publish, bodies)
        await asyncio.wait_for(done.wait(), LIMIT)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await queue.cancel(tag)
        await consumer.queue_delete(queue_name)
    finally:
        await connection.close()
    return Run(len(envelopes) / elapsed, cpu * 1e3 / len(envelopes))


async def _record_nothing_else(conn: Connection, delivery: Delivery) -> None:
    """The inbox record is the whole effect: what is measured is the bus, not a handler."""


async def through_bus(
    bus_url: str, probe_url: str, envelopes: Sequence[Envelope], inbox_batch: int = 1
) -> Run:
    """Messages/s: our publish (confirmed) -> consumer (envelope, tenant, inbox commit, ack)."""
    bus = await connect_bus(BusSettings(bus_url, namespace=f"bench{uuid.uuid4().hex[:8]}"))
    pool = await open_pool(probe_url, size=DB_POOL, application_name="bench-bus")
    try:
        done = asyncio.Event()
        count = 0
        inbox = with_inbox(pool, "busprobe", _record_nothing_else, batch=inbox_batch)

        async def handler(delivery: Delivery) -> None:
            nonlocal count
            await inbox(delivery)
            count += 1
            if count == len(envelopes):
                done.set()

        await bus.consume_jobs(JOB, handler, ConsumerOptions(prefetch=PREFETCH))

        async def publish(window: Sequence[Envelope]) -> None:
            await bus.publish(*window)

        started, cpu = time.perf_counter(), time.process_time()
        await _publish_in_windows(publish, envelopes)
        await asyncio.wait_for(done.wait(), LIMIT)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await bus.delete_namespace()
        await bus.close()
        await pool.close()
    return Run(len(envelopes) / elapsed, cpu * 1e3 / len(envelopes))


async def through_outbox(bus: Bus, probe_url: str, envelopes: Sequence[Envelope]) -> float:
    """Messages/s once committed: relay (claim, publish, confirm, delete) -> consumer."""
    pool = await open_pool(probe_url, size=DB_POOL, application_name="bench-outbox")
    try:
        by_tenant: dict[str, list[Envelope]] = {}
        for envelope in envelopes:
            by_tenant.setdefault(envelope.tenant_id, []).append(envelope)
        for tenant_id, own in by_tenant.items():
            async with tenant_transaction(pool, uuid.UUID(tenant_id)) as conn:
                await add_to_outbox(conn, "busprobe", *own)
        done = asyncio.Event()
        count = 0
        inbox = with_inbox(pool, "busprobe", _record_nothing_else)

        async def handler(delivery: Delivery) -> None:
            nonlocal count
            await inbox(delivery)
            count += 1
            if count == len(envelopes):
                done.set()

        await bus.consume_jobs(JOB, handler, ConsumerOptions(prefetch=PREFETCH))
        relay = OutboxRelay(pool, "busprobe", bus, batch_size=WINDOW)
        started = time.perf_counter()
        await relay.start()
        await asyncio.wait_for(done.wait(), LIMIT)
        elapsed = time.perf_counter() - started
        await relay.stop()
    finally:
        await pool.close()
    return len(envelopes) / elapsed


async def _measure(amqp_url: str, db_url: str) -> dict[str, Any]:
    tenants = [uuid.uuid4() for _ in range(8)]
    probe_url = app_url(db_url, BUSPROBE_SCHEMA, "bench")
    bus_pg_url = app_url(db_url, BUS_SCHEMA, "bench")
    # Warm up both paths (connections, queue creation, code paths).
    await raw_aio_pika(amqp_url, _envelopes(500, tenants))
    await through_bus(amqp_url, probe_url, _envelopes(500, tenants), INBOX_BATCH)
    raw, ours = [], []
    for _ in range(ROUNDS):  # interleaved, so the shared machine's noise hits both alike
        raw.append(await raw_aio_pika(amqp_url, _envelopes(MESSAGES, tenants)))
        ours.append(
            await through_bus(amqp_url, probe_url, _envelopes(MESSAGES, tenants), INBOX_BATCH)
        )
    unbatched = await through_bus(amqp_url, probe_url, _envelopes(MESSAGES, tenants))
    pg = await through_bus(bus_pg_url, probe_url, _envelopes(MESSAGES, tenants), INBOX_BATCH)
    bus = await connect_bus(BusSettings(amqp_url, namespace=f"bench{uuid.uuid4().hex[:8]}"))
    try:
        outbox = await through_outbox(bus, probe_url, _envelopes(MESSAGES, tenants))
    finally:
        await bus.delete_namespace()
        await bus.close()
    return {
        "raw": max(r.per_second for r in raw),
        "ours": max(r.per_second for r in ours),
        "raw_runs": [r.per_second for r in raw],
        "ours_runs": [r.per_second for r in ours],
        "raw_cpu": statistics.median(r.cpu_ms_per_message for r in raw),
        "ours_cpu": statistics.median(r.cpu_ms_per_message for r in ours),
        "unbatched": unbatched.per_second,
        "postgresql": pg.per_second,
        "outbox": outbox,
    }


def run() -> Result:
    rabbit = find_rabbitmq()
    try:
        with scratch_database("bus") as db:
            upgrade(db, BUS_SCHEMA, app_password="bench")
            upgrade(db, BUSPROBE_SCHEMA, app_password="bench")
            figures = uvloop.run(_measure(rabbit.url, db))
    finally:
        rabbit.stop()
    return Result(
        name="bus",
        value=figures["ours"],
        unit="msg/s",
        baseline="raw aio-pika publish-with-confirms + consume-with-ack",
        baseline_value=figures["raw"],
        extra={
            "messages": MESSAGES,
            "publish_window": WINDOW,
            "prefetch": PREFETCH,
            "queue": "quorum, durable, persistent messages",
            "ours_includes": "envelope parse, tenant + trace restore, inbox record committed"
            f" (with_inbox batch={INBOX_BATCH}: waiting messages of one tenant share a commit),"
            " then ack",
            "rounds_msg_per_s": {
                "raw": [round(v, 1) for v in figures["raw_runs"]],
                "ours": [round(v, 1) for v in figures["ours_runs"]],
            },
            "client_cpu_ms_per_message": {
                "raw": round(figures["raw_cpu"], 3),
                "ours": round(figures["ours_cpu"], 3),
            },
            "ours_one_commit_per_message_msg_per_s": round(figures["unbatched"], 1),
            "postgresql_transport_msg_per_s": round(figures["postgresql"], 1),
            "outbox_relay_to_consumer_msg_per_s": round(figures["outbox"], 1),
            "target_ratio": 0.7,
        },
    )
