"""Members of one ``ctx.gather`` waiting for the same signal: which of them takes an entry.

The waits for one name share its entries in the order they began, waits begun at one
instant in step-id order (``decide.taken_in_gather``): never in the order trio happened
to run the members one wake made ready, and the same whether a resumed run finds the
signal buffered or sees it arrive. Trio runs the tasks it wakes together in a random
order, so each case runs under several fixed orders (``scheduling``); before the rule,
one signal for an untimed and a timed member went to either, and so the execution either
waited forever or carried on (found by ``tests/property/test_replay_properties.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import durably
import durably.testing


@pytest.fixture(params=range(6))
def scheduling(request: pytest.FixtureRequest) -> int:
    """One fixed order of trio's scheduler: the order in which it runs a batch of ready
    tasks comes from its own ``random.Random``, seeded here, so that every parameter is
    the same order on every run and the cases cover either member running first."""
    trio._core._run._r.seed(request.param)
    return int(request.param)


def _shown(got: Any) -> Any:
    if isinstance(got, durably.TimedOut):
        return "timed out"
    return got.payload if isinstance(got, durably.Received) else got


@durably.workflow("gather-waits-one-signal")
async def one_signal(ctx: durably.Context, pause: int) -> list[Any]:
    await ctx.sleep(pause, step_id="pause")
    patient, timed = await ctx.gather(
        ctx.wait_for_signal("c", step_id="patient"),
        ctx.wait_for_signal("c", timeout=1, step_id="timed"),
    )
    await ctx.sleep(0, step_id="after")  # the gather is over: the workflow goes on
    return [patient, _shown(timed)]


@pytest.mark.parametrize(
    "pause, sent",
    [(0, 0.0), (5, 1.0)],
    ids=["sent-while-both-wait", "buffered-before-both-wait"],
)
def test_one_signal_goes_to_the_first_of_two_waits_begun_together(
    scheduling: int, pause: int, sent: float
) -> None:
    # Both waits begin at one instant: "patient" comes first in step-id order and takes
    # the one signal, and "timed" times out a second later, in every run and after a crash
    # at any commit (check_replay resumes each one in virtual time, MockClock autojump).
    report = durably.testing.check_replay(
        one_signal, pause, signals=[(sent, "c", "go")], horizon=3600
    )
    assert (report.status, report.result) == ("completed", ["go", "timed out"])
    taken = [e["step_id"] for e in report.history if e["t"] == "signal.received"]
    assert taken == ["patient"]


@durably.workflow("gather-waits-begun-first")
async def begun_first(ctx: durably.Context, _: None) -> list[Any]:
    async def later() -> Any:
        await ctx.sleep(2, step_id="nap")
        return await ctx.wait_for_signal("c", step_id="a-later")

    sooner = ctx.wait_for_signal("c", timeout=10, step_id="b-sooner")
    got = await ctx.gather(later(), sooner, step_id="both")
    return [_shown(g) for g in got]


def test_the_wait_begun_first_takes_the_first_signal_whatever_its_step_id(
    scheduling: int,
) -> None:
    # At 3 s both wait; "b-sooner" began at 0 s, "a-later" at 2 s: the first signal is
    # b-sooner's although its step id sorts last, and the second is a-later's.
    report = durably.testing.check_replay(
        begun_first, None, signals=[(3.0, "c", "first"), (4.0, "c", "second")], horizon=3600
    )
    assert (report.status, report.result) == ("completed", ["second", "first"])
