"""A signal's receipt tells the truth: ``DELIVERED`` only when the wait that is open takes
that very signal, ``BUFFERED`` otherwise; the worker, a client and the wait agree."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.stores import LmdbStore, MailboxEntry, Op, PutSignal, PutSignalResult, Store

DELIVERED, BUFFERED = durably.SignalDelivery.DELIVERED, durably.SignalDelivery.BUFFERED


@pytest.fixture
def settle(settle: Any) -> Any:
    """The shared ``settle``, bounded: a bug shows as ``TooSlowError``, not a hang."""

    async def bounded(engine: Any, execution_id: str, *wanted: str) -> durably.Execution:
        with trio.fail_after(30 * 86400):  # virtual seconds in most tests
            return await settle(engine, execution_id, *wanted)  # type: ignore[no-any-return]

    return bounded


async def slow_work() -> str:
    await trio.sleep(100)
    return "worked"


@durably.workflow("once")
async def once(ctx: durably.Context, _: None) -> Any:
    got = await ctx.wait_for_signal("go", step_id="go")
    await ctx.step("work", slow_work)
    return got


@durably.workflow("deadline")
async def deadline(ctx: durably.Context, _: None) -> str:
    answer = await ctx.wait_for_signal("go", timeout=5, step_id="go")
    await ctx.step("work", slow_work)
    return repr(answer)


def payloads(store: Store, eid: str) -> list[Any]:
    return [entry.payload for entry in store.mailbox(eid)]


async def test_a_second_signal_while_the_step_after_the_wait_runs_is_buffered(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[once]) as engine:
        eid = await engine.start(once)
        await settle(engine, eid, "waiting")
        assert (await engine.signal(eid, "go", 1)).delivery is DELIVERED
        await trio.sleep(10)  # the wait took it; "work" runs, its receipt not yet recorded
        second = await engine.signal(eid, "go", 2)
        assert second.delivery is BUFFERED  # no wait will take it: it waits once
        assert await engine.wait(eid, timeout=86400) == 1
        assert payloads(store, eid) == [2]


async def test_a_signal_after_the_timeout_while_the_next_step_runs_is_buffered(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[deadline]) as engine:
        eid = await engine.start(deadline)
        await settle(engine, eid, "waiting")
        await trio.sleep(10)  # past the deadline: the wait timed out, "work" runs
        late = await engine.signal(eid, "go", "late")
        assert late.delivery is BUFFERED
        assert await engine.wait(eid, timeout=86400) == "TimedOut()"
        assert payloads(store, eid) == ["late"]


async def test_a_client_on_the_same_store_gets_the_same_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, settle: Any, clock: durably.Clock
) -> None:
    # A client decides in the store transaction alone: what it answers must hold too.
    # LMDB, so that its hints reach the worker over the store's socket.
    store = LmdbStore(tmp_path / "store", inline=True)
    try:
        async with (
            durably.Engine(store, workflows=[once, deadline], clock=clock) as engine,
            durably.Client(store, clock=clock) as client,
        ):
            first = await engine.start(once)
            timed = await engine.start(deadline)
            await settle(engine, first, "waiting")
            assert (await client.signal(first, "go", 1)).delivery is DELIVERED
            await trio.sleep(10)
            assert (await client.signal(first, "go", 2)).delivery is BUFFERED
            assert (await client.signal(timed, "go", "late")).delivery is BUFFERED
            assert await engine.wait(first, timeout=86400) == 1
            assert await engine.wait(timed, timeout=86400) == "TimedOut()"
        assert payloads(store, first) == [2]
        assert payloads(store, timed) == ["late"]
    finally:
        store.close()


async def test_a_signal_sent_after_the_deadline_while_no_worker_runs_stays_buffered(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    settle: Any,
    clock: durably.Clock,
) -> None:
    @durably.workflow("patient")
    async def patient(ctx: durably.Context, _: None) -> str:
        return repr(await ctx.wait_for_signal("go", timeout=60, step_id="go"))

    async with durably.Engine(store_factory(), workflows=[patient], clock=clock) as engine:
        before = await engine.start(patient)
        after = await engine.start(patient)
        await settle(engine, after, "waiting")
    store = store_factory()
    async with durably.Client(store, clock=clock) as client:
        await trio.sleep(30)
        assert (await client.signal(before, "go", "in time")).delivery is DELIVERED
        await trio.sleep(60)  # both deadlines pass while no worker runs
        assert (await client.signal(after, "go", "too late")).delivery is BUFFERED
    async with durably.Engine(store, workflows=[patient], clock=clock) as engine:
        # The wait takes what was sent by its deadline, however late it looks, and
        # never what was sent after it: the receipts said so.
        assert await engine.wait(before, timeout=86400) == "Received(payload='in time')"
        assert await engine.wait(after, timeout=86400) == "TimedOut()"
    assert payloads(store, before) == []
    assert payloads(store, after) == ["too late"]


async def test_a_lagging_clients_signal_after_the_timeout_is_buffered(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    # The client's clock runs behind the worker's: by its clock the signal is in time,
    # but the wait has already timed out, and the record says so before anything else.
    store = store_factory()
    behind = durably.Clock(start=datetime.now(UTC) - timedelta(hours=1))
    async with (
        durably.Engine(store, workflows=[deadline], clock=durably.Clock()) as engine,
        durably.Client(store, clock=behind) as client,
    ):
        eid = await engine.start(deadline)
        await settle(engine, eid, "waiting")
        await trio.sleep(10)
        late = await client.signal(eid, "go", "late")
        assert late.delivery is BUFFERED
        assert await engine.wait(eid, timeout=86400) == "TimedOut()"
        assert payloads(store, eid) == ["late"]


class _SignalDuringRead:
    """Forwards to ``inner``; the first read of ``target``'s mailbox once armed also
    commits a signal right after the read, as another process would in between."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.inline = inner.inline
        self.target: tuple[str, PutSignal] | None = None
        self.result: PutSignalResult | None = None
        self.seen: list[MailboxEntry] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        return self.inner.apply(ops)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        box = self.inner.mailbox(execution_id)
        if self.target is not None and self.target[0] == execution_id:
            self.seen = box
            [self.result] = self.inner.apply([self.target[1]])
            self.target = None
        return box


async def test_a_signal_committed_while_the_wait_times_out_is_taken(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    settle: Any,
    clock: durably.Clock,
) -> None:
    @durably.workflow("racy")
    async def racy(ctx: durably.Context, _: None) -> str:
        return repr(await ctx.wait_for_signal("go", timeout=5, step_id="go"))

    store = _SignalDuringRead(store_factory())
    async with durably.Engine(store, workflows=[racy], clock=clock) as engine:
        eid = await engine.start(racy)
        execution = await settle(engine, eid, "waiting")
        assert execution.wake_at is not None
        due = round(execution.wake_at.timestamp() * 1000)
        # Sent at the deadline (in time), committed just after the wait, woken at its
        # deadline, found the mailbox empty: its timeout must not be recorded.
        store.target = (eid, PutSignal(eid, "go", "in time", at=due))
        assert await engine.wait(eid, timeout=86400) == "Received(payload='in time')"
    assert store.seen == []
    assert store.result is not None and store.result.delivered
    assert payloads(store.inner, eid) == []


@pytest.mark.slow
async def test_the_command_line_gets_true_receipts_from_a_running_worker(
    tmp_path: Path, settle: Any
) -> None:
    # Real processes: the worker here (real time), each `durably signal` a client process.
    path = tmp_path / "store"
    entered, release = trio.Event(), trio.Event()

    async def held() -> str:
        entered.set()
        await release.wait()
        return "worked"

    @durably.workflow("held-once")
    async def held_once(ctx: durably.Context, _: None) -> Any:
        got = await ctx.wait_for_signal("go", step_id="go")
        await ctx.step("work", held)
        return got

    async def cli(*args: str) -> str:
        done = await trio.run_process(
            [sys.executable, "-m", "durably", "--store", str(path), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.decode().strip()

    store = LmdbStore(path)
    try:
        async with durably.Engine(store, workflows=[held_once]) as engine:
            eid = await engine.start(held_once)
            with trio.fail_after(60):
                await settle(engine, eid, "waiting")
                assert await cli("signal", eid, "go", "1") == "delivered"
                await entered.wait()
                assert await cli("signal", eid, "go", "2") == "buffered"
                release.set()
                assert await engine.wait(eid, timeout=86400) == 1
            assert payloads(store, eid) == [2]
    finally:
        store.close()
