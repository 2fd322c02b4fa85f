"""``durably.current_step()``: what a step body sees of itself, and what nothing else sees."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import durably
from durably.stores import MemoryStore

SEEN: list[object] = []
ENGINE: list[durably.Engine] = []


@durably.workflow("started-from-a-body")
async def started(ctx: durably.Context, _: None) -> int:
    SEEN.append(("workflow code", durably.current_step()))

    def body() -> int:
        info = durably.current_step()
        SEEN.append(("its own body", info and info.step_id))
        return 1

    return await ctx.step("own", body)


@durably.workflow("starter")
async def starter(ctx: durably.Context, _: None) -> str:
    async def body() -> str:
        info = durably.current_step()
        SEEN.append(("starter body", info and info.step_id))
        return await ENGINE[0].start(started, None)

    return await ctx.step("spawn", body)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SEEN.clear()
    ENGINE.clear()


async def test_an_execution_started_from_a_step_body_is_in_no_step_until_it_calls_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with durably.Engine(MemoryStore(), workflows=[starter, started]) as engine:
        ENGINE.append(engine)
        child = await engine.start_and_wait(starter, None)
        assert await engine.wait(child.data) == 1
    assert SEEN == [
        ("starter body", "spawn"),
        ("workflow code", None),
        ("its own body", "own"),
    ]
    assert durably.current_step() is None
