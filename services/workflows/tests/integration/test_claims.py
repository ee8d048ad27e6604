"""Claiming on real PostgreSQL, one `Worker.claim()` at a time (no worker loop): fair across
tenants, only the type@versions the worker's registry has, and fenced leases (a worker
whose lease was claimed away writes nothing).

Each test registers workflow types of its own (unique names) so that no other test's
runs, and no other worker, can take part in its claims.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from hygoshop_workflows.config import WorkerOptions
from hygoshop_workflows.domain.states import RunState, StepKind, StepState
from hygoshop_workflows.runtime.errors import LeaseLost
from hygoshop_workflows.runtime.lease import Claim, RunLease, StepWrite
from hygoshop_workflows.runtime.registry import Registry
from hygoshop_workflows.runtime.runs import RunStore
from hygoshop_workflows.runtime.worker import Worker

from .conftest import Runtime

pytestmark = pytest.mark.integration

HELD = WorkerOptions(lease_seconds=30.0, heartbeat_seconds=10.0, worker_id="claims-test")
"""A lease that outlasts the test: what was claimed stays claimed."""


async def noop(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    return {}


def registry_of(*type_versions: tuple[str, int]) -> Registry:
    registry = Registry()
    for workflow_type, version in type_versions:
        registry.workflow(workflow_type, version=version)(noop)
    return registry


def unique(prefix: str) -> str:
    return f"claims.{prefix}_{uuid.uuid4().hex[:12]}"


def worker(runtime: Runtime, registry: Registry, options: WorkerOptions = HELD) -> Worker:
    return Worker(runtime.pool, registry, options)


async def test_a_claim_serves_every_tenant_before_anyones_second_run(runtime: Runtime) -> None:
    kind = unique("fair")
    registry = registry_of((kind, 1))
    runs = RunStore(runtime.pool, registry)
    busy, quiet = uuid.uuid4(), uuid.uuid4()
    busy_runs = [(await runs.start(busy, kind, f"busy-{i}", {}))[0].run_id for i in range(30)]
    # Started last: by age alone it would wait behind all 30 of the busy tenant's runs.
    (quiet_run, _) = await runs.start(quiet, kind, "quiet-0", {})

    claims = await worker(runtime, registry).claim(4)

    assert len(claims) == 4
    assert [c.run_id for c in claims if c.tenant_id == quiet] == [quiet_run.run_id]
    # The rest are the busy tenant's oldest, in order.
    assert [c.run_id for c in claims if c.tenant_id == busy] == busy_runs[:3]
    assert all((c.lease_version, c.lease_losses) == (1, 0) for c in claims)


async def test_a_worker_claims_only_the_type_versions_it_has(runtime: Runtime) -> None:
    kind, other = unique("versioned"), unique("other")
    everything = registry_of((kind, 1), (kind, 2), (other, 1))
    runs = RunStore(runtime.pool, everything)
    tenant = uuid.uuid4()
    (v1, _) = await runs.start(tenant, kind, "v1", {}, version=1)
    (v2, _) = await runs.start(tenant, kind, "v2", {})  # the newest: version 2
    (unrelated, _) = await runs.start(tenant, other, "other", {})
    assert (v1.version, v2.version) == (1, 2)

    old_worker = worker(runtime, registry_of((kind, 1)))
    assert [(c.run_id, c.version) for c in await old_worker.claim(10)] == [(v1.run_id, 1)]
    assert await old_worker.claim(10) == []
    for run in (v2, unrelated):  # runnable, just not by that worker
        assert (await runs.get(tenant, run.run_id)).state == RunState.PENDING

    claimed = await worker(runtime, everything).claim(10)
    assert {(c.run_id, c.workflow_type, c.version) for c in claimed} == {
        (v2.run_id, kind, 2),
        (unrelated.run_id, other, 1),
    }


async def claim_when_expired(claimer: Worker, within: float = 10.0) -> Claim:
    """Claim (bounded) until the previous holder's lease has run out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        claims = await claimer.claim(1)
        if claims:
            return claims[0]
        assert loop.time() < deadline, "the lease never expired"
        await asyncio.sleep(0.05)


async def test_a_worker_whose_lease_was_claimed_away_writes_nothing(runtime: Runtime) -> None:
    kind = unique("fence")
    registry = registry_of((kind, 1))
    runs = RunStore(runtime.pool, registry)
    tenant = uuid.uuid4()
    (run, _) = await runs.start(tenant, kind, "fenced", {})
    short = WorkerOptions(lease_seconds=0.2, heartbeat_seconds=0.1, worker_id="claims-x")

    (first,) = await worker(runtime, registry, short).claim(1)
    # Nobody extends the 0.2 s lease: it really expires, and another worker claims the run.
    second = await claim_when_expired(worker(runtime, registry, short))
    assert second.run_id == first.run_id
    assert second.lease_version == first.lease_version + 1
    assert second.lease_losses == 1  # it was taken from a running holder
    before = await runs.get(tenant, run.run_id)

    stale = RunLease(runtime.pool, first)
    step = StepWrite(0, "effect", StepKind.STEP, StepState.SUCCEEDED, attempts=1, result="x")
    with pytest.raises(LeaseLost):
        await stale.checkpoint(step)
    with pytest.raises(LeaseLost):
        await stale.release()
    after = await runs.get(tenant, run.run_id)
    assert after.steps == []
    assert after == before  # not even the fence's own UPDATE (update_time) went through
    assert after.state == RunState.RUNNING

    # The current holder's write goes through, and resets the lost-lease counter.
    current = RunLease(runtime.pool, second)
    await current.checkpoint(
        StepWrite(0, "effect", StepKind.STEP, StepState.SUCCEEDED, attempts=1, result="y")
    )
    with pytest.raises(LeaseLost):
        await stale.checkpoint(
            StepWrite(1, "later", StepKind.STEP, StepState.SUCCEEDED, attempts=1, result="x")
        )
    final = await runs.get(tenant, run.run_id)
    assert [(s.seq, s.name, s.result) for s in final.steps] == [(0, "effect", "y")]
    assert final.lease_losses == 0


async def test_a_claim_locks_only_a_window_of_tenants(runtime: Runtime) -> None:
    """With many tenants waiting, a claim in progress holds at most `limit` tenants'
    runs: a second worker claiming meanwhile still gets runs, not an empty answer."""
    kind = unique("window")
    registry = registry_of((kind, 1))
    runs = RunStore(runtime.pool, registry)
    started = {(await runs.start(uuid.uuid4(), kind, f"t{i}", {}))[0].run_id for i in range(40)}
    types = registry.type_versions()
    async with runtime.pool.connection() as holding, holding.transaction():
        cur = await holding.execute(
            "SELECT run_id, tenant_id FROM workflows.claim_runs('w1', 30, 4, %s)", (types,)
        )
        first = await cur.fetchall()  # its locks are held until this transaction ends
        second = await worker(runtime, registry).claim(4)
    assert len(first) == len(second) == 4
    assert len({row.tenant_id for row in first}) == 4  # one run of each tenant in the window
    assert {row.run_id for row in first}.isdisjoint({c.run_id for c in second})
    assert {row.run_id for row in first} | {c.run_id for c in second} <= started


async def test_repeated_claims_reach_every_tenant(runtime: Runtime) -> None:
    """Windows start at random tenants: claim after claim, each serves distinct tenants
    while enough wait, and no tenant's runs are left behind."""
    kind = unique("rotation")
    registry = registry_of((kind, 1))
    runs = RunStore(runtime.pool, registry)
    tenants = [uuid.uuid4() for _ in range(12)]
    for tenant in tenants:
        for i in range(3):
            await runs.start(tenant, kind, f"{tenant}-{i}", {})
    claimer = worker(runtime, registry)
    left = dict.fromkeys(tenants, 3)
    for _ in range(100):
        waiting = sum(1 for n in left.values() if n)
        claims = await claimer.claim(4)
        if not claims:
            break
        # As many tenants as runs claimed, while that many tenants wait.
        assert len({c.tenant_id for c in claims}) == min(len(claims), waiting)
        for claim in claims:
            left[claim.tenant_id] -= 1
    assert set(left.values()) == {0}
