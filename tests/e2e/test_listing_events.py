"""Listing changes through the REST API reach the bus as events, via the catalog's outbox."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from hygoshop.events.v1 import catalog_pb2 as events_pb2
from hygoshop_platform.bus import BusSettings, Delivery, connect_bus
from tests.e2e.test_rest_api import Tenant, _new_tenant, bearer, listing_body

pytestmark = pytest.mark.e2e


async def _collect(
    settings: BusSettings, tenant_id: str, started: asyncio.Event, seen: list[Delivery], want: int
) -> None:
    bus = await connect_bus(settings)
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        if delivery.envelope.tenant_id != tenant_id:
            return  # other tests' listings
        seen.append(delivery)
        if len(seen) >= want:
            done.set()

    consumer = await bus.subscribe(
        f"e2e.listing_events_{uuid.uuid4().hex[:8]}", ["catalog.listing.*"], handle
    )
    started.set()
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    finally:
        await consumer.stop()
        await bus.close()


def _changes(http: httpx.Client, tenant: Tenant) -> str:
    created = http.post(
        "/v1/listings", json=listing_body(f"EV-{uuid.uuid4().hex[:8]}"), headers=bearer(tenant.key)
    ).json()
    listing_id = str(created["listingId"])
    http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "title"},
        json={"title": "Renamed"},
        headers=bearer(tenant.key),
    )
    # A refused change (invalid) must publish nothing.
    http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "title"},
        json={"title": ""},
        headers=bearer(tenant.key),
    )
    assert http.delete(f"/v1/listings/{listing_id}", headers=bearer(tenant.key)).status_code == 200
    return listing_id


async def test_create_update_delete_are_published_with_the_tenant(
    http: httpx.Client, admin_key: str, stack_bus: BusSettings
) -> None:
    tenant = _new_tenant(http, admin_key, "Events")
    seen: list[Delivery] = []
    started = asyncio.Event()
    collector = asyncio.create_task(_collect(stack_bus, tenant.tenant_id, started, seen, want=3))
    await started.wait()
    listing_id = await asyncio.to_thread(_changes, http, tenant)
    await collector
    mine = seen
    assert [d.type for d in mine] == [
        "catalog.listing.created",
        "catalog.listing.updated",
        "catalog.listing.deleted",
    ]
    created = mine[0].unpack(events_pb2.ListingCreated)
    assert created.listing_id == listing_id
    assert created.listing.title == "Linen shirt"
    updated = mine[1].unpack(events_pb2.ListingUpdated)
    assert (updated.listing.title, list(updated.update_mask.paths)) == ("Renamed", ["title"])
    deleted = mine[2].unpack(events_pb2.ListingDeleted)
    assert deleted.listing_id == listing_id
    assert list(deleted.skus) == [created.listing.variants[0].sku]
