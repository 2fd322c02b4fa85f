"""Entries 9 and 10 at their edges, on a real engine (LMDB; memory for the property).
NaN and the infinities, integers past 64 bits and nesting past the codec's limit are
refused at every entry point with a PayloadError that names the limit, nothing of them is
written, and the engine goes on (9); what can be stored comes back the same on the first
run and on the replay after a restart (10)."""

from __future__ import annotations

import math
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

import durably
from durably.core._codec import MAX_DEPTH, MAX_INT, MIN_INT
from durably.stores import MemoryStore

from ._helpers import events, lmdb_engine


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# (value, the phrase its PayloadError must hold)
ODD = [
    (float("nan"), "NaN or infinity"),
    (float("inf"), "NaN or infinity"),
    ({"rate": -math.inf}, "NaN or infinity"),
    (2**70, "64-bit range"),
    ([MIN_INT - 1], "64-bit range"),
    (nested(MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels"),
    (nested(2_000), f"nested more than {MAX_DEPTH} levels"),
]
IDS = ["nan", "inf", "-inf", "2**70", "-2**63-1", "depth-254", "depth-2000"]

#: The value the workflows below produce at the entry point under test.
ODD_VALUE: list[Any] = [None]


@durably.workflow("takes")
async def takes(ctx: durably.Context, data: Any) -> str:
    await ctx.wait_for_signal("go", step_id="go")
    return "ok"


@durably.workflow("makes")
async def makes(ctx: durably.Context, where: str) -> Any:
    await ctx.step("fine", lambda: 1)
    if where == "step":
        await ctx.step("odd", lambda: ODD_VALUE[0])
    elif where == "emit":
        await ctx.emit("odd", ODD_VALUE[0], step_id="odd")
    elif where == "note":
        await ctx.note("odd", step_id="odd", value=ODD_VALUE[0])
    elif where == "result":
        return ODD_VALUE[0]
    return "unreachable"


@pytest.mark.parametrize(("value", "phrase"), ODD, ids=IDS)
async def test_09_an_odd_input_signal_or_schedule_input_is_refused_at_the_call(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, value: Any, phrase: str
) -> None:
    async with lmdb_engine(tmp_path / "s", [takes]) as engine:
        with pytest.raises(durably.PayloadError, match=phrase) as info:
            await engine.start(takes, value)
        assert str(info.value).startswith("input of workflow 'takes': ")
        assert await engine.list_executions() == []  # nothing written

        eid = await engine.start(takes, {"fine": 1.5})
        with pytest.raises(durably.PayloadError, match=phrase) as info:
            await engine.signal(eid, "go", value)
        assert "signal 'go'" in str(info.value)
        assert engine.store.mailbox(eid) == []

        with pytest.raises(durably.PayloadError, match=phrase):
            await engine.schedule(takes, value, delay=60)
        with pytest.raises(durably.PayloadError, match=phrase):
            await engine.ensure_schedule(takes, value, id="every", interval=60)
        assert await engine.list_schedules() == []

        # The engine goes on: the waiting execution takes a fine signal and completes.
        assert (await engine.signal(eid, "go", [0.5, None])).accepted
        assert await engine.wait(eid) == "ok"


@pytest.mark.parametrize("where", ["step", "emit", "note", "result"])
@pytest.mark.parametrize(("value", "phrase"), ODD, ids=IDS)
async def test_09_an_odd_value_made_by_the_workflow_fails_it_and_nothing_is_written(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    value: Any,
    phrase: str,
    where: str,
) -> None:
    ODD_VALUE[0] = value
    store = tmp_path / "s"
    async with lmdb_engine(store, [makes]) as engine:
        eid = await engine.start(makes, where)
        with pytest.raises(durably.ExecutionFailedError, match=phrase) as info:
            await engine.wait(eid)
        assert info.value.error["type"] == "durably.PayloadError"
        if where != "result":
            assert "'odd'" in info.value.error["message"]  # the call is named
        # The engine goes on.
        ODD_VALUE[0] = {"fine": [1.5, None]}
        assert await engine.wait(await engine.start(makes, "result")) == {"fine": [1.5, None]}
    log = events(store, eid)
    assert [e.get("step_id") for e in log if "step_id" in e] == ["fine"]
    assert log[-1]["t"] == "failed"


async def test_09_a_client_refuses_odd_values_as_the_engine_does(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryStore()
    async with durably.Client(store) as client:
        for value, phrase in ODD:
            with pytest.raises(durably.PayloadError, match=phrase):
                await client.start("takes", value)  # by name: the shape is still checked
        assert await client.list_executions() == []


# --- the first run and the replay agree, for every shape that can be stored ---

_hashable = (
    st.none()
    | st.booleans()
    | st.integers(MIN_INT, MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_leaves = (
    _hashable
    | st.binary(max_size=6)
    | st.datetimes(timezones=st.just(UTC) | st.none())
    | st.dates()
    | st.uuids()
)
VALUES = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.sets(_hashable, max_size=3)
        | st.frozensets(_hashable, max_size=3)
    ),
    max_leaves=15,
)
EDGE_FLOATS = st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, sys.float_info.max, -sys.float_info.max, 1 / 3, 2.0**53 + 2]
) | st.floats(allow_nan=False, allow_infinity=False)


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def first_run_and_replay(value: Any, number: float) -> tuple[list[Any], Any]:
    """What the workflow saw on its first run and on its replay (after a restart)."""
    seen: list[Any] = []

    def untyped():  # type: ignore[no-untyped-def]  # no annotation: the stored shape
        return value

    def a_float() -> float:
        return number

    def a_set() -> set[int]:
        return {1, 2}

    @durably.workflow("shapes")
    async def shapes(ctx: durably.Context, _: None) -> Any:
        got = (
            await ctx.step("untyped", untyped),
            await ctx.step("float", a_float),
            await ctx.step("set", a_set),
        )
        seen.append(got)
        await ctx.sleep(5, step_id="nap")
        return got[0]

    async def main() -> Any:
        clock, store = durably.Clock(), MemoryStore()
        async with durably.Engine(store, workflows=[shapes], clock=clock) as engine:
            eid = await engine.start(shapes)
            await trio.sleep(1)  # it sleeps at "nap": the engine stops there
        async with durably.Engine(store, workflows=[shapes], clock=clock) as engine:
            return await engine.wait(eid)  # the replay runs to the end

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return seen, result


@given(VALUES, EDGE_FLOATS)
def test_10_the_first_run_and_the_replay_see_the_same_values(value: Any, number: float) -> None:
    seen, result = first_run_and_replay(value, number)
    assert len(seen) == 2  # the first run, then the replay after the restart
    first, replay = seen
    assert same(first, replay)
    assert same(first[1], number)  # a float comes back bit for bit (-0.0, subnormals)
    assert first[2] == {1, 2} and type(first[2]) is set  # annotated: restored
    assert same(result, first[0])  # and the workflow's result is the same shape again
