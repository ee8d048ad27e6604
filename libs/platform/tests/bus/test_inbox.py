"""The inbox's group commit (`with_inbox(..., batch=n)`): shared commits, isolated failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hygoshop.events.v1.catalog_pb2 import ListingImportRequested
from hygoshop_platform.bus import Delivery, new_job, with_inbox
from hygoshop_platform.db import Connection, Pool

pytestmark = pytest.mark.integration


async def test_a_tenants_waiting_messages_share_a_commit_and_a_failure_stays_alone(
    probe_pool: Pool, admin_query: Callable[..., Awaitable[list[Any]]]
) -> None:
    tenants = [uuid.uuid4(), uuid.uuid4()]
    transactions: dict[str, int] = {}

    async def effect(conn: Connection, delivery: Delivery) -> None:
        import_id = delivery.unpack(ListingImportRequested).import_id
        if import_id == "bad":
            raise ValueError("bad row")
        cur = await conn.execute("SELECT txid_current()")
        transactions[delivery.envelope.message_id] = (await cur.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "INSERT INTO busprobe.effects (tenant_id, message_id, consumer) VALUES (%s, %s, %s)",
            (delivery.tenant_id, delivery.message_id, delivery.consumer),
        )

    handle = with_inbox(probe_pool, "busprobe", effect, batch=16)
    jobs = [
        new_job("probe.job", ListingImportRequested(import_id=f"j{i}"), tenant_id=tenants[i % 2])
        for i in range(20)
    ]
    bad = new_job("probe.job", ListingImportRequested(import_id="bad"), tenant_id=tenants[0])
    deliveries = [Delivery(envelope=j, consumer="probe.job") for j in [*jobs, bad]]
    deliveries.append(deliveries[3])  # a redelivery racing the first delivery

    results = await asyncio.gather(*(handle(d) for d in deliveries), return_exceptions=True)

    assert [type(r).__name__ for r in results if r is not None] == ["ValueError"]
    assert results[len(jobs)] is not None  # ... and it is the bad one's
    rows = await admin_query(
        "SELECT message_id::text, count(*) FROM busprobe.effects"
        " WHERE tenant_id = ANY(%s) GROUP BY message_id",
        (tenants,),
    )
    assert dict(rows) == {j.message_id: 1 for j in jobs}  # once each, none for the bad one
    recorded = await admin_query(
        "SELECT count(*) FROM busprobe.inbox WHERE message_id = %s", (bad.message_id,)
    )
    assert recorded == [(0,)]  # rolled back with its failed effect: it will be retried
    # Waiting messages shared commits: fewer transactions than messages.
    assert len(set(transactions.values())) < len(jobs)
