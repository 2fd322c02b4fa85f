"""Compensation: reverse order, each recorded once, failure then operator retry_rollback."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import durably

log: list[str] = []
#: Compensations named here raise; the test flips them to succeed.
failing: set[str] = set()
#: Compensations named here block until the engine stops (a crash mid-rollback).
blocking: set[str] = set()
#: Set when a blocking compensation has started.
started: dict[str, trio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    log.clear()
    failing.clear()
    blocking.clear()
    started.clear()
    unbookable.clear()


#: Bookings named here fail (without retries).
unbookable: set[str] = set()


async def book(what: str) -> str:
    log.append(f"do:{what}")
    if what in unbookable:
        raise LookupError(f"no {what} available")
    return f"booking-{what}"


def undo(name: str) -> Any:
    async def compensate(booking: str) -> None:
        if name in blocking:
            log.append(f"undo-started:{booking}")
            started.setdefault(name, trio.Event()).set()
            await trio.sleep_forever()
        if name in failing:
            log.append(f"undo-failed:{booking}")
            raise RuntimeError(f"cannot undo {booking}")
        log.append(f"undo:{booking}")

    return compensate


async def charge(amount: int) -> None:
    raise ValueError(f"card declined for {amount}")


@durably.workflow("trip")
async def trip(ctx: durably.Context, amount: int) -> str:
    for what in ("flight", "hotel", "car"):
        await ctx.step(what, book, what, compensate=undo(what))
    try:
        await ctx.step("charge", charge, amount)
    except durably.StepError:
        await ctx.rollback()
        return "rolled back"
    return "booked"


async def test_rollback_runs_compensations_in_reverse_order_once(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        result = await engine.start_and_wait(trip, 10)
        trail = await engine.audit(result.execution_id)
    assert result.data == "rolled back"
    assert log == [
        "do:flight",
        "do:hotel",
        "do:car",
        "undo:booking-car",
        "undo:booking-hotel",
        "undo:booking-flight",
    ]
    compensations = [e.step_id for e in trail if e.kind == "compensation_completed"]
    assert compensations == ["rollback:car", "rollback:hotel", "rollback:flight"]


async def test_a_restart_mid_rollback_does_not_repeat_finished_compensations(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    blocking.add("hotel")
    hotel_undo = started["hotel"] = trio.Event()
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        eid = await engine.start(trip, 10)
        await hotel_undo.wait()
    # The engine stopped while the hotel's compensation ran: it was not recorded.
    assert log[-2:] == ["undo:booking-car", "undo-started:booking-hotel"]
    blocking.clear()
    log.clear()
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        assert await engine.wait(eid) == "rolled back"
    # Replayed: no booking ran again, the car's compensation was not repeated.
    assert log == ["undo:booking-hotel", "undo:booking-flight"]


async def test_failed_compensation_then_retry_rollback(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    failing.add("hotel")
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        eid = await engine.start(trip, 10)
        with pytest.raises(durably.ExecutionFailedError, match="cannot undo booking-hotel"):
            await engine.wait(eid)
        execution = await engine.get_execution(eid)
        assert execution.status is durably.Status.COMPENSATION_FAILED
        assert execution.error is not None and execution.error["type"] == "RuntimeError"
        assert "retry_rollback" in (execution.reason or "")
    assert log[-2:] == ["undo:booking-car", "undo-failed:booking-hotel"]

    # Still failing: a retry records a second failure (round 1) and stops again.
    log.clear()
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        await engine.operator.retry_rollback(eid, by="ops", reason="try again")
        with pytest.raises(durably.ExecutionFailedError):
            await engine.wait(eid)
        assert log == ["undo-failed:booking-hotel"]

        failing.clear()
        log.clear()
        await engine.operator.retry_rollback(eid, by="ops", reason="hotel API is back")
        assert await engine.wait(eid) == "rolled back"
        trail = await engine.audit(eid)
    # Only the failed compensation and the ones after it ran; nothing was booked again.
    assert log == ["undo:booking-hotel", "undo:booking-flight"]
    actions = [e.data for e in trail if e.kind == "operator_action"]
    assert [(a["action"], a["by"], a["reason"]) for a in actions] == [
        ("retry_rollback", "ops", "try again"),
        ("retry_rollback", "ops", "hotel API is back"),
    ]
    failures = [e.data["round"] for e in trail if e.kind == "compensation_failed"]
    assert failures == [0, 1]
    statuses = [e.data["status"] for e in trail if e.kind == "status_changed"]
    assert statuses[-3:] == ["compensation_failed", "running", "completed"]


async def test_retry_rollback_needs_a_failed_compensation(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[trip], clock=clock) as engine:
        result = await engine.start_and_wait(trip, 10)
        before = len(engine.store.read_events(result.execution_id))
        with pytest.raises(durably.OperatorError, match="is completed"):
            await engine.operator.retry_rollback(result.execution_id)
        assert len(engine.store.read_events(result.execution_id)) == before


@durably.workflow("trip-no-catch")
async def trip_no_catch(ctx: durably.Context, amount: int) -> str:
    for what in ("flight", "hotel"):
        await ctx.step(what, book, what, compensate=undo(what))
    try:
        await ctx.step("charge", charge, amount)
    except durably.StepError:
        await ctx.rollback()
        return "rolled back"
    return "booked"


async def test_a_skipped_step_is_compensated_with_the_operators_result(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    unbookable.add("hotel")
    async with durably.Engine(store_factory(), workflows=[trip_no_catch], clock=clock) as engine:
        eid = await engine.start(trip_no_catch, 10)
        with pytest.raises(durably.ExecutionFailedError, match="no hotel available"):
            await engine.wait(eid)
        await engine.operator.skip_step(eid, "hotel", "phoned-hotel", by="ops")
        assert await engine.wait(eid) == "rolled back"
    assert log == [
        "do:flight",
        "do:hotel",
        "undo:phoned-hotel",
        "undo:booking-flight",
    ]
