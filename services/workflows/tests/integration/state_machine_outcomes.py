"""What each run of the stateful property test must have ended as, once every run has ended:
checked at teardown, when all of the machine's rules are done."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable

from hygoshop_workflows.domain.states import RunState, StepState
from hygoshop_workflows.runtime.context import WORKER_LOST

from .state_machine_support import LEDGER, MAX_ATTEMPTS, RunModel, TaskModel


def check_outcomes(
    runs: Iterable[RunModel],
    tasks: Iterable[TaskModel],
    lost: Counter[uuid.UUID],
    max_lease_losses: int,
) -> None:
    """Each ended run ended as its input, signals and operator decision say it must, and
    compensated exactly what it had done. `lost`: how many of each run's claims a worker
    lost (a run that lost `max_lease_losses`, or a step's last attempt, fails with
    WORKER_LOST, whatever its input)."""
    tasks = list(tasks)
    for model in runs:
        names = {step.name: step for step in model.steps.values()}
        a_done = "A" in names and names["A"].state == StepState.SUCCEEDED
        undone = LEDGER.effects[(model.run_id, "compensate:A")] > 0
        ended = model.ended
        if model.state == RunState.SUCCEEDED:
            assert ended is not None
            (task,) = [t for t in tasks if t.run_id == model.run_id]
            assert task.outcome is not None, "succeeded without its operator's decision"
            assert model.input["fail_b"] < MAX_ATTEMPTS["B"]
            decision, payload, operator = task.outcome
            assert ended[1] == {
                # The results its history recorded (a replay returns them; a zombie's
                # own answers are fenced off), the oldest signal, the decision taken.
                "a": names["A"].result,
                "go": model.signals[0],
                "b": names["B"].result,
                "decision": decision.value,
                "payload": payload,
                "by": operator,
                "c": names["C"].result,
            }
            assert not undone, "a run that succeeded was compensated"
        elif model.state == RunState.FAILED:
            assert ended is not None
            if ended[2] == WORKER_LOST:
                # Too many leases lost in a row, or the last attempt a step's policy
                # allows was under way (marked running) when its worker was lost.
                (step,) = [s for s in names.values() if s.error_type == WORKER_LOST]
                last_lost = step.attempts == MAX_ATTEMPTS[step.name] and lost[model.run_id]
                assert lost[model.run_id] >= max_lease_losses or last_lost, (ended, step)
                continue
            assert model.input["fail_b"] >= MAX_ATTEMPTS["B"], ended
            assert ended[2].endswith("VendorDown"), ended
            assert "'B'" in ended[3], ended
            assert undone == a_done, "a failed run's done steps must be compensated"
        elif model.state == RunState.CANCELLED:
            assert model.cancel_requested, "cancelled without a cancel"
            assert undone == a_done, "a cancelled run's done steps must be compensated"
        else:
            assert not undone
