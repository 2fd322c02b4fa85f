"""Durable time and signals: virtual-time sleeps and timeouts, buffering, dedup, races,
restarts, and parking under max_live_executions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import orjson
import pytest
import trio

import durably
from durably.stores import MemoryStore, Store


@attrs.frozen
class Approval:
    by: str
    amount: int


Approved = durably.Signal("approved", Approval)
Note = durably.Signal("note")


async def test_a_thirty_day_sleep_takes_no_real_time(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("month")
    async def month(ctx: durably.Context, data: None) -> str:
        start = ctx.now()
        await ctx.sleep(30 * 86400, step_id="month")
        until = start + timedelta(days=1)
        await ctx.sleep(until=until, step_id="already-past")
        return str(ctx.now() - start)

    async with durably.Engine(store_factory(), workflows=[month]) as engine:
        t0 = trio.current_time()
        eid = await engine.start(month)
        await trio.sleep(1)
        execution = await engine.get_execution(eid)
        assert execution.status is durably.Status.SLEEPING
        assert execution.wake_at is not None
        assert await engine.wait(eid) == "30 days, 0:00:00"
        assert 30 * 86400 <= trio.current_time() - t0 < 30 * 86400 + 1


async def test_signal_waits_with_and_without_timeout(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("approval")
    async def approval(ctx: durably.Context, data: None) -> list[Any]:
        first = await ctx.wait_for_signal(Approved, step_id="first")
        assert isinstance(first, Approval)
        out: list[Any] = [first.by]
        match await ctx.wait_for_signal(Approved, timeout=3600, step_id="second"):
            case durably.Received(payload=p):
                out.append(p.amount)
            case durably.TimedOut():
                out.append("timed out")
        match await ctx.wait_for_signal(Approved, timeout=3600, step_id="third"):
            case durably.Received(payload=p):
                out.append(p.amount)
            case durably.TimedOut():
                out.append("timed out")
        return out

    async with durably.Engine(store_factory(), workflows=[approval]) as engine:
        eid = await engine.start(approval)
        await trio.sleep(5)
        assert (await engine.get_execution(eid)).waiting_for == "approved"
        outcome = await engine.signal(eid, Approved, Approval("ann", 10))
        assert outcome.delivery is durably.SignalDelivery.DELIVERED
        await trio.sleep(10)
        await engine.signal(eid, Approved, Approval("bob", 20))
        assert await engine.wait(eid) == ["ann", 20, "timed out"]
        late = await engine.signal(eid, Approved, Approval("cy", 1))
        assert late.delivery is durably.SignalDelivery.REJECTED
        assert "finished" in (late.reason or "")


async def test_signals_before_the_waiter_are_buffered_in_order(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("collector")
    async def collector(ctx: durably.Context, data: None) -> list[Any]:
        await ctx.sleep(100, step_id="late")
        got = [await ctx.wait_for_signal(Note, step_id=f"n{i}") for i in range(3)]
        got.append(await ctx.wait_for_signal("note"))  # implicit step id
        return got

    async with durably.Engine(store_factory(), workflows=[collector]) as engine:
        eid = await engine.start(collector)
        for i in range(4):
            outcome = await engine.signal(eid, Note, {"i": i})
            assert outcome.delivery is durably.SignalDelivery.BUFFERED
        assert await engine.wait(eid) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]


async def test_dedup_key_delivers_once(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("two-notes")
    async def two(ctx: durably.Context, data: None) -> list[Any]:
        a = await ctx.wait_for_signal(Note, step_id="a")
        b = await ctx.wait_for_signal(Note, timeout=60, step_id="b")
        return [a, str(b)]

    async with durably.Engine(store_factory(), workflows=[two]) as engine:
        eid = await engine.start(two)
        first = await engine.signal(eid, Note, 1, dedup_key="webhook-991")
        again = await engine.signal(eid, Note, 1, dedup_key="webhook-991")
        assert first.accepted and not again.accepted
        assert "webhook-991" in (again.reason or "")
        await trio.sleep(1)
        # still a duplicate after the first was consumed
        assert not (await engine.signal(eid, Note, 1, dedup_key="webhook-991")).accepted
        assert await engine.wait(eid) == [1, "TimedOut()"]


async def test_bad_signal_payload_is_refused_at_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("w")
    async def w(ctx: durably.Context, data: None) -> Any:
        return await ctx.wait_for_signal(Approved, step_id="x")

    store = MemoryStore()
    async with durably.Engine(store, workflows=[w]) as engine:
        eid = await engine.start(w)
        with pytest.raises(durably.PayloadError, match="Approval"):
            await engine.signal(eid, Approved, {"by": "x"})  # missing amount
        assert store.mailbox(eid) == []
        await engine.cancel(eid)


async def test_signal_racing_its_timeout_is_delivered_or_timed_out_never_both(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("race")
    async def race(ctx: durably.Context, data: None) -> str:
        result = await ctx.wait_for_signal(Note, timeout=10, step_id="r")
        return type(result).__name__

    store = store_factory()
    async with durably.Engine(store, workflows=[race]) as engine:
        eids = [await engine.start(race) for _ in range(6)]
        await trio.sleep(10 - 0.0001 * 3)  # signals land around the deadline
        outcomes = []
        for eid in eids:
            outcomes.append(await engine.signal(eid, Note, "x"))
            await trio.sleep(0.0001)
        results = [await engine.wait(eid) for eid in eids]
    for eid, result, outcome in zip(eids, results, outcomes, strict=True):
        kinds = [raw for raw in store.read_events(eid)]
        received = sum(b'"signal.received"' in k for k in kinds)
        timed_out = sum(b'"signal.timed_out"' in k for k in kinds)
        assert received + timed_out == 1
        assert (result == "Received") == (received == 1)
        if result == "TimedOut" and outcome.accepted:
            assert len(store.mailbox(eid)) == 1  # kept, visible, not consumed twice


async def test_sleeping_and_waiting_executions_survive_a_restart(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("patient")
    async def patient(ctx: durably.Context, data: int) -> Any:
        await ctx.sleep(data, step_id="nap")
        return await ctx.wait_for_signal(Note, step_id="go")

    clock = durably.Clock()
    async with durably.Engine(store_factory(), workflows=[patient], clock=clock) as engine:
        short = await engine.start(patient, 60)
        long = await engine.start(patient, 7200)
        await trio.sleep(120)
        assert (await engine.get_execution(short)).status is durably.Status.WAITING
        await engine.signal(long, Note, "buffered before restart")
    # downtime: an hour passes with no engine
    await trio.sleep(3600)
    async with durably.Engine(store_factory(), workflows=[patient], clock=clock) as engine:
        report = await engine.recover()
        assert report.parked == 2 and report.timers == 1
        await engine.signal(short, Note, "after restart")
        assert await engine.wait(short) == "after restart"
        t = trio.current_time()
        assert await engine.wait(long) == "buffered before restart"
        assert trio.current_time() - t <= 7200 - 3600 - 120 + 1  # due time kept, not recomputed


async def test_overdue_timer_fires_at_once_after_downtime(
    autojump_clock: trio.testing.MockClock, tmp_path: Any
) -> None:
    @durably.workflow("nap")
    async def nap(ctx: durably.Context, data: None) -> str:
        await ctx.sleep(60, step_id="nap")
        return "up"

    clock = durably.Clock()
    path = tmp_path / "s"
    store = durably.stores.LmdbStore(path, inline=True)
    async with durably.Engine(store, workflows=[nap], clock=clock) as engine:
        eid = await engine.start(nap)
        await trio.sleep(1)
    store.close()
    await trio.sleep(86400)
    store = durably.stores.LmdbStore(path, inline=True)
    async with durably.Engine(store, workflows=[nap], clock=clock) as engine:
        t = trio.current_time()
        assert await engine.wait(eid) == "up"
        assert trio.current_time() - t < 0.01
    store.close()


async def test_wall_clock_set_back_fires_late_never_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[int] = []

    @durably.workflow("once")
    async def once(ctx: durably.Context, data: None) -> str:
        await ctx.sleep(3600, step_id="hour")
        await ctx.step("after", lambda: fired.append(1))
        return "ok"

    store = MemoryStore()
    start = datetime(2030, 1, 1, tzinfo=UTC)
    async with durably.Engine(store, workflows=[once], clock=durably.Clock(start)) as engine:
        eid = await engine.start(once)
        await trio.sleep(10)
    # the next process's wall clock reads an hour earlier than the first's
    earlier = durably.Clock(start - timedelta(hours=1))
    async with durably.Engine(store, workflows=[once], clock=earlier) as engine:
        t = trio.current_time()
        assert await engine.wait(eid) == "ok"
        assert trio.current_time() - t >= 2 * 3600 - 11  # late, by the clock's jump
    assert fired == [1]


async def test_ten_thousand_parked_executions_with_a_hundred_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("waiter")
    async def waiter(ctx: durably.Context, data: int) -> int:
        value = await ctx.wait_for_signal(Note, step_id="go")
        return int(value) + data

    n = 10_000
    async with durably.Engine(MemoryStore(), workflows=[waiter], max_live_executions=100) as engine:
        eids = [await engine.start(waiter, i) for i in range(n)]
        await trio.sleep(1)
        assert engine.statistics().live <= 100
        for eid in eids:
            await engine.signal(eid, Note, 1)
        results = [await engine.wait(eid) for eid in eids]
        assert results == [i + 1 for i in range(n)]
        assert engine.peak_live <= 100
        await trio.sleep(1)  # finished actors leave right after recording their result
        assert engine.statistics().live == 0


async def test_thousands_of_timers_due_at_once_all_fire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("tick")
    async def tick(ctx: durably.Context, data: None) -> str:
        await ctx.sleep(until=datetime(2030, 1, 1, 1, tzinfo=UTC), step_id="t")
        return "fired"

    clock = durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))
    async with durably.Engine(
        MemoryStore(), workflows=[tick], clock=clock, max_live_executions=500
    ) as engine:
        eids = [await engine.start(tick) for _ in range(3000)]
        results = [await engine.wait(eid) for eid in eids]
        assert results == ["fired"] * 3000
        assert engine.statistics().timers_fired >= 3000


async def test_timers_due_together_all_resume_before_any_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Lateness of timers due at one instant is bounded by waking them, not by the work
    each does next: every woken execution resumes before any runs its next step body or
    writes (the scheduler fires in batches of 1,000, so 2,500 span three)."""
    order: list[tuple[str, int]] = []

    def body(i: int) -> int:
        order.append(("body", i))
        return i

    @durably.workflow("burst")
    async def burst(ctx: durably.Context, i: int) -> int:
        await ctx.sleep(until=datetime(2030, 1, 1, 1, tzinfo=UTC), step_id="t")
        order.append(("resumed", i))
        return await ctx.step("after", body, i)

    clock = durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))
    async with durably.Engine(MemoryStore(), workflows=[burst], clock=clock) as engine:
        engine._supervisor.subscribers.append(
            lambda eid, events: order.append(("written", len(events)))
        )
        eids = [await engine.start(burst, i) for i in range(2500)]
        await trio.sleep(60)  # virtual: every sleep armed and recorded, an hour before due
        order.clear()
        results = [await engine.wait(eid) for eid in eids]
    assert results == list(range(2500))
    resumed = [n for n, (what, _) in enumerate(order) if what == "resumed"]
    after = [n for n, (what, _) in enumerate(order) if what != "resumed"]
    assert len(resumed) == 2500
    assert max(resumed) < min(after)


async def test_implicit_step_id_policy(autojump_clock: trio.testing.MockClock) -> None:
    @durably.workflow("implicit")
    async def implicit(ctx: durably.Context, data: None) -> None:
        await ctx.sleep(1)

    async with durably.Engine(
        MemoryStore(), workflows=[implicit], implicit_step_ids="error"
    ) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="step_id="):
            await engine.start_and_wait(implicit)
    async with durably.Engine(MemoryStore(), workflows=[implicit], implicit_step_ids="warn") as e:
        with pytest.warns(UserWarning, match="derived from call order"):
            await e.start_and_wait(implicit)


def test_far_timers_are_waited_for_in_two_hops() -> None:
    """Linux may overrun an epoll wait by 0.1 % of its length (a timer due in a minute
    would fire 60 ms late): the scheduler wakes early enough to absorb that, then waits
    the short rest."""
    from durably.runtime._scheduler import _hop

    for remaining in (0.05, 1.0, 60.0, 86_400.0):
        hop = _hop(1_000.0 + remaining, 1_000.0)
        assert 1_000.0 < hop < 1_000.0 + remaining
        assert (1_000.0 + remaining) - hop > remaining * 0.001  # beyond the kernel's slack
    assert _hop(1_000.005, 1_000.0) == 1_000.005  # a short wait: no hop
    assert _hop(float("inf"), 1_000.0) == float("inf")


async def test_an_engine_stopped_in_the_middle_of_a_wake_burst_loses_nothing(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    """Executions woken together wait for the scheduler before their durable work; an
    engine that stops while they wait must neither hang nor lose a fire. The fires that
    were not written yet are fired again after the restart, once each."""
    due = datetime(2030, 1, 1, 1, tzinfo=UTC)

    @durably.workflow("burst-stop")
    async def burst_stop(ctx: durably.Context, i: int) -> int:
        await ctx.sleep(until=due, step_id="t")
        return await ctx.step("after", lambda: i)

    clock = durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))
    store = store_factory()
    async with durably.Engine(store, workflows=[burst_stop], clock=clock) as engine:
        eids = [await engine.start(burst_stop, i) for i in range(2500)]
        # Leave at the due instant: the scheduler is firing its first batch, and the woken
        # executions wait for it (or have just started their durable work).
        await trio.sleep_until(clock.deadline(int(due.timestamp() * 1000)))
    # Stopped mid-burst: nothing finished (when written: the first batch of 1,000 had
    # recorded its fire and step, the other 1,500 still slept).
    assert {r.status for r in store.list_executions(limit=None)} <= {"sleeping", "running"}
    async with durably.Engine(store, workflows=[burst_stop], clock=clock) as engine:
        assert [await engine.wait(eid) for eid in eids] == list(range(2500))
    for eid in eids:
        tags = [orjson.loads(raw)["t"] for raw in store.read_events(eid)]
        assert tags.count("timer.fired") == 1, tags
