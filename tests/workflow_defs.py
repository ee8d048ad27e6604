"""Workflow types the runtime's tests run (in-process workers and `worker --definitions
tests.workflow_defs` processes alike). Side effects go to a FakeVendor on loopback whose
URL is in the input, with the step's idempotency key, so a test counts effects."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from hygoshop_platform.bus import Delivery
from hygoshop_workflows.runtime import (
    Registry,
    RetryPolicy,
    SignalTrigger,
    StepCall,
    TaskKind,
    Trigger,
    WorkflowContext,
)

registry = Registry()
registry.task_kind(
    TaskKind(
        "test_review",
        edit_schema={
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 0}},
            "required": ["amount"],
            "additionalProperties": False,
        },
        sla_seconds=3600,
    )
)
registry.task_kind(TaskKind("test_urgent", sla_seconds=0.5))

FAST_RETRY = RetryPolicy(initial_interval=0.05, backoff=2.0, max_interval=0.2, max_attempts=3)
SLOW_RETRY = RetryPolicy(initial_interval=3600.0, max_attempts=3)
"""Backs off for an hour: the run waits (holding no worker) until something wakes it."""


async def call_vendor(url: str, call: StepCall, path: str = "/effect") -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            url + path, headers={"Idempotency-Key": call.idempotency_key}, content=b"{}"
        )
        response.raise_for_status()


@registry.workflow("test.vendor_steps", version=1)
async def vendor_steps(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    """`steps` steps, each calling the vendor and then holding for `hold_seconds`."""
    for i in range(int(input.get("steps", 1))):

        async def effect(call: StepCall) -> int:
            await call_vendor(input["vendor_url"], call)
            await asyncio.sleep(float(input.get("hold_seconds", 0)))
            return call.attempt

        await ctx.step(f"effect-{i}", effect)
    return {"steps": int(input.get("steps", 1))}


@registry.workflow("test.slow_step", version=1)
async def slow_step(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    """A quick step (undone if the run fails), then "slow": it calls the vendor, refuses
    its first `fail_times` attempts at once, and holds `hold_seconds` on the others; it has
    `max_attempts` attempts (in-place retries 50 ms apart)."""
    url = input["vendor_url"]
    retry = RetryPolicy(initial_interval=0.05, max_attempts=int(input.get("max_attempts", 3)))

    async def before(call: StepCall) -> str:
        await call_vendor(url, call, "/before")
        return "done"

    async def undo(call: StepCall, result: Any) -> None:
        await call_vendor(url, call, "/undo/before")

    async def slow(call: StepCall) -> int:
        await call_vendor(url, call, f"/slow/{call.attempt}")
        if call.attempt <= int(input.get("fail_times", 0)):
            raise ConnectionError(f"vendor down (attempt {call.attempt})")
        await asyncio.sleep(float(input["hold_seconds"]))
        return call.attempt

    await ctx.step("before", before, compensation=undo)
    return {"slow": await ctx.step("slow", slow, retry=retry)}


@registry.workflow("test.whoami", version=1)
async def whoami(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    """One step that tells the vendor which worker process runs it (`/whoami/<WORKER_ID>`),
    holds for `hold_seconds` and returns who ran it: a fault test sees whose result was kept."""

    async def who(call: StepCall) -> dict[str, Any]:
        worker = os.environ.get("WORKER_ID", "")
        await call_vendor(input["vendor_url"], call, f"/whoami/{worker}")
        await asyncio.sleep(float(input.get("hold_seconds", 0)))
        return {"worker": worker, "pid": os.getpid(), "attempt": call.attempt}

    return {"ran_by": await ctx.step("who", who)}


@registry.workflow("test.signal_wait", version=1)
async def signal_wait(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    first = await ctx.wait_for_signal("go", timeout=input.get("timeout"))
    second = await ctx.wait_for_signal("go", timeout=input.get("timeout"))
    return {"first": first, "second": second}


@registry.workflow("test.timer", version=1)
async def timer(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    async def effect(call: StepCall) -> None:
        await call_vendor(input["vendor_url"], call, "/after-timer")

    await ctx.sleep(float(input["seconds"]))
    await ctx.step("after_timer", effect)
    return {"slept": input["seconds"]}


@registry.workflow("test.saga", version=1)
async def saga(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    """Two steps with compensations, then one that fails `fail_times` times (backing off
    for an hour between attempts when `slow_retry` is set)."""
    url = input["vendor_url"]

    async def do(call: StepCall) -> str:
        await call_vendor(url, call, f"/do/{call.step}")
        return call.step

    async def undo(call: StepCall, result: Any) -> None:
        await call_vendor(url, call, f"/undo/{result}")

    async def flaky(call: StepCall) -> str:
        await call_vendor(url, call, f"/flaky/{call.attempt}")
        if call.attempt <= int(input["fail_times"]):
            raise ConnectionError(f"vendor down (attempt {call.attempt})")
        return "ok"

    await ctx.step("reserve", do, compensation=undo)
    await ctx.step("charge", do, compensation=undo)
    await ctx.step("ship", flaky, retry=SLOW_RETRY if input.get("slow_retry") else FAST_RETRY)
    return {"shipped": True}


@registry.workflow("test.approval", version=1)
async def approval(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    outcome = await ctx.wait_for_operator(
        input.get("kind", "test_review"), title="Refund?", payload={"amount": input["amount"]}
    )
    return {"decision": outcome.decision.value, "payload": outcome.payload, "by": outcome.operator}


def _listing_id(delivery: Delivery) -> str:
    from hygoshop.events.v1 import catalog_pb2

    payload: Any
    if delivery.type == "catalog.listing.created":
        payload = delivery.unpack(catalog_pb2.ListingCreated)
    else:
        payload = delivery.unpack(catalog_pb2.ListingUpdated)
    return str(payload.listing_id)


@registry.workflow(
    "test.listing_watch",
    version=1,
    starts_on=[Trigger("catalog.listing.created", key=_listing_id)],
    signals_on=[SignalTrigger("catalog.listing.updated", key=_listing_id, signal="updated")],
)
async def listing_watch(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    update = await ctx.wait_for_signal("updated", timeout=600)
    return {"updated": update is not None}
