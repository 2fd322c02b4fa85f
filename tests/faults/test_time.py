"""Entries 18 to 20: a wall clock set back, long downtime, and thousands of timers due at
one instant, on LMDB with engine restarts in virtual time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

import durably
from durably.stores import MemoryStore

from ._helpers import events, lmdb_engine

START = datetime(2031, 3, 1, tzinfo=UTC)


def _sleeper(fired: list[str]) -> durably.WorkflowDefinition[int, int]:
    @durably.workflow("sleeper")
    async def sleeper(ctx: durably.Context, seconds: int) -> int:
        await ctx.sleep(seconds, step_id="nap")
        await ctx.step("after", fired.append, ctx.execution_id)
        return seconds

    return sleeper


def _fired_once(store: Path, eid: str) -> bool:
    tags = [e["t"] for e in events(store, eid)]
    return tags.count("timer.fired") == 1 and tags.count("completed") == 1


async def test_18_wall_clock_jumping_back_fires_late_never_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fired: list[str] = []
    sleeper = _sleeper(fired)
    store = tmp_path / "s"
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    @durably.workflow("retrier")
    async def retrier(ctx: durably.Context, _: None) -> str:
        return await ctx.step("call", flaky, retry=durably.Retry(initial=600, max_attempts=3))

    clock = durably.Clock(START)
    async with lmdb_engine(store, [sleeper, retrier], clock=clock) as engine:
        ids = [await engine.start(sleeper, s) for s in (60, 600, 3600)]
        rid = await engine.start(retrier)
        await trio.sleep(30)
    # The next process's wall clock reads two hours earlier than the last one's.
    back = durably.Clock(START - timedelta(hours=2))
    async with lmdb_engine(store, [sleeper, retrier], clock=back) as engine:
        began = trio.current_time()
        assert [await engine.wait(e) for e in ids] == [60, 600, 3600]
        assert await engine.wait(rid) == "ok"
        assert trio.current_time() - began >= 2 * 3600  # late, by the jump
    assert sorted(fired) == sorted(ids) and len(attempts) == 2
    assert all(_fired_once(store, eid) for eid in ids)


async def test_19_long_downtime_fires_each_overdue_timer_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fired: list[str] = []
    sleeper = _sleeper(fired)
    store = tmp_path / "s"
    clock = durably.Clock(START)

    @durably.workflow("tick")
    async def tick(ctx: durably.Context, _: None) -> None:
        return None

    async with lmdb_engine(store, [sleeper, tick], clock=clock) as engine:
        ids = [await engine.start(sleeper, 60 * (i + 1)) for i in range(30)]
        await engine.ensure_schedule(tick, id="hourly", cron="0 * * * *", catch_up="latest")
        await trio.sleep(1)
    await trio.sleep(30 * 24 * 3600)  # down for thirty days
    async with lmdb_engine(store, [sleeper, tick], clock=clock) as engine:
        assert [await engine.wait(e) for e in ids] == [60 * (i + 1) for i in range(30)]
        await trio.sleep(1)
        schedule = await engine.get_schedule("hourly")
        # catch_up="latest": one start for 720 missed fires, not 720 starts.
        assert len(schedule.executions) == 1
    assert sorted(fired) == sorted(ids)
    assert all(_fired_once(store, eid) for eid in ids)


async def test_20_thousands_of_timers_due_at_once_all_fire_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fired: list[str] = []
    store = tmp_path / "s"
    clock = durably.Clock(START)
    due = START + timedelta(hours=1)

    @durably.workflow("alarm")
    async def alarm(ctx: durably.Context, n: int) -> int:
        await ctx.sleep(until=due, step_id="ring")
        await ctx.step("after", fired.append, ctx.execution_id)
        return n

    n = 2000
    # Unsynced commits: what is tested is the timers, not the disk's fsync rate.
    options = {"clock": clock, "store_options": {"sync": False}}
    async with lmdb_engine(store, [alarm], **options) as engine:
        ids = [await engine.start(alarm, i) for i in range(n)]
        await trio.sleep(1)
    await trio.sleep(2 * 3600)  # all due while the engine is down
    async with lmdb_engine(store, [alarm], max_live_executions=500, **options) as engine:
        assert engine.statistics().timers_fired == 0
        results = [await engine.wait(e) for e in ids]
        assert (
            engine.statistics().timers_fired >= n
        )  # all fired, in batches of the scheduler's size
        assert engine.peak_live <= 500
    assert results == list(range(n))
    assert len(fired) == n and len(set(fired)) == n


# --- time at the edges: deadlines rounded up, never early, never zero ---

Update = durably.Signal("update", float)

#: A wake-up capped at the last millisecond of 9999 reads as a datetime (to within
#: the microseconds a float timestamp keeps that far out).
LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@durably.workflow("updatable-timer")
async def updatable_timer(ctx: durably.Context, wake_s: float) -> list[float]:
    """The updatable timer (Temporal's samples teach it): wait for an update of the wake
    time with ``timeout=`` the time left, until the clock reaches it. ``wake_s`` counts
    seconds from the start, so the time left is float arithmetic, sub-ms and inexact."""
    t0 = ctx.now()
    elapsed = 0.0
    waits: list[float] = []
    while elapsed < wake_s and len(waits) < 20:
        waits.append(wake_s - elapsed)
        match await ctx.wait_for_signal(Update, timeout=wake_s - elapsed):
            case durably.Received(payload=new):
                wake_s = new
            case durably.TimedOut():
                pass
        elapsed = (ctx.now() - t0).total_seconds()
    return [elapsed, *waits]


async def test_the_updatable_timer_loop_ends_when_its_time_is_reached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 0.1 + 0.2 is 0.30000000000000004: the first wait ends at 300 ms (durations are read
    # to the nanosecond), 5.5e-17 s short of the wake time, and the second wait, of that
    # positive remainder, must still last (one millisecond) instead of timing out at
    # once without time moving, forever.
    async with durably.Engine(MemoryStore(), workflows=[updatable_timer]) as engine:
        elapsed, *waits = (await engine.start_and_wait(updatable_timer, 0.1 + 0.2)).data
        assert elapsed == 0.301 and len(waits) == 2
        for update, wake_s in ((0.3, 0.5), (0.7 + 0.1, 0.8)):
            eid = await engine.start(updatable_timer, 2.0)
            await trio.sleep(0.5)
            await engine.signal(eid, Update, update)  # already past, or 0.3 s ahead
            elapsed, *waits = await engine.wait(eid)
            assert elapsed == wake_s and waits[0] == 2.0 and len(waits) <= 2


async def test_a_positive_timeout_never_behaves_as_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("tiny")
    async def tiny(ctx: durably.Context, seconds: float) -> list[int]:
        steps = []
        for kind in ("sleep", "signal"):
            before = ctx.now()
            if kind == "sleep":
                await ctx.sleep(seconds)
            else:
                assert isinstance(await ctx.wait_for_signal("x", timeout=seconds), durably.TimedOut)
            steps.append((ctx.now() - before) // timedelta(milliseconds=1))
        return steps

    async with durably.Engine(MemoryStore(), workflows=[tiny]) as engine:
        for seconds in (1e-10, 4e-7, 0.0004, 0.001):
            assert (await engine.start_and_wait(tiny, seconds)).data == [1, 1], seconds
        assert (await engine.start_and_wait(tiny, 0.0010004)).data == [2, 2]
        assert (await engine.start_and_wait(tiny, 0)).data == [0, 0]  # zero: a poll, no wait


async def test_a_zero_timeout_polls_the_mailbox(autojump_clock: trio.testing.MockClock) -> None:
    @durably.workflow("poll")
    async def poll(ctx: durably.Context, _: None) -> list[str]:
        await ctx.sleep(10, step_id="let-it-arrive")
        first = await ctx.wait_for_signal("x", timeout=0, step_id="first")
        second = await ctx.wait_for_signal("x", timeout=0, step_id="second")
        return [type(first).__name__, type(second).__name__]

    async with durably.Engine(MemoryStore(), workflows=[poll]) as engine:
        eid = await engine.start(poll)
        await engine.signal(eid, "x", 1)
        assert await engine.wait(eid) == ["Received", "TimedOut"]


async def test_sleep_until_wakes_on_the_millisecond_asked_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Float-inexact instants: ``until.timestamp() * 1000`` reads 1 ms late for the first;
    # 0.4 ms past a millisecond rounds up to the next; a pre-1970 and a past instant are
    # already reached; the year 9999's end is as late as a datetime goes.
    start = datetime(2039, 3, 9, 5, 27, tzinfo=UTC)
    cases = {
        start + timedelta(seconds=9, milliseconds=215): 9215,
        start + timedelta(seconds=1, microseconds=400): 1001,
        start + timedelta(microseconds=1): 1,
        start - timedelta(minutes=5): 0,
        datetime(1960, 1, 1, tzinfo=UTC): 0,
    }

    @durably.workflow("until")
    async def until(ctx: durably.Context, iso: str) -> int:
        t0 = ctx.now()
        await ctx.sleep(until=datetime.fromisoformat(iso))
        return (ctx.now() - t0) // timedelta(milliseconds=1)

    for moment, waited_ms in cases.items():
        clock = durably.Clock(start)
        async with durably.Engine(MemoryStore(), workflows=[until], clock=clock) as engine:
            result = await engine.start_and_wait(until, moment.isoformat())
            assert result.data == waited_ms, moment
    async with durably.Engine(MemoryStore(), workflows=[until]) as engine:
        last = datetime.max.replace(tzinfo=UTC)
        eid = await engine.start(until, last.isoformat())
        await trio.sleep(1)
        execution = await engine.get_execution(eid)
        assert execution.status is durably.Status.SLEEPING
        assert execution.wake_at is not None and execution.wake_at >= LAST_SECOND


async def test_a_wait_past_the_year_9999_is_capped_and_nan_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("forever")
    async def forever(ctx: durably.Context, seconds: str) -> None:
        await ctx.sleep(float(seconds), step_id="nap")  # a string: JSON has no inf or nan

    async with durably.Engine(MemoryStore(), workflows=[forever]) as engine:
        for seconds in ("inf", "1e20"):
            eid = await engine.start(forever, seconds)
            await trio.sleep(1)
            execution = await engine.get_execution(eid)
            assert execution.status is durably.Status.SLEEPING, execution.error
            assert execution.wake_at is not None and execution.wake_at >= LAST_SECOND
        eid = await engine.start(forever, "nan")
        with pytest.raises(durably.ExecutionFailedError, match="needs seconds >= 0; got nan"):
            await engine.wait(eid)


async def test_recorded_deadlines_are_never_recomputed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The code changed its durations under running waits: the recorded deadlines hold.
    def version(seconds: float) -> durably.WorkflowDefinition[None, list[int]]:
        @durably.workflow("deadlines")
        async def deadlines(ctx: durably.Context, _: None) -> list[int]:
            t0 = ctx.now()
            await ctx.sleep(seconds, step_id="nap")
            t1 = ctx.now()
            await ctx.wait_for_signal("x", timeout=seconds, step_id="wait")
            ms = timedelta(milliseconds=1)
            return [(t1 - t0) // ms, (ctx.now() - t1) // ms]

        return deadlines

    store, clock = tmp_path / "s", durably.Clock(START)
    async with lmdb_engine(store, [version(60)], clock=clock) as engine:
        waiting = await engine.start(version(60))
        await trio.sleep(100)  # it slept 60 s, and waits for its signal until 120 s
        sleeping = await engine.start(version(60))
        await trio.sleep(10)  # it sleeps until 160 s
        assert (await engine.get_execution(waiting)).waiting_for == "x"
    async with lmdb_engine(store, [version(3600)], clock=clock) as engine:
        assert await engine.wait(waiting) == [60_000, 60_000]
        assert await engine.wait(sleeping) == [60_000, 3_600_000]  # the new wait is new
