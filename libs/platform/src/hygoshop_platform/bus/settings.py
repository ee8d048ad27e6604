"""Bus settings (BUS_URL, BUS_NAMESPACE, ...) and per-consumer options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hygoshop_platform.settings import SettingsError, env_float, env_int, env_str

_NAMESPACE = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Where the bus is and the facts every process using it must agree on."""

    url: str
    """`amqp://user:pass@host:5672/vhost` (RabbitMQ) or `postgresql://...` (BUS_URL)."""
    namespace: str = "hygoshop"
    """Prefix of every exchange and queue name, so stacks can share a broker (BUS_NAMESPACE)."""
    delivery_limit: int = 5
    """Redeliveries of one attempt after consumers died holding it, before it is dead-lettered
    (quorum queue `x-delivery-limit`). Producers and consumers declare queues with it, so it
    is bus-wide, not per consumer (BUS_DELIVERY_LIMIT)."""
    pool_size: int = 4
    """PostgreSQL transport: connections per process (BUS_POOL_SIZE)."""
    expires_seconds: float | None = None
    """RabbitMQ: queues unused this long are deleted by the broker (`x-expires`). For
    throwaway namespaces (test stacks) only; production queues must not expire
    (BUS_EXPIRES_SECONDS)."""

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise SettingsError(f"BUS_NAMESPACE {self.namespace!r} must match {_NAMESPACE.pattern}")
        if self.transport not in ("amqp", "postgresql"):
            raise SettingsError("BUS_URL must start with amqp://, amqps:// or postgresql://")

    @property
    def transport(self) -> str:
        scheme = self.url.partition("://")[0].split("+", 1)[0].lower()
        return {"amqps": "amqp", "postgres": "postgresql"}.get(scheme, scheme)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BusSettings:
        return cls(
            url=env_str("BUS_URL", None, env),
            namespace=env_str("BUS_NAMESPACE", "hygoshop", env),
            delivery_limit=env_int("BUS_DELIVERY_LIMIT", 5, env),
            pool_size=env_int("BUS_POOL_SIZE", 4, env),
            expires_seconds=env_float("BUS_EXPIRES_SECONDS", 0.0, env) or None,
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed message is handled again, then dead-lettered."""

    max_attempts: int = 5
    """Handling attempts in all; after the last failure the message goes to the dead letters."""
    first_delay: float = 1.0
    """Seconds before the second attempt."""
    multiplier: float = 4.0
    """Each further delay is this many times the previous one ..."""
    max_delay: float = 600.0
    """... up to this many seconds."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.first_delay <= 0 or self.multiplier < 1:
            raise ValueError("max_attempts >= 1, first_delay > 0 and multiplier >= 1 are required")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_delay, self.first_delay * self.multiplier ** (attempt - 1)))

    def delays_ms(self) -> list[int]:
        """Every distinct delay this policy uses, in milliseconds (one delay queue each)."""
        return sorted({round(self.delay(a) * 1000) for a in range(1, self.max_attempts)})


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """How one consumer takes messages."""

    prefetch: int = 32
    """Messages handled at once (unacked at the broker) by this consumer in this process."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    visibility_timeout: float = 60.0
    """PostgreSQL transport: a claimed message whose consumer stopped renewing its lease this
    long ago (it died) is delivered again. RabbitMQ notices a dead consumer's connection."""
    stop_grace: float = 10.0
    """On stop, how long handlers already running may finish (and ack) before being cancelled."""
