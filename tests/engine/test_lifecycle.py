"""Continue-as-new, patches, published values, signal-with-start, the schedule's fire
time and step keywords: the primitives about a run itself."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durably
import durably.testing
from durably.stores import MemoryStore, Store

# --- continue-as-new --------------------------------------------------------------------

LOG_SIZES: list[int] = []


@durably.workflow("hourly")
async def hourly(ctx: durably.Context, i: int) -> int:
    await ctx.sleep(3600, step_id="hour")
    await ctx.step("tick", int, i)
    if i < LIMIT["n"]:
        ctx.continue_as_new(i + 1)
    return i


LIMIT = {"n": 0}


async def test_ten_thousand_iterations_keep_a_bounded_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    LIMIT["n"] = 10_000
    store = MemoryStore()
    async with durably.Engine(store, workflows=[hourly]) as engine:
        eid = await engine.start(hourly, 0)
        sizes = []
        for _ in range(10):
            await trio.sleep(1000 * 3600)
            sizes.append(len(store.read_events(eid)))
            run = (await engine.get_execution(eid)).run
            assert run > 1
        assert await engine.wait(eid) == 10_000
        assert (await engine.get_execution(eid)).run == 10_001
    # Every sample: the run's start, at most its sleep, fire and step: never more.
    assert max(sizes) <= 4, sizes


async def test_a_chain_is_one_id_for_wait_signal_and_cancel(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    LIMIT["n"] = 50
    async with durably.Engine(store_factory(), workflows=[hourly]) as engine:
        eid = await engine.start(hourly, 0)
        await trio.sleep(10 * 3600 + 1)
        assert (await engine.get_execution(eid)).run == 11
        assert await engine.wait(eid) == 50
    LIMIT["n"] = 10**9
    async with durably.Engine(store_factory(), workflows=[hourly]) as engine:
        other = await engine.start(hourly, 0)
        await trio.sleep(5 * 3600 + 1)
        await engine.cancel(other, reason="enough")
        with pytest.raises(durably.ExecutionCancelledError, match="enough"):
            await engine.wait(other)


@durably.workflow("per-signal")
async def per_signal(ctx: durably.Context, seen: list[int]) -> list[int]:
    got = await ctx.wait_for_signal("item", step_id="item")
    seen = [*seen, got]
    if len(seen) < 5:
        ctx.continue_as_new(seen)
    return seen


async def test_signals_buffered_in_one_run_reach_the_next(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[per_signal]) as engine:
        eid = await engine.start(per_signal, [])
        for n in range(5):
            await engine.signal(eid, "item", n)
        assert await engine.wait(eid) == [0, 1, 2, 3, 4]
    async with durably.Engine(store_factory(), workflows=[per_signal]) as engine:
        eid = await engine.start(per_signal, [])
        await settle(engine, eid, "waiting")
        await engine.signal(eid, "item", 10)
    # Restarted between runs: the buffered signals are still the chain's.
    async with durably.Engine(store_factory(), workflows=[per_signal]) as engine:
        for n in range(11, 15):
            await engine.signal(eid, "item", n)
        assert await engine.wait(eid) == [10, 11, 12, 13, 14]


@durably.workflow("bad-continue")
async def bad_continue(ctx: durably.Context, _: None) -> None:
    await ctx.step("s", int, 1)
    ctx.continue_as_new(object())


async def test_a_continue_with_an_input_that_cannot_be_stored_fails_clearly(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[bad_continue]) as engine:
        eid = await engine.start(bad_continue, None)
        with pytest.raises(durably.ExecutionFailedError, match="continue_as_new"):
            await engine.wait(eid)


# --- patches ----------------------------------------------------------------------------


def before(_: None = None) -> str:
    return "old"


def after(_: None = None) -> str:
    return "new"


@durably.workflow("orders")
async def orders_v1(ctx: durably.Context, _: None) -> list[str]:
    first = await ctx.step("charge", before)
    await ctx.wait_for_signal("ship", step_id="ship")
    return [first]


@durably.workflow("orders")
async def orders_v2(ctx: durably.Context, _: None) -> list[str]:
    if ctx.patched("new-charge"):
        first = await ctx.step("charge-v2", after)
    else:
        first = await ctx.step("charge", before)
    await ctx.wait_for_signal("ship", step_id="ship")
    return [first]


@durably.workflow("orders")
async def orders_v3(ctx: durably.Context, _: None) -> list[str]:
    ctx.deprecate_patch("new-charge")
    first = await ctx.step("charge-v2", after)
    await ctx.wait_for_signal("ship", step_id="ship")
    return [first]


@durably.workflow("orders")
async def orders_v4(ctx: durably.Context, _: None) -> list[str]:
    first = await ctx.step("charge-v2", after)
    await ctx.wait_for_signal("ship", step_id="ship")
    return [first]


async def test_old_executions_replay_the_old_branch_and_new_ones_take_the_new(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[orders_v1]) as engine:
        old = await engine.start(orders_v1, None)
        await settle(engine, old, "waiting")
    async with durably.Engine(store_factory(), workflows=[orders_v2]) as engine:
        new = await engine.start(orders_v2, None)
        await settle(engine, new, "waiting")
        for eid in (old, new):
            await engine.signal(eid, "ship")
        assert await engine.wait(old) == ["old"]
        assert await engine.wait(new) == ["new"]
        newer = await engine.start(orders_v2, None)
        await settle(engine, newer, "waiting")
    # Deprecated, then removed: executions that recorded the patch still replay.
    async with durably.Engine(store_factory(), workflows=[orders_v3]) as engine:
        third = await engine.start(orders_v3, None)
        await settle(engine, third, "waiting")
    async with durably.Engine(store_factory(), workflows=[orders_v4]) as engine:
        for eid in (newer, third):
            await engine.signal(eid, "ship")
            assert await engine.wait(eid) == ["new"]


async def test_check_upgrade_proves_the_patched_code_replays_the_old_logs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signals: list[Any] = [("waiting", "ship", None)]
    report = await durably.testing.check_upgrade_async(orders_v1, orders_v2, signals=signals)
    assert report.status == "completed"
    with pytest.raises(durably.testing.ReplayMismatch):
        await durably.testing.check_upgrade_async(orders_v1, orders_v4, signals=signals)


async def test_check_upgrade_replays_old_golden_logs_with_the_patched_code(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with durably.testing.virtual_engine(orders_v1, store=store) as engine:
        parked = await engine.start(orders_v1, None)
        await trio.sleep(1)
        done = await engine.start(orders_v1, None)
        await engine.signal(done, "ship")
        await engine.wait(done)
    golden = [durably.testing.snapshot_execution(store, eid) for eid in (parked, done)]
    golden = [durably.testing.ExecutionSnapshot.from_jsonl(g.to_jsonl()) for g in golden]
    signals: list[Any] = [("waiting", "ship", None)]
    await durably.testing.check_upgrade_async(orders_v1, orders_v2, signals=signals, golden=golden)
    with pytest.raises(durably.testing.ReplayMismatch, match="golden log 0"):
        await durably.testing.check_upgrade_async(
            orders_v1, orders_v4, signals=signals, golden=golden
        )


# --- published values -------------------------------------------------------------------


@durably.workflow("progress")
async def progress(ctx: durably.Context, n: int) -> str:
    for i in range(n):
        await ctx.sleep(10, step_id=f"work-{i}")
        await ctx.publish("progress", {"done": i + 1, "of": n})
    return "finished"


async def test_published_values_are_read_from_outside_while_the_run_goes_on(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[progress]) as engine:
        eid = await engine.start(progress, 3)
        assert await engine.read_published(eid, "progress") is None
        assert await engine.read_published(eid, "progress", wait=True) == {"done": 1, "of": 3}
        with pytest.raises(durably.WaitTimeoutError):
            await engine.read_published(eid, "other", wait=True, timeout=5)
        assert await engine.wait(eid) == "finished"
        assert await engine.read_published(eid, "progress") == {"done": 3, "of": 3}
        with pytest.raises(durably.DurablyError, match="without publishing"):
            await engine.read_published(eid, "other", wait=True)
        detail = await engine.operator.get_execution_detail(eid)
        assert detail.published == {"progress": {"done": 3, "of": 3}}


# --- signal with start ------------------------------------------------------------------


@durably.workflow("cart")
async def cart(ctx: durably.Context, owner: str) -> list[Any]:
    items = []
    while True:
        item = await ctx.wait_for_signal("add", step_id=f"add-{len(items)}")
        if item is None:
            return [owner, *items]
        items.append(item)


async def test_signal_with_start_starts_once_and_signals_every_time(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[cart]) as engine:
        first = await engine.signal_with_start(cart, "ann", "add", "tea", idempotency_key="ann")
        second = await engine.signal_with_start(cart, "bob", "add", "jam", idempotency_key="ann")
        assert first.execution_id == second.execution_id
        assert second.delivery is not durably.SignalDelivery.REJECTED
        await engine.signal(first.execution_id, "add", None)
        assert await engine.wait(first.execution_id) == ["ann", "tea", "jam"]
        late = await engine.signal_with_start(cart, "ann", "add", "x", idempotency_key="ann")
        assert late.delivery is durably.SignalDelivery.REJECTED
        assert late.execution_id == first.execution_id


# --- a schedule's fire time, step keywords ----------------------------------------------

FIRES: list[str] = []


@durably.workflow("report")
async def report(ctx: durably.Context, _: None) -> str | None:
    at = ctx.scheduled_at
    FIRES.append("none" if at is None else at.isoformat())
    return None if at is None else at.isoformat()


async def test_each_catch_up_run_knows_its_own_fire_time(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
) -> None:
    FIRES.clear()
    start = datetime(2030, 1, 1, tzinfo=UTC)  # the shared clock fixture starts here
    async with durably.Engine(store_factory(), workflows=[report], clock=clock) as engine:
        await engine.ensure_schedule(report, id="hourly-report", cron="0 * * * *", catch_up="all")
        await trio.sleep(1)
    await trio.sleep(5 * 3600)  # a five-hour outage
    async with durably.Engine(store_factory(), workflows=[report], clock=clock) as engine:
        await trio.sleep(60)
    first = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    expected = [(first + timedelta(hours=h)).astimezone(UTC).isoformat() for h in range(5)]
    assert FIRES == expected
    async with durably.Engine(store_factory(), workflows=[report], clock=clock) as engine:
        eid = await engine.start(report, None)
        assert await engine.wait(eid) is None


def scaled(x: int, *, scale: int = 1, offset: int = 0) -> int:
    return x * scale + offset


@durably.workflow("keywords")
async def keywords(ctx: durably.Context, x: int) -> list[int]:
    return [
        await ctx.step("plain", scaled, x, scale=2),
        await ctx.step("timed", scaled, x, scale=3, offset=1, timeout=5),
        await ctx.step("partial", functools.partial(scaled, scale=4), x),
    ]


async def test_a_step_passes_keywords_to_its_function(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[keywords]) as engine:
        eid = await engine.start(keywords, 5)
        assert await engine.wait(eid) == [10, 16, 20]
