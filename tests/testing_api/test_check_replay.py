"""durably.testing itself: what check_replay catches, what it accepts, its errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.runtime import _context
from durably.testing import (
    ReplayMismatch,
    check_replay,
    check_replay_async,
    deliveries,
    virtual_engine,
)


def _double(n: int) -> int:
    return n * 2


@durably.workflow("values")
async def values(ctx: durably.Context, data: Any) -> list[Any]:
    drawn = [ctx.random(), str(ctx.uuid()), ctx.now().isoformat()]
    await ctx.sleep(5, step_id="nap")  # the values ride with this commit
    drawn.append(await ctx.step("double", _double, 21))
    return drawn


def test_recorded_values_lost_in_a_crash_are_drawn_again_identically() -> None:
    report = check_replay(values)
    # Boundary 1 refuses the commit that carries the three values: the resumed run draws
    # them again and must get the same ones, or the result would differ.
    assert report.boundaries >= 4
    assert report.result[2] == "2026-01-01T00:00:00+00:00"
    assert report.result[3] == 42
    assert isinstance(_context.entropy, _context._SystemEntropy)  # restored afterwards


def test_a_different_seed_gives_different_values() -> None:
    assert check_replay(values, seed=1).result[0] != check_replay(values, seed=2).result[0]


@durably.workflow("fresh-ids")
async def fresh_ids(ctx: durably.Context, data: Any) -> None:
    await ctx.step(f"charge-{uuid.uuid4()}", _double, 1)  # a step id that changes per run


def test_a_step_id_that_changes_on_replay_is_reported_with_the_boundary() -> None:
    with pytest.raises(ReplayMismatch) as info:
        check_replay(fresh_ids)
    mismatch = info.value
    assert isinstance(mismatch, AssertionError)
    # Even a run stopped before anything was committed records a different step id.
    assert mismatch.boundary == 0 and mismatch.step_id is not None
    assert mismatch.step_id.startswith("charge-")
    assert mismatch.recorded["t"] == "step.completed"
    # Stopped after the step's result was committed, the resumed run cannot replay it.
    with pytest.raises(ReplayMismatch, match="FAILED with NonDeterminismError") as info:
        check_replay(fresh_ids, boundaries=[2])
    assert info.value.boundary == 2 and "the log recorded step 'charge-" in str(info.value)


@durably.workflow("waits-forever")
async def waits_forever(ctx: durably.Context, data: Any) -> Any:
    await ctx.step("double", _double, 1)
    return await ctx.wait_for_signal("never", step_id="never")


def test_a_run_that_waits_forever_is_compared_at_the_horizon() -> None:
    report = check_replay(waits_forever, horizon=3600)
    assert report.status == "waiting"
    assert [e["t"] for e in report.history][-1] == "signal.waiting"


@durably.workflow("two-signals")
async def two_signals(ctx: durably.Context, data: Any) -> list[Any]:
    first = await ctx.wait_for_signal("a", timeout=100, step_id="first")
    second = await ctx.wait_for_signal("b", step_id="second")
    return [repr(first), second]


def test_signals_by_time_and_when_waiting() -> None:
    report = check_replay(two_signals, signals=[(150.5, "a", 1), ("waiting", "b", 2)])
    assert report.result == ["TimedOut()", 2]
    report = check_replay(two_signals, signals=[(50.5, "a", 1), ("waiting", "b", 2)])
    assert report.result == ["Received(payload=1)", 2]


def test_boundaries_can_be_restricted() -> None:
    report = check_replay(
        two_signals, signals=[("waiting", "a", 1), ("waiting", "b", 2)], boundaries=[0, 3, 999]
    )
    assert report.boundaries == 2


@pytest.mark.parametrize(
    "bad",
    [[(1, "a")], [(-1, "a", None)], [("soon", "a", None)], [(1, 42, None)]],
)
def test_a_malformed_delivery_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(durably.ConfigurationError, match="signals="):
        check_replay(two_signals, signals=bad)


def test_a_plain_function_is_refused() -> None:
    with pytest.raises(durably.ConfigurationError, match=r"@durably\.workflow"):
        check_replay(_double, 1)  # type: ignore[arg-type]


def test_the_async_variant_needs_virtual_time() -> None:
    async def main() -> None:
        await check_replay_async(values)

    with pytest.raises(durably.ConfigurationError, match="MockClock"):
        trio.run(main)


async def test_the_async_variant_in_a_trio_test(autojump_clock: trio.testing.MockClock) -> None:
    report = await check_replay_async(two_signals, signals=[("waiting", "a", 1), (9.5, "b", 2)])
    assert report.result == ["Received(payload=1)", 2]


async def test_virtual_engine_and_its_fixture_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with virtual_engine(values) as engine:
        result = await engine.start_and_wait(values)
    assert result.data[2] == "2026-01-01T00:00:00+00:00"


def test_the_deliveries_strategy_draws_every_signal_once() -> None:
    from hypothesis import given, settings

    seen: list[list[Any]] = []

    @settings(max_examples=20, database=None)
    @given(deliveries([("a", 1), ("b", 2)], max_delay=10))
    def draw(plan: list[Any]) -> None:
        assert sorted((s, p) for _w, s, p in plan) == [("a", 1), ("b", 2)]
        for when, _s, _p in plan:
            assert when == "waiting" or 0 <= when <= 10
        seen.append(plan)

    draw()
    assert len(seen) == 20
