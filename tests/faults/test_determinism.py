"""Entries 12 and 13: code changed under a running execution, and workflow code that reads
the clock or randomness directly. Recorded values replay; divergence is named, never guessed
around, and the history is left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import durably

from ._helpers import events, lmdb_engine


def _v1(name: str) -> durably.WorkflowDefinition[None, str]:
    @durably.workflow(name)
    async def flow(ctx: durably.Context, _: None) -> str:
        await ctx.step("reserve", lambda: "r")
        await ctx.step("charge", lambda: "c")
        await ctx.sleep(60, step_id="cool-off")
        await ctx.step("ship", lambda: "s")
        return "v1"

    return flow


def _renamed(name: str, ran: list[str]) -> durably.WorkflowDefinition[None, str]:
    @durably.workflow(name)
    async def flow(ctx: durably.Context, _: None) -> str:
        await ctx.step("reserve", lambda: "r")
        await ctx.step("bill", lambda: ran.append("bill"))  # was "charge"
        await ctx.sleep(60, step_id="cool-off")
        return "v2"

    return flow


def _reordered(name: str, ran: list[str]) -> durably.WorkflowDefinition[None, str]:
    @durably.workflow(name)
    async def flow(ctx: durably.Context, _: None) -> str:
        await ctx.step("charge", lambda: ran.append("charge"))
        await ctx.step("reserve", lambda: ran.append("reserve"))
        await ctx.sleep(60, step_id="cool-off")
        return "v2"

    return flow


def _removed(name: str, ran: list[str]) -> durably.WorkflowDefinition[None, str]:
    @durably.workflow(name)
    async def flow(ctx: durably.Context, _: None) -> str:
        await ctx.step("reserve", lambda: "r")
        await ctx.sleep(60, step_id="cool-off")  # "charge" removed
        await ctx.step("ship", lambda: ran.append("ship"))
        return "v2"

    return flow


@pytest.mark.parametrize(
    ("change", "position", "step_id", "recorded", "attempted"),
    [
        (_renamed, 1, "bill", "step 'charge'", "step 'bill'"),
        (_reordered, 0, "charge", "step 'reserve'", "step 'charge'"),
        (_removed, 1, "cool-off", "step 'charge'", "sleep 'cool-off'"),
    ],
    ids=["renamed", "reordered", "removed"],
)
async def test_12_changed_code_is_a_named_nondeterminism_error_history_untouched(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    change: Any,
    position: int,
    step_id: str,
    recorded: str,
    attempted: str,
) -> None:
    store = tmp_path / "s"
    async with lmdb_engine(store, [_v1("order")]) as engine:
        eid = await engine.start("order")
        await trio.sleep(1)  # reserve, charge recorded; sleeping
    before = events(store, eid)
    ran: list[str] = []
    async with lmdb_engine(store, [change("order", ran)]) as engine:
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
        view = await engine.get_execution(eid)
    assert view.reason is not None and "non-determinism" in view.reason
    error = info.value.error
    assert error["type"] == "durably.NonDeterminismError"
    message = error["message"]
    assert f"command #{position}" in message
    assert f"the log recorded {recorded}" in message
    assert f"the code asked for {attempted}" in message
    assert ran == []  # nothing of the new code's work ran against the old history
    after = events(store, eid)
    assert after[: len(before)] == before  # the history is untouched...
    assert [e["t"] for e in after[len(before) :]] == ["failed"]  # ...only the failure added
    assert step_id in message


def test_12_the_error_carries_its_fields_for_operators() -> None:
    """The engine-level error text above is built from these fields (raised in-process)."""
    from durably.core._events import StepCompleted
    from durably.core._replay import Replayer

    replayer = Replayer([StepCompleted(at=0, step_id="charge", result=1)], "e1")
    with pytest.raises(durably.NonDeterminismError) as info:
        replayer.issue("bill", "step")
    err = info.value
    assert (err.position, err.step_id) == (0, "bill")
    assert (err.recorded, err.attempted) == ("step 'charge'", "step 'bill'")


async def test_13_recorded_clock_and_randomness_replay_identically(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[Any, ...]] = []

    @durably.workflow("values")
    async def values(ctx: durably.Context, _: None) -> str:
        seen.append((ctx.now(), ctx.random(), ctx.uuid()))
        await ctx.sleep(3600, step_id="later")
        return "ok"

    store = tmp_path / "s"
    async with lmdb_engine(store, [values]) as engine:
        eid = await engine.start(values)
        await trio.sleep(10)
    await trio.sleep(600)  # the clock moves on while the engine is down
    async with lmdb_engine(store, [values]) as engine:
        assert await engine.wait(eid) == "ok"
    assert len(seen) == 2 and seen[0] == seen[1]


async def test_13_reading_the_clock_directly_is_caught_on_replay(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A workflow that branches on an unrecorded reading (here a stand-in for time.time())
    does not silently take another path on replay: the divergence is a named error."""
    reading = {"hour": 9}

    @durably.workflow("shift")
    async def shift(ctx: durably.Context, _: None) -> str:
        if reading["hour"] < 12:  # misuse: should be ctx.now()
            await ctx.step("morning", lambda: "m")
        else:
            await ctx.step("evening", lambda: "e")
        await ctx.sleep(3600, step_id="wait")
        return "done"

    store = tmp_path / "s"
    async with lmdb_engine(store, [shift]) as engine:
        eid = await engine.start(shift)
        await trio.sleep(1)
    reading["hour"] = 18  # the wall clock moved between the first run and the replay
    async with lmdb_engine(store, [shift]) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="NonDeterminismError"):
            await engine.wait(eid)
