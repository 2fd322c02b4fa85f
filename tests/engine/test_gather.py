"""``ctx.gather``: durable calls of one execution, concurrently, replayed by id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import durably
import durably.testing
from durably.stores import Op, Store

CALLS: list[str] = []
DONE: list[str] = []
RUNNING = {"now": 0, "peak": 0}


async def work(name: str, seconds: float = 1.0, *, fail: bool = False) -> str:
    CALLS.append(name)
    RUNNING["now"] += 1
    RUNNING["peak"] = max(RUNNING["peak"], RUNNING["now"])
    try:
        await trio.sleep(seconds)
    finally:
        RUNNING["now"] -= 1
    if fail:
        raise RuntimeError(f"{name} broke")
    DONE.append(name)
    return name.upper()


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()
    DONE.clear()
    RUNNING.update(now=0, peak=0)


@durably.workflow("fan")
async def fan(ctx: durably.Context, n: int) -> list[str]:
    # Later items finish first, so finishing order is the reverse of argument order.
    calls = [ctx.step(f"item-{i}", work, f"i{i}", float(n - i)) for i in range(n)]
    return await ctx.gather(*calls, limit=4)


async def test_results_come_in_argument_order_and_the_limit_holds(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[fan]) as engine:
        eid = await engine.start(fan, 10)
        assert await engine.wait(eid) == [f"I{i}" for i in range(10)]
    assert RUNNING["peak"] == 4
    assert sorted(CALLS) == sorted(f"i{i}" for i in range(10))


@durably.workflow("mixed")
async def mixed(ctx: durably.Context, _: None) -> list[Any]:
    a, nap, go, late = await ctx.gather(
        ctx.step("a", work, "a", 5.0),
        ctx.sleep(3, step_id="nap"),
        ctx.wait_for_signal("go", step_id="go"),
        ctx.wait_for_signal("late", timeout=2, step_id="late"),
    )
    return [a, nap, go, isinstance(late, durably.TimedOut)]


async def test_steps_sleeps_and_signal_waits_run_together(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[mixed]) as engine:
        eid = await engine.start(mixed, None)
        await trio.sleep(1)
        assert (await engine.get_execution(eid)).status == "running"
        receipt = await engine.signal(eid, "go", {"ok": True})
        assert receipt.delivery is not durably.SignalDelivery.REJECTED
        result = await engine.wait(eid)
        assert result == ["A", None, {"ok": True}, True]


@durably.workflow("fail-fast")
async def fail_fast(ctx: durably.Context, _: None) -> str:
    try:
        await ctx.gather(
            ctx.step("slow", work, "slow", 100.0),
            ctx.step("bad", work, "bad", 1.0, fail=True),
            ctx.step("quick", work, "quick", 0.5),
        )
    except durably.StepError as exc:
        return f"caught {exc.step_id}"
    return "no error"


async def test_the_first_error_cancels_the_others_and_a_replay_raises_it_again(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[fail_fast]) as engine:
        eid = await engine.start(fail_fast, None)
        assert await engine.wait(eid) == "caught bad"
        assert sorted(CALLS) == ["bad", "quick", "slow"]
        detail = await engine.operator.get_execution_detail(eid)
        status = {s.step_id: s.status for s in detail.steps}
        assert status["quick"] == "completed" and status["bad"] == "failed"
        assert "slow" not in status  # cancelled: never recorded


@durably.workflow("keep-errors")
async def keep_errors(ctx: durably.Context, _: None) -> list[str]:
    got = await ctx.gather(
        ctx.step("ok", work, "ok"),
        ctx.step("bad", work, "bad", fail=True),
        return_exceptions=True,
    )
    return [type(g).__name__ if isinstance(g, BaseException) else g for g in got]


async def test_return_exceptions_gives_errors_as_results(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[keep_errors]) as engine:
        eid = await engine.start(keep_errors, None)
        assert await engine.wait(eid) == ["OK", "StepError"]


@durably.workflow("chains")
async def chains(ctx: durably.Context, n: int) -> list[str]:
    async def chain(i: int) -> str:
        first = await ctx.step(f"fetch-{i}", work, f"f{i}", 1.0)
        await ctx.sleep(i, step_id=f"pause-{i}")
        return await ctx.step(f"store-{i}", work, f"{first}-{i}", 1.0)

    return await ctx.gather(*[chain(i) for i in range(n)])


async def test_a_member_may_be_a_chain_of_calls_and_a_restart_reruns_only_the_rest(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[chains]) as engine:
        eid = await engine.start(chains, 4)
        await trio.sleep(2.5)  # every fetch recorded, the pauses of 0..2 done or going
    done_before = list(DONE)
    assert {f"f{i}" for i in range(4)} <= set(done_before)
    CALLS.clear()
    async with durably.Engine(store_factory(), workflows=[chains]) as engine:
        assert await engine.wait(eid) == [f"F{i}-{i}".upper() for i in range(4)]
    again = set(done_before) & set(CALLS)
    assert not again, f"finished (recorded) steps ran again: {again}"
    assert len(CALLS) < 8  # only what was not recorded


@durably.workflow("raw-nursery")
async def raw_nursery(ctx: durably.Context, _: None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctx.step, "a", work, "a")
        nursery.start_soon(ctx.step, "b", work, "b")


async def test_hand_made_concurrency_is_refused_with_an_error_naming_gather(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[raw_nursery]) as engine:
        eid = await engine.start(raw_nursery, None)
        with pytest.raises(durably.ExecutionFailedError, match=r"ctx\.gather"):
            await engine.wait(eid)


@durably.workflow("big-fan")
async def big_fan(ctx: durably.Context, n: int) -> int:
    got = await ctx.gather(*[ctx.step(f"s{i}", int, i) for i in range(n)], limit=100)
    return sum(got)


class CountingStore:
    """Counts the transactions a store is asked to apply (wraps a real store)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.batches = 0

    def apply(self, ops: list[Op]) -> list[Any]:
        self.batches += 1
        return self._inner.apply(ops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_thousand_parallel_steps_cost_a_handful_of_commits(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    store = CountingStore(store_factory())
    async with durably.Engine(store, workflows=[big_fan]) as engine:  # type: ignore[arg-type]
        before = store.batches
        eid = await engine.start(big_fan, 1000)
        assert await engine.wait(eid) == sum(range(1000))
        commits = store.batches - before
    assert commits <= 30, commits
    events = store.read_events(eid)
    assert len(events) == 1000 + 4  # started, gather start and end, completed


@durably.workflow("nested")
async def nested(ctx: durably.Context, _: None) -> Any:
    async def inner() -> Any:
        return await ctx.gather(ctx.step("x", work, "x"))

    return await ctx.gather(inner())


async def test_a_gather_inside_a_gather_is_refused(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[nested]) as engine:
        eid = await engine.start(nested, None)
        with pytest.raises(durably.ExecutionFailedError, match="inside a member"):
            await engine.wait(eid)


@durably.workflow("children-fan")
async def children_fan(ctx: durably.Context, n: int) -> list[int]:
    return await ctx.gather(*[ctx.child(square, i, step_id=f"kid-{i}") for i in range(n)])


@durably.workflow("square")
async def square(ctx: durably.Context, n: int) -> int:
    await ctx.sleep(n, step_id="think")
    return n * n


async def test_children_fan_out_and_join(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[children_fan, square]) as engine:
        eid = await engine.start(children_fan, 8)
        assert await engine.wait(eid) == [i * i for i in range(8)]
        assert len((await engine.operator.get_execution_detail(eid)).children) == 8


def instant(name: str, fail: bool = False) -> str:
    if fail:
        raise RuntimeError(f"{name} broke")
    return name.upper()


@durably.workflow("replayable")
async def replayable(ctx: durably.Context, _: None) -> list[Any]:
    first = await ctx.gather(
        ctx.step("a", instant, "a"),
        ctx.sleep(3, step_id="nap"),
        ctx.wait_for_signal("go", step_id="go"),
        ctx.wait_for_signal("late", timeout=2, step_id="late"),
        ctx.step("b", instant, "b"),
    )
    try:
        await ctx.gather(
            ctx.sleep(100, step_id="long"),
            ctx.step("bad", instant, "bad", True),
            ctx.step("quick", instant, "quick"),
            ctx.sleep(1, step_id="short"),
        )
    except durably.StepError as exc:
        first.append(exc.step_id)
    kept = await ctx.gather(
        ctx.step("ok", instant, "ok"), ctx.step("worse", instant, "w", True), return_exceptions=True
    )
    return [repr(x) for x in first + kept]


@pytest.mark.parametrize("workflow", [replayable], ids=lambda w: w.name)
async def test_a_crash_at_any_commit_of_a_gather_resumes_to_the_same_history(
    workflow: durably.WorkflowDefinition[Any, Any], autojump_clock: trio.testing.MockClock
) -> None:
    signals: list[Any] = [(1.0, "go", {"ok": True})]
    report = await durably.testing.check_replay_async(workflow, None, signals=signals)
    assert report.boundaries >= 2, report


@durably.workflow("same-signal")
async def same_signal(ctx: durably.Context, _: None) -> list[Any]:
    got = await ctx.gather(
        ctx.wait_for_signal("a", step_id="first"),
        ctx.wait_for_signal("a", step_id="second"),
        ctx.wait_for_signal("a", timeout=5, step_id="third"),
    )
    return [g.payload if isinstance(g, durably.Received) else g for g in got]


async def test_members_waiting_for_one_signal_each_take_their_own_entry(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[same_signal]) as engine:
        eid = await engine.start(same_signal, None)
        for n in (1, 2, 3):
            await engine.signal(eid, "a", n)
        got = await engine.wait(eid)
    # None took one twice, and which took which is fixed: waits begun at one instant
    # share the entries in step-id order (tests/engine/test_gather_waits.py has more).
    assert got == [1, 2, 3]


@durably.workflow("abandoned-timer")
async def abandoned_timer(ctx: durably.Context, _: None) -> str:
    try:
        await ctx.gather(
            ctx.sleep(3600, step_id="long"),
            ctx.wait_for_signal("never", timeout=7200, step_id="wait"),
            ctx.step("bad", work, "bad", 1.0, fail=True),
        )
    except durably.StepError:
        pass
    await ctx.sleep(10, step_id="after")
    return "done"


async def test_a_cancelled_members_timers_leave_the_index(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[abandoned_timer]) as engine:
        eid = await engine.start(abandoned_timer, None)
        assert await engine.wait(eid) == "done"
        assert [t for t in store.due_timers(2**62) if t.owner == eid] == []


@durably.workflow("bad-gathers")
async def bad_gathers(ctx: durably.Context, _: None) -> list[str]:
    errors = []
    for kwargs, calls in (
        ({"limit": 0}, [ctx.step("x", work, "x")]),
        ({}, [ctx.step("y", work, "y"), "not a call"]),
    ):
        try:
            await ctx.gather(*calls, **kwargs)  # type: ignore[arg-type]
        except durably.ConfigurationError as exc:
            errors.append(str(exc).split(";")[0])
    return errors


async def test_bad_gathers_are_refused_clearly_and_run_nothing(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[bad_gathers]) as engine:
        eid = await engine.start(bad_gathers, None)
        assert await engine.wait(eid) == [
            "ctx.gather(limit=) must be an int >= 1",
            "ctx.gather takes durable calls such as ctx.step(...) (not awaited yet)",
        ]
    assert CALLS == []
