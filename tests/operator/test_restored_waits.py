"""Operator actions leave executions runnable: a wait an action restores looks at the
mailbox and the timers as a fresh wait does, with no worker restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.stores import Store

interrupted: list[str] = []


@pytest.fixture
def settle(settle: Any) -> Any:
    """The shared ``settle``, bounded: a bug shows as ``TooSlowError``, not a hang."""

    async def bounded(engine: Any, execution_id: str, *wanted: str) -> durably.Execution:
        with trio.fail_after(30 * 86400):  # virtual seconds in most tests
            return await settle(engine, execution_id, *wanted)  # type: ignore[no-any-return]

    return bounded


async def long_work() -> str:
    if not interrupted:
        try:
            await trio.sleep_forever()  # until an operator interrupts it
        except trio.Cancelled:
            interrupted.append("work")
            raise
    return "worked"


@durably.workflow("twice")
async def twice(ctx: durably.Context, _: None) -> list[Any]:
    first = await ctx.wait_for_signal("go", step_id="first")
    await ctx.step("work", long_work)
    second = await ctx.wait_for_signal("go", step_id="second")
    return [first, second]


async def test_retry_after_a_force_fail_in_the_step_after_a_signal_takes_buffered_signals(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    interrupted.clear()
    store = store_factory()
    async with durably.Engine(store, workflows=[twice], clock=clock) as engine:
        eid = await engine.start(twice)
        await settle(engine, eid, "waiting")
        await engine.signal(eid, "go", 1)
        await trio.sleep(10)  # the wait took it; "work" runs, nothing recorded since
        await engine.signal(eid, "go", 2)
        await engine.operator.force_fail(eid, "stuck in work", by="ops")
        assert interrupted == ["work"]
        # The first wait's receipt was never recorded: the retry restores that wait, and
        # both signals are in the mailbox. It must go on now, not after a restart.
        await engine.operator.retry(eid, by="ops")
        with trio.fail_after(3600):
            assert await engine.wait(eid, timeout=86400) == [1, 2]
    assert store.mailbox(eid) == []


@durably.workflow("bounded")
async def bounded(ctx: durably.Context, _: None) -> str:
    answer = await ctx.wait_for_signal("go", timeout=60, step_id="go")
    await ctx.sleep(60, step_id="nap")
    return repr(answer)


async def test_retry_of_a_wait_whose_deadline_passed_while_failed_times_out_at_once(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    async with durably.Engine(store_factory(), workflows=[bounded], clock=clock) as engine:
        eid = await engine.start(bounded)
        await settle(engine, eid, "waiting")
        await engine.operator.force_fail(eid, "looked stuck", by="ops")
        await trio.sleep(600)  # its recorded deadline passes while it is failed
        restored = await engine.operator.retry(eid, by="ops")
        assert restored.status is durably.Status.WAITING
        start = trio.current_time()
        assert await engine.wait(eid, timeout=86400) == "TimedOut()"
        assert trio.current_time() - start < 61  # the nap only: the deadline was due


async def test_retry_of_a_sleep_that_fell_due_while_failed_fires_at_once(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    @durably.workflow("napper")
    async def napper(ctx: durably.Context, _: None) -> str:
        await ctx.sleep(60, step_id="nap")
        return "awake"

    async with durably.Engine(store_factory(), workflows=[napper], clock=clock) as engine:
        eid = await engine.start(napper)
        await settle(engine, eid, "sleeping")
        await engine.operator.force_fail(eid, "looked stuck", by="ops")
        await trio.sleep(600)
        await engine.operator.retry(eid, by="ops")
        start = trio.current_time()
        assert await engine.wait(eid, timeout=86400) == "awake"
        assert trio.current_time() - start < 1
