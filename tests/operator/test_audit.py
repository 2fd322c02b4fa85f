"""The audit trail: every kind of entry, derived from the log, the same live and read back."""

from __future__ import annotations

from typing import Any

import trio

import durably


async def slow_step(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slow"


async def undo(_: str) -> None:
    return None


@durably.workflow("everything")
async def everything(ctx: durably.Context, _: Any) -> str:
    await ctx.step("slow", slow_step, 2, compensate=undo)
    await ctx.sleep(10, step_id="nap")
    await ctx.wait_for_signal("go", step_id="go")
    await ctx.wait_for_signal("late", timeout=5, step_id="late")
    await ctx.emit("hello", {"n": 1}, step_id="hello")
    await ctx.switch(
        "pick", 1, [durably.Branch("one", match=lambda v: v == 1, run=lambda v: "one")]
    )
    await ctx.note("about to roll back", why="test")
    await ctx.rollback()
    return "done"


async def test_the_trail_has_every_kind_in_order(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[everything], clock=clock) as engine:
        async with engine.subscribe(emits=False, audit=True) as sub:
            eid = await engine.start(everything)
            await settle(engine, eid, "waiting")
            await engine.signal(eid, "go")
            assert await engine.wait(eid) == "done"
            live = []
            while True:
                try:
                    live.append(sub.receive_nowait())
                except trio.WouldBlock:
                    break
        trail = await engine.audit(eid)
    got = [(e.kind, e.step_id, e.data.get("status")) for e in trail]
    assert got == [
        ("status_changed", None, "pending"),
        ("step_completed", "slow", None),
        ("status_changed", None, "running"),
        ("sleep_scheduled", "nap", None),
        ("status_changed", None, "sleeping"),
        ("sleep_completed", "nap", None),
        ("status_changed", None, "running"),
        ("signal_waiting", "go", None),
        ("status_changed", None, "waiting"),
        ("signal_delivered", "go", None),
        ("status_changed", None, "running"),
        ("signal_waiting", "late", None),
        ("status_changed", None, "waiting"),
        ("signal_timed_out", "late", None),
        ("status_changed", None, "running"),
        ("emitted", "hello", None),
        ("switch_evaluated", "pick", None),
        ("note", "__note:1", None),
        ("compensation_completed", "rollback:slow", None),
        ("status_changed", None, "completed"),
    ]
    by_kind = {e.kind: e for e in trail}
    assert by_kind["step_completed"].data["duration_ms"] == 2000  # virtual time
    assert by_kind["signal_delivered"].data == {"signal": "go"}
    assert by_kind["emitted"].data == {"event": "hello", "payload": {"n": 1}}
    assert by_kind["switch_evaluated"].data["branch_id"] == "one"
    assert by_kind["note"].data == {"message": "about to roll back", "meta": {"why": "test"}}
    nap = [e for e in trail if e.step_id == "nap"]
    assert (nap[1].at - nap[0].at).total_seconds() == 10
    assert [e.seq for e in trail] == sorted(e.seq for e in trail if e.seq is not None)
    assert live == trail
    assert set(durably.AUDIT_KINDS) >= {kind for kind, _, _ in got}
