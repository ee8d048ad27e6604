"""The message bus: events and jobs over RabbitMQ or PostgreSQL, with outbox and inbox.

One API, the transport chosen by `BUS_URL`: `amqp://` (RabbitMQ, `amqp.py`) or
`postgresql://` (tables of the `bus` schema, `pg.py`; the embedded default of `make run`).
Both give the same guarantees: publishing returns once the broker confirmed; delivery is
at least once with manual acks; a failing message is retried with backoff and, after its
last attempt, dead-lettered with the history of its failures; a consumer that dies
holding a message gets it redelivered elsewhere; queues are durable and shared by
processes.

A service:
- writes messages with its state change: `add_to_outbox(conn, "<schema>", new_event(...))`
  inside its `tenant_transaction`; `OutboxRelay(pool, "<schema>", bus)` publishes them;
- consumes with `bus.consume_jobs(type, handler)` / `bus.subscribe(name, patterns,
  handler)`, wrapping the handler in `with_inbox(pool, "<schema>", fn)` so its effect
  happens once and runs as the envelope's tenant;
- creates the two tables in its migration with `outbox_sql("<schema>")` and
  `inbox_sql("<schema>")`.

Messages are `hygoshop.events.v1.Envelope`s with a protobuf payload; see `message.py`.

Wiring, e.g. in catalog (settings: `BusSettings.from_env(env)`):

    # migration: for statement in [*outbox_sql("catalog"), *inbox_sql("catalog")]: op.execute(...)

    # app.build(): server.on_stop runs in reverse, so the bus closes last
    bus = await connect_bus(bus_settings)
    relay = OutboxRelay(pool, "catalog", bus)
    await relay.start()
    imports = await bus.consume_jobs("catalog.listing_import", with_inbox(pool, "catalog", run))
    server.on_stop += [bus.close, relay.stop, imports.stop]

    # store: the event commits (or not) with the listing
    async with tenant_transaction(pool, tenant_id) as conn:
        ...  # insert the listing
        await add_to_outbox(conn, "catalog", new_event(
            "catalog.listing.created", ListingCreated(listing_id=..., listing=...),
            tenant_id=tenant_id))

    # the job handler: runs in a transaction of the envelope's tenant, once per message
    async def run(conn: Connection, delivery: Delivery) -> None:
        import_id = delivery.unpack(ListingImportRequested).import_id
        ...  # not found under this tenant: raise PermanentFailure (dead letter, no retry)
"""

from collections.abc import Awaitable, Callable

from hygoshop_platform.bus.base import (
    Bus,
    Consumer,
    Handler,
    PermanentFailure,
    PublishError,
)
from hygoshop_platform.bus.inbox import (
    InboxHandler,
    InboxPruner,
    inbox_sql,
    prune_inbox,
    record_in_inbox,
    with_inbox,
)
from hygoshop_platform.bus.message import (
    DeadLetter,
    Delivery,
    Failure,
    MalformedMessage,
    new_event,
    new_job,
)
from hygoshop_platform.bus.outbox import OutboxRelay, add_to_outbox, outbox_sql
from hygoshop_platform.bus.settings import BusSettings, ConsumerOptions, RetryPolicy
from hygoshop_platform.db import Pool


async def connect_bus(settings: BusSettings) -> Bus:
    """The bus `settings.url` names, connected (and its topology declared)."""
    if settings.transport == "amqp":
        from hygoshop_platform.bus.amqp import AmqpBus

        return await AmqpBus.connect(settings)
    from hygoshop_platform.bus.pg import PgBus

    return await PgBus.connect(settings)


async def start_service_bus(
    on_stop: list[Callable[[], Awaitable[None]]],
    pool: Pool,
    schema: str,
    settings: BusSettings,
    *,
    consumes: bool = False,
) -> Bus:
    """What a service with an outbox runs on the bus: the connection, its outbox relay and
    (when it `consumes` through its inbox) the inbox pruner, each stop added to `on_stop`
    (which runs in reverse: pruner and relay first, then the connection). Returns the bus
    for the service's own consumers, whose stops it appends after these."""
    bus = await connect_bus(settings)
    on_stop.append(bus.close)
    relay = OutboxRelay(pool, schema, bus)
    await relay.start()
    on_stop.append(relay.stop)
    if consumes:
        pruner = InboxPruner(pool, schema)
        await pruner.start()
        on_stop.append(pruner.stop)
    return bus


__all__ = [
    "Bus",
    "BusSettings",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "Delivery",
    "Failure",
    "Handler",
    "InboxHandler",
    "InboxPruner",
    "MalformedMessage",
    "OutboxRelay",
    "PermanentFailure",
    "PublishError",
    "RetryPolicy",
    "add_to_outbox",
    "connect_bus",
    "inbox_sql",
    "new_event",
    "new_job",
    "outbox_sql",
    "prune_inbox",
    "record_in_inbox",
    "start_service_bus",
    "with_inbox",
]
