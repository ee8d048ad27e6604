"""What the runtime raises into workflow code, and what it raises to itself.

All but `StepFailed` derive from BaseException: a workflow's `except Exception` must not
swallow a cancel, a lost lease or a pause.
"""

from __future__ import annotations


class StepFailed(Exception):
    """A step's last attempt failed. Raised where the workflow awaited the step (also on
    replay); a workflow may catch it, otherwise the run fails after its compensations."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


class RunCancelled(BaseException):
    """Raised at the next step boundary after a cancel was requested. The runtime runs the
    compensations and ends the run cancelled; workflow code should let it propagate."""


class NonDeterminism(BaseException):
    """The replay asked for steps in a different order than the history records: the
    definition changed under a running version, or it branches on something not
    checkpointed (time, randomness, a read that is not a step)."""


class LeaseLost(BaseException):
    """This worker no longer holds the run (its lease expired and another worker took it,
    or the run ended): everything it would still write is refused. Internal."""


class Suspended(BaseException):
    """The run pauses here (timer, signal, operator task, retry backoff); the worker lets it
    go. A BaseException so that workflow code's `except Exception` does not swallow it."""
