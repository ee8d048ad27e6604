"""The adapters' client (hygoshop_platform.routing) against the real router and loopback
fake vendors: fallbacks, the shared retry budget, batched reports, router outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from hygoshop.router.v1 import router_pb2
from hygoshop_platform.routing import (
    AllProvidersFailed,
    Attempt,
    ProviderCallError,
    ResultClass,
    RetryBudget,
    RouterClient,
    RouterUnavailable,
    result_for_status,
)
from hygoshop_platform.tenancy import Caller
from hygoshop_platform.testing.fakevendor import FakeVendor

from .conftest import Platform, tenant_md

pytestmark = pytest.mark.integration
PROVIDERS = ("payments.stripe", "payments.stripe-connect")


class Adapter:
    """What an adapter does per call: POST to the chosen provider, classify the answer."""

    def __init__(self, vendors: dict[str, FakeVendor], http: httpx.AsyncClient) -> None:
        self.vendors = vendors
        self.http = http
        self.served_by: list[str] = []

    async def __call__(self, attempt: Attempt) -> str:
        reply = await self.http.post(self.vendors[attempt.provider_id].url, json={"amount": 1})
        result = result_for_status(reply.status_code)
        if result is not ResultClass.OK:
            retry_after = reply.headers.get("retry-after")
            raise ProviderCallError(
                result,
                f"HTTP {reply.status_code}",
                retry_after_seconds=float(retry_after) if retry_after else None,
            )
        self.served_by.append(attempt.provider_id)
        return attempt.provider_id


@pytest.fixture
async def vendors() -> AsyncIterator[dict[str, FakeVendor]]:
    started = {pid: await FakeVendor(pid).start() for pid in PROVIDERS}
    yield started
    for vendor in started.values():
        await vendor.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def tenant_with_two_payment_providers(platform: Platform) -> Caller:
    """A tenant whose payments candidates are stripe (pinned), then stripe-connect.

    Provider health is platform-wide and these tests share one router: the pin keeps the
    order independent of the error rates earlier tests left behind.
    """
    tenant = await platform.new_tenant()
    for provider_id, action in (
        ("payments.offline", router_pb2.OVERRIDE_ACTION_EXCLUDE),
        ("payments.stripe", router_pb2.OVERRIDE_ACTION_PIN),
    ):
        await platform.stub.CreateRoutingOverride(
            router_pb2.CreateRoutingOverrideRequest(
                routing_override=router_pb2.RoutingOverride(
                    category="payments", provider_id=provider_id, action=action
                )
            ),
            metadata=tenant_md(tenant, "routing:write"),
        )
    return Caller(tenant_id=tenant, scopes=frozenset({"payments:write"}))


async def window_calls(platform: Platform, caller: Caller, provider_id: str) -> int:
    assert caller.tenant_id is not None
    reply = await platform.stub.ListProviderHealth(
        router_pb2.ListProviderHealthRequest(category="payments"),
        metadata=tenant_md(caller.tenant_id, "routing:read"),
    )
    return next(h.window_calls for h in reply.provider_health if h.provider_id == provider_id)


async def test_a_failing_provider_is_retried_then_the_next_serves_and_outcomes_are_batched(
    platform: Platform, vendors: dict[str, FakeVendor], http: httpx.AsyncClient
) -> None:
    caller = await tenant_with_two_payment_providers(platform)
    # A long report interval: outcomes wait in the buffer until flushed.
    client = RouterClient(platform.router_target, report_interval_seconds=3600)
    try:
        decision = await client.route("payments", "charge", caller=caller)
        assert [c.provider_id for c in decision.candidates] == list(PROVIDERS)
        before = {pid: await window_calls(platform, caller, pid) for pid in PROVIDERS}
        vendors["payments.stripe"].status = 503
        adapter = Adapter(vendors, http)
        served = await client.execute(
            "payments", "charge", adapter, caller=caller, budget=RetryBudget(backoff_seconds=0)
        )
        assert served == "payments.stripe-connect"
        assert vendors["payments.stripe"].by_status == {503: 2}  # first try + one retry
        assert vendors["payments.stripe-connect"].requests == 1
        # The call returned before any outcome was sent: reporting never blocks.
        assert client.reporter.sent == 0
        await client.reporter.flush()
        assert client.reporter.sent == 3
        after = {pid: await window_calls(platform, caller, pid) for pid in PROVIDERS}
        assert after["payments.stripe"] - before["payments.stripe"] == 2
        assert after["payments.stripe-connect"] - before["payments.stripe-connect"] == 1
    finally:
        vendors["payments.stripe"].status = 200
        await client.close()


async def test_one_retry_budget_spans_retries_and_fallbacks(
    platform: Platform, vendors: dict[str, FakeVendor], http: httpx.AsyncClient
) -> None:
    caller = await tenant_with_two_payment_providers(platform)
    client = RouterClient(platform.router_target)
    for vendor in vendors.values():
        vendor.status = 500
    try:
        with pytest.raises(AllProvidersFailed) as failed:
            await client.execute(
                "payments",
                "charge",
                Adapter(vendors, http),
                caller=caller,
                budget=RetryBudget(max_attempts=3, backoff_seconds=0),
            )
        tried = [(a.provider_id, a.result) for a in failed.value.attempts]
        assert tried == [
            ("payments.stripe", ResultClass.SERVER_ERROR),
            ("payments.stripe", ResultClass.SERVER_ERROR),
            ("payments.stripe-connect", ResultClass.SERVER_ERROR),
        ]
        assert vendors["payments.stripe-connect"].requests == 1  # the budget ran out
    finally:
        for vendor in vendors.values():
            vendor.status = 200
        await client.close()


async def test_rate_limits_move_on_at_once_and_bad_requests_do_not_move_at_all(
    platform: Platform, vendors: dict[str, FakeVendor], http: httpx.AsyncClient
) -> None:
    caller = await tenant_with_two_payment_providers(platform)
    client = RouterClient(platform.router_target, cache_seconds=0)
    stripe = vendors["payments.stripe"]
    try:
        stripe.status, stripe.retry_after = 429, 1
        adapter = Adapter(vendors, http)
        assert await client.execute("payments", "charge", adapter, caller=caller) == (
            "payments.stripe-connect"
        )
        assert stripe.requests == 1  # no retry on a rate-limited provider
        await client.reporter.flush()
        # The router cools stripe down for everyone: the next decision starts elsewhere.
        decision = await client.route("payments", "charge", caller=caller)
        assert decision.candidates[0].provider_id == "payments.stripe-connect"
        cooled = next(r for r in decision.rejections if r.provider_id == "payments.stripe")
        assert cooled.reason == router_pb2.REJECTION_REASON_COOLING_DOWN

        vendors["payments.stripe-connect"].status = 400
        with pytest.raises(ProviderCallError) as bad:
            await client.execute("payments", "charge", adapter, caller=caller)
        assert bad.value.result is ResultClass.BAD_REQUEST
        assert vendors["payments.stripe-connect"].by_status == {200: 1, 400: 1}
    finally:
        stripe.status, stripe.retry_after = 200, None
        vendors["payments.stripe-connect"].status = 200
        await client.close()


async def test_a_router_outage_uses_the_last_decision_then_says_so(platform: Platform) -> None:
    caller = await tenant_with_two_payment_providers(platform)
    client = RouterClient(platform.router_target, cache_seconds=0.01, stale_seconds=3600)
    nowhere = RouterClient("127.0.0.1:1", route_timeout_seconds=0.5)
    try:
        known = await client.route("payments", "charge", caller=caller)
        await platform.router.server.stop(None)  # the router is gone
        assert await client.route("payments", "charge", caller=caller) == known
        with pytest.raises(RouterUnavailable):
            await nowhere.route("payments", "charge", caller=caller)
        other = Caller(tenant_id=uuid.uuid4(), scopes=frozenset())
        with pytest.raises(RouterUnavailable):
            await client.route("payments", "charge", caller=other)
    finally:
        await client.close()
        await nowhere.close()
        await platform.restart_router()
