"""The RabbitMQ transport (aio-pika): topic exchange for events, quorum work queues for jobs.

Topology, all names prefixed with the namespace (`hygoshop`):
  `<ns>.events`               topic exchange; routing key = event type; its alternate
                              exchange `<ns>.events.unrouted` parks events nobody subscribes to
                              (bounded), so mandatory publishing never loses or refuses them.
  `<ns>.job.<type>`           a job type's work queue; `<ns>.sub.<name>` a subscription's queue,
                              bound to the events exchange with its patterns. Both quorum
                              queues with `x-delivery-limit`: a message whose consumers keep
                              dying without an ack is dead-lettered by the broker itself.
  `<queue>.dead`              dead letters, with the failure history in `hygoshop-failures`.
  `<queue>.retry.<ms>ms`      one delay queue per backoff step: a failed message is re-sent
                              there with its attempt and failure recorded, expires after its
                              TTL and is dead-lettered back into `<queue>` (per-queue TTL, so no
                              message waits behind a longer one).

Publishing waits for publisher confirms with `mandatory`: a message is published only when
the broker acked it, and an unroutable job (its queue is missing) raises. Consumers ack
manually, after the handler; a retry or dead letter is re-sent and confirmed before the
original is acked, so a crash in between duplicates (the inbox absorbs it), never loses.
`connect_robust` reconnects after broker or connection loss and restores consumers;
publishes that fail meanwhile raise, and the caller (the outbox relay) retries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)

from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus.amqp_consumer import AmqpConsumer, dead_letter
from hygoshop_platform.bus.base import Bus, Consumer, Handler, PublishError
from hygoshop_platform.bus.message import (
    EVENT,
    MESSAGE_ID_HEADER,
    TYPE_HEADER,
    DeadLetter,
    describe,
    envelope_headers,
)
from hygoshop_platform.bus.settings import BusSettings, ConsumerOptions

log = logging.getLogger(__name__)

# Carried as AMQP properties (message_id, type), not repeated in the headers table:
# encoding header tables is most of a publish's client-side CPU.
_PROPERTY_HEADERS = (MESSAGE_ID_HEADER, TYPE_HEADER)
PUBLISH_TIMEOUT = 15.0
UNROUTED_MAX_LENGTH = 10_000


class AmqpBus(Bus):
    """The bus on RabbitMQ. Create with `await AmqpBus.connect(settings)`."""

    def __init__(self, settings: BusSettings, connection: AbstractRobustConnection) -> None:
        super().__init__(settings)
        self._connection = connection
        self._publisher: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._job_queues: set[str] = set()
        self._declared_queues: set[str] = set()
        self._declared_exchanges: set[str] = set()
        self._consumers: list[AmqpConsumer] = []
        self._lock = asyncio.Lock()

    def _quorum(self, **extra: Any) -> dict[str, Any]:
        arguments = {"x-queue-type": "quorum", **extra}
        if self.settings.expires_seconds is not None:
            arguments["x-expires"] = round(self.settings.expires_seconds * 1000)
        return arguments

    @classmethod
    async def connect(cls, settings: BusSettings, reconnect_interval: float = 1.0) -> AmqpBus:
        connection = await aio_pika.connect_robust(
            settings.url,
            reconnect_interval=reconnect_interval,
            client_properties={"connection_name": f"hygoshop-bus {settings.namespace}"},
        )
        bus = cls(settings, connection)
        try:
            bus._publisher = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await bus._declare_events_exchange()
        except BaseException:
            await connection.close()
            raise
        return bus

    # -- topology ----------------------------------------------------------------------
    async def _declare_events_exchange(self) -> None:
        unrouted = f"{self.events_exchange}.unrouted"
        async with self._connection.channel() as channel:
            alternate = await channel.declare_exchange(unrouted, ExchangeType.FANOUT, durable=True)
            parked = await channel.declare_queue(
                unrouted,
                durable=True,
                arguments=self._quorum(
                    **{"x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"}
                ),
            )
            await parked.bind(alternate)
            await channel.declare_exchange(
                self.events_exchange,
                ExchangeType.TOPIC,
                durable=True,
                arguments={"alternate-exchange": unrouted},
            )
        self._declared_exchanges.update((unrouted, self.events_exchange))
        self._declared_queues.add(unrouted)

    async def _declare_work_queue(self, channel: AbstractChannel, queue: str) -> AbstractQueue:
        """A work queue and its dead letters; every process declares them identically."""
        dead = self.dead_letter_queue(queue)
        await channel.declare_queue(dead, durable=True, arguments=self._quorum())
        declared = await channel.declare_queue(
            queue,
            durable=True,
            arguments=self._quorum(
                **{
                    "x-delivery-limit": self.settings.delivery_limit,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": dead,
                    # at-least-once dead-lettering needs reject-publish overflow; no
                    # length limit is set, so nothing is ever rejected for it.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            ),
        )
        self._declared_queues.update((queue, dead))
        return declared

    async def _declare_delay_queue(self, channel: AbstractChannel, queue: str, ms: int) -> None:
        name = self.delay_queue(queue, ms)
        await channel.declare_queue(
            name,
            durable=True,
            arguments=self._quorum(
                **{
                    "x-message-ttl": ms,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            ),
        )
        self._declared_queues.add(name)

    async def _ensure_job_queue(self, job_type: str) -> None:
        queue = self.job_queue(job_type)
        if queue in self._job_queues:
            return
        async with self._lock:
            if queue not in self._job_queues:
                # A short-lived channel: a failed declaration closes its channel, and the
                # publishing channel must not be the one that goes.
                async with self._connection.channel() as channel:
                    await self._declare_work_queue(channel, queue)
                self._job_queues.add(queue)

    # -- publishing --------------------------------------------------------------------
    async def publish_batch(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        try:
            for job_type in {e.type for e in envelopes if e.kind != EVENT}:
                await self._ensure_job_queue(job_type)
        except Exception as exc:
            return [PublishError(f"cannot declare job queue: {describe(exc)}")] * len(envelopes)
        # One deadline for the batch (a timer per message costs more than the publish).
        # Past it, none counts as confirmed: re-sending a confirmed one only duplicates it.
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                outcomes = await asyncio.gather(
                    *(self._publish_one(e) for e in envelopes), return_exceptions=True
                )
        except TimeoutError:
            late = PublishError(f"no confirm within {PUBLISH_TIMEOUT:.0f}s")
            return [late] * len(envelopes)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancellation and friends are not publish failures
            results.append(outcome if isinstance(outcome, BaseException) else None)
        return results

    async def _publish_one(self, envelope: Envelope) -> None:
        if envelope.kind == EVENT:
            exchange, routing_key = self.events_exchange, envelope.type
        else:
            exchange, routing_key = "", self.job_queue(envelope.type)
        await self._send(
            exchange,
            routing_key,
            envelope.SerializeToString(),
            envelope_headers(envelope),
            message_id=envelope.message_id,
            type_=envelope.type,
        )

    async def _send(
        self,
        exchange_name: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any],
        *,
        message_id: str | None,
        type_: str | None,
    ) -> None:
        if self._publisher is None:
            raise PublishError("the bus is closed")
        message = aio_pika.Message(
            body,
            headers={k: v for k, v in headers.items() if k not in _PROPERTY_HEADERS},
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=type_,
        )
        exchange = self._exchanges.get(exchange_name)
        if exchange is None:
            exchange = (
                self._publisher.default_exchange
                if exchange_name == ""
                else await self._publisher.get_exchange(exchange_name, ensure=False)
            )
            self._exchanges[exchange_name] = exchange
        await exchange.publish(message, routing_key=routing_key, mandatory=True)

    # -- consuming ---------------------------------------------------------------------
    async def _consume(
        self,
        queue: str,
        bindings: tuple[str, ...],
        consumer_name: str,
        handler: Handler,
        options: ConsumerOptions,
    ) -> Consumer:
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=options.prefetch)
            for ms in options.retry.delays_ms():
                await self._declare_delay_queue(channel, queue, ms)
            declared = await self._declare_work_queue(channel, queue)
            for pattern in bindings:
                await declared.bind(self.events_exchange, routing_key=pattern)
            consumer = AmqpConsumer(
                self,
                channel=channel,
                queue=declared,
                name=consumer_name,
                handler=handler,
                options=options,
            )
            await consumer.start()
        except BaseException:
            await channel.close()
            raise
        self._consumers.append(consumer)
        return consumer

    async def forward(
        self, queue: str, message: AbstractIncomingMessage, headers: Mapping[str, Any]
    ) -> None:
        """Re-send a delivered message to a delay or dead-letter queue, confirmed."""
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await self._send(
                "",
                queue,
                message.body,
                headers,
                message_id=message.message_id,
                type_=message.type,
            )

    # -- operations --------------------------------------------------------------------
    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        async with self._connection.channel() as channel:
            try:
                dead = await channel.get_queue(self.dead_letter_queue(queue), ensure=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return []
            while len(letters) < limit:
                message = await dead.get(fail=False, no_ack=False)
                if message is None:
                    break
                letters.append(dead_letter(message, self.settings.delivery_limit))
                await message.ack()
        return letters

    async def delete_namespace(self) -> None:
        for consumer in list(self._consumers):
            await consumer.stop()
        async with self._connection.channel() as channel:
            for name in sorted(self._declared_queues):
                await channel.queue_delete(name)
            for name in sorted(self._declared_exchanges, reverse=True):
                await channel.exchange_delete(name)
        self._declared_queues.clear()
        self._declared_exchanges.clear()
        self._job_queues.clear()

    def forget(self, consumer: AmqpConsumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.stop()
        self._publisher = None
        await self._connection.close()
