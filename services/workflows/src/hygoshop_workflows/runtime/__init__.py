"""The workflow runtime's public surface: what definitions import (and nothing else).

    from hygoshop_workflows.runtime import Registry, RetryPolicy, StepCall, WorkflowContext

See `context.py` for replay and `lease.py` for fencing; `worker.py` runs it all.
"""

from hygoshop_workflows.runtime.calls import StepCall, TaskOutcome
from hygoshop_workflows.runtime.context import WorkflowContext
from hygoshop_workflows.runtime.errors import RunCancelled, StepFailed
from hygoshop_workflows.runtime.registry import (
    Registry,
    SignalTrigger,
    TaskKind,
    Trigger,
    WorkflowDefinition,
)
from hygoshop_workflows.runtime.retry import NO_RETRY, NonRetryableError, RetryPolicy

__all__ = [
    "NO_RETRY",
    "NonRetryableError",
    "Registry",
    "RetryPolicy",
    "RunCancelled",
    "SignalTrigger",
    "StepCall",
    "StepFailed",
    "TaskKind",
    "TaskOutcome",
    "Trigger",
    "WorkflowContext",
    "WorkflowDefinition",
]
