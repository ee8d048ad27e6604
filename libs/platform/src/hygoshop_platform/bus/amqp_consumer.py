"""The RabbitMQ transport's consumer: hand each delivery to the handler, then settle it.

Settling: ack after success; after a failure re-send the message (attempt and failure
recorded in its headers) to a delay queue or the dead letters and only then ack the
original, so a crash in between duplicates it rather than losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus.base import Consumer, Handler, handle_delivery
from hygoshop_platform.bus.message import (
    MESSAGE_ID_HEADER,
    TYPE_HEADER,
    DeadLetter,
    Delivery,
    Failure,
    MalformedMessage,
    attempt_from,
    describe,
    failures_from,
    parse_envelope,
    with_failure,
)
from hygoshop_platform.bus.settings import ConsumerOptions

if TYPE_CHECKING:
    from hygoshop_platform.bus.amqp import AmqpBus

log = logging.getLogger(__name__)


def headers_of(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The message's headers as both transports present them (id and type included)."""
    headers: dict[str, Any] = dict(message.headers or {})
    if message.message_id:
        headers[MESSAGE_ID_HEADER] = message.message_id
    if message.type:
        headers[TYPE_HEADER] = message.type
    return headers


def dead_letter(message: AbstractIncomingMessage, delivery_limit: int) -> DeadLetter:
    headers = headers_of(message)
    failures = list(failures_from(headers))
    for death in headers.get("x-death") or ():
        # The broker dead-lettered it: its consumers kept dying (or nacking) without an ack.
        if isinstance(death, Mapping) and death.get("reason") == "delivery_limit":
            failures.append(
                Failure(
                    attempt=attempt_from(headers),
                    consumer=str(death.get("queue", "")),
                    error=f"delivery limit exceeded: delivered {delivery_limit + 1} times"
                    " without an ack (consumers died or disconnected)",
                    time=str(death.get("time", "")),
                )
            )
    try:
        envelope: Envelope | None = parse_envelope(message.body)
    except MalformedMessage:
        envelope = None
    return DeadLetter(message.body, headers, tuple(failures), envelope)


class AmqpConsumer(Consumer):
    def __init__(
        self,
        bus: AmqpBus,
        *,
        channel: AbstractChannel,
        queue: AbstractQueue,
        name: str,
        handler: Handler,
        options: ConsumerOptions,
    ) -> None:
        self._bus = bus
        self._channel = channel
        self._queue = queue
        self._name = name
        self._handler = handler
        self._options = options
        self._tag: str | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._stopped = False

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        headers = headers_of(message)
        attempt = attempt_from(headers)
        queue = self._queue.name
        try:
            delivery = Delivery(
                envelope=parse_envelope(message.body),
                consumer=self._name,
                attempt=attempt,
                failures=failures_from(headers),
                redelivered=bool(message.redelivered),
                headers=headers,
            )
        except MalformedMessage as exc:
            failure = Failure.now(attempt, self._name, describe(exc))
            await self._settle(message, self._bus.dead_letter_queue(queue), headers, failure)
            return
        outcome = await handle_delivery(delivery, self._handler, self._options, "rabbitmq", queue)
        if outcome.action == "ack":
            await self._ack(message)
        elif outcome.action == "retry":
            delay_queue = self._bus.delay_queue(queue, round(outcome.delay * 1000))
            await self._settle(message, delay_queue, headers, outcome.failure)
        else:
            await self._settle(
                message, self._bus.dead_letter_queue(queue), headers, outcome.failure
            )

    async def _settle(
        self,
        message: AbstractIncomingMessage,
        target: str,
        headers: Mapping[str, Any],
        failure: Failure | None,
    ) -> None:
        assert failure is not None
        try:
            await self._bus.forward(
                target, message, with_failure(headers, failure, failure.attempt + 1)
            )
        except Exception as exc:
            # Not forwarded: hand it back for another try (the broker counts the delivery).
            log.warning("cannot forward %s to %s: %s", message.message_id, target, describe(exc))
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await self._ack(message)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:
            # The channel broke: the broker redelivers it to a live consumer.
            log.warning("cannot ack %s: %s", message.message_id, describe(exc))

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            if self._tag is not None:
                await self._queue.cancel(self._tag, timeout=5.0)
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=self._options.stop_grace)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await self._channel.close()  # unacked messages go back to the queue
        with contextlib.suppress(ValueError):
            self._bus.forget(self)
