"""What adapters see of routing: result classes, the retry budget, attempts and errors."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from hygoshop.router.v1 import router_pb2


class ResultClass(enum.Enum):
    """How a provider call ended, as the router counts it."""

    OK = router_pb2.RESULT_CLASS_OK
    RATE_LIMITED = router_pb2.RESULT_CLASS_RATE_LIMITED
    """429: try the next provider; the provider cools down briefly."""
    SERVER_ERROR = router_pb2.RESULT_CLASS_SERVER_ERROR
    """5xx: retried on the same provider within the budget, then the next provider."""
    TIMEOUT = router_pb2.RESULT_CLASS_TIMEOUT
    """No answer in time: like a server error."""
    AUTH_ERROR = router_pb2.RESULT_CLASS_AUTH_ERROR
    """401/403: the tenant's credentials; the next provider, and the tenant is alerted."""
    BAD_REQUEST = router_pb2.RESULT_CLASS_BAD_REQUEST
    """Other 4xx: the request is wrong; no retry, no fallback, the error goes to the caller."""


RETRY_SAME_PROVIDER = frozenset({ResultClass.SERVER_ERROR, ResultClass.TIMEOUT})


def result_for_status(status: int) -> ResultClass:
    """The result class of a vendor's HTTP status code."""
    if status < 400:
        return ResultClass.OK
    if status == 429:
        return ResultClass.RATE_LIMITED
    if status in (401, 403):
        return ResultClass.AUTH_ERROR
    if status in (408, 504):
        return ResultClass.TIMEOUT
    if status < 500:
        return ResultClass.BAD_REQUEST
    return ResultClass.SERVER_ERROR


class ProviderCallError(Exception):
    """Raised by the call given to `execute` to say how the provider failed."""

    def __init__(
        self,
        result: ResultClass,
        message: str = "",
        *,
        retry_after_seconds: float | None = None,
        cost: Decimal | None = None,
    ) -> None:
        if result is ResultClass.OK:
            raise ValueError("a ProviderCallError cannot be OK")
        super().__init__(message or result.name.lower())
        self.result = result
        self.retry_after_seconds = retry_after_seconds
        self.cost = cost


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """One budget per request, shared by retries on a provider and fallbacks to the next."""

    max_attempts: int = 4
    """Calls to providers in total, first attempt included."""
    deadline_seconds: float = 30.0
    """No new attempt starts after this much time since `execute` began."""
    retries_per_provider: int = 1
    """Extra attempts on the same provider after a server error or timeout."""
    backoff_seconds: float = 0.05
    """Base of the exponential backoff (full jitter) between retries on one provider."""
    max_backoff_seconds: float = 1.0
    attempt_timeout_seconds: float | None = None
    """Per-attempt timeout (a TIMEOUT outcome when it passes); None: the call's own."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.retries_per_provider < 0 or self.deadline_seconds <= 0:
            raise ValueError("max_attempts >= 1, retries_per_provider >= 0, deadline > 0")


@dataclass(slots=True)
class Attempt:
    """One call to one provider, handed to the call given to `execute`."""

    provider_id: str
    number: int
    """1 for the first attempt of the request, counting retries and fallbacks."""
    probe: bool = False
    """This call is a half-open probe: the provider is recovering."""
    cost: Decimal = Decimal(0)
    """Set by the call: what this attempt cost in USD (reported to the router's budgets)."""


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    provider_id: str
    result: ResultClass
    message: str


class RoutingError(Exception):
    """Base of what `execute` raises when no provider produced a result."""


class RouterUnavailable(RoutingError):
    """The router could not be asked and no recent decision is cached."""


@dataclass
class NoProviderAvailable(RoutingError):
    """The decision has no candidate (everything filtered out; see `decision.rejections`)."""

    decision: router_pb2.RouteDecision

    def __str__(self) -> str:
        reasons = "; ".join(f"{r.provider_id}: {r.detail}" for r in self.decision.rejections)
        return f"no provider for {self.decision.category}/{self.decision.capability}: {reasons}"


@dataclass
class AllProvidersFailed(RoutingError):
    """Every attempt the retry budget allowed failed."""

    attempts: Sequence[FailedAttempt] = field(default_factory=list)

    def __str__(self) -> str:
        tried = ", ".join(f"{a.provider_id} ({a.result.name.lower()})" for a in self.attempts)
        return f"every provider attempt failed: {tried}"
