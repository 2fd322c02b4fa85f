"""ctx.switch, ctx.emit, ctx.note and the recorded values, on both stores, across restarts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

import durably
from durably.core._events import decode_all

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def is_big(v: int) -> bool:
    calls["match-big"] += 1
    return v > 100


def is_small(v: int) -> bool:
    calls["match-small"] += 1
    return v < 10


async def run_small(v: int) -> str:
    calls["run-small"] += 1
    return f"small:{v}"


def run_big(v: int) -> str:
    calls["run-big"] += 1
    return f"big:{v}"


def run_manual(v: int) -> str:
    calls["run-manual"] += 1
    return f"manual:{v}"


@durably.workflow("route")
async def route(ctx: durably.Context, value: int) -> dict[str, Any]:
    branch = await ctx.switch(
        "route",
        value,
        [
            durably.Branch("big", match=is_big, run=run_big),
            durably.Branch("small", match=is_small, run=run_small),
        ],
        default=durably.Branch("manual", run=run_manual),
    )
    await ctx.emit("routed", {"branch": branch}, step_id="announce")
    await ctx.note("routed it", branch=branch)
    now, rnd, uid = ctx.now(), ctx.random(), ctx.uuid()
    go = await ctx.wait_for_signal("go", step_id="wait-go")
    return {"branch": branch, "now": now.isoformat(), "r": rnd, "u": str(uid), "go": go}


@durably.workflow("no-default")
async def no_default(ctx: durably.Context, value: int) -> str:
    result: str = await ctx.switch(
        "route", value, [durably.Branch("big", match=is_big, run=run_big)]
    )
    return result


@pytest.mark.parametrize(
    ("value", "branch", "expected"),
    [(500, "big", "big:500"), (3, "small", "small:3"), (50, "manual", "manual:50")],
)
async def test_switch_records_branch_and_replays_without_matchers(
    autojump_clock: Any,
    store_factory: Any,
    clock: durably.Clock,
    settle: Any,
    value: int,
    branch: str,
    expected: str,
) -> None:
    async with durably.Engine(store_factory(), workflows=[route], clock=clock) as engine:
        async with engine.subscribe(events=["routed"]) as sub:
            eid = await engine.start(route, value)
            await settle(engine, eid, "waiting")
            with trio.fail_after(1):
                emission = await sub.receive()
        assert isinstance(emission, durably.Emission)
        assert (emission.execution_id, emission.event) == (eid, "routed")
        assert emission.payload == {"branch": expected}
    first_run = dict(calls)
    assert first_run[f"run-{branch}"] == 1

    # Restart on the same store: the replay answers the switch from the log.
    store = store_factory()
    async with durably.Engine(store, workflows=[route], clock=clock) as engine:
        async with engine.subscribe() as sub:
            await engine.signal(eid, "go", 7)
            result = await engine.wait(eid)
            extra = []
            while True:
                try:
                    extra.append(sub.receive_nowait())
                except trio.WouldBlock:
                    break
        trail = await engine.audit(eid)
    assert dict(calls) == first_run, "matchers or the branch ran again on replay"
    assert extra == [], "a replay published the emit again"
    assert result["branch"] == expected and result["go"] == 7
    switch = [e for e in trail if e.kind == "switch_evaluated"]
    assert [e.data["branch_id"] for e in switch] == [branch]
    notes = [e for e in trail if e.kind == "note"]
    assert [(n.data["message"], n.data["meta"]) for n in notes] == [
        ("routed it", {"branch": expected})
    ]
    assert [e.data["event"] for e in trail if e.kind == "emitted"] == ["routed"]


async def test_recorded_values_are_identical_on_replay(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[route], clock=clock) as engine:
        eid = await engine.start(route, 3)
        await settle(engine, eid, "waiting")
    store = store_factory()
    values = [e for e in decode_all(store.read_events(eid)) if e.tag == "value"]
    assert [v.kind for v in values] == ["now", "random", "uuid"]  # type: ignore[attr-defined]
    await trio.sleep(3600)  # time moves on; the recorded now() does not
    async with durably.Engine(store, workflows=[route], clock=clock) as engine:
        await engine.signal(eid, "go")
        result = await engine.wait(eid)
    recorded = {v.kind: v.value for v in values}  # type: ignore[attr-defined]
    assert result["r"] == recorded["random"]
    assert result["u"] == recorded["uuid"]
    assert result["now"] == durably.core._types.from_ms(recorded["now"]).isoformat()
    # Only the first run recorded them: the replay added no new value events.
    again = [e for e in decode_all(store.read_events(eid)) if e.tag == "value"]
    assert len(again) == 3


async def test_switch_without_match_or_default_fails_clearly(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[no_default], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.start_and_wait(no_default, 1)
    assert "no branch matched 1 and there is no default" in str(info.value)


async def test_switch_checks_its_branches(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("bad-switch")
    async def bad(ctx: durably.Context, which: str) -> None:
        if which == "dup":
            await ctx.switch(
                "s",
                1,
                [durably.Branch("a", match=is_big, run=run_big)],
                default=durably.Branch("a", run=run_big),
            )
        else:
            await ctx.switch("s", 1, [durably.Branch("a", run=run_big)])

    async with durably.Engine(store_factory(), workflows=[bad], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="branch ids must be unique"):
            await engine.start_and_wait(bad, "dup")
        with pytest.raises(durably.ExecutionFailedError, match="have no match="):
            await engine.start_and_wait(bad, "nomatch")


async def test_bus_is_bounded_and_counts_what_it_drops(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("chatty")
    async def chatty(ctx: durably.Context, n: int) -> None:
        for i in range(n):
            await ctx.emit("tick", i, step_id=f"tick-{i}")

    async with durably.Engine(store_factory(), workflows=[chatty], clock=clock) as engine:
        async with engine.subscribe(buffer=3) as sub:
            await engine.start_and_wait(chatty, 10)
            got = [m.payload for m in [sub.receive_nowait() for _ in range(3)]]
            assert got == [0, 1, 2]
            assert sub.dropped == 7
        with pytest.raises(durably.ConfigurationError):
            engine.subscribe(buffer=0)
        late = engine.subscribe()
    # The engine stopped: a subscription still open ends instead of hanging, and so
    # does one made afterwards.
    assert [m async for m in late] == []
    assert [m async for m in engine.subscribe()] == []
