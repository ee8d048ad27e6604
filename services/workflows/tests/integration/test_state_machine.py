"""A stateful property test of the workflow runtime on real PostgreSQL: random starts,
signals, operator decisions, cancels, worker crashes and zombie workers, checking after
every step that runs, steps and operator tasks move only along their tables, finished
steps never run again and ended runs stay as they ended."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from hygoshop_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from hygoshop_workflows.config import WorkerOptions
from hygoshop_workflows.domain.records import RunRecord, TaskRecord
from hygoshop_workflows.domain.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_STEP_STATES,
    Decision,
    RunState,
    StepKind,
    StepState,
    TaskState,
    check_transition,
)
from hygoshop_workflows.runtime.lease import Claim
from tests.support import PlatformDatabase

from .conftest import crash
from .state_machine_outcomes import check_outcomes
from .state_machine_support import (
    FLOW,
    LEDGER,
    MAX_ATTEMPTS,
    REGISTRY,
    Env,
    RecordingWorker,
    RunModel,
    Slot,
    TaskModel,
    check_audit,
    close_env,
    open_env,
    reachable,
    snapshot,
    stall_heartbeats,
)

pytestmark = pytest.mark.integration

OPTIONS = WorkerOptions(
    lease_seconds=0.4,  # short: a crashed worker's runs are reclaimed within the test
    heartbeat_seconds=0.1,
    concurrency=4,
    poll_seconds=0.05,
    escalation_seconds=5.0,
)
KEYS = ("order-0", "order-1", "order-2", "order-3")
OPERATORS = ("op-1", "op-2")
MAX_WORKERS = 3
DRAIN_SECONDS = 8.0
TICK_SECONDS = 0.02
RUN_ARGS = {
    "key": st.sampled_from(KEYS),
    "fail_b": st.integers(0, 4),  # B fails this many attempts of its 3: 3 and 4 fail the run
    "hold": st.sampled_from([0.0, 0.05, 0.6]),  # how long A and C take (> a lease: 0.6)
    "think": st.sampled_from([0.0, 0.1]),  # the workflow's own code between two waits
    "amount": st.integers(0, 9),
    "same_input": st.booleans(),
    "signal_now": st.booleans(),
}

# Observed transitions. The machine polls the database between rules, so it may miss states
# in between (PENDING -> RUNNING -> WAITING -> PENDING reads as PENDING -> PENDING, or
# PENDING -> SUCCEEDED): polled states are checked against reachability, the transitive
# closure of each table (for runs that says little more than "an ended run stays ended").
# The direct edges are checked exactly instead on every write the database commits: an
# audit trigger installed for this test logs each state change with its OLD and NEW state,
# and each write to a row whose state had ended (see AUDIT_SQL).
RUN_REACH = reachable(RUN_TRANSITIONS)
STEP_REACH = reachable(STEP_TRANSITIONS)
TASK_REACH = reachable(TASK_TRANSITIONS)


class FlowMachine(RuleBasedStateMachine):
    keys = Bundle("keys")

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        self.tenant = uuid.uuid4()
        self.models: dict[str, RunModel] = {}
        self.by_id: dict[uuid.UUID, RunModel] = {}
        self.task_models: dict[uuid.UUID, TaskModel] = {}
        self.slots: list[Slot] = []
        self.claims: list[Claim] = []
        self.audit_id = 0
        LEDGER.on_zombie = self._on_zombie
        for _ in range(2):
            self._do(self._start_worker())

    # -- plumbing -------------------------------------------------------------------------
    def _do(self, coro: Any) -> Any:
        return self.env.loop.run_until_complete(coro)

    def _count(self, *statuses: str) -> int:
        return sum(1 for slot in self.slots if slot.status in statuses)

    def _open_tasks(self) -> list[TaskModel]:
        tasks = sorted(self.task_models.values(), key=lambda t: str(t.task_id))
        return [t for t in tasks if t.state in (TaskState.OPEN, TaskState.CLAIMED)]

    def _on_zombie(self) -> bool:
        task = asyncio.current_task()
        return any(s.status == "zombie" and task in s.worker._held for s in self.slots)

    async def _start_worker(self) -> None:
        options = replace(OPTIONS, worker_id=f"w{len(self.slots)}-{self.tenant.hex[:6]}")
        worker = RecordingWorker(
            self.env.pool,
            REGISTRY,
            options,
            listen_url=self.env.url,
            shutdown_grace=0.5,
            claims=self.claims,
        )
        await worker.start()
        self.slots.append(Slot(worker, "live"))

    def _lost(self) -> Counter[uuid.UUID]:
        return Counter(c.run_id for c in self.claims if c.lease_losses > 0)

    # -- callers --------------------------------------------------------------------------
    @initialize(target=keys, **RUN_ARGS)
    def first_run(self, **args: Any) -> Any:
        """Every example has a run (swarm testing may leave `start_run` out of it)."""
        return self.start_run(**args)

    @rule(target=keys, **RUN_ARGS)
    def start_run(  # noqa: PLR0917 - hypothesis passes the drawn values by keyword
        self,
        key: str,
        fail_b: int,
        hold: float,
        think: float,
        amount: int,
        same_input: bool,
        signal_now: bool,
    ) -> Any:
        """Start (or start again) the run of `key`; `signal_now`: signal it at once, most
        likely before it reaches its wait (the signal must be kept for the wait)."""
        known = self.models.get(key)
        input = {"fail_b": fail_b, "hold": hold, "think": think, "amount": amount}
        if known is not None and same_input:
            input = known.input
        try:
            run, created = self._do(self.env.runs.start(self.tenant, FLOW, key, input))
        except AlreadyExists:
            assert known is not None, "start refused a new key"
            assert known.input != input, "start refused the input it was started with"
            return multiple()
        if known is None:
            assert created
            model = RunModel(key, run.run_id, input)
            self.models[key] = self.by_id[run.run_id] = model
        else:
            assert not created, "a second run was started for one business key"
            assert run.run_id == known.run_id
            assert known.input == input
        if signal_now:
            self.signal(key, n=amount, request_id=None)
        return key

    @rule(key=keys, n=st.integers(0, 9), request_id=st.sampled_from([None, "r1", "r2"]))
    def signal(self, key: str, n: int, request_id: str | None) -> None:
        model = self.models[key]
        try:
            self._do(self.env.runs.signal(self.tenant, model.run_id, "go", {"n": n}, request_id))
        except FailedPrecondition:
            # Refused only by a run that has ended (maybe during this very call).
            assert self._do(self.env.runs.get(self.tenant, model.run_id)).state.terminal
            return
        assert model.ended is None, "a run that had ended accepted a signal"
        if request_id is None or request_id not in model.request_ids:
            model.signals.append({"n": n})
        if request_id is not None:
            model.request_ids.add(request_id)

    @rule(key=keys)
    def cancel(self, key: str) -> None:
        model = self.models[key]
        try:
            run = self._do(self.env.runs.cancel(self.tenant, model.run_id))
        except FailedPrecondition:
            state = self._do(self.env.runs.get(self.tenant, model.run_id)).state
            assert state in (RunState.SUCCEEDED, RunState.FAILED)
            return
        assert run.cancel_requested or run.state == RunState.CANCELLED
        assert model.ended is None or model.ended[0] == RunState.CANCELLED
        model.cancel_requested = True

    # One rule for operators and one for workers (fewer, broader rules: each is drawn more
    # often). The task rule is always enabled, a no-op while there is no task: whether one
    # exists yet depends on timing, and hypothesis needs the enabled rules to follow from
    # the rules drawn so far.
    @rule(
        action=st.sampled_from(["decide", "decide", "claim", "release", "complete"]),
        pick=st.integers(0, 9),
        operator=st.sampled_from(OPERATORS),
        seconds=st.sampled_from([0.2, 60.0]),
        decision=st.sampled_from(list(Decision)),
        amount=st.integers(-1, 9),
    )
    def operate(  # noqa: PLR0917 - hypothesis passes the drawn values by keyword
        self,
        action: str,
        pick: int,
        operator: str,
        seconds: float,
        decision: Decision,
        amount: int,
    ) -> None:
        """decide: the common path, claim an open task and complete it at once; the others
        alone, on any task (a completed or cancelled one included)."""
        open_tasks = self._open_tasks()
        if action == "decide" and open_tasks:
            task = open_tasks[pick % len(open_tasks)]
            self._claim(task, operator, 60.0)
            self._complete(task, operator, decision, amount)
            return
        tasks = sorted(self.task_models.values(), key=lambda t: str(t.task_id))
        if not tasks or action == "decide":
            return
        task = tasks[pick % len(tasks)]
        if action == "claim":
            self._claim(task, operator, seconds)
        elif action == "release":
            self._release(task, operator)
        else:
            self._complete(task, operator, decision, amount)

    def _claim(self, task: TaskModel, operator: str, seconds: float) -> None:
        before = self.env.loop.time()
        try:
            self._do(self.env.tasks.claim(self.tenant, task.task_id, operator, seconds))
        except FailedPrecondition:
            return
        assert task.outcome is None, "a completed task was claimed"
        assert task.state != TaskState.CANCELLED, "a cancelled task was claimed"
        assert before >= task.live_claim_until, "two operators hold one task"
        task.holder = operator
        task.live_claim_until = before + seconds - 1.0

    def _release(self, task: TaskModel, operator: str) -> None:
        try:
            self._do(self.env.tasks.release(self.tenant, task.task_id, operator))
        except FailedPrecondition:
            return
        assert task.holder == operator, "released by someone who did not hold the claim"
        assert task.outcome is None
        task.holder, task.live_claim_until = None, 0.0

    def _complete(self, task: TaskModel, operator: str, decision: Decision, amount: int) -> None:
        payload = {"amount": amount} if decision == Decision.EDIT else None
        try:
            done = self._do(
                self.env.tasks.complete(
                    self.tenant, task.task_id, operator, decision, payload=payload, comment=""
                )
            )
        except InvalidArgument:
            assert payload is not None, "a valid outcome was refused"
            assert amount < 0, "a valid edit was refused"
            return
        except FailedPrecondition:
            return
        assert payload is None or amount >= 0, "an edit off the task kind's schema was accepted"
        assert task.holder == operator, "completed by someone who did not hold the claim"
        assert task.outcome is None, "a task was completed twice"
        expected = {Decision.APPROVE: task.payload, Decision.REJECT: {}}.get(decision, payload)
        assert expected is not None
        assert done.state == TaskState.COMPLETED
        task.outcome = (decision, expected, operator)

    # -- workers --------------------------------------------------------------------------
    @rule(action=st.sampled_from(["start", "crash", "stall"]), pick=st.integers(0, 9))
    def workers(self, action: str, pick: int) -> None:
        """start one (up to MAX_WORKERS); crash one (killed: nothing released); stall one's
        heartbeats (a zombie: it goes on working while others take its runs)."""
        alive = [slot for slot in self.slots if slot.status in ("live", "zombie")]
        live = [slot for slot in alive if slot.status == "live"]
        if action == "start" and len(alive) < MAX_WORKERS:
            self._do(self._start_worker())
        elif action == "crash" and alive:
            slot = alive[pick % len(alive)]
            slot.status = "crashed"
            self._do(crash(slot.worker))
        elif action == "stall" and live:
            slot = live[pick % len(live)]
            slot.status = "zombie"
            stall_heartbeats(slot.worker)

    @rule(seconds=st.sampled_from([0.05, 0.2, 0.5]))
    def advance(self, seconds: float) -> None:
        self._do(asyncio.sleep(seconds))

    # -- what must always hold ------------------------------------------------------------
    @invariant()
    def only_legal_moves(self) -> None:
        # Workers run only while the loop does: let each step give them a little time, so
        # runs get as far as their operator tasks while the rules still act on them.
        self._do(asyncio.sleep(TICK_SECONDS))
        self._do(self._observe())

    async def _observe(self) -> None:
        runs, tasks = await snapshot(self.env.pool, self.tenant)
        run_states = {run.run_id: run.state for run in runs}
        for task in tasks:
            self._check_task(task, run_states[task.run_id])
        for run in runs:
            self._check_run(run)
        self.audit_id = await check_audit(self.env.audit, self.tenant, self.audit_id)
        self._check_ledger()

    def _check_run(self, run: RunRecord) -> None:
        model = self.by_id.get(run.run_id)
        assert model is not None, f"a run nobody started: {run}"
        check_transition(RUN_REACH, model.state, run.state)
        snapshot = (run.state, run.result, run.error_type, run.error_message, run.end_time)
        if model.ended is not None:
            assert (*snapshot, run.steps) == model.ended, f"an ended run changed: {run}"
        if run.state == RunState.WAITING and run.waiting_on == "signal:go":
            assert not model.signals, f"lost signal: {model.signals} sent, the run still waits"
        if run.state == RunState.WAITING and run.waiting_on.startswith("task:"):
            task = self.task_models[uuid.UUID(run.waiting_on.removeprefix("task:"))]
            assert task.outcome is None, "lost completion: the task is done, the run waits"
        assert set(model.steps) <= {step.seq for step in run.steps}, "a step disappeared"
        for step in run.steps:
            seen = model.steps.get(step.seq)
            if seen is not None:
                assert (seen.name, seen.kind) == (step.name, step.kind), "history rewritten"
                check_transition(STEP_REACH, seen.state, step.state)
                if seen.state == StepState.SUCCEEDED:
                    assert step.result == seen.result, f"a saved result changed: {step}"
            assert step.attempts <= MAX_ATTEMPTS.get(step.name, 1), f"too many attempts: {step}"
            if (
                step.state == StepState.SUCCEEDED
                and step.kind in (StepKind.STEP, StepKind.COMPENSATION)
                and step.name not in model.frozen
            ):
                key = (run.run_id, step.name)
                assert LEDGER.calls[key] >= 1, f"succeeded without running: {step}"
                model.frozen[step.name] = (LEDGER.live_calls[key], LEDGER.calls[key])
            model.steps[step.seq] = step
        model.state, model.waiting_on = run.state, run.waiting_on
        if run.state.terminal:
            unfinished = [step for step in run.steps if step.state not in TERMINAL_STEP_STATES]
            assert not unfinished, f"an ended run's steps still in progress: {unfinished}"
        if run.state.terminal and model.ended is None:
            model.ended = (*snapshot, run.steps)
            event(f"run {run.state.value}")

    def _check_task(self, task: TaskRecord, run_state: RunState) -> None:
        model = self.task_models.get(task.task_id)
        if model is None:
            model = TaskModel(task.task_id, task.run_id, task.payload)
            self.task_models[task.task_id] = model
        check_transition(TASK_REACH, model.state, task.state)
        if model.outcome is not None:
            got = (task.decision, task.outcome_payload, task.completed_by)
            assert task.state == TaskState.COMPLETED, task
            assert got == model.outcome, task
        assert task.state != TaskState.COMPLETED or model.outcome, "completed by nobody"
        if run_state.terminal:
            assert task.state in (TaskState.COMPLETED, TaskState.CANCELLED), "orphaned task"
        model.state = task.state

    def _check_ledger(self) -> None:
        lost = self._lost()
        keys_seen: dict[str, tuple[uuid.UUID, str]] = {}
        for (run_id, step), calls in LEDGER.calls.items():
            if run_id not in self.by_id:
                continue
            # One attempt per claim can go unrecorded: the one its worker was lost in.
            assert calls <= MAX_ATTEMPTS[step] + lost[run_id], (run_id, step, calls, lost)
            assert LEDGER.effects[(run_id, step)] <= 1 + lost[run_id], (run_id, step)
            (key,) = LEDGER.keys[(run_id, step)]  # stable across attempts and workers
            assert keys_seen.setdefault(key, (run_id, step)) == (run_id, step), "shared key"
        for model in self.by_id.values():
            for step, (live, calls) in model.frozen.items():
                assert LEDGER.live_calls[(model.run_id, step)] == live, (
                    f"step {step!r} of run {model.run_id} ran again after it had succeeded"
                )
                if LEDGER.calls[(model.run_id, step)] > calls:
                    # A worker whose lease was taken does not know it until its next fence
                    # or heartbeat: its late call is bounded above, its write fenced off.
                    event("a zombie re-ran a finished step")

    # -- the end --------------------------------------------------------------------------
    def _settled(self, model: RunModel) -> bool:
        """Ended, or waiting on something only a caller can give that it was not given."""
        if model.state.terminal:
            return True
        if model.state != RunState.WAITING or model.cancel_requested:
            return False
        if model.waiting_on == "signal:go":
            return not model.signals
        if model.waiting_on.startswith("task:"):
            task = self.task_models[uuid.UUID(model.waiting_on.removeprefix("task:"))]
            return task.outcome is None
        return False

    async def _drain(self) -> None:
        # Zombies would go on losing what they claim: kill them; keep one healthy worker.
        for slot in self.slots:
            if slot.status == "zombie":
                slot.status = "crashed"
                await crash(slot.worker)
        if not self._count("live"):
            await self._start_worker()
        deadline = self.env.loop.time() + DRAIN_SECONDS
        while True:
            await self._observe()
            stuck = [m for m in self.by_id.values() if not self._settled(m)]
            if not stuck:
                break
            if self.env.loop.time() > deadline:
                lost_cancels = [
                    m.key for m in stuck if m.cancel_requested and m.state == RunState.WAITING
                ]
                # A cancel that lands while workflow code runs between two durable calls is
                # read only by the next wait's fence (test_replay_regressions pins it down).
                assert not lost_cancels, f"lost cancel: {lost_cancels} still wait, {stuck}"
                raise AssertionError(f"runs neither ended nor waiting on a caller: {stuck}")
            await asyncio.sleep(0.05)

    def _give_what_they_wait_for(self) -> None:
        """A signal to each run that waits for one, a decision on each open task: every run
        also goes on to its end, so its outcome can be checked."""
        for model in list(self.by_id.values()):
            if model.state == RunState.WAITING and model.waiting_on == "signal:go":
                self.signal(model.key, n=99, request_id=None)
        for task in self._open_tasks():
            operator = task.holder or OPERATORS[0]
            decision = list(Decision)[task.payload["amount"] % 3]  # some of each
            self._claim(task, operator, 60.0)
            self._complete(task, operator, decision, task.payload["amount"] + 1)

    def teardown(self) -> None:
        try:
            # Every run ends, or waits for what only a caller gives (and was not given).
            self._do(self._drain())
            # Then callers give it (a wait for a signal is followed by one for an operator).
            for _ in range(2):
                self._give_what_they_wait_for()
                self._do(self._drain())
            waiting = [m for m in self.by_id.values() if not m.state.terminal]
            assert not waiting, f"runs that were given all they wait for did not end: {waiting}"
            check_outcomes(
                self.by_id.values(),
                self.task_models.values(),
                self._lost(),
                OPTIONS.max_lease_losses,
            )
        finally:
            self._do(self._stop_all())

    async def _stop_all(self) -> None:
        for slot in self.slots:
            if slot.status == "live":
                await slot.worker.stop()
            elif slot.status == "zombie":
                await crash(slot.worker)
            slot.status = "crashed"
        LEDGER.on_zombie = lambda: False


SETTINGS = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: replays are not exact (timing), and each costs seconds.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def test_runs_steps_and_tasks_move_only_along_their_tables(platform_db: PlatformDatabase) -> None:
    # A loop of our own, never set as the thread's current one: the session loop of
    # pytest-asyncio stays as it was for the tests after this one.
    loop = asyncio.new_event_loop()
    try:
        env = loop.run_until_complete(open_env(loop, platform_db))
        try:
            run_state_machine_as_test(lambda: FlowMachine(env), settings=SETTINGS)
        finally:
            loop.run_until_complete(close_env(env))
    finally:
        loop.close()
