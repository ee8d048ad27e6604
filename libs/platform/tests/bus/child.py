"""A process for the bus's kill -9 tests: `python child.py <mode> '<json config>'`.

Each mode stops at one point (printing a marker line) and waits there to be killed:
  consume               handle one job with the inbox, commit the effect, never ack
  produce-uncommitted   add an item and its event to the outbox, never commit
  produce-committed     commit an item and its event, never publish (no relay)
  relay-published       commit an item and its event, relay it, stop after the broker's
                        confirm but before the row is marked sent
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from hygoshop.events.v1.catalog_pb2 import ListingCreated, ListingImportRequested
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus import (
    BusSettings,
    ConsumerOptions,
    Delivery,
    OutboxRelay,
    add_to_outbox,
    connect_bus,
    new_event,
    with_inbox,
)
from hygoshop_platform.db import Connection, Pool, open_pool, tenant_transaction

SCHEMA = "busprobe"
FOREVER = 3600.0


def mark(text: str) -> None:
    print(text, flush=True)


async def add_item(conn: Connection, tenant_id: uuid.UUID, item_id: uuid.UUID) -> None:
    """A producer's state change and its event, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO busprobe.items (tenant_id, item_id, name) VALUES (%s, %s, 'x')",
        (tenant_id, item_id),
    )
    event = new_event(
        "catalog.listing.created", ListingCreated(listing_id=str(item_id)), tenant_id=tenant_id
    )
    await add_to_outbox(conn, SCHEMA, event)


async def record_effect(conn: Connection, delivery: Delivery) -> None:
    """A consumer's effect: one row per handling (a second handling would show)."""
    delivery.unpack(ListingImportRequested)
    await conn.execute(
        "INSERT INTO busprobe.effects (tenant_id, message_id, consumer) VALUES (%s, %s, %s)",
        (delivery.tenant_id, delivery.message_id, delivery.consumer),
    )


async def consume(config: dict[str, Any], pool: Pool) -> None:
    settings = BusSettings(**config["bus"])
    bus = await connect_bus(settings)
    handle_once = with_inbox(pool, SCHEMA, record_effect)

    async def handler(delivery: Delivery) -> None:
        await handle_once(delivery)  # effect and inbox record committed ...
        mark(f"EFFECT-COMMITTED {delivery.message_id}")
        await asyncio.sleep(FOREVER)  # ... and the ack never comes

    await bus.consume_jobs(
        config["job_type"], handler, ConsumerOptions(visibility_timeout=config["visibility"])
    )
    mark("CONSUMING")
    await asyncio.sleep(FOREVER)


async def produce(mode: str, config: dict[str, Any], pool: Pool) -> None:
    tenant_id = uuid.UUID(config["tenant_id"])
    item_id = uuid.UUID(config["item_id"])
    if mode == "produce-uncommitted":
        async with tenant_transaction(pool, tenant_id) as conn:
            await add_item(conn, tenant_id, item_id)
            mark("IN-TRANSACTION")
            await asyncio.sleep(FOREVER)
    async with tenant_transaction(pool, tenant_id) as conn:
        await add_item(conn, tenant_id, item_id)
    mark("COMMITTED")
    if mode == "produce-committed":
        await asyncio.sleep(FOREVER)

    async def stop_before_marking(envelopes: Sequence[Envelope]) -> None:
        mark("PUBLISHED " + " ".join(e.message_id for e in envelopes))
        await asyncio.sleep(FOREVER)

    bus = await connect_bus(BusSettings(**config["bus"]))
    relay = OutboxRelay(pool, SCHEMA, bus, on_published=stop_before_marking)
    await relay.relay_once()


async def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    pool = await open_pool(config["probe_url"], size=2, application_name=f"bus-child {mode}")
    if mode == "consume":
        await consume(config, pool)
    else:
        await produce(mode, config, pool)


if __name__ == "__main__":
    asyncio.run(main())
