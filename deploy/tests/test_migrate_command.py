"""`python -m hygoshop_<service> migrate`, as the chart's migration Jobs run it: the
service's schema, and the bus's when the bus runs over PostgreSQL (no RabbitMQ)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from hygoshop.events.v1 import catalog_pb2 as events_pb2
from hygoshop_platform.bus import BusSettings, Delivery, connect_bus, new_event
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.migrations import app_url
from hygoshop_platform.testing.postgres import MakeDatabase
from tests.support import APP_PASSWORD

pytestmark = pytest.mark.integration


def migrate(module: str, database: str, **env: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "migrate"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": os.environ.get("PATH", ""),
            "MIGRATIONS_DATABASE_URL": database,
            "DATABASE_APP_PASSWORD": APP_PASSWORD,
            **env,
        },
    )
    assert done.returncode == 0, done.stderr


def schemas(database: str) -> set[str]:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    return {row[0] for row in rows}


def test_without_a_bus_url_only_the_services_schema_is_migrated(
    make_database: MakeDatabase,
) -> None:
    database = make_database("migrate_plain")
    migrate("hygoshop_catalog", database)
    assert "catalog" in schemas(database)
    assert "bus" not in schemas(database)


def test_a_postgresql_bus_url_migrates_the_bus_too(make_database: MakeDatabase) -> None:
    database = make_database("migrate_bus")
    bus_url = app_url(database, BUS_SCHEMA, APP_PASSWORD)  # what the chart gives it
    migrate("hygoshop_catalog", database, BUS_URL=bus_url)
    migrate("hygoshop_workflows", database, BUS_URL=bus_url)  # a second service: no-op
    assert {"catalog", "workflows", "bus"} <= schemas(database)

    async def round_trip() -> str:
        bus = await connect_bus(BusSettings(bus_url, namespace=f"m{uuid.uuid4().hex[:8]}"))
        got: asyncio.Queue[Delivery] = asyncio.Queue()

        async def handle(delivery: Delivery) -> None:
            await got.put(delivery)

        consumer = await bus.subscribe("test.migrated", ["catalog.listing.deleted"], handle)
        try:
            await bus.publish(
                new_event(
                    "catalog.listing.deleted",
                    events_pb2.ListingDeleted(listing_id="L-1"),
                    tenant_id=uuid.uuid4(),
                )
            )
            delivery = await asyncio.wait_for(got.get(), 20)
            return delivery.unpack(events_pb2.ListingDeleted).listing_id
        finally:
            await consumer.stop()
            await bus.close()

    assert asyncio.run(round_trip()) == "L-1"  # the bus works as its own role
