"""Time at the edges: durable deadlines never fire early, and never behave as zero.

Start times, trio times and durations all carry sub-millisecond parts here: the engine
clock starts at a random microsecond (or a random wall-clock nanosecond), trio's
``MockClock`` at a random fractional offset, and sleeps and signal timeouts last from
well under a millisecond to seconds, as floats the way user code computes them. Durable
time is whole milliseconds; what must hold is that a wait of ``s`` seconds ends when the
engine clock has moved on by at least ``s`` (read to the nanosecond) and at most the
next millisecond, that ``ctx.now()`` after it reads at or after its deadline, and that
the updatable-timer loop ends in a bounded number of waits.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from unittest import mock

import trio
import trio.testing
from hypothesis import given, strategies as st

import durably
from durably.core._decide import sleep_started
from durably.core._events import decode_all
from durably.core._history import LAST_MS, due_after, due_at
from durably.runtime._clock import _SLACK_S, Clock
from durably.stores import AddTimer, MemoryStore, Timer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
BASE = datetime(2030, 1, 1, tzinfo=UTC)
BASE_NS = (BASE - EPOCH) // timedelta(microseconds=1) * 1000

#: Durations as user code makes them: sub-ms floats, float arithmetic, whole numbers,
#: microsecond-exact timedeltas (``total_seconds()``), up to a minute.
durations = st.one_of(
    st.floats(min_value=1e-12, max_value=0.002),
    st.floats(min_value=0.0, max_value=60.0),
    st.integers(min_value=0, max_value=60_000_000).map(lambda us: us / 1e6),
    st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)).map(lambda ab: ab[0] + ab[1]),
)


@st.composite
def clocks(draw: st.DrawFn) -> tuple[float, int | None, int | None]:
    """(trio offset, engine start in µs or None, wall clock in ns or None)."""
    offset = draw(st.floats(min_value=0.0, max_value=1e7))
    moment = draw(st.integers(min_value=0, max_value=10**12))
    if draw(st.booleans()):
        return offset, moment, None
    return offset, None, moment * 1000 + draw(st.integers(0, 999))


def bound_clock(start_us: int | None, wall_ns: int | None) -> Clock:
    """An engine clock bound now, at a start or a wall-clock reading with a fraction."""
    if start_us is not None:
        clock = Clock(BASE + timedelta(microseconds=start_us))
        clock.bind()
        return clock
    assert wall_ns is not None
    clock = Clock()
    with mock.patch.object(time, "time_ns", return_value=BASE_NS + wall_ns):
        clock.bind()
    return clock


def run(main: Any, offset: float) -> Any:
    mock_clock = trio.testing.MockClock(autojump_threshold=0)
    mock_clock.jump(offset)
    return trio.run(main, clock=mock_clock)


# --- the pure rules ---


@given(st.integers(min_value=0, max_value=4 * 10**12), durations)
def test_a_due_time_is_never_before_the_instant_and_at_most_a_millisecond_after(
    start_ms: int, seconds: float
) -> None:
    waited = due_after(start_ms, seconds) - start_ms
    exact = Fraction(seconds) * 1000  # the float's exact value, in milliseconds
    nanosecond = Fraction(1, 10**6)
    assert waited >= exact - nanosecond  # never early, to the nanosecond durations are read
    assert waited < max(exact, 1) + 1  # and at most the next millisecond
    if seconds > 0:
        assert waited >= 1  # a positive wait never behaves as zero
    if exact - math.floor(exact) > nanosecond:
        assert waited == math.ceil(exact)


@given(st.integers(min_value=0, max_value=4 * 10**12), st.integers(0, 10**12))
def test_a_microsecond_exact_duration_is_rounded_up_exactly(start_ms: int, us: int) -> None:
    assert due_after(start_ms, timedelta(microseconds=us).total_seconds()) == start_ms - (
        -us // 1000
    )


@given(st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.just(UTC)))
def test_an_instant_is_due_at_its_millisecond_or_the_next(moment: datetime) -> None:
    due = due_at(moment)
    us = (moment - EPOCH) // timedelta(microseconds=1)
    assert due == min(-(-us // 1000), LAST_MS)
    assert due * 1000 >= us or due == LAST_MS


@given(
    st.integers(min_value=0, max_value=4 * 10**12),
    st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)),
)
def test_a_sleep_until_records_its_instant_or_now_if_that_is_past(
    now: int, until: datetime
) -> None:
    # Before 1970 too: the timers index keys due times as unsigned integers.
    started, ops = sleep_started("e1", "nap", now, None, due_at(until))
    assert started.wake_at == max(due_at(until), now) and started.at == now
    assert ops == [AddTimer(Timer(started.wake_at, "e1", "nap"))]


# --- the clock and trio time ---


@given(clocks(), st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=5))
def test_at_a_deadline_the_clock_reads_its_due_time_and_a_microsecond_before_it_does_not(
    setup: tuple[float, int | None, int | None], steps: list[int]
) -> None:
    offset, start_us, wall_ns = setup

    async def main() -> None:
        clock = bound_clock(start_us, wall_ns)
        base = clock.now_ms()
        exact_us = start_us if start_us is not None else (wall_ns or 0) // 1000
        assert base == (BASE - EPOCH) // MS + exact_us // 1000  # floored, never ahead
        due = base
        for step in steps:
            due += step
            await trio.sleep_until(clock.deadline(due) - _SLACK_S - 1e-6)
            assert clock.now_ms() == due - 1
            await trio.sleep_until(clock.deadline(due))
            assert clock.now_ms() == due

    run(main, offset)


@given(clocks(), st.integers(min_value=-(10**9), max_value=10**12))
def test_the_instant_of_a_due_time_is_the_first_trio_time_that_reads_it(
    setup: tuple[float, int | None, int | None], ahead: int
) -> None:
    offset, start_us, wall_ns = setup

    async def main() -> None:
        clock = bound_clock(start_us, wall_ns)
        due = clock.now_ms() + ahead
        at = clock.instant(due)
        assert reading(clock, at) >= due  # reached there (and at the deadline after it)
        assert reading(clock, clock.deadline(due)) >= due
        assert reading(clock, math.nextafter(at, -math.inf)) < due  # not a float before

    run(main, offset)


def reading(clock: Clock, at: float) -> int:
    """What the engine clock reads at trio time ``at``."""
    with mock.patch.object(trio, "current_time", return_value=at):
        return clock.now_ms()


# --- the engine: sleeps, signal timeouts, the updatable timer ---


@given(clocks(), st.lists(st.tuples(st.booleans(), durations), min_size=1, max_size=4))
def test_a_wait_ends_once_its_time_has_passed_and_now_reads_at_or_after_its_deadline(
    setup: tuple[float, int | None, int | None], waits: list[tuple[bool, float]]
) -> None:
    offset, start_us, wall_ns = setup

    @durably.workflow("waits")
    async def waiter(ctx: durably.Context, plan: list[tuple[bool, float]]) -> list[Any]:
        seen: list[Any] = []
        for index, (sleeping, seconds) in enumerate(plan):
            before = ctx.now()
            if sleeping:
                await ctx.sleep(seconds)
            else:
                outcome = await ctx.wait_for_signal("never", timeout=seconds)
                assert isinstance(outcome, durably.TimedOut)
            after = ctx.now()
            woke = await ctx.step(f"trio-time-{index}", trio.current_time)
            seen.append([(before - EPOCH) // MS, (after - EPOCH) // MS, woke])
        return seen

    async def main() -> None:
        clock = bound_clock(start_us, wall_ns)
        store = MemoryStore()
        async with durably.Engine(store, workflows=[waiter], clock=clock) as engine:
            result = await engine.start_and_wait(waiter, waits)
        events = decode_all(store.read_events(result.execution_id), result.execution_id)
        deadlines = [getattr(e, "wake_at", None) or getattr(e, "deadline", None) for e in events]
        deadlines = [d for d in deadlines if d is not None]
        for (_, seconds), (before, after, woke), deadline in zip(
            waits, result.data, deadlines, strict=True
        ):
            assert deadline == due_after(before, seconds)  # recorded as the rule says
            assert after == deadline  # now() after it: at its deadline, not before or later
            # In trio time, too, the wait ended once the clock had reached its deadline:
            # at or after the instant it turns to it. (Not ``deadline() - _SLACK_S``: that
            # float subtraction reads a hair past the instant, and a wait of no time, which
            # ends at that very instant, looked early: offset 1.192092896e-07.)
            assert woke >= clock.instant(deadline)

    run(main, offset)


Update = durably.Signal("update", float)


@durably.workflow("updatable")
async def updatable(ctx: durably.Context, wake_s: float) -> list[Any]:
    t0 = ctx.now()
    elapsed, waits, updates = 0.0, 0, 0
    while elapsed < wake_s and waits < 50:
        waits += 1
        match await ctx.wait_for_signal(Update, timeout=wake_s - elapsed):
            case durably.Received(payload=new):
                wake_s, updates = new, updates + 1
            case durably.TimedOut():
                pass
        elapsed = (ctx.now() - t0).total_seconds()
    return [elapsed, wake_s, waits, updates]


@given(
    clocks(),
    durations,
    st.lists(st.tuples(st.floats(0.0, 3.0), durations), max_size=3),
)
def test_the_updatable_timer_loop_ends_within_two_waits_per_wake_time(
    setup: tuple[float, int | None, int | None],
    wake_s: float,
    updates: list[tuple[float, float]],
) -> None:
    offset, start_us, wall_ns = setup

    async def main() -> list[Any]:
        clock = bound_clock(start_us, wall_ns)
        async with durably.Engine(MemoryStore(), workflows=[updatable], clock=clock) as engine:
            eid = await engine.start(updatable, wake_s)
            began = trio.current_time()
            for at, new in sorted(updates):
                await trio.sleep_until(began + at)
                await engine.signal(eid, Update, new)
            result: list[Any] = await engine.wait(eid)
            return result

    elapsed, final_wake, waits, received = run(main, offset)
    assert elapsed >= final_wake  # it ended because its time came
    # At most two timed-out waits per wake time (the second, of a sub-nanosecond
    # remainder, lasts a millisecond), and one more per update received.
    assert waits <= 2 * (received + 1) + received
