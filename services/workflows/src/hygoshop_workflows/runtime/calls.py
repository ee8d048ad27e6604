"""What step functions and waits exchange with the runtime: the call a step function gets
on each attempt, and an operator's decision as a run receives it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hygoshop_workflows.domain.states import Decision


@dataclass(frozen=True, slots=True)
class StepCall:
    """Handed to a step function on each attempt."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    step: str
    seq: int
    attempt: int
    """1 for the first attempt; for logs only, never for keys."""
    idempotency_key: str
    """Stable across attempts, workers and replays of this step of this run."""


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """An operator's decision on a task."""

    task_id: uuid.UUID
    decision: Decision
    payload: dict[str, Any]
    """APPROVE: the proposal as it was; EDIT: the operator's version; REJECT: empty."""
    comment: str
    operator: str

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": str(self.task_id),
            "decision": self.decision.value,
            "payload": self.payload,
            "comment": self.comment,
            "operator": self.operator,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskOutcome:
        return cls(
            task_id=uuid.UUID(data["task_id"]),
            decision=Decision(data["decision"]),
            payload=data["payload"],
            comment=data["comment"],
            operator=data["operator"],
        )


StepFn = Callable[[StepCall], Awaitable[Any]]
CompensationFn = Callable[[StepCall, Any], Awaitable[Any]]
"""Undoes a step; gets the step's result."""
