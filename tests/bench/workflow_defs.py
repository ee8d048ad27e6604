"""The workflow type the workflow_steps benchmark runs: ten no-op steps, nothing else."""

from __future__ import annotations

from typing import Any

from hygoshop_workflows.runtime import Registry, WorkflowContext

STEPS = 10

registry = Registry()


@registry.workflow("bench.ten_steps", version=1)
async def ten_steps(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    for i in range(STEPS):
        await ctx.step(f"step-{i}", _noop)
    return {"done": True}


async def _noop(call: Any) -> None:
    """What is measured is the engine (claim, replay, checkpoint), not a side effect."""
