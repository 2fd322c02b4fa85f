"""Schedules: one-off, cron and interval starts, in virtual time over both store kinds.

Every count here is exact: virtual time (trio's MockClock with autojump) fires each timer
at its due millisecond, so weeks of fires run in a second and nothing depends on luck.
"""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

import durably
from durably.runtime._cadence import Cron as _Cron, zone as _zone
from durably.stores import LmdbStore, Store

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, four weeks before Berlin's DST start


@durably.workflow("tick")
async def tick(ctx: durably.Context, data: int) -> int:
    return data


@durably.workflow("other")
async def other(ctx: durably.Context, data: int) -> int:
    return data


@durably.workflow("slow")
async def slow(ctx: durably.Context, data: int) -> int:
    await ctx.sleep(150, step_id="work")
    return data


@durably.workflow("report")
async def report(ctx: durably.Context, data: dict[str, int]) -> dict[str, int]:
    return data


WORKFLOWS = [tick, other, slow, report]


def make_engine(store: Store, clock: durably.Clock) -> durably.Engine:
    return durably.Engine(store, workflows=WORKFLOWS, clock=clock)


async def sleep_until(clock: durably.Clock, moment: datetime) -> None:
    await trio.sleep((moment.timestamp() * 1000 - clock.now_ms()) / 1000)


async def started_by(engine: durably.Engine, sid: str) -> list[durably.Execution]:
    """Executions the schedule started, by creation time, read from the store."""
    found = [e for e in await engine.list_executions(limit=None) if e.schedule_id == sid]
    return sorted(found, key=lambda e: (e.created_at, e.id))


def schedule_timers(store: Store, sid: str) -> list[int]:
    return [t.due_ms for t in store.due_timers(2**63 - 1) if t.owner == "schedule:" + sid]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- recurring fires over weeks -------------------------------------------------------------


async def test_interval_fires_every_six_hours_for_four_weeks(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        sid = await engine.ensure_schedule(tick, 7, id="poll", interval=6 * 3600)
        assert sid == "poll"
        await sleep_until(clock, MONDAY + timedelta(weeks=4, minutes=30))
        runs = await started_by(engine, "poll")
        assert len(runs) == 4 * 7 * 4
        assert [e.created_at for e in runs] == [
            MONDAY + timedelta(hours=6 * k) for k in range(1, 4 * 7 * 4 + 1)
        ]
        assert all(e.status is durably.Status.COMPLETED and e.result == 7 for e in runs)
        view = await engine.get_schedule("poll")
        assert view.runs == 112
        assert view.executions == tuple(e.id for e in runs[-100:])
        assert view.next_fire_at == MONDAY + timedelta(hours=6 * 113)
        assert view.last_fire_at == MONDAY + timedelta(hours=6 * 112)


async def test_cron_weekdays_in_berlin_for_four_weeks(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(
            tick, 1, id="standup", cron="0 9 * * 1-5", timezone="Europe/Berlin"
        )
        await sleep_until(clock, MONDAY + timedelta(weeks=4))
        runs = await started_by(engine, "standup")
        # Berlin is UTC+1 all of March 2026 before the 29th: 09:00 local is 08:00 UTC.
        expected = [
            MONDAY + timedelta(days=week * 7 + day, hours=8)
            for week in range(4)
            for day in range(5)
        ]
        assert [e.created_at for e in runs] == expected


async def test_cron_every_quarter_hour_for_two_weeks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(durably.stores.MemoryStore(), clock) as engine:
        await engine.ensure_schedule(tick, 1, id="q", cron="*/15 * * * *")
        await sleep_until(clock, MONDAY + timedelta(weeks=2, seconds=30))
        view = await engine.get_schedule("q")
        # 14 days of 96 fires; the fire at creation time (00:00) is not "after now".
        assert view.runs == 14 * 96
        assert len(await started_by(engine, "q")) == 14 * 96
        assert view.last_fire_at == MONDAY + timedelta(weeks=2)


# --- DST -------------------------------------------------------------------------------------


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


async def run_day_in_berlin(store: Store, day: datetime) -> dict[str, list[datetime]]:
    """Three Berlin crons over one local day: fire instants (UTC) of each."""
    clock = durably.Clock(start=day - timedelta(minutes=1))
    crons = {"daily": "30 2 * * *", "hourly": "0 * * * *", "half": "*/30 * * * *"}
    async with make_engine(store, clock) as engine:
        for sid, cron in crons.items():
            await engine.ensure_schedule(tick, 0, id=sid, cron=cron, timezone="Europe/Berlin")
        end = (day + timedelta(days=1, hours=12)).replace(hour=0)  # the next local midnight
        await sleep_until(clock, end - timedelta(seconds=30))
        return {sid: [e.created_at for e in await started_by(engine, sid)] for sid in crons}


async def test_dst_spring_forward_night_in_berlin(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    # 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST; the day has 23 hours.
    fires = await run_day_in_berlin(store_factory(), local(2026, 3, 29))
    # 02:30 does not exist that night: it fires once, when the clocks jump (01:00 UTC).
    assert fires["daily"] == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    assert len(fires["hourly"]) == 23
    assert len(fires["half"]) == 46
    assert len(set(fires["half"])) == 46
    gap = [f for f in fires["half"] if datetime(2026, 3, 29, 0, 0, tzinfo=UTC) <= f]
    assert gap[:3] == [
        datetime(2026, 3, 29, 0, 0, tzinfo=UTC),  # 01:00 CET
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # 01:30 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST: 02:00 and 02:30 fold in here
    ]


async def test_dst_fall_back_night_in_berlin(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    # 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; the day has 25 hours.
    fires = await run_day_in_berlin(store_factory(), local(2026, 10, 25))
    # 02:30 happens twice: a daily job runs once, at the first pass (00:30 UTC).
    assert fires["daily"] == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]
    # Every-hour expressions keep their beat through the repeated hour.
    assert len(fires["hourly"]) == 25
    assert len(fires["half"]) == 50
    steps = {b - a for a, b in zip(fires["half"], fires["half"][1:], strict=False)}
    assert steps == {timedelta(minutes=30)}


async def test_daily_cron_across_both_dst_changes_counts_one_per_day(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = local(2026, 3, 1)
    clock = durably.Clock(start=start)
    async with make_engine(durably.stores.MemoryStore(), clock) as engine:
        await engine.ensure_schedule(
            tick, 0, id="nightly", cron="30 2 * * *", timezone="Europe/Berlin"
        )
        await sleep_until(clock, local(2026, 11, 1))
        fires = [e.created_at.astimezone(BERLIN) for e in await started_by(engine, "nightly")]
        days = (local(2026, 11, 1) - start).days
        assert len(fires) == days
        assert len({f.date() for f in fires}) == days
        spring = [f for f in fires if f.date() == local(2026, 3, 29).date()]
        assert [(f.hour, f.minute) for f in spring] == [(3, 0)]
        assert all((f.hour, f.minute) == (2, 30) for f in fires if f not in spring)


@given(
    expr=st.sampled_from(
        ["*/30 * * * *", "30 2 * * *", "0 * * * *", "15 1-3 * * 0", "7 */5 * * *"]
    ),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    offset_s=st.integers(0, 366 * 86400),
)
def test_cron_next_and_last_agree(expr: str, zone: str, offset_s: int) -> None:
    """``last_at_or_before`` and ``next_after`` bracket every instant with adjacent fires."""
    cron = _Cron(expr, _zone(zone))
    moment = ms(datetime(2026, 1, 1, tzinfo=UTC)) + offset_s * 1000 + 123
    nxt = cron.next_after(moment)
    last = cron.last_at_or_before(moment)
    assert nxt is not None and last is not None
    assert last <= moment < nxt
    assert cron.next_after(last) == nxt
    assert cron.last_at_or_before(nxt - 1) == last
    assert cron.last_at_or_before(nxt) == nxt


# --- catch-up after downtime ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("catch_up", "after_restart", "last_fire"),
    [
        ("latest", 1, MONDAY + timedelta(hours=7)),
        ("all", 5, MONDAY + timedelta(hours=7)),
        ("skip", 0, MONDAY + timedelta(hours=2)),
    ],
)
async def test_catch_up_after_downtime(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    catch_up: durably.CatchUp,
    after_restart: int,
    last_fire: datetime,
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="hourly", cron="0 * * * *", catch_up=catch_up)
        await sleep_until(clock, MONDAY + timedelta(hours=2, minutes=30))
        assert len(await started_by(engine, "hourly")) == 2
    # Down from 02:30 to 07:30: the fires of 03:00 to 07:00 are missed.
    await sleep_until(clock, MONDAY + timedelta(hours=7, minutes=30))
    async with make_engine(store_factory(), clock) as engine:
        await sleep_until(clock, MONDAY + timedelta(hours=7, minutes=59))
        runs = await started_by(engine, "hourly")
        assert len(runs) == 2 + after_restart
        assert all(e.created_at == MONDAY + timedelta(hours=7, minutes=30) for e in runs[2:])
        view = await engine.get_schedule("hourly")
        assert view.last_fire_at == last_fire
        assert view.next_fire_at == MONDAY + timedelta(hours=8)
        assert view.skipped == (1 if catch_up == "skip" else 0)
        keys = {e.idempotency_key for e in runs}
        assert len(keys) == len(runs)  # one fire time each
        await sleep_until(clock, MONDAY + timedelta(hours=8, minutes=30))
        assert len(await started_by(engine, "hourly")) == 3 + after_restart


@pytest.mark.parametrize(("catch_up", "runs"), [("latest", 1), ("all", 1), ("skip", 0)])
async def test_one_off_missed_while_down(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    catch_up: durably.CatchUp,
    runs: int,
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        sid = await engine.schedule(tick, 5, delay=3600, catch_up=catch_up)
    await trio.sleep(7200)
    async with make_engine(store_factory(), clock) as engine:
        await trio.sleep(1)
        view = await engine.get_schedule(sid)
        assert view.status is durably.ScheduleStatus.DONE
        assert view.runs == runs
        assert len(await started_by(engine, sid)) == runs
        assert schedule_timers(engine.store, sid) == []


async def test_interval_catch_up_all_starts_each_missed_fire(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="p", interval=600, catch_up="all")
        await trio.sleep(650)
    await trio.sleep(3000)  # down at 650 s, back at 3650 s: fires 1200 ... 3600 missed
    async with make_engine(store_factory(), clock) as engine:
        await trio.sleep(1)
        runs = await started_by(engine, "p")
        assert len(runs) == 1 + 5
        view = await engine.get_schedule("p")
        assert view.last_fire_at == MONDAY + timedelta(seconds=3600)
        assert view.next_fire_at == MONDAY + timedelta(seconds=4200)


# --- overlap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("overlap", "runs", "skipped"), [("allow", 10, 0), ("skip", 4, 6)])
async def test_overlap_policy(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    overlap: durably.Overlap,
    runs: int,
    skipped: int,
) -> None:
    # Fires every 60 s; each run takes 150 s. With "skip": 60 runs (to 210), 120 and 180
    # skip, 240 runs (to 390), 300 and 360 skip, 420 runs, 480 and 540 skip, 600 runs.
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(slow, 0, id="busy", interval=60, overlap=overlap)
        await trio.sleep(625)
        started = await started_by(engine, "busy")
        assert len(started) == runs
        view = await engine.get_schedule("busy")
        assert (view.runs, view.skipped) == (runs, skipped)
        if overlap == "skip":
            assert [e.created_at - MONDAY for e in started] == [
                timedelta(seconds=s) for s in (60, 240, 420, 600)
            ]
        else:
            active = [e for e in started if not e.status.terminal]
            assert len(active) == 3  # 480, 540 and 600 still sleep at 625 s


# --- pause, resume, update, remove -----------------------------------------------------------


async def test_pause_stops_fires_and_resume_restarts_from_now(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="p", interval=60)
        await trio.sleep(150)  # fires at 60 and 120
        await engine.pause_schedule("p")
        await engine.pause_schedule("p")  # no-op
        view = await engine.get_schedule("p")
        assert view.status is durably.ScheduleStatus.PAUSED
        assert view.next_fire_at is None
        assert schedule_timers(engine.store, "p") == []
        await trio.sleep(250)  # 400 s: nothing fires while paused
        assert len(await started_by(engine, "p")) == 2
        await engine.resume_schedule("p")
        view = await engine.get_schedule("p")
        assert view.status is durably.ScheduleStatus.ACTIVE
        assert view.next_fire_at == MONDAY + timedelta(seconds=460)
        assert schedule_timers(engine.store, "p") == [ms(MONDAY) + 460_000]
        await trio.sleep(190)  # 590 s: fires at 460, 520, 580
        runs = await started_by(engine, "p")
        assert [e.created_at - MONDAY for e in runs] == [
            timedelta(seconds=s) for s in (60, 120, 460, 520, 580)
        ]


async def test_pause_survives_restart_and_resume_skips_missed_cron_fires(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="c", cron="0 * * * *", catch_up="all")
        await engine.pause_schedule("c")
    await sleep_until(clock, MONDAY + timedelta(hours=5, minutes=10))
    async with make_engine(store_factory(), clock) as engine:
        await trio.sleep(60)
        assert (await engine.get_schedule("c")).status is durably.ScheduleStatus.PAUSED
        await engine.resume_schedule("c")
        assert (await engine.get_schedule("c")).next_fire_at == MONDAY + timedelta(hours=6)
        await sleep_until(clock, MONDAY + timedelta(hours=6, minutes=1))
        runs = await started_by(engine, "c")
        assert [e.created_at for e in runs] == [MONDAY + timedelta(hours=6)]


async def test_update_changes_cadence_and_input(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 1, id="n", cron="0 3 * * *")
        await sleep_until(clock, MONDAY + timedelta(hours=4))  # fired at 03:00 with 1
        view = await engine.update_schedule("n", cron="30 3 * * *", input=2)
        assert view.cron == "30 3 * * *"
        assert view.next_fire_at == MONDAY + timedelta(days=1, hours=3, minutes=30)
        assert schedule_timers(engine.store, "n") == [ms(view.next_fire_at)]
        await sleep_until(clock, MONDAY + timedelta(days=1, hours=4))
        view = await engine.update_schedule("n", input=3)  # input only: same next fire
        assert view.next_fire_at == MONDAY + timedelta(days=2, hours=3, minutes=30)
        view = await engine.update_schedule("n", interval=3600)  # cron to interval
        assert (view.cron, view.interval) == (None, 3600.0)
        assert view.next_fire_at == MONDAY + timedelta(days=1, hours=5)
        await sleep_until(clock, MONDAY + timedelta(days=1, hours=5, minutes=1))
        runs = await started_by(engine, "n")
        assert [(e.created_at - MONDAY, e.input) for e in runs] == [
            (timedelta(hours=3), 1),
            (timedelta(days=1, hours=3, minutes=30), 2),
            (timedelta(days=1, hours=5), 3),
        ]
        view = await engine.update_schedule("n", cron="0 9 * * *", timezone="Europe/Berlin")
        assert (view.cron, view.timezone, view.interval) == ("0 9 * * *", "Europe/Berlin", None)
        view = await engine.update_schedule("n", timezone="America/New_York")
        assert view.next_fire_at == datetime(2026, 3, 3, 14, tzinfo=UTC)  # 09:00 EST
        view = await engine.update_schedule("n", cron="0 10 * * *")  # keeps its timezone
        assert (view.timezone, view.next_fire_at) == (
            "America/New_York",
            datetime(2026, 3, 3, 15, tzinfo=UTC),
        )
        with pytest.raises(durably.ConfigurationError, match="not both"):
            await engine.update_schedule("n", cron="0 1 * * *", interval=5)
        with pytest.raises(durably.UnknownScheduleError):
            await engine.update_schedule("nope", input=1)


async def test_remove_deletes_record_and_timer_and_keeps_executions(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="r", interval=60)
        await trio.sleep(130)
        await engine.remove_schedule("r")
        assert schedule_timers(engine.store, "r") == []
        assert await engine.list_schedules() == []
        with pytest.raises(durably.UnknownScheduleError, match="'r'"):
            await engine.get_schedule("r")
        with pytest.raises(durably.UnknownScheduleError):
            await engine.remove_schedule("r")
        await trio.sleep(600)
        assert len(await started_by(engine, "r")) == 2
        # The same id again is a new schedule: its fires do not collide with the old ones.
        await engine.ensure_schedule(tick, 0, id="r", interval=60)
        await trio.sleep(61)
        assert len(await started_by(engine, "r")) == 3


async def test_ensure_schedule_is_idempotent_by_id(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(report, {"a": 1}, id="e", cron="0 3 * * *", timezone="UTC")
        before = await engine.get_schedule("e")
        batches = engine.statistics().commit.batches
        await trio.sleep(60)
        again = await engine.ensure_schedule(
            report, {"a": 1}, id="e", cron="0 3 * * *", timezone="UTC"
        )
        assert again == "e"
        assert engine.statistics().commit.batches == batches  # nothing written
        assert await engine.get_schedule("e") == before
        with pytest.raises(durably.ConfigurationError, match="starts workflow 'report'"):
            await engine.ensure_schedule(other, {"a": 1}, id="e", cron="0 3 * * *")
        assert await engine.get_schedule("e") == before
        # New input: updated, the next fire stays.
        await engine.ensure_schedule(report, {"a": 2}, id="e", cron="0 3 * * *", timezone="UTC")
        view = await engine.get_schedule("e")
        assert (view.input, view.next_fire_at) == ({"a": 2}, before.next_fire_at)
        # New cadence: the next fire is recomputed from now.
        await engine.ensure_schedule(report, {"a": 2}, id="e", interval=300)
        view = await engine.get_schedule("e")
        assert (view.kind, view.next_fire_at) == ("interval", MONDAY + timedelta(seconds=360))
        assert schedule_timers(engine.store, "e") == [ms(MONDAY) + 360_000]
        # A paused schedule stays paused through an ensure.
        await engine.pause_schedule("e")
        await engine.ensure_schedule(report, {"a": 2}, id="e", interval=600)
        view = await engine.get_schedule("e")
        assert (view.status, view.interval) == (durably.ScheduleStatus.PAUSED, 600.0)
        assert schedule_timers(engine.store, "e") == []


# --- one-off schedules -----------------------------------------------------------------------


async def test_one_off_at_and_delay_fire_once(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        at = (MONDAY + timedelta(hours=2)).astimezone(BERLIN)
        sid_at = await engine.schedule(tick, 1, at=at)
        sid_delay = await engine.schedule(tick, 2, delay=timedelta(minutes=30))
        assert sid_at != sid_delay
        with pytest.raises(durably.UnknownExecutionError):
            await engine.get_execution(sid_at)  # a schedule id is not an execution id
        view = await engine.get_schedule(sid_at)
        assert (view.kind, view.status, view.at) == ("once", durably.ScheduleStatus.ACTIVE, at)
        await trio.sleep(3 * 3600)
        for sid, when, data in ((sid_at, 120, 1), (sid_delay, 30, 2)):
            view = await engine.get_schedule(sid)
            assert view.status is durably.ScheduleStatus.DONE
            assert view.next_fire_at is None
            assert view.runs == 1
            runs = await started_by(engine, sid)
            assert [e.id for e in runs] == list(view.executions)
            assert runs[0].created_at == MONDAY + timedelta(minutes=when)
            assert await engine.wait(runs[0].id) == data
            assert schedule_timers(engine.store, sid) == []
        with pytest.raises(durably.ConfigurationError, match="done"):
            await engine.pause_schedule(sid_at)
        listed = await engine.list_schedules()
        assert sorted(s.id for s in listed) == sorted([sid_at, sid_delay])


async def test_one_off_in_the_past_fires_at_once(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        sid = await engine.schedule(tick, 1, at=MONDAY - timedelta(days=1), id="late")
        assert sid == "late"
        await trio.sleep(0.01)
        assert (await engine.get_schedule("late")).runs == 1
        with pytest.raises(durably.ConfigurationError, match="exists already"):
            await engine.schedule(tick, 1, delay=5, id="late")


async def test_schedule_survives_restart_with_its_timer(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="s", interval=3600)
    store = store_factory()
    assert schedule_timers(store, "s") == [ms(MONDAY) + 3_600_000]
    assert store.get_schedule("s")["next_ms"] == ms(MONDAY) + 3_600_000
    async with make_engine(store, clock) as engine:
        await trio.sleep(3 * 3600 + 1)
        assert len(await started_by(engine, "s")) == 3
        assert schedule_timers(engine.store, "s") == [ms(MONDAY) + 4 * 3_600_000]


async def test_executions_list_is_bounded_with_a_total(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(durably.stores.MemoryStore(), clock) as engine:
        await engine.ensure_schedule(tick, 0, id="b", interval=1)
        await trio.sleep(150.5)
        view = await engine.get_schedule("b")
        runs = await started_by(engine, "b")
        assert view.runs == len(runs) == 150
        assert view.executions == tuple(e.id for e in runs[-100:])


async def test_unregistered_workflow_waits_for_an_engine_that_registers_it(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.schedule(tick, 1, delay=60, id="x")
    async with durably.Engine(store_factory(), workflows=[other], clock=clock) as engine:
        await trio.sleep(120)
        assert (await engine.get_schedule("x")).runs == 0
    async with make_engine(store_factory(), clock) as engine:
        await trio.sleep(1)
        assert (await engine.get_schedule("x")).runs == 1


# --- bad input: a clear error, nothing written -------------------------------------------------


BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("ensure", {"cron": "not a cron"}, durably.ConfigurationError, "invalid cron"),
    ("ensure", {"cron": "61 * * * *"}, durably.ConfigurationError, "invalid cron"),
    ("ensure", {"cron": "0 0 30 2 *"}, durably.ConfigurationError, "never fires"),
    ("ensure", {"cron": ""}, durably.ConfigurationError, "cron expression"),
    (
        "ensure",
        {"cron": "0 3 * * *", "timezone": "Mars/Olympus"},
        durably.ConfigurationError,
        "unknown timezone",
    ),
    ("ensure", {"interval": 0}, durably.ConfigurationError, "positive"),
    ("ensure", {"interval": -5}, durably.ConfigurationError, "positive"),
    ("ensure", {"interval": timedelta(0)}, durably.ConfigurationError, "positive"),
    ("ensure", {"interval": float("nan")}, durably.ConfigurationError, "positive"),
    ("ensure", {"interval": "5"}, durably.ConfigurationError, "seconds"),
    ("ensure", {"interval": 5, "timezone": "UTC"}, durably.ConfigurationError, "cron"),
    ("ensure", {}, durably.ConfigurationError, "cron= or interval="),
    ("ensure", {"cron": "* * * * *", "interval": 5}, durably.ConfigurationError, "not both"),
    ("ensure", {"interval": 5, "catch_up": "some"}, durably.ConfigurationError, "catch_up"),
    ("ensure", {"interval": 5, "overlap": "queue"}, durably.ConfigurationError, "overlap"),
    ("ensure", {"interval": 5, "id": ""}, durably.ConfigurationError, "schedule id"),
    ("ensure", {"interval": 5, "id": "a\x00b"}, durably.ConfigurationError, "schedule id"),
    ("ensure", {"interval": 5, "workflow": "nope"}, durably.UnknownWorkflowError, "'nope'"),
    ("ensure", {"interval": 5, "input": {"a": 1}}, durably.PayloadError, "input"),
    ("once", {"at": datetime(2026, 3, 3)}, durably.ConfigurationError, "naive"),
    ("once", {}, durably.ConfigurationError, "exactly one"),
    ("once", {"at": MONDAY, "delay": 5}, durably.ConfigurationError, "exactly one"),
    ("once", {"delay": -1}, durably.ConfigurationError, "zero or more"),
    ("once", {"delay": 5, "workflow": "nope"}, durably.UnknownWorkflowError, "registered"),
]


@pytest.mark.parametrize(("call", "kwargs", "error", "message"), BAD_CALLS)
async def test_bad_input_raises_and_writes_nothing(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    call: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        kwargs = dict(kwargs)  # the parameter lists are shared between store kinds
        workflow = kwargs.pop("workflow", tick)
        data = kwargs.pop("input", 1)
        batches = engine.statistics().commit.batches
        with pytest.raises(error, match=message):
            if call == "ensure":
                kwargs.setdefault("id", "bad")
                await engine.ensure_schedule(workflow, data, **kwargs)
            else:
                await engine.schedule(workflow, data, **kwargs)
        assert engine.statistics().commit.batches == batches
        assert engine.store.list_schedules() == []
        assert engine.store.due_timers(2**63 - 1) == []


async def test_bad_update_writes_nothing(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    clock = durably.Clock(start=MONDAY)
    async with make_engine(store_factory(), clock) as engine:
        await engine.ensure_schedule(tick, 1, id="u", interval=60)
        once = await engine.schedule(tick, 1, delay=60)
        stored = engine.store.list_schedules()
        bad: list[tuple[str, dict[str, Any], type[durably.DurablyError], str]] = [
            ("u", {"cron": "0 0 31 2 *"}, durably.ConfigurationError, "never fires"),
            ("u", {"interval": -1}, durably.ConfigurationError, "positive number of seconds"),
            # an interval has no timezone
            ("u", {"timezone": "Europe/Berlin"}, durably.ConfigurationError, "applies to cron"),
            ("u", {"input": [1]}, durably.PayloadError, "does not fit int"),
            ("u", {"overlap": "nope"}, durably.ConfigurationError, "overlap must be one of"),
            (once, {"interval": 60}, durably.ConfigurationError, "is a one-off"),
        ]
        for sid, kwargs, error, phrase in bad:
            with pytest.raises(error, match=phrase):
                await engine.update_schedule(sid, **kwargs)
        assert engine.store.list_schedules() == stored


# --- a crash between "fired" and "recorded" (a real process, SIGKILL) --------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import trio
    import durably
    from durably.runtime._commit import Committer
    from durably.stores import PutSchedule

    @durably.workflow("tick")
    async def tick(ctx, data: int) -> int:
        return data

    real_commit = Committer.commit

    async def commit(self, ops):
        # The fire has started its execution (committed); die before it is recorded.
        if any(isinstance(op, PutSchedule) and op.data["runs"] >= 1 for op in ops):
            os.kill(os.getpid(), signal.SIGKILL)
        return await real_commit(self, ops)

    Committer.commit = commit

    async def main():
        async with durably.Engine(sys.argv[1], workflows=[tick]) as engine:
            if sys.argv[2] == "once":
                await engine.schedule(tick, 42, delay=0.2, id="s")
            else:
                await engine.ensure_schedule(tick, 42, id="s", interval=0.3, catch_up="all")
            await trio.sleep(30)

    trio.run(main)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["once", "interval"])
async def test_crash_between_fire_and_record_starts_no_second_run(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "store"
    with trio.fail_after(60):
        child = await trio.run_process(
            [sys.executable, "-c", CHILD, str(path), kind], capture_stderr=True, check=False
        )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    store = LmdbStore(path)
    try:
        [crashed] = store.list_executions()  # the fire's execution, started, not recorded
        assert crashed.schedule_id == "s"
        data = store.get_schedule("s")
        assert data["runs"] == 0 and data["executions"] == []
        assert schedule_timers(store, "s") == [data["next_ms"]]
    finally:
        store.close()
    # A new engine (real time) finds the timer overdue and fires it again: the idempotency
    # key returns the execution already started, and only then is it recorded.
    async with durably.Engine(path, workflows=[tick]) as engine:
        with trio.fail_after(20):
            # Polls a durable record (no event announces a schedule's record): real time.
            while (await engine.get_schedule("s")).runs < 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
            if kind == "interval":
                await engine.pause_schedule("s")
            view = await engine.get_schedule("s")
            assert view.executions[0] == crashed.id
            runs = await started_by(engine, "s")
            assert len(runs) == view.runs  # every execution is recorded: none extra
            assert len({e.idempotency_key for e in runs}) == len(runs)
            assert await engine.wait(crashed.id) == 42
