"""Building messages (envelopes) and what travels beside them: headers, attempts, failures."""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from opentelemetry import propagate

from hygoshop.events.v1 import envelope_pb2
from hygoshop.events.v1.envelope_pb2 import Envelope

EVENT = envelope_pb2.MESSAGE_KIND_EVENT
JOB = envelope_pb2.MESSAGE_KIND_JOB

# Header names (AMQP headers; a JSON object in the PostgreSQL transport).
MESSAGE_ID_HEADER = "hygoshop-message-id"
TYPE_HEADER = "hygoshop-type"
SCHEMA_VERSION_HEADER = "hygoshop-schema-version"
TENANT_HEADER = "hygoshop-tenant-id"
ATTEMPT_HEADER = "hygoshop-attempt"
FAILURES_HEADER = "hygoshop-failures"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

_NAME = r"[a-z][a-z0-9_]*"
EVENT_TYPE = re.compile(rf"{_NAME}\.{_NAME}\.{_NAME}")
"""`<context>.<entity>.<event>`, e.g. `catalog.listing.created`."""
JOB_TYPE = re.compile(rf"{_NAME}\.{_NAME}")
"""`<context>.<job>`, e.g. `catalog.listing_import`."""
CONSUMER_NAME = re.compile(rf"{_NAME}(\.{_NAME})*")
_MAX_ERROR_CHARS = 2000

P = TypeVar("P", bound=ProtoMessage)


class MalformedMessage(ValueError):
    """A body that is not an Envelope, or an envelope without its required fields."""


def _new(
    kind: envelope_pb2.MessageKind.ValueType,
    type_: str,
    payload: ProtoMessage,
    *,
    tenant_id: uuid.UUID,
    schema_version: int,
    message_id: uuid.UUID | None,
    occurred: datetime | None,
) -> Envelope:
    envelope = Envelope(
        message_id=str(message_id or uuid.uuid4()),
        type=type_,
        kind=kind,
        schema_version=schema_version,
        tenant_id=str(tenant_id),
    )
    envelope.occurred_time.FromDatetime(occurred or datetime.now(UTC))
    # The current span's context (the request that made the change), so the consumer's
    # span joins the producer's trace even though it runs later, elsewhere.
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    envelope.trace_context.traceparent = carrier.get(TRACEPARENT_HEADER, "")
    envelope.trace_context.tracestate = carrier.get(TRACESTATE_HEADER, "")
    envelope.payload.Pack(payload)
    return envelope


def new_event(
    type_: str,
    payload: ProtoMessage,
    *,
    tenant_id: uuid.UUID,
    schema_version: int = 1,
    message_id: uuid.UUID | None = None,
    occurred: datetime | None = None,
) -> Envelope:
    """An event (`catalog.listing.created`) about `tenant_id`'s data, for every subscriber."""
    if not EVENT_TYPE.fullmatch(type_):
        raise ValueError(f"event type {type_!r} is not <context>.<entity>.<event>")
    return _new(
        EVENT,
        type_,
        payload,
        tenant_id=tenant_id,
        schema_version=schema_version,
        message_id=message_id,
        occurred=occurred,
    )


def new_job(
    type_: str,
    payload: ProtoMessage,
    *,
    tenant_id: uuid.UUID,
    schema_version: int = 1,
    message_id: uuid.UUID | None = None,
    occurred: datetime | None = None,
) -> Envelope:
    """A job (`catalog.listing_import`) for the one work queue of that name."""
    if not JOB_TYPE.fullmatch(type_):
        raise ValueError(f"job type {type_!r} is not <context>.<job>")
    return _new(
        JOB,
        type_,
        payload,
        tenant_id=tenant_id,
        schema_version=schema_version,
        message_id=message_id,
        occurred=occurred,
    )


def parse_envelope(body: bytes) -> Envelope:
    """The envelope in a message body; MalformedMessage when it is not a usable one."""
    envelope = Envelope()
    try:
        envelope.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedMessage(f"body is not an Envelope: {exc}") from None
    if envelope.kind not in (EVENT, JOB) or not envelope.type:
        raise MalformedMessage("envelope lacks a kind or a type")
    return envelope


def envelope_headers(envelope: Envelope) -> dict[str, Any]:
    """The routing facts of an envelope as headers, for brokers, operators and tracing."""
    headers: dict[str, Any] = {
        MESSAGE_ID_HEADER: envelope.message_id,
        TYPE_HEADER: envelope.type,
        SCHEMA_VERSION_HEADER: envelope.schema_version,
        TENANT_HEADER: envelope.tenant_id,
    }
    if envelope.trace_context.traceparent:
        headers[TRACEPARENT_HEADER] = envelope.trace_context.traceparent
    if envelope.trace_context.tracestate:
        headers[TRACESTATE_HEADER] = envelope.trace_context.tracestate
    return headers


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt at handling a message, as kept in its headers and dead letter."""

    attempt: int
    consumer: str
    error: str
    time: str
    """ISO 8601, UTC."""

    def to_header(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "consumer": self.consumer,
            "error": self.error,
            "time": self.time,
        }

    @classmethod
    def from_header(cls, raw: Mapping[str, Any]) -> Failure:
        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        return cls(
            attempt=int(raw.get("attempt", 0)),
            consumer=text(raw.get("consumer", "")),
            error=text(raw.get("error", "")),
            time=text(raw.get("time", "")),
        )

    @classmethod
    def now(cls, attempt: int, consumer: str, error: str) -> Failure:
        return cls(attempt, consumer, error[:_MAX_ERROR_CHARS], datetime.now(UTC).isoformat())


def describe(exc: BaseException) -> str:
    """How a failure reads in a dead letter: the exception's type and message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failures_from(headers: Mapping[str, Any]) -> tuple[Failure, ...]:
    raw = headers.get(FAILURES_HEADER) or ()
    return tuple(Failure.from_header(item) for item in raw if isinstance(item, Mapping))


def attempt_from(headers: Mapping[str, Any]) -> int:
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def with_failure(headers: Mapping[str, Any], failure: Failure, next_attempt: int) -> dict[str, Any]:
    """Headers for the next attempt (or the dead letter): the failure appended to the history."""
    updated = {k: v for k, v in headers.items() if not k.startswith("x-")}  # broker bookkeeping
    updated[FAILURES_HEADER] = [f.to_header() for f in failures_from(headers)] + [
        failure.to_header()
    ]
    updated[ATTEMPT_HEADER] = next_attempt
    return updated


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to a consumer: the envelope plus what the transport knows about it."""

    envelope: Envelope
    consumer: str
    """The subscription or job type that received it (inboxes key on it)."""
    attempt: int = 1
    """1 for the first handling; each failed attempt that is retried adds one."""
    failures: tuple[Failure, ...] = ()
    """Earlier failed attempts, oldest first."""
    redelivered: bool = False
    """True when a consumer died (or its lease ran out) while holding this message before."""
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: uuid.UUID = field(init=False)
    tenant_id: uuid.UUID = field(init=False)
    """The tenant whose transaction handles it (parsed once: handlers ask often)."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "message_id", uuid.UUID(self.envelope.message_id))
            object.__setattr__(self, "tenant_id", uuid.UUID(self.envelope.tenant_id))
        except ValueError:
            raise MalformedMessage("envelope lacks a valid message_id or tenant_id") from None

    @property
    def type(self) -> str:
        return self.envelope.type

    def unpack(self, payload_type: builtins.type[P]) -> P:
        """The payload as `payload_type`; MalformedMessage when it holds something else."""
        payload = payload_type()
        if not self.envelope.payload.Unpack(payload):
            raise MalformedMessage(
                f"{self.type} carries {self.envelope.payload.type_url!r},"
                f" not {payload_type.DESCRIPTOR.full_name}"
            )
        return payload


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that exhausted its attempts (or was refused), with its whole history."""

    body: bytes
    headers: Mapping[str, Any]
    failures: tuple[Failure, ...]
    envelope: Envelope | None
    """None when the body itself was malformed."""
