"""The workflow runtime under process faults: kill -9 mid-step, a zombie worker (SIGSTOP past
its lease, SIGCONT after another finished its step), a timer and an early signal that
outlive every worker process. Real worker processes on real PostgreSQL, a fake vendor that
counts idempotency keys. Waits are bounded polls; the only time bounds are generous ones on
the recovery the design promises (a dead worker's run is taken over once its lease ends)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable

import pytest

from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.domain.states import RunState, StepKind, StepState

from .conftest import LEASE_SECONDS, STARTUP_SECONDS, Observer, Workers, log_of

pytestmark = pytest.mark.integration

LIVE = (RunState.PENDING, RunState.RUNNING, RunState.WAITING)
HOLD_SECONDS = 1.5
"""How long each step of `test.vendor_steps` holds after its vendor call: the kill lands
inside it."""


def succeeded(
    observer: Observer, tenant: uuid.UUID, run_id: uuid.UUID
) -> Callable[[], Awaitable[bool]]:
    """A check for `Workers.eventually`: the run succeeded (failing at once if it ended
    otherwise)."""

    async def check() -> bool:
        run = await observer.run(tenant, run_id)
        assert run.state in (RunState.SUCCEEDED, *LIVE), run
        return run.state == RunState.SUCCEEDED

    return check


async def test_a_worker_killed_mid_step_is_replaced_and_each_effect_happens_once(
    workers: Workers, vendor: FakeVendor, observer: Observer
) -> None:
    # Two workers already running (as in production): the one that gets the run dies
    # with kill -9 inside its second step, the other takes the run over when the lease
    # ends. (A worker started only after the kill would add its own start-up, ~3 s of
    # imports, to the recovery: that measures Python, not the runtime.)
    loop = asyncio.get_running_loop()
    tenant = uuid.uuid4()
    started = [workers.start("kill-a"), workers.start("kill-b")]
    for proc in started:
        await workers.ready(proc)
    run, _ = await observer.runs.start(
        tenant,
        "test.vendor_steps",
        "kill-9",
        {"vendor_url": vendor.url, "steps": 3, "hold_seconds": HOLD_SECONDS},
    )
    await workers.eventually(
        lambda: len(vendor.idempotency_keys) == 2, "the 2nd step's vendor request"
    )

    async def marked() -> bool:  # the attempt in flight shows in the run's history
        steps = await observer.step_rows(run.run_id)
        return [(s["name"], s["state"], s["attempts"]) for s in steps][1:] == [
            ("effect-1", "running", 1)
        ]

    await workers.eventually(marked, "the 2nd step's attempt marked running")
    holder = (await observer.run_row(run.run_id))["lease_owner"]
    victim, survivor = started if holder == started[0].name else started[::-1]
    assert victim.name == holder
    victim.kill9()
    killed_at = loop.time()
    first, killed = list(vendor.idempotency_keys)

    await workers.eventually(
        lambda: vendor.idempotency_keys[killed] == 2, "the killed step's request again"
    )
    takeover = loop.time() - killed_at
    await workers.eventually(succeeded(observer, tenant, run.run_id), "the run succeeded")
    finished = loop.time() - killed_at
    print(  # the numbers the closing note reports (pytest -s shows them)
        f"\nkill -9 -> takeover {takeover:.2f}s ({takeover / LEASE_SECONDS:.2f} leases),"
        f" -> succeeded {finished:.2f}s ({finished / LEASE_SECONDS:.2f} leases)"
    )

    # The lease ran out at most one lease period after the kill (the victim's last
    # heartbeat was at most HEARTBEAT_SECONDS before it) and the survivor polls every
    # 0.1 s: a takeover within two lease periods leaves a whole period of slack.
    assert takeover < 2 * LEASE_SECONDS
    # Then the survivor redoes the killed step and does the last one (two holds): the
    # crash cost the run at most about two lease periods beyond the work it had left.
    assert finished < 2 * LEASE_SECONDS + 2 * HOLD_SECONDS
    assert victim.returncode == -9
    assert survivor.running

    # Each step's effect once: the killed step's request was sent twice with the same
    # idempotency key; the step finished before the kill was replayed, not re-sent.
    assert vendor.effects == 3
    assert [vendor.idempotency_keys[k] for k in vendor.idempotency_keys] == [1, 2, 1]
    assert vendor.idempotency_keys[first] == 1
    done = await observer.run(tenant, run.run_id)
    assert done.result == {"steps": 3}
    # The killed attempt was under way long enough to be marked running: it is counted,
    # so the survivor's was attempt 2 (each step returns its attempt number). The
    # lost-lease counter was reset by the survivor's first checkpoint.
    assert [(s.name, s.state, s.attempts, s.result) for s in done.steps] == [
        ("effect-0", StepState.SUCCEEDED, 1, 1),
        ("effect-1", StepState.SUCCEEDED, 2, 2),
        ("effect-2", StepState.SUCCEEDED, 1, 1),
    ]
    assert done.lease_losses == 0
    row = await observer.run_row(run.run_id)
    assert (row["lease_version"], row["lease_owner"]) == (2, None)  # claimed twice, released


async def test_a_zombie_worker_cannot_overwrite_the_step_another_worker_finished(
    workers: Workers, vendor: FakeVendor, observer: Observer
) -> None:
    tenant = uuid.uuid4()
    zombie = workers.start("zombie-a")
    run, _ = await observer.runs.start(
        tenant,
        "test.whoami",
        "zombie",
        # The step holds past the lease: the zombie is frozen inside it.
        {"vendor_url": vendor.url, "hold_seconds": 1.5 * LEASE_SECONDS},
    )
    await workers.eventually(
        lambda: vendor.paths == ["/whoami/zombie-a"], "zombie-a inside the step", STARTUP_SECONDS
    )

    async def marked() -> bool:
        return [s["state"] for s in await observer.step_rows(run.run_id)] == ["running"]

    await workers.eventually(marked, "zombie-a's attempt marked running")
    workers.pause(zombie)
    other = workers.start("zombie-b")
    await workers.eventually(
        succeeded(observer, tenant, run.run_id), "zombie-b finished the run", 2 * STARTUP_SECONDS
    )
    steps_then = await observer.step_rows(run.run_id)
    run_then = await observer.run_row(run.run_id)
    # zombie-a's attempt was marked running before it froze: zombie-b's is attempt 2.
    assert [(s["seq"], s["name"], s["state"], s["attempts"]) for s in steps_then] == [
        (0, "who", "succeeded", 2)
    ]
    assert steps_then[0]["result"]["worker"] == "zombie-b"
    assert run_then["result"] == {"ran_by": steps_then[0]["result"]}
    assert (run_then["state"], run_then["lease_version"]) == ("succeeded", 2)

    # The zombie wakes up past its step's hold, with its heartbeat overdue: it either
    # tries to checkpoint the step (the fence refuses: LeaseLost) or its heartbeat learns
    # first that the lease is gone and cancels the run's task. Either way it says so.
    workers.resume(zombie)
    lost = re.compile(rf"worker zombie-a lost (?:the lease of )?run {run.run_id}")
    await workers.eventually(lambda: bool(lost.search(log_of(zombie))), "zombie-a saw it lost")
    print(f"\nzombie-a: {lost.findall(log_of(zombie))}")
    assert zombie.running  # a zombie is refused, not crashed
    assert await workers.stop(zombie) == 0
    # The zombie is gone, so whatever it would write is either in the database now or
    # never: nothing is. The rows are the ones the other worker wrote, untouched.
    assert await observer.step_rows(run.run_id) == steps_then
    assert await observer.run_row(run.run_id) == run_then
    # Both workers sent the step's request, with the one idempotency key: one effect.
    assert vendor.paths == ["/whoami/zombie-a", "/whoami/zombie-b"]
    assert vendor.effects == 1
    assert other.running


async def test_a_timer_and_an_early_signal_survive_every_worker_dying(
    workers: Workers, vendor: FakeVendor, observer: Observer
) -> None:
    tenant = uuid.uuid4()
    timer_run, _ = await observer.runs.start(
        tenant, "test.timer", "timer", {"vendor_url": vendor.url, "seconds": LEASE_SECONDS}
    )
    first = workers.start("timer-a")

    async def sleeping() -> bool:
        run = await observer.run(tenant, timer_run.run_id)
        return run.state == RunState.WAITING and run.waiting_on == "timer"

    await workers.eventually(sleeping, "the run sleeping on its timer", STARTUP_SECONDS)
    wake_at = (await observer.run(tenant, timer_run.run_id)).wake_time
    assert wake_at is not None
    first.kill9()

    # No worker is alive. A run started now is signalled before it reaches its waits.
    signal_run, _ = await observer.runs.start(tenant, "test.signal_wait", "early", {})
    await observer.runs.signal(tenant, signal_run.run_id, "go", {"n": 1}, None)
    await observer.runs.signal(tenant, signal_run.run_id, "go", {"n": 2}, None)

    async def due() -> bool:
        (row,) = await observer.rows("SELECT clock_timestamp() >= %s AS due", wake_at)
        return bool(row["due"])

    # The timer comes due with no process to fire it; a fresh worker starts after that.
    await workers.eventually(due, "the timer due", 2 * LEASE_SECONDS + 1)
    assert vendor.paths == []
    workers.start("timer-b")
    await workers.eventually(
        succeeded(observer, tenant, timer_run.run_id), "the timer run finished", STARTUP_SECONDS
    )
    await workers.eventually(
        succeeded(observer, tenant, signal_run.run_id), "the signal run finished"
    )
    timer_done = await observer.run(tenant, timer_run.run_id)
    assert [(s.kind, s.state) for s in timer_done.steps] == [
        (StepKind.SLEEP, StepState.SUCCEEDED),
        (StepKind.STEP, StepState.SUCCEEDED),
    ]
    assert vendor.paths == ["/after-timer"]
    signal_done = await observer.run(tenant, signal_run.run_id)
    assert signal_done.result == {"first": {"n": 1}, "second": {"n": 2}}
