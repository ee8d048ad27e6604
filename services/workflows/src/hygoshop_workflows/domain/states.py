"""The life cycles of runs, steps and operator tasks, and which moves between states are legal.

The runtime's SQL encodes these edges in its WHERE clauses (a claim moves only claimable
runs to RUNNING, a fence matches only RUNNING runs, a wake-up moves only WAITING ones);
the stateful property test (`tests/integration/test_state_machine.py`) checks every
observed move against these tables. A transition not listed here is a bug.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class RunState(StrEnum):
    PENDING = "pending"
    """Started or woken, waiting for a worker to claim it."""
    RUNNING = "running"
    """A worker holds its lease and is executing it."""
    WAITING = "waiting"
    """Paused on a timer, a signal, an operator task or a step's retry backoff; holds no worker."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING}),
    # RUNNING -> PENDING: the lease expired (worker died) or the worker let the run go.
    RunState.RUNNING: frozenset({RunState.PENDING, RunState.WAITING, *TERMINAL_RUN_STATES}),
    RunState.WAITING: frozenset({RunState.PENDING, RunState.RUNNING}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}
"""Legal moves. Only a worker ends a run: a cancel of a paused run wakes it (PENDING), and
the worker that claims it stops it at the next step boundary and compensates."""


class StepState(StrEnum):
    RUNNING = "running"
    """Started (an attempt is in flight, or the run waits on it: timer, signal, task)."""
    RETRYING = "retrying"
    """An attempt failed; the next one is due at `next_attempt_time`."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The last attempt failed (or the error was not retryable)."""
    CANCELLED = "cancelled"
    """Never finished: its run ended (a cancel, or a failure elsewhere) while it was in flight,
    waiting or backing off."""


TERMINAL_STEP_STATES = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED})

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.RUNNING: frozenset({StepState.RETRYING, *TERMINAL_STEP_STATES}),
    StepState.RETRYING: frozenset({StepState.RUNNING, *TERMINAL_STEP_STATES}),
    StepState.SUCCEEDED: frozenset(),
    StepState.FAILED: frozenset(),
    StepState.CANCELLED: frozenset(),
}


class StepKind(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    SIGNAL = "signal"
    OPERATOR_TASK = "operator_task"
    COMPENSATION = "compensation"


class TaskState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    """Its run ended (cancelled or failed) before anyone completed it."""


TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.OPEN: frozenset({TaskState.CLAIMED, TaskState.CANCELLED}),
    # CLAIMED -> OPEN: released, or the claim expired.
    TaskState.CLAIMED: frozenset({TaskState.OPEN, TaskState.COMPLETED, TaskState.CANCELLED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    """Approve with the operator's changes (`payload`, validated against the kind's schema)."""


class IllegalTransition(RuntimeError):
    """A write would move a run, step or task along an edge its table does not have."""


def check_transition(table: dict[S, frozenset[S]], old: S, new: S) -> None:
    if old != new and new not in table[old]:
        raise IllegalTransition(f"{type(old).__name__} {old.value} -> {new.value} is not allowed")
