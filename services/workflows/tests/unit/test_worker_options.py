"""Worker knobs read from the environment, and the ones refused."""

from __future__ import annotations

import pytest

from hygoshop_platform.settings import SettingsError
from hygoshop_workflows.config import WorkerOptions


def test_worker_knobs_come_from_the_environment() -> None:
    options = WorkerOptions.from_env(
        {
            "WORKFLOW_LEASE_SECONDS": "8",
            "WORKFLOW_HEARTBEAT_SECONDS": "2",
            "WORKFLOW_CONCURRENCY": "3",
            "WORKFLOW_MAX_LEASE_LOSSES": "2",
            "WORKFLOW_RUNNING_MARK_SECONDS": "0.5",
            "WORKER_ID": "w-7",
        }
    )
    assert (options.lease_seconds, options.heartbeat_seconds) == (8.0, 2.0)
    assert (options.concurrency, options.max_lease_losses) == (3, 2)
    assert options.running_mark_seconds == 0.5
    assert options.name == "w-7"
    assert WorkerOptions.from_env({}) == WorkerOptions()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKFLOW_LEASE_SECONDS": "10", "WORKFLOW_HEARTBEAT_SECONDS": "6"}, "HEARTBEAT"),
        ({"WORKFLOW_CONCURRENCY": "0"}, "CONCURRENCY"),
        ({"WORKFLOW_RUNNING_MARK_SECONDS": "-1"}, "RUNNING_MARK"),
        ({"WORKFLOW_RUNNING_MARK_SECONDS": "soon"}, "RUNNING_MARK"),
    ],
)
def test_bad_worker_knobs_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        WorkerOptions.from_env(env)
