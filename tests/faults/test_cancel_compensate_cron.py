"""Entries 23, 24 and 25: cancellation during a step (and while a commit is in flight), a
compensation that raises, and an invalid cron expression."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import durably
from durably.stores import Append, LmdbStore, Op

from ._helpers import events, lmdb_engine


async def test_23_cancel_during_a_step_does_not_record_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    body: list[str] = []

    async def slow() -> str:
        body.append("started")
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            body.append("cancelled")
            raise
        return "finished"

    @durably.workflow("long")
    async def long(ctx: durably.Context, _: None) -> str:
        await ctx.step("quick", lambda: "q")
        return await ctx.step("slow", slow)

    store = tmp_path / "s"
    async with lmdb_engine(store, [long]) as engine:
        eid = await engine.start(long)
        await trio.sleep(10)
        await engine.cancel(eid, reason="operator said stop", by="test")
        view = await engine.get_execution(eid)
        assert view.status is durably.Status.CANCELLED
        with pytest.raises(durably.ExecutionCancelledError, match="operator said stop"):
            await engine.wait(eid)
    assert body == ["started", "cancelled"]
    log = events(store, eid)
    assert [e["step_id"] for e in log if e["t"] == "step.completed"] == ["quick"]
    assert log[-1]["t"] == "cancelled"
    async with lmdb_engine(store, [long]) as engine:  # nothing resumes it after a restart
        await trio.sleep(3600)
        assert (await engine.get_execution(eid)).status is durably.Status.CANCELLED
    assert body == ["started", "cancelled"]


class HeldStore:
    """A real LmdbStore whose next log append can be held at the door (in the commit
    thread), so that a cancellation lands while that commit is in flight."""

    def __init__(self, inner: LmdbStore) -> None:
        self.inner = inner
        self.inline = False
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self.hold.is_set() and any(isinstance(op, Append) for op in ops):
            self.hold.clear()
            self.entered.set()
            self.release.wait(timeout=30)
        return self.inner.apply(ops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_23_cancel_while_a_commit_is_in_flight_does_not_abandon_it(
    tmp_path: Path,
) -> None:
    @durably.workflow("two-steps")
    async def two_steps(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: "a")
        return await ctx.step("b", lambda: "b")

    held = HeldStore(LmdbStore(tmp_path / "s"))
    try:
        async with durably.Engine(held, workflows=[two_steps], commit_inline="never") as engine:
            held.hold.set()
            eid = await engine.start(two_steps)
            await trio.to_thread.run_sync(held.entered.wait)  # a's record is mid-commit
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(engine.cancel, eid, reason="now"))
                await trio.lowlevel.checkpoint()  # the cancel reaches the awaiting actor
                held.release.set()
            status = (await engine.get_execution(eid)).status
        tags = [(e["t"], e.get("step_id")) for e in map(_load, held.inner.read_events(eid))]
    finally:
        held.release.set()
        held.inner.close()
    # The in-flight commit landed (not abandoned), and the actor knew it: the log goes on
    # from it, with no gap and no second record of the same step.
    assert tags == [("started", None), ("step.completed", "a"), ("cancelled", None)]
    assert status is durably.Status.CANCELLED


def _load(raw: bytes) -> dict[str, Any]:
    import orjson

    data: dict[str, Any] = orjson.loads(raw)
    return data


async def test_24_compensation_that_raises_is_recorded_and_surfaced(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    undone: list[str] = []

    def refund(value: str) -> None:
        raise ConnectionError(f"refund of {value} failed: gateway down")

    @durably.workflow("saga")
    async def saga(ctx: durably.Context, _: None) -> str:
        await ctx.step("reserve", lambda: "seat", compensate=undone.append)
        await ctx.step("charge", lambda: "card", compensate=refund)
        try:
            await ctx.step("ship", lambda: 1 / 0)
        except durably.StepError:
            await ctx.rollback()
        return "unreachable"

    store = tmp_path / "s"
    async with lmdb_engine(store, [saga]) as engine:
        eid = await engine.start(saga)
        with pytest.raises(durably.ExecutionFailedError, match="gateway down") as info:
            await engine.wait(eid)
        view = await engine.get_execution(eid)
    assert info.value.error["type"] == "ConnectionError"
    assert view.status is durably.Status.COMPENSATION_FAILED
    assert view.reason is not None and "retry_rollback" in view.reason
    log = events(store, eid)
    failed = [e for e in log if e["t"] == "compensation.failed"]
    assert len(failed) == 1 and failed[0]["step_id"] == "rollback:charge"
    assert undone == []  # rollback stopped at the failing compensation, in reverse order
    async with lmdb_engine(store, [saga]) as engine:  # a restart leaves it for the operator
        await trio.sleep(60)
        assert (await engine.get_execution(eid)).status is durably.Status.COMPENSATION_FAILED
    assert [e["t"] for e in events(store, eid)] == [e["t"] for e in log]


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 0 30 2 *", "never fires"),  # passes croniter.is_valid; February has no 30th
        ("61 * * * *", "cron"),
        ("every day at noon", "cron"),
        ("", "cron"),
    ],
)
async def test_25_invalid_cron_is_rejected_at_the_call(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, cron: str, why: str
) -> None:
    @durably.workflow("job")
    async def job(ctx: durably.Context, _: None) -> None:
        return None

    async with lmdb_engine(tmp_path / "s", [job]) as engine:
        with pytest.raises(durably.ConfigurationError, match=why):
            await engine.ensure_schedule(job, id="nightly", cron=cron)
        assert await engine.list_schedules() == []  # nothing written
        await engine.ensure_schedule(job, id="nightly", cron="0 3 * * *")
        with pytest.raises(durably.ConfigurationError, match=why):
            await engine.update_schedule("nightly", cron=cron)
        assert (await engine.get_schedule("nightly")).cron == "0 3 * * *"
