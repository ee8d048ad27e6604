"""RouterClient: ask the router which provider to use, call it, fall back, report.

`route()` caches decisions per (tenant, category, capability) for `cache_seconds` (a
decision starting with a half-open probe is not cached, so one call probes, not a
second's worth), and serves the last decision for `stale_seconds` more when the router
cannot answer. `execute()` walks the candidates within one RetryBudget.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2

from hygoshop.router.v1 import router_pb2, router_pb2_grpc
from hygoshop_platform.money import decimal_to_money
from hygoshop_platform.refreshing import RefreshingCache
from hygoshop_platform.routing._reporter import OutcomeReporter
from hygoshop_platform.routing._types import (
    RETRY_SAME_PROVIDER,
    AllProvidersFailed,
    Attempt,
    FailedAttempt,
    NoProviderAvailable,
    ProviderCallError,
    ResultClass,
    RetryBudget,
    RouterUnavailable,
)
from hygoshop_platform.tenancy import Caller, current_caller

log = logging.getLogger(__name__)
T = TypeVar("T")
_Key = tuple[uuid.UUID, str, str]


def _probe_first(decision: router_pb2.RouteDecision) -> float | None:
    return 0.0 if decision.candidates and decision.candidates[0].probe else None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


class RouterClient:
    """One per process (it holds a channel, a cache and a reporting task)."""

    def __init__(
        self,
        target: str,
        *,
        cache_seconds: float = 1.0,
        stale_seconds: float = 60.0,
        route_timeout_seconds: float = 1.0,
        report_interval_seconds: float = 0.5,
        report_max_batch: int = 500,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)
        self._timeout = route_timeout_seconds
        self._cache: RefreshingCache[_Key, router_pb2.RouteDecision] = RefreshingCache(
            cache_seconds, stale_seconds=stale_seconds, ttl_for=_probe_first
        )
        self.reporter = OutcomeReporter(
            self._stub, interval_seconds=report_interval_seconds, max_batch=report_max_batch
        )

    @staticmethod
    def _tenant(caller: Caller | None) -> Caller:
        who = caller or current_caller()
        if who.tenant_id is None:
            raise ValueError("routing needs a tenant's caller (the request's, passed on)")
        return who

    async def route(
        self,
        category: str,
        capability: str,
        *,
        avoid: Sequence[str] = (),
        caller: Caller | None = None,
    ) -> router_pb2.RouteDecision:
        """The router's decision for the caller's tenant (cached unless `avoid` is given)."""
        who = self._tenant(caller)
        assert who.tenant_id is not None
        request = router_pb2.RouteRequest(
            category=category,
            capability=capability,
            hints=router_pb2.RouteHints(avoid_provider_ids=list(avoid)),
        )

        async def ask() -> router_pb2.RouteDecision:
            response = await self._stub.Route(
                request, metadata=who.to_metadata(), timeout=self._timeout
            )
            return response.decision

        try:
            if avoid:
                return await ask()
            key = (who.tenant_id, category, capability)
            cached = self._cache.peek(key)
            if cached is not None:
                return cached
            return await self._cache.get(key, ask)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise  # a wrong category or capability is the caller's bug, not an outage
            raise RouterUnavailable(f"router: {exc.code().name} {exc.details()}") from exc

    def report(
        self,
        tenant_id: uuid.UUID,
        provider_id: str,
        capability: str,
        result: ResultClass,
        *,
        latency_seconds: float,
        cost: Decimal = Decimal(0),
        retry_after_seconds: float | None = None,
    ) -> None:
        """Queue one outcome (never blocks; sent in the next batch)."""
        outcome = router_pb2.Outcome(
            provider_id=provider_id,
            capability=capability,
            result=result.value,
            latency=_duration(latency_seconds),
        )
        if cost:
            outcome.cost.CopyFrom(decimal_to_money(cost, "USD"))
        if retry_after_seconds is not None:
            outcome.retry_after.CopyFrom(_duration(min(retry_after_seconds, 600.0)))
        self.reporter.add(tenant_id, outcome)

    async def execute(
        self,
        category: str,
        capability: str,
        call: Callable[[Attempt], Awaitable[T]],
        *,
        budget: RetryBudget | None = None,
        caller: Caller | None = None,
    ) -> T:
        """Call `call(attempt)` on the candidates in order until one succeeds.

        `call` raises ProviderCallError to say how a provider failed (a TimeoutError counts
        as a timeout); any other exception propagates at once, unreported. A bad request
        propagates too (no other provider would do better). Server errors and timeouts are
        retried on the same provider (`retries_per_provider`) with backoff; rate limits and
        auth errors move to the next candidate. Every attempt, whatever its end, counts
        against one budget of attempts and time, and its outcome is reported.
        """
        budget = budget or RetryBudget()
        who = self._tenant(caller)
        assert who.tenant_id is not None
        decision = await self.route(category, capability, caller=who)
        if not decision.candidates:
            raise NoProviderAvailable(decision)
        deadline = time.monotonic() + budget.deadline_seconds
        failures: list[FailedAttempt] = []
        number = 0
        for candidate in decision.candidates:
            for retry in range(budget.retries_per_provider + 1):
                if number >= budget.max_attempts or time.monotonic() >= deadline:
                    raise AllProvidersFailed(failures)
                if retry:
                    cap = min(budget.max_backoff_seconds, budget.backoff_seconds * 2 ** (retry - 1))
                    # Full jitter, never past the deadline.
                    pause = random.uniform(0, cap)  # noqa: S311 - jitter, not security
                    await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                number += 1
                attempt = Attempt(candidate.provider_id, number, candidate.probe)
                started = time.perf_counter()
                try:
                    value = await self._attempt(call, attempt, budget, deadline)
                except ProviderCallError as exc:
                    result, message, retry_after = exc.result, str(exc), exc.retry_after_seconds
                    if exc.cost is not None:
                        attempt.cost = exc.cost
                except TimeoutError:
                    result, message, retry_after = ResultClass.TIMEOUT, "timed out", None
                else:
                    self.report(
                        who.tenant_id,
                        candidate.provider_id,
                        capability,
                        ResultClass.OK,
                        latency_seconds=time.perf_counter() - started,
                        cost=attempt.cost,
                    )
                    return value
                self.report(
                    who.tenant_id,
                    candidate.provider_id,
                    capability,
                    result,
                    latency_seconds=time.perf_counter() - started,
                    cost=attempt.cost,
                    retry_after_seconds=retry_after,
                )
                failures.append(FailedAttempt(candidate.provider_id, result, message))
                if result is ResultClass.BAD_REQUEST:
                    raise ProviderCallError(result, message)
                if result not in RETRY_SAME_PROVIDER:
                    break
            # This decision led to a failure: let the next request ask for a fresh one.
            self._cache.invalidate((who.tenant_id, category, capability))
        raise AllProvidersFailed(failures)

    @staticmethod
    async def _attempt(
        call: Callable[[Attempt], Awaitable[T]],
        attempt: Attempt,
        budget: RetryBudget,
        deadline: float,
    ) -> T:
        if budget.attempt_timeout_seconds is None:
            return await call(attempt)
        remaining = max(0.0, deadline - time.monotonic())
        return await asyncio.wait_for(call(attempt), min(budget.attempt_timeout_seconds, remaining))

    async def close(self) -> None:
        """Send the outcomes still buffered, then close the channel."""
        await self.reporter.close()
        await self._channel.close(None)
