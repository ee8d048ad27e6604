"""Outcome reporting that never blocks a call: buffered per tenant, sent in batches.

`add` only appends to a bounded buffer. A background task sends each tenant's outcomes
as one ReportOutcomes call (the tenant in the metadata) every `interval_seconds`, or
sooner when a tenant's buffer reaches `max_batch`. Reporting is best effort: a failed
send is logged and dropped (health recovers from the next outcomes), and when the buffer
is full new outcomes are dropped and counted rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict

import grpc

from hygoshop.router.v1 import router_pb2, router_pb2_grpc
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER

log = logging.getLogger(__name__)
SEND_TIMEOUT_SECONDS = 2.0
MAX_BATCH = 1000
"""The router's own limit per ReportOutcomes call."""


class OutcomeReporter:
    def __init__(
        self,
        stub: router_pb2_grpc.RouterServiceAsyncStub,
        *,
        interval_seconds: float = 0.5,
        max_batch: int = 500,
        max_pending: int = 20_000,
    ) -> None:
        self._stub = stub
        self._interval = interval_seconds
        self._max_batch = min(max_batch, MAX_BATCH)
        self._max_pending = max_pending
        self._pending: dict[uuid.UUID, list[router_pb2.Outcome]] = defaultdict(list)
        self._count = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        self.dropped = 0

    def add(self, tenant_id: uuid.UUID, outcome: router_pb2.Outcome) -> None:
        if self._count >= self._max_pending:
            self.dropped += 1
            return
        batch = self._pending[tenant_id]
        batch.append(outcome)
        self._count += 1
        if len(batch) >= self._max_batch:
            self._wake.set()
        if (self._task is None or self._task.done()) and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything buffered now (one call per tenant and batch)."""
        pending, self._pending, self._count = self._pending, defaultdict(list), 0
        sends = []
        for tenant_id, outcomes in pending.items():
            for start in range(0, len(outcomes), self._max_batch):
                sends.append(self._send(tenant_id, outcomes[start : start + self._max_batch]))
        if sends:
            await asyncio.gather(*sends)

    async def _send(self, tenant_id: uuid.UUID, outcomes: list[router_pb2.Outcome]) -> None:
        try:
            await self._stub.ReportOutcomes(
                router_pb2.ReportOutcomesRequest(outcomes=outcomes),
                metadata=((TENANT_HEADER, str(tenant_id)), (SCOPES_HEADER, "routing:report")),
                timeout=SEND_TIMEOUT_SECONDS,
            )
            self.sent += len(outcomes)
        except grpc.aio.AioRpcError as exc:
            self.dropped += len(outcomes)
            log.warning(
                "could not report %d outcomes for tenant %s: %s",
                len(outcomes),
                tenant_id,
                exc.code().name,
            )

    async def close(self) -> None:
        """Send what is left and stop the background task (it finishes its current send)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
