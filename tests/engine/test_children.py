"""Child workflows: started once, waited for durably, failures and cancellations carried to
the parent, parents' ends cancelling their children, and the tree shown both ways."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.stores import Store

RUNS: list[str] = []


def record_run(name: str) -> str:
    RUNS.append(name)
    return name


@durably.workflow("kid")
async def kid(ctx: durably.Context, n: int) -> int:
    await ctx.sleep(60, step_id="nap")
    if n < 0:
        raise ValueError(f"negative {n}")
    await ctx.step("ran", record_run, f"kid {n}")
    return n * 10


@durably.workflow("waiting-kid")
async def waiting_kid(ctx: durably.Context, _: None) -> str:
    return str(await ctx.wait_for_signal("go", step_id="go"))


@durably.workflow("parent")
async def parent(ctx: durably.Context, n: int) -> dict[str, Any]:
    got = await ctx.child(kid, n, step_id="one")
    handle = await ctx.start_child(kid, -n, step_id="two")
    try:
        await handle.result()
        failed = None
    except durably.ChildFailedError as exc:
        failed = (exc.error_type, exc.error_message, exc.child_id == handle.execution_id)
    return {"got": got, "failed": failed}


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNS.clear()


async def test_a_child_returns_its_result_and_a_failed_child_raises_in_the_parent(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[parent, kid]) as engine:
        eid = await engine.start(parent, 3)
        result = await engine.wait(eid)
        assert result == {"got": 30, "failed": ["ValueError", "negative -3", True]}
        detail = await engine.operator.get_execution_detail(eid)
        assert [(c.step_id, c.workflow, c.status) for c in detail.children] == [
            ("one", "kid", "completed"),
            ("two", "kid", "failed"),
        ]
        child = await engine.get_execution(detail.children[0].execution_id)
        assert child.parent_id == eid
        assert child.result == 30
        assert RUNS == ["kid 3"]


@durably.workflow("parks-on-child")
async def parks_on_child(ctx: durably.Context, _: None) -> str:
    return await ctx.child(waiting_kid, None, step_id="kid")


async def test_the_parent_parks_while_it_waits_and_a_restart_starts_no_second_child(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    workflows = [parks_on_child, waiting_kid]
    async with durably.Engine(store_factory(), workflows=workflows) as engine:
        eid = await engine.start(parks_on_child, None)
        parked = await settle(engine, eid, "waiting")
        assert parked.waiting_for is not None and parked.waiting_for.startswith("durably.child:")
        kids = await engine.list_executions(workflow="waiting-kid")
        assert len(kids) == 1
        await settle(engine, kids[0].id, "waiting")
    # A restart replays the parent: the recorded start is found, nothing new starts.
    async with durably.Engine(store_factory(), workflows=workflows) as engine:
        await engine.signal(kids[0].id, "go", "green")
        assert await engine.wait(eid) == "green"
        assert len(await engine.list_executions(workflow="waiting-kid")) == 1


@durably.workflow("two-kids")
async def two_kids(ctx: durably.Context, _: None) -> None:
    await ctx.start_child(waiting_kid, None, step_id="bound")
    await ctx.start_child(waiting_kid, None, step_id="free", detached=True)
    await ctx.wait_for_signal("never", step_id="hold")


async def test_a_cancelled_parent_cancels_its_children_but_not_a_detached_one(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[two_kids, waiting_kid]) as engine:
        eid = await engine.start(two_kids, None)
        await settle(engine, eid, "waiting")
        detail = await engine.operator.get_execution_detail(eid)
        bound, free = (c.execution_id for c in detail.children)
        await engine.cancel(eid, reason="shutting the shop")
        gone = await settle(engine, bound, "cancelled")
        assert gone.reason is not None and eid in gone.reason
        assert (await engine.get_execution(free)).status == "waiting"
        assert (await engine.signal(free, "go", 1)).delivery is durably.SignalDelivery.DELIVERED
        assert await engine.wait(free) == "1"


@durably.workflow("waits-for-cancelled")
async def waits_for_cancelled(ctx: durably.Context, _: None) -> str:
    handle = await ctx.start_child(waiting_kid, None, step_id="kid")
    await ctx.publish("kid", handle.execution_id)
    try:
        return await handle.result()
    except durably.ExecutionCancelledError as exc:
        return f"cancelled: {exc.reason}"


async def test_a_cancelled_child_raises_the_cancelled_error_in_its_parent(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    workflows = [waits_for_cancelled, waiting_kid]
    async with durably.Engine(store_factory(), workflows=workflows) as engine:
        eid = await engine.start(waits_for_cancelled, None)
        kid_id = await engine.read_published(eid, "kid", wait=True)
        await engine.cancel(kid_id, reason="not needed")
        assert await engine.wait(eid) == "cancelled: not needed"


@durably.workflow("unknown-child")
async def unknown_child(ctx: durably.Context, _: None) -> Any:
    return await ctx.child("nobody-registered-this", None, step_id="kid")


async def test_a_child_of_an_unregistered_workflow_fails_the_parent_clearly(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with durably.Engine(store_factory(), workflows=[unknown_child]) as engine:
        eid = await engine.start(unknown_child, None)
        with pytest.raises(durably.ExecutionFailedError, match="nobody-registered-this"):
            await engine.wait(eid)
