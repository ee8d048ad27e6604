"""The bus API both transports implement, queue naming, and handling one delivery.

Handling is shared: restore the producer's trace context and the message's tenant,
run the handler, and turn its outcome into ack / retry after a delay / dead letter.
The transports only move bytes and acknowledgements.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus.message import (
    CONSUMER_NAME,
    EVENT_TYPE,
    JOB,
    JOB_TYPE,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    DeadLetter,
    Delivery,
    Failure,
    describe,
)
from hygoshop_platform.bus.settings import BusSettings, ConsumerOptions
from hygoshop_platform.telemetry import TENANT_ATTRIBUTE
from hygoshop_platform.tenancy import Caller, reset_caller, set_caller

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hygoshop.bus")

Handler = Callable[[Delivery], Awaitable[None]]
"""Handles one delivery. Returning acks it; raising retries it (or dead-letters it after
the last attempt); raising PermanentFailure dead-letters it at once."""


class PermanentFailure(Exception):
    """Raised by a handler: retrying cannot help (bad payload, unknown schema version, a
    resource that is not the envelope tenant's). The message goes to the dead letters now."""


class PublishError(RuntimeError):
    """The broker did not confirm a message (refused, unroutable, or the connection broke)."""


class Consumer(abc.ABC):
    """A running consumer; `stop()` stops taking messages and lets running handlers finish."""

    @abc.abstractmethod
    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a delivery after its handler ran."""

    action: str  # "ack" | "retry" | "dead"
    failure: Failure | None = None
    delay: float = 0.0


ACK = Outcome("ack")


class Bus(abc.ABC):
    """Events (fanned out by type to subscriptions) and jobs (one work queue per type).

    At least once: a message is acked only after its handler returned, so a handler may
    see a message again (after a crash); make its effect idempotent with the inbox
    (`hygoshop_platform.bus.inbox`).
    """

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.namespace = settings.namespace

    # -- names -------------------------------------------------------------------------
    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    def job_queue(self, job_type: str) -> str:
        return f"{self.namespace}.job.{job_type}"

    def subscription_queue(self, name: str) -> str:
        return f"{self.namespace}.sub.{name}"

    @staticmethod
    def dead_letter_queue(queue: str) -> str:
        return f"{queue}.dead"

    @staticmethod
    def delay_queue(queue: str, delay_ms: int) -> str:
        return f"{queue}.retry.{delay_ms}ms"

    # -- publishing --------------------------------------------------------------------
    @abc.abstractmethod
    async def publish_batch(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Publish and wait for the broker's confirms; per message, None or why it failed."""

    async def publish(self, *envelopes: Envelope) -> None:
        """Publish and wait until the broker confirmed every message; PublishError otherwise."""
        for envelope, error in zip(envelopes, await self.publish_batch(envelopes), strict=True):
            if error is not None:
                raise PublishError(f"{envelope.type} {envelope.message_id}: {error}") from error

    # -- consuming ---------------------------------------------------------------------
    async def consume_jobs(
        self, job_type: str, handler: Handler, options: ConsumerOptions | None = None
    ) -> Consumer:
        """Handle the jobs of `job_type` (`catalog.listing_import`); one process gets each."""
        if not JOB_TYPE.fullmatch(job_type):
            raise ValueError(f"job type {job_type!r} is not <context>.<job>")
        return await self._consume(
            self.job_queue(job_type), (), job_type, handler, options or ConsumerOptions()
        )

    async def subscribe(
        self,
        name: str,
        event_types: Sequence[str],
        handler: Handler,
        options: ConsumerOptions | None = None,
    ) -> Consumer:
        """Handle events matching `event_types` (topic patterns: `catalog.listing.*`,
        `catalog.#`) in the durable subscription `name` (`search.listing_changes`). Every
        subscription gets every matching event; the processes of one subscription share them."""
        if not CONSUMER_NAME.fullmatch(name):
            raise ValueError(f"subscription name {name!r} must be dotted lower_snake words")
        for pattern in event_types:
            probe = pattern.replace("#", "x").replace("*", "x")
            if not (EVENT_TYPE.fullmatch(probe) or "#" in pattern):
                raise ValueError(f"event pattern {pattern!r} is not <context>.<entity>.<event>")
        return await self._consume(
            self.subscription_queue(name),
            tuple(event_types),
            name,
            handler,
            options or ConsumerOptions(),
        )

    @abc.abstractmethod
    async def _consume(
        self,
        queue: str,
        bindings: tuple[str, ...],
        consumer_name: str,
        handler: Handler,
        options: ConsumerOptions,
    ) -> Consumer: ...

    # -- operations --------------------------------------------------------------------
    @abc.abstractmethod
    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Remove and return up to `limit` dead letters of a job type's or subscription's
        queue (`bus.job_queue(...)` / `bus.subscription_queue(...)`), oldest first."""

    @abc.abstractmethod
    async def delete_namespace(self) -> None:
        """Delete every queue and exchange of this namespace (tests, teardown of a stack)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], within: float = 5.0) -> None:
    """Cancel background tasks and wait for them, bounded. Cancels again while they run:
    in Python 3.11 `asyncio.wait_for` swallows a cancel that races with its result."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:
        log.warning("%d background task(s) did not stop: %s", len(pending), pending)


async def handle_delivery(
    delivery: Delivery,
    handler: Handler,
    options: ConsumerOptions,
    system: str,
    destination: str,
) -> Outcome:
    """Run `handler` as the message's tenant inside the producer's trace; decide its fate."""
    headers = delivery.headers
    carrier = {
        key: str(headers[key]) for key in (TRACEPARENT_HEADER, TRACESTATE_HEADER) if key in headers
    }
    if not carrier and delivery.envelope.trace_context.traceparent:
        carrier = {TRACEPARENT_HEADER: delivery.envelope.trace_context.traceparent}
    token = set_caller(Caller(tenant_id=delivery.tenant_id, scopes=frozenset()))
    try:
        with tracer.start_as_current_span(
            f"{delivery.type} process",
            context=propagate.extract(carrier),
            kind=SpanKind.CONSUMER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if span.is_recording():
                span.set_attributes(_span_attributes(delivery, system, destination))
            try:
                await handler(delivery)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                return _failed(delivery, exc, options)
            return ACK
    finally:
        reset_caller(token)


def _failed(delivery: Delivery, exc: Exception, options: ConsumerOptions) -> Outcome:
    failure = Failure.now(delivery.attempt, delivery.consumer, describe(exc))
    last = delivery.attempt >= options.retry.max_attempts
    if isinstance(exc, PermanentFailure) or last:
        log.warning(
            "%s %s dead-lettered after attempt %d: %s",
            delivery.type,
            delivery.message_id,
            delivery.attempt,
            failure.error,
        )
        return Outcome("dead", failure)
    log.info(
        "%s %s failed attempt %d, retrying: %s",
        delivery.type,
        delivery.message_id,
        delivery.attempt,
        failure.error,
    )
    return Outcome("retry", failure, options.retry.delay(delivery.attempt))


def _span_attributes(delivery: Delivery, system: str, destination: str) -> dict[str, Any]:
    return {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.destination.name": destination,
        "messaging.message.id": delivery.envelope.message_id,
        "hygoshop.message_type": delivery.type,
        "hygoshop.message_kind": "job" if delivery.envelope.kind == JOB else "event",
        "hygoshop.attempt": delivery.attempt,
        TENANT_ATTRIBUTE: delivery.envelope.tenant_id,
    }
