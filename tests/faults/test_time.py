"""Entries 18 to 20: a wall clock set back, long downtime, and thousands of timers due at
one instant, on LMDB with engine restarts in virtual time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

import durably

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
