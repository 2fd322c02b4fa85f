"""Entries 11 and 22: a step id reused in one execution, and ids longer than LMDB's key
limit (511 bytes): hashed where they go into keys, rejected clearly where they cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import durably

from ._helpers import events, lmdb_engine

LONG = "id-" + "x" * 700  # well past LMDB's 511-byte keys


async def test_11_step_id_reused_is_a_clear_error_at_that_call(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ran: list[str] = []

    @durably.workflow("reuse")
    async def reuse(ctx: durably.Context, _: None) -> None:
        await ctx.step("fetch", ran.append, "first")
        await ctx.step("fetch", ran.append, "second")

    async with lmdb_engine(tmp_path / "s", [reuse]) as engine:
        eid = await engine.start(reuse)
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
    assert info.value.error["type"] == "durably.DuplicateStepError"
    assert "'fetch' is used twice" in info.value.error["message"]
    assert ran == ["first"]  # the second call's body never ran
    completed = [e for e in events(tmp_path / "s", eid) if e["t"] == "step.completed"]
    assert [e["step_id"] for e in completed] == ["fetch"]


async def test_22_long_ids_are_hashed_into_keys_and_work_across_restarts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("w" * 600)
    async def longest(ctx: durably.Context, _: None) -> str:
        await ctx.step(LONG + ".step", lambda: 1)
        await ctx.sleep(60, step_id=LONG + ".sleep")  # a timer keyed by this step id
        return str(await ctx.wait_for_signal(LONG + ".signal", step_id=LONG + ".wait"))

    store = tmp_path / "s"
    async with lmdb_engine(store, [longest]) as engine:
        eid = await engine.start(longest, idempotency_key=LONG)
        assert await engine.start(longest, idempotency_key=LONG) == eid  # start-or-get
        await trio.sleep(1)
        assert (await engine.get_execution(eid)).status is durably.Status.SLEEPING
    async with lmdb_engine(store, [longest]) as engine:  # the timer reloads from its key
        await trio.sleep(120)
        first = await engine.signal(eid, LONG + ".signal", "hi", dedup_key=LONG)
        again = await engine.signal(eid, LONG + ".signal", "hi", dedup_key=LONG)
        assert first.accepted and not again.accepted
        assert await engine.wait(eid) == "hi"
        assert await engine.start(longest, idempotency_key=LONG) == eid


async def test_22_ids_that_cannot_be_keys_are_rejected_clearly(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("w")
    async def w(ctx: durably.Context, _: None) -> None:
        return None

    async with lmdb_engine(tmp_path / "s", [w]) as engine:
        with pytest.raises(durably.ConfigurationError, match="schedule id"):
            await engine.ensure_schedule(w, id=LONG, interval=60)
        with pytest.raises(durably.ConfigurationError, match="schedule id"):
            await engine.schedule(w, delay=1, id=LONG)
        with pytest.raises(durably.UnknownExecutionError):
            await engine.get_execution(LONG)
        with pytest.raises(durably.UnknownExecutionError):
            await engine.signal(LONG, "s")
        with pytest.raises(durably.ConfigurationError, match="NUL"):
            await engine.start(w, idempotency_key="a\x00b")
        eid = await engine.start(w)
        await engine.wait(eid)
        with pytest.raises(durably.ConfigurationError, match="NUL"):
            await engine.signal(eid, "s", dedup_key="\x00")
        with pytest.raises(durably.ConfigurationError, match="signal name"):
            durably.Signal("bad\x00name")
