"""Provider health from reported outcomes: a circuit breaker per provider, by error class.

- 5xx and timeouts count toward the error rate over a sliding window (one-second buckets);
  past `error_rate_threshold` after at least `min_calls` calls, the circuit opens.
- An open circuit turns half-open after its open period (doubling on each reopen, capped);
  half-open hands out one probe per `probe_interval_seconds`; `half_open_successes`
  successful probes close it, one failed probe reopens it.
- 429s set a short cooldown (the provider's Retry-After when given) and never open it.
- Auth errors are about one tenant's credentials, not the provider: they cool down the
  (tenant, provider) pair (see `credential_cooldown_until`), not the provider for everyone.

Time is passed in (epoch seconds) so a snapshot survives a restart and tests need no clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hygoshop_router.domain.model import HEALTHY, HealthState, HealthView, Outcome, ResultClass

_ERRORS = frozenset({ResultClass.SERVER_ERROR, ResultClass.TIMEOUT})


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    window_seconds: float = 30.0
    """Sliding window of the error rate."""
    min_calls: int = 10
    """No circuit opens on fewer calls than this in the window."""
    error_rate_threshold: float = 0.5
    """Server errors + timeouts / calls at or above which the circuit opens."""
    open_seconds: float = 5.0
    """First open period; doubles on each reopen from half-open."""
    max_open_seconds: float = 60.0
    probe_interval_seconds: float = 1.0
    """At most one half-open probe per interval (across all callers)."""
    half_open_successes: int = 3
    """Successful probes needed to close the circuit."""
    rate_limit_cooldown_seconds: float = 2.0
    """Cooldown after a 429 without Retry-After."""
    max_cooldown_seconds: float = 600.0
    auth_cooldown_seconds: float = 60.0
    """How long a tenant's rejected credentials keep the provider away from that tenant."""


def credential_cooldown_until(policy: HealthPolicy, now: float) -> float:
    return now + policy.auth_cooldown_seconds


@dataclass(slots=True)
class _Bucket:
    second: int
    calls: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency_calls: int = 0


@dataclass(slots=True)
class ProviderCircuit:
    """One provider's breaker. Mutated only through `record`, `claim_probe` and time."""

    policy: HealthPolicy
    state: HealthState = HealthState.HEALTHY
    """HEALTHY, OPEN or HALF_OPEN; COOLING_DOWN is derived from `cooldown_until`."""
    open_until: float = 0.0
    opens: int = 0
    """Consecutive openings without a recovery: drives the doubling open period."""
    probe_successes: int = 0
    next_probe_at: float = 0.0
    cooldown_until: float = 0.0
    reason: str = "no failures in the window"
    buckets: deque[_Bucket] = field(default_factory=deque)

    def _advance(self, now: float) -> None:
        if self.state is HealthState.OPEN and now >= self.open_until:
            self.state = HealthState.HALF_OPEN
            self.probe_successes = 0
            self.next_probe_at = now
            self.reason = "open period over: probing"
        horizon = int(now - self.policy.window_seconds)
        while self.buckets and self.buckets[0].second <= horizon:
            self.buckets.popleft()

    def _bucket(self, now: float) -> _Bucket:
        second = int(now)
        if not self.buckets or self.buckets[-1].second < second:
            self.buckets.append(_Bucket(second))
        # Outcomes arrive roughly in order; a late one lands in the newest bucket.
        return self.buckets[-1]

    def _window(self) -> tuple[int, int, float | None]:
        calls = errors = latency_calls = 0
        latency_sum = 0.0
        for b in self.buckets:
            calls += b.calls
            errors += b.errors
            latency_sum += b.latency_sum_ms
            latency_calls += b.latency_calls
        return calls, errors, (latency_sum / latency_calls if latency_calls else None)

    def _open(self, now: float, reason: str) -> None:
        self.opens += 1
        period = min(self.policy.open_seconds * 2 ** (self.opens - 1), self.policy.max_open_seconds)
        self.state = HealthState.OPEN
        self.open_until = now + period
        self.reason = reason

    def record(self, outcome: Outcome, now: float) -> None:
        self._advance(now)
        result = outcome.result
        if result is ResultClass.AUTH_ERROR:
            return  # the tenant's credentials, not the provider: see credential cooldowns
        if result is ResultClass.RATE_LIMITED:
            wait = outcome.retry_after_s or self.policy.rate_limit_cooldown_seconds
            until = now + min(wait, self.policy.max_cooldown_seconds)
            self.cooldown_until = max(self.cooldown_until, until)
            return
        if self.state is HealthState.OPEN:
            return  # calls started before the circuit opened: they tell nothing new
        if self.state is HealthState.HALF_OPEN:
            if result in _ERRORS:
                self._open(now, f"probe failed ({result.value}): reopened")
            elif result is ResultClass.OK:
                self.probe_successes += 1
                if self.probe_successes >= self.policy.half_open_successes:
                    self.state = HealthState.HEALTHY
                    self.opens = 0
                    self.buckets.clear()
                    self.reason = f"recovered after {self.probe_successes} successful probes"
            return
        bucket = self._bucket(now)
        bucket.calls += 1
        if result in _ERRORS:
            bucket.errors += 1
        elif result is ResultClass.OK:
            bucket.latency_sum_ms += outcome.latency_ms
            bucket.latency_calls += 1
        if result in _ERRORS:
            calls, errors, _ = self._window()
            if (
                calls >= self.policy.min_calls
                and errors / calls >= self.policy.error_rate_threshold
            ):
                self._open(
                    now,
                    f"{errors} of {calls} calls failed (server errors or timeouts) "
                    f"in {self.policy.window_seconds:.0f} s",
                )

    def claim_probe(self, now: float) -> bool:
        """Whether this caller may send the next half-open probe (then the next waits)."""
        self._advance(now)
        if self.state is not HealthState.HALF_OPEN or now < self.next_probe_at:
            return False
        if now < self.cooldown_until:
            return False
        self.next_probe_at = now + self.policy.probe_interval_seconds
        return True

    def view(self, now: float) -> HealthView:
        self._advance(now)
        calls, errors, latency = self._window()
        rate = errors / calls if calls else 0.0
        if self.state is HealthState.OPEN:
            return HealthView(HealthState.OPEN, rate, calls, latency, self.open_until, self.reason)
        if now < self.cooldown_until:
            return HealthView(
                HealthState.COOLING_DOWN, rate, calls, latency, self.cooldown_until, "rate limited"
            )
        if self.state is HealthState.HALF_OPEN:
            return HealthView(
                HealthState.HALF_OPEN,
                rate,
                calls,
                latency,
                None,
                f"half-open: {self.probe_successes} of "
                f"{self.policy.half_open_successes} probes succeeded",
            )
        reason = f"{errors} of {calls} calls failed in the window" if calls else self.reason
        return HealthView(HealthState.HEALTHY, rate, calls, latency, None, reason)

    def next_change(self, now: float) -> float:
        """When `view` may next answer differently without a new outcome: an open period
        or a cooldown ends, or the oldest bucket leaves the window. +inf if never."""
        self._advance(now)
        times = [math.inf]
        if self.state is HealthState.OPEN:
            times.append(self.open_until)
        if self.cooldown_until > now:
            times.append(self.cooldown_until)
        if self.buckets:
            times.append(self.buckets[0].second + self.policy.window_seconds)
        return min(times)

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "open_until": self.open_until,
            "opens": self.opens,
            "probe_successes": self.probe_successes,
            "cooldown_until": self.cooldown_until,
            "reason": self.reason,
            "buckets": [
                [b.second, b.calls, b.errors, b.latency_sum_ms, b.latency_calls]
                for b in self.buckets
            ],
        }

    @classmethod
    def from_snapshot(cls, policy: HealthPolicy, raw: dict[str, Any]) -> ProviderCircuit:
        circuit = cls(
            policy=policy,
            state=HealthState(raw["state"]),
            open_until=float(raw["open_until"]),
            opens=int(raw["opens"]),
            probe_successes=int(raw["probe_successes"]),
            cooldown_until=float(raw["cooldown_until"]),
            reason=str(raw["reason"]),
        )
        if circuit.state is HealthState.COOLING_DOWN:  # never stored, but be lenient
            circuit.state = HealthState.HEALTHY
        for second, calls, errors, latency_sum, latency_calls in raw.get("buckets", []):
            circuit.buckets.append(
                _Bucket(
                    int(second), int(calls), int(errors), float(latency_sum), int(latency_calls)
                )
            )
        return circuit


class HealthBook:
    """Every provider's circuit, fed by the outcomes of all callers (they aggregate)."""

    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self._circuits: dict[str, ProviderCircuit] = {}
        self.dirty = False
        """Changed since the last snapshot was taken (for periodic persistence)."""

    def _circuit(self, provider_id: str) -> ProviderCircuit:
        circuit = self._circuits.get(provider_id)
        if circuit is None:
            circuit = self._circuits[provider_id] = ProviderCircuit(self.policy)
        return circuit

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome.result is ResultClass.AUTH_ERROR:
            return
        self._circuit(outcome.provider_id).record(outcome, now)
        self.dirty = True

    def view(self, provider_id: str, now: float) -> HealthView:
        circuit = self._circuits.get(provider_id)
        return HEALTHY if circuit is None else circuit.view(now)

    def next_change(self, provider_id: str, now: float) -> float:
        circuit = self._circuits.get(provider_id)
        return math.inf if circuit is None else circuit.next_change(now)

    def claim_probe(self, provider_id: str, now: float) -> bool:
        circuit = self._circuits.get(provider_id)
        if circuit is None or not circuit.claim_probe(now):
            return False
        self.dirty = True
        return True

    def snapshot(self) -> dict[str, dict[str, Any]]:
        self.dirty = False
        return {pid: c.to_snapshot() for pid, c in self._circuits.items()}

    def restore(self, snapshots: dict[str, dict[str, Any]]) -> None:
        for provider_id, raw in snapshots.items():
            self._circuits[provider_id] = ProviderCircuit.from_snapshot(self.policy, raw)
