"""Retry policies of steps: how many attempts, how far apart, which errors never retry."""

from __future__ import annotations

from dataclasses import dataclass


class NonRetryableError(Exception):
    """Raise (or subclass) from a step to fail it at once, whatever its retry policy says."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval: float = 1.0
    """Seconds before the second attempt."""
    backoff: float = 2.0
    """Each further wait is the previous one times this."""
    max_interval: float = 300.0
    """No wait is longer than this many seconds."""
    max_attempts: int = 5
    """Attempts in all, the first included; 1 means never retry."""
    non_retryable: tuple[str, ...] = ()
    """Names of exception types (`ValueError`, `mymodule.Declined`) that fail the step at
    once. Names, not classes, so a policy can be written down and compared."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("retry intervals must not be negative")
        if self.backoff < 1:
            raise ValueError("backoff must be at least 1")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_interval, self.initial_interval * self.backoff ** (attempt - 1)))

    def retries(self, error: BaseException, attempt: int) -> bool:
        """Whether failed attempt number `attempt` is followed by another."""
        if attempt >= self.max_attempts or isinstance(error, NonRetryableError):
            return False
        names = {error_type(error), type(error).__name__}
        return not names.intersection(self.non_retryable)


def error_type(error: BaseException) -> str:
    """The error's type as recorded on steps and runs: `module.Qualname`, builtins bare."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
