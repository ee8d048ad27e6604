"""Fixtures of the bus tests: a real RabbitMQ and the real PostgreSQL transport, side by side.

Every test gets a bus in a namespace of its own (unique queue and exchange names), so
parallel runs on one broker do not meet; the namespace is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from hygoshop_platform.bus import Bus, BusSettings, Delivery, connect_bus
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.db import Pool, open_pool
from hygoshop_platform.infra import ManagedProcess
from hygoshop_platform.infra.rabbitmq import find_rabbitmq
from hygoshop_platform.testing.busprobe import BUSPROBE_SCHEMA
from hygoshop_platform.testing.faultproxy import FaultProxy
from tests.support import PlatformDatabase

CHILD = Path(__file__).with_name("child.py")
DELIVERY_LIMIT = 2
EXPIRES = 600.0  # a safety net: queues of a crashed run vanish from the broker by themselves
WAIT = 20.0  # upper bound of every wait; the tests normally finish in well under a second


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    handle = find_rabbitmq()
    yield handle.url
    handle.stop()


@pytest.fixture(scope="session")
def bus_pg_url(platform_db: PlatformDatabase) -> str:
    return platform_db.app_url(BUS_SCHEMA)


@pytest.fixture(scope="session")
def probe_url(platform_db: PlatformDatabase) -> str:
    """The bus tests' small service (items, effects, outbox, inbox), as its app role."""
    return platform_db.app_url(BUSPROBE_SCHEMA)


@pytest.fixture
async def probe_pool(probe_url: str) -> AsyncIterator[Pool]:
    pool = await open_pool(probe_url, size=4, application_name="bus-test")
    yield pool
    await pool.close()


@pytest.fixture(params=["amqp", "postgresql"])
def bus_url(request: pytest.FixtureRequest, amqp_url: str, bus_pg_url: str) -> str:
    return amqp_url if request.param == "amqp" else bus_pg_url


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bus_settings(bus_url: str, namespace: str) -> BusSettings:
    return BusSettings(
        bus_url, namespace=namespace, delivery_limit=DELIVERY_LIMIT, expires_seconds=EXPIRES
    )


@pytest.fixture
async def bus(bus_settings: BusSettings) -> AsyncIterator[Bus]:
    connected = await connect_bus(bus_settings)
    yield connected
    await connected.delete_namespace()
    await connected.close()


@pytest.fixture
def admin_query(platform_db: PlatformDatabase) -> Callable[..., Awaitable[list[Any]]]:
    """Run a query as the superuser (sees every tenant): what the tests check behind RLS."""

    async def query(sql: str, params: Any = None) -> list[Any]:
        async with await psycopg.AsyncConnection.connect(
            platform_db.admin_url, autocommit=True
        ) as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    return query


def proxied(url: str, proxy: FaultProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (
        f"{userinfo}@{proxy.listen_host}:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    )
    return urlunsplit(parts._replace(netloc=netloc))


def upstream_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 5672 if parts.scheme.startswith("amqp") else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


@dataclass
class Received:
    """What a test consumer saw, with a way to wait for it (bounded)."""

    deliveries: list[Delivery] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.changed.set()

    def ids(self) -> list[str]:
        return [d.envelope.message_id for d in self.deliveries]

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, within: float = WAIT
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; received {self.ids()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    """Poll an async condition every 50 ms until it holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def child_config(bus_settings: BusSettings, probe_url: str) -> dict[str, Any]:
    """What a child process needs to reach the test's bus and the probe service."""
    return {
        "bus": {
            "url": bus_settings.url,
            "namespace": bus_settings.namespace,
            "delivery_limit": bus_settings.delivery_limit,
            "expires_seconds": bus_settings.expires_seconds,
        },
        "probe_url": probe_url,
    }


def start_child(mode: str, config: dict[str, Any], tmp_path: Path) -> ManagedProcess:
    """A real process running `child.py <mode>` (a consumer or a producer to kill -9)."""
    proc = ManagedProcess(
        f"bus-child-{mode}",
        [sys.executable, str(CHILD), mode, json.dumps(config)],
        log_path=tmp_path / f"child-{mode}-{uuid.uuid4().hex[:6]}.log",
        grace=2.0,
    )
    return proc.start()


async def wait_for_marker(proc: ManagedProcess, marker: str, within: float = WAIT) -> None:
    """Wait (without blocking the loop) until the child printed `marker`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while marker not in proc.log_tail(200):
        if proc.returncode is not None:
            raise proc.failure(f"exited before printing {marker}")
        if loop.time() > deadline:
            raise proc.failure(f"did not print {marker} within {within:.0f}s")
        await asyncio.sleep(0.05)
