"""The platform started for real (services + Envoy) once per test session."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.services import StackOptions
from deploy.stack import Stack, start_stack
from hygoshop_platform.blobs import BlobSettings
from hygoshop_platform.bus import BusSettings
from hygoshop_platform.bus.amqp import AmqpBus
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.infra.rabbitmq import LOCAL_URL, rabbitmq_answers
from hygoshop_platform.testing.s3 import MakeBucket
from tests.support import APP_PASSWORD, PlatformDatabase

RATE_LIMITS = {
    "RATE_LIMIT_FREE": "2",  # test_rate_limits: a free tenant is throttled quickly
    "RATE_LIMIT_FREE_BURST": "5",
    "RATE_LIMIT_GROWTH": "1000",  # the other tests' tenants: never throttled
}
"""Per-tenant limits of the end-to-end stack's gateway."""
BROWSER_ORIGIN = "https://admin.shop.example"
"""The merchant dashboard's origin in the end-to-end stack."""

AUTH_CACHE_TTL_SECONDS = 2.0


@pytest.fixture(scope="session")
def admin_key() -> str:
    return "hyg_admin_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def stack_s3(make_bucket: MakeBucket) -> BlobSettings:
    """The stack's object storage (a fresh bucket), for tests that look behind the API;
    pages of BROWSER_ORIGIN may use its presigned URLs (catalog sets the CORS rules)."""
    return dataclasses.replace(make_bucket("e2e"), cors_origins=(BROWSER_ORIGIN,))


@pytest.fixture(scope="session")
def stack_bus(platform_db: PlatformDatabase) -> Iterator[BusSettings]:
    """The stack's message bus (RabbitMQ on 127.0.0.1:5672 when it answers, else the
    PostgreSQL transport), in a namespace of its own; connect to it to watch messages."""
    url = LOCAL_URL if rabbitmq_answers(LOCAL_URL) is None else platform_db.app_url(BUS_SCHEMA)
    settings = BusSettings(url, namespace=f"e2e{uuid.uuid4().hex[:12]}", expires_seconds=600)
    yield settings
    if settings.transport == "amqp":  # its exchanges; its queues expire by themselves
        asyncio.run(_delete_namespace(settings))


async def _delete_namespace(settings: BusSettings) -> None:
    bus = await AmqpBus.connect(settings)
    await bus.delete_namespace()
    await bus.close()


@pytest.fixture(scope="session")
def stack(
    platform_db: PlatformDatabase,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
    stack_s3: BlobSettings,
    stack_bus: BusSettings,
) -> Iterator[Stack]:
    run_dir = Path(tmp_path_factory.mktemp("stack"))
    options = StackOptions(
        platform_admin_key=admin_key,
        auth_cache_ttl_seconds=AUTH_CACHE_TTL_SECONDS,
        rate_limits=RATE_LIMITS,
        s3=stack_s3,
        bus_url=stack_bus.url,
        bus_namespace=stack_bus.namespace,
        bus_expires_seconds=stack_bus.expires_seconds,
    )
    started = start_stack(platform_db.admin_url, run_dir, options, app_password=APP_PASSWORD)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=10.0) as client:
        yield client
