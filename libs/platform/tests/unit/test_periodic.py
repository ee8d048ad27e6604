"""Periodic chores: a turn that raises is logged and the chore goes on; stop ends it."""

from __future__ import annotations

import asyncio

import pytest

from hygoshop_platform.periodic import Periodic


async def test_a_failing_turn_does_not_end_the_chore(caplog: pytest.LogCaptureFixture) -> None:
    turns: list[int] = []

    async def job() -> None:
        turns.append(len(turns))
        if len(turns) == 1:
            raise OSError("storage hiccup")

    chore = Periodic("test-chore", job, every=0.01)
    await chore.start()
    try:
        for _ in range(200):
            if chore.runs >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await chore.stop()
    assert chore.runs >= 2  # turns after the failure succeeded
    assert len(turns) == chore.runs + 1  # the first one failed
    assert "test-chore failed" in caplog.text
    stopped_at = len(turns)
    await asyncio.sleep(0.05)
    assert len(turns) == stopped_at  # nothing runs after stop


def test_the_interval_must_be_positive() -> None:
    async def job() -> None: ...

    with pytest.raises(ValueError, match="interval"):
        Periodic("bad", job, every=0)
