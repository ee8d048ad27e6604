"""A stand-in downstream service for the trace test: consumes `catalog.listing.created`.

Run as `python -m tests.e2e.listing_consumer`, with BUS_URL, BUS_NAMESPACE and
OTEL_EXPORTER_OTLP_ENDPOINT set. It subscribes, prints `ready`, handles one event (the
bus opens the CONSUMER span), flushes its spans and exits.
"""

from __future__ import annotations

import asyncio
import os

from hygoshop_platform.bus import BusSettings, Delivery, connect_bus
from hygoshop_platform.telemetry import configure_tracing

SERVICE = "e2e-consumer"


async def main() -> None:
    provider = configure_tracing(SERVICE, os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert provider is not None
    bus = await connect_bus(BusSettings.from_env())
    handled = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        handled.set()

    consumer = await bus.subscribe("e2e.trace_consumer", ["catalog.listing.created"], handle)
    print("ready", flush=True)
    await asyncio.wait_for(handled.wait(), timeout=60)
    await consumer.stop()
    await bus.close()
    provider.force_flush()
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
