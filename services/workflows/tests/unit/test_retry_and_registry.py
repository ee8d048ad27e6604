"""Retry policies, the registry and the state tables: the runtime's pure parts."""

from __future__ import annotations

import pytest

from hygoshop_platform.errors import InvalidArgument
from hygoshop_workflows.domain.states import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_RUN_STATES,
    IllegalTransition,
    RunState,
    TaskState,
    check_transition,
)
from hygoshop_workflows.runtime import NonRetryableError, Registry, RetryPolicy, TaskKind
from hygoshop_workflows.runtime.registry import check_json
from hygoshop_workflows.runtime.retry import error_type


class Declined(Exception):
    pass


def test_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_interval=0.5, backoff=3.0, max_interval=10.0, max_attempts=6)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_attempts_stop_at_the_maximum_and_at_non_retryable_errors() -> None:
    policy = RetryPolicy(max_attempts=3, non_retryable=("ValueError", f"{__name__}.Declined"))
    assert policy.retries(ConnectionError(), 1)
    assert policy.retries(ConnectionError(), 2)
    assert not policy.retries(ConnectionError(), 3)
    assert not policy.retries(ValueError(), 1)
    assert not policy.retries(Declined(), 1)
    assert not policy.retries(NonRetryableError("no"), 1)
    assert error_type(Declined()) == f"{__name__}.Declined"
    assert error_type(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_interval": -1}, {"backoff": 0.5}, {"max_interval": -1}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|at least"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


async def _noop(ctx: object, input: dict[str, object]) -> None:
    return None


def test_registry_pins_versions_and_lists_what_a_worker_may_claim() -> None:
    registry = Registry()
    registry.workflow("orders.reorder", version=1)(_noop)
    registry.workflow("orders.reorder", version=2)(_noop)
    registry.workflow("carts.recover")(_noop)
    newest = registry.newest("orders.reorder")
    assert newest is not None
    assert newest.version == 2
    assert registry.get("orders.reorder", 1) is not None
    assert registry.get("orders.reorder", 3) is None
    assert registry.type_versions() == ["carts.recover@1", "orders.reorder@1", "orders.reorder@2"]
    with pytest.raises(ValueError, match="twice"):
        registry.workflow("orders.reorder", version=2)(_noop)
    with pytest.raises(ValueError, match="start at 1"):
        registry.workflow("x.y", version=0)
    registry.task_kind(TaskKind("refund"))
    with pytest.raises(ValueError, match="twice"):
        registry.task_kind(TaskKind("refund"))


def test_json_checks_name_each_offending_field() -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "integer", "minimum": 0}, "note": {"type": "string"}},
        "required": ["amount"],
        "additionalProperties": False,
    }
    check_json(schema, {"amount": 3}, "payload")
    with pytest.raises(InvalidArgument) as bad:
        check_json(schema, {"amount": -1, "note": 5}, "payload")
    assert sorted(v.field for v in bad.value.violations) == ["payload.amount", "payload.note"]
    with pytest.raises(InvalidArgument) as missing:
        check_json(schema, {}, "input")
    assert missing.value.violations[0].field == "input"


def test_terminal_states_have_no_way_out_and_illegal_moves_raise() -> None:
    for state in TERMINAL_RUN_STATES:
        assert RUN_TRANSITIONS[state] == frozenset()
        for target in RunState:
            if target != state:
                with pytest.raises(IllegalTransition):
                    check_transition(RUN_TRANSITIONS, state, target)
    check_transition(RUN_TRANSITIONS, RunState.WAITING, RunState.PENDING)
    check_transition(TASK_TRANSITIONS, TaskState.CLAIMED, TaskState.OPEN)
    with pytest.raises(IllegalTransition):
        check_transition(TASK_TRANSITIONS, TaskState.COMPLETED, TaskState.OPEN)
