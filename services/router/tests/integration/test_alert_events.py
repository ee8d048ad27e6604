"""Routing alerts reach the bus: rejected credentials raise one `router.alert.raised`
per cooldown, through the router's outbox (here over the PostgreSQL bus transport)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hygoshop.events.v1 import router_pb2 as events_pb2
from hygoshop.router.v1 import router_pb2
from hygoshop_platform.bus import BusSettings, Delivery, connect_bus
from hygoshop_platform.bus.schema import BUS_SCHEMA

from .conftest import Platform, tenant_md
from .test_health_and_budgets import outcome, report

pytestmark = pytest.mark.integration


@pytest.fixture
async def published(platform: Platform) -> AsyncIterator[asyncio.Queue[Delivery]]:
    """Alert events the router publishes, from a router restarted with a bus."""
    settings = BusSettings(platform.db.app_url(BUS_SCHEMA), namespace=f"rt{uuid.uuid4().hex[:12]}")
    bus = await connect_bus(settings)
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        await received.put(delivery)

    consumer = await bus.subscribe("test.router_alerts", ["router.alert.*"], handle)
    await platform.restart_router(BUS_URL=settings.url, BUS_NAMESPACE=settings.namespace)
    try:
        yield received
    finally:
        await platform.restart_router()  # without the bus, as the module's other tests
        await consumer.stop()
        await bus.close()


async def test_rejected_credentials_publish_one_alert_per_cooldown(
    platform: Platform, published: asyncio.Queue[Delivery]
) -> None:
    tenant = await platform.new_tenant()
    denied = outcome("tax.taxjar", router_pb2.RESULT_CLASS_AUTH_ERROR, capability="calculate_tax")
    await report(platform, tenant, [denied] * 2)
    await report(platform, tenant, [denied])  # still cooling down: no second alert

    delivery = await asyncio.wait_for(published.get(), 20)
    assert delivery.type == "router.alert.raised"
    assert delivery.envelope.tenant_id == str(tenant)
    alert = delivery.unpack(events_pb2.RoutingAlertRaised).alert
    listed = await platform.stub.ListRoutingAlerts(
        router_pb2.ListRoutingAlertsRequest(), metadata=tenant_md(tenant, "routing:read")
    )
    assert list(listed.routing_alerts) == [alert]  # the event carries the recorded alert
    assert (alert.kind, alert.provider_id, alert.category) == (
        router_pb2.ALERT_KIND_CREDENTIALS_REJECTED,
        "tax.taxjar",
        "tax",
    )
    await asyncio.sleep(1.0)  # the relay publishes well within this
    assert published.empty()
