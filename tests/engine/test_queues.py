"""Durable queues in one process: admission by the limits, dedup, delays, debouncing,
priorities, partitions, cancellation while queued, restarts, and what the store keeps."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.core._records import Admit, Op
from durably.stores import MemoryStore, Store

Settle = Callable[..., Awaitable[durably.Execution]]

#: execution input -> engine time (epoch ms) its step began; reset by each test.
STARTED: dict[int, int] = {}
RUNNING: set[int] = set()
PEAK = {"n": 0}


@durably.workflow("job")
async def job(ctx: durably.Context, n: int) -> int:
    async def work() -> int:
        STARTED.setdefault(n, int(ctx.now().timestamp() * 1000))
        RUNNING.add(n)
        PEAK["n"] = max(PEAK["n"], len(RUNNING))
        await trio.sleep(1.0)
        RUNNING.discard(n)
        return n

    return await ctx.step("work", work)


@durably.workflow("waiter")
async def waiter(ctx: durably.Context, n: int) -> int:
    STARTED.setdefault(n, int(ctx.now().timestamp() * 1000))
    await ctx.wait_for_signal("go", step_id="go")
    return n


@pytest.fixture(autouse=True)
def _reset() -> None:
    STARTED.clear()
    RUNNING.clear()
    PEAK["n"] = 0


def _engine(store: Store, *queues: durably.Queue, **options: object) -> durably.Engine:
    return durably.Engine(store, workflows=[job, waiter], queues=list(queues), **options)  # type: ignore[arg-type]


async def test_concurrency_bounds_the_running_and_every_execution_completes(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with _engine(store_factory(), durably.Queue("q", concurrency=3)) as engine:
        ids = [await engine.enqueue("q", job, i) for i in range(12)]
        assert (await engine.get_execution(ids[-1])).status == durably.Status.QUEUED
        assert [await engine.wait(eid) for eid in ids] == list(range(12))
    assert PEAK["n"] == 3
    # Arrival order: the first three began first, together.
    assert sorted(STARTED, key=lambda n: (STARTED[n], n))[:3] == [0, 1, 2]


async def test_waiting_executions_keep_their_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _engine(MemoryStore(), durably.Queue("q", concurrency=2)) as engine:
        ids = [await engine.enqueue("q", waiter, i) for i in range(3)]
        await trio.sleep(60)
        statuses = [(await engine.get_execution(eid)).status for eid in ids]
        assert statuses == ["waiting", "waiting", "queued"]
        stats = await engine.queue_stats("q")
        assert (stats.queued, stats.running) == (1, 2)
        assert stats.oldest_wait_s is not None and stats.oldest_wait_s >= 60
        await engine.signal(ids[0], "go")
        assert await engine.wait(ids[0]) == 0
        await trio.sleep(1)
        assert (await engine.get_execution(ids[2])).status == "waiting"


async def test_rate_limit_admits_at_most_count_per_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with _engine(store, durably.Queue("r", rate_limit=(3, 2.0))) as engine:
        ids = [await engine.enqueue("r", job, i) for i in range(10)]
        for eid in ids:
            await engine.wait(eid)
        admitted = sorted(r.admitted_ms for r in store.list_executions() if r.admitted_ms)
    assert len(admitted) == 10
    for i, at in enumerate(admitted):
        in_window = [a for a in admitted[i:] if a < at + 2000]
        assert len(in_window) <= 3, (at, admitted)
    # Event-driven: each window opens on time, not a poll later.
    assert admitted[3] - admitted[0] == 2000
    assert admitted[9] - admitted[0] == 6000


class _SlowAdmissionStore(MemoryStore):
    """A MemoryStore whose commit admitting an execution of queue ``slow_queue`` lasts
    ``seconds`` of virtual time (a loaded disk; under load the process may also simply
    not run for a while between the manager's pass and its next deadline)."""

    def __init__(self, clock: trio.testing.MockClock, slow_queue: str, seconds: float) -> None:
        super().__init__()
        self.mock, self.slow_queue, self.seconds = clock, slow_queue, seconds
        self.slowed = 0

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        for op in ops:
            if isinstance(op, Admit):
                record = self.get_execution(op.execution_id)
                if record is not None and record.queue == self.slow_queue:
                    self.mock.jump(self.seconds)
                    self.slowed += 1
        return super().apply(ops)


async def test_a_rate_window_that_opens_during_a_pass_still_admits(
    clock: durably.Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """The stall of tests/faults/test_queue_crash.py: a pass finds the window full, and
    its deadline is asked for only after the window has opened (here the commit of an
    admission on another queue lasts past it). The wait for the window must not be lost
    with nothing left to wake the queue: nothing runs, nothing more is offered."""
    rated = durably.Queue("rated", rate_limit=(1, 10.0))
    store = _SlowAdmissionStore(autojump_clock, "other", 12.0)
    async with _engine(store, rated, durably.Queue("other"), clock=clock) as engine:
        t0 = clock.now_ms()
        first = await engine.enqueue("rated", job, 1)
        second = await engine.enqueue("rated", job, 2)
        assert await engine.wait(first) == 1  # after 1 s; the window holds "second" to 10 s
        assert (await engine.get_execution(second)).status == "queued"
        blocker = await engine.enqueue("other", waiter, 3)  # its admission lasts 12 s
        with trio.fail_after(60):
            assert await engine.wait(second) == 2
        assert store.slowed == 1
        admitted = [r.admitted_ms for r in store.list_executions() if r.id == second]
        # Admitted as soon as that commit returned (past the window's opening at +10 s),
        # not at some later event.
        assert admitted[0] is not None and 10_000 < admitted[0] - t0 <= 13_000, admitted
        await engine.signal(blocker, "go")
        assert await engine.wait(blocker) == 3


async def test_the_rate_window_survives_a_restart(
    store_factory: Callable[[], Store],
    clock: durably.Clock,
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = durably.Queue("r", rate_limit=(2, 10.0))
    async with _engine(store_factory(), queue, clock=clock) as engine:
        ids = [await engine.enqueue("r", job, i) for i in range(4)]
        await engine.wait(ids[0])
        await engine.wait(ids[1])
        assert (await engine.get_execution(ids[2])).status == "queued"
    store = store_factory()
    async with _engine(store, queue, clock=clock) as engine:
        assert engine.last_recovery is not None and engine.last_recovery.queued == 2
        for eid in ids:
            await engine.wait(eid)
    admitted = sorted(r.admitted_ms for r in store.list_executions() if r.admitted_ms)
    assert admitted[2] - admitted[0] >= 10_000


async def test_a_restart_counts_the_admitted_before_admitting_more(
    store_factory: Callable[[], Store],
    clock: durably.Clock,
    settle: Settle,
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = durably.Queue("q", concurrency=2)
    async with _engine(store_factory(), queue, clock=clock) as engine:
        ids = [await engine.enqueue("q", waiter, i) for i in range(5)]
        await trio.sleep(1)
    async with _engine(store_factory(), queue, clock=clock) as engine:
        await trio.sleep(1)
        statuses = [(await engine.get_execution(eid)).status for eid in ids]
        assert statuses.count("waiting") == 2 and statuses.count("queued") == 3
        for eid in ids:
            await settle(engine, eid, "waiting")  # admitted as the ones before end
            await engine.signal(eid, "go")
            await engine.wait(eid)


async def test_dedup_refuses_while_held_and_accepts_once_ended(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    async with _engine(store_factory(), durably.Queue("q")) as engine:
        first = await engine.enqueue("q", waiter, 1, dedup_id="order-7")
        with pytest.raises(durably.DuplicateEnqueueError) as refused:
            await engine.enqueue("q", waiter, 2, dedup_id="order-7")
        assert refused.value.existing == first
        assert first in str(refused.value)
        assert len(engine.store.list_executions()) == 1  # nothing of the refused one
        await engine.signal(first, "go")
        await engine.wait(first)
        again = await engine.enqueue("q", waiter, 3, dedup_id="order-7")
        assert again != first


async def test_priority_admits_lower_numbers_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = durably.Queue("p", concurrency=1, priority=True)
    async with _engine(MemoryStore(), queue) as engine:
        blocker = await engine.enqueue("p", waiter, 0)
        await trio.sleep(1)
        ids = [
            await engine.enqueue("p", job, n, priority=p)
            for n, p in ((1, 5), (2, 1), (3, 5), (4, 0))
        ]
        await engine.signal(blocker, "go")
        for eid in ids:
            await engine.wait(eid)
    assert sorted((1, 2, 3, 4), key=lambda n: STARTED[n]) == [4, 2, 1, 3]


async def test_priority_on_a_fifo_queue_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _engine(MemoryStore(), durably.Queue("f")) as engine:
        with pytest.raises(durably.ConfigurationError, match="priority=True"):
            await engine.enqueue("f", job, 1, priority=3)
        with pytest.raises(durably.UnknownQueueError, match="Queue\\(name"):
            await engine.enqueue("nope", job, 1)


async def test_a_big_partition_does_not_starve_a_small_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = durably.Queue("fair", concurrency=2, partition_concurrency=2)
    async with _engine(MemoryStore(), queue) as engine:
        big = [await engine.enqueue("fair", job, i, partition="big") for i in range(200)]
        small = [await engine.enqueue("fair", job, 1000 + i, partition="small") for i in range(3)]
        for eid in small:
            await engine.wait(eid)
        stats = await engine.queue_stats("fair")
        # The small partition finished while most of the big one still waits.
        assert stats.queued > 150
        for eid in big:
            await engine.wait(eid)


async def test_partition_concurrency_runs_one_customer_at_a_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = durably.Queue("orders", partition_concurrency=1)
    store = MemoryStore()
    async with _engine(store, queue) as engine:
        ids = [
            await engine.enqueue("orders", job, i, partition=f"customer-{i % 2}") for i in range(6)
        ]
        for eid in ids:
            await engine.wait(eid)
    assert PEAK["n"] == 2
    for customer in (0, 1):
        starts = sorted(STARTED[n] for n in range(6) if n % 2 == customer)
        assert all(b - a >= 1000 for a, b in itertools.pairwise(starts))


async def test_delay_holds_an_execution_until_its_time(
    store_factory: Callable[[], Store],
    clock: durably.Clock,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _engine(store_factory(), durably.Queue("q"), clock=clock) as engine:
        t0 = clock.now_ms()
        eid = await engine.enqueue("q", job, 1, delay=timedelta(hours=2))
        stats = await engine.queue_stats("q")
        assert (stats.queued, stats.delayed) == (1, 1)
        await trio.sleep(3600)
    async with _engine(store_factory(), durably.Queue("q"), clock=clock) as engine:
        assert await engine.wait(eid) == 1
    assert STARTED[1] - t0 == 2 * 3600 * 1000


async def test_debounce_starts_once_with_the_last_input(
    store_factory: Callable[[], Store],
    clock: durably.Clock,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _engine(store_factory(), clock=clock) as engine:
        t0 = clock.now_ms()
        ids = []
        for n in range(5):
            ids.append(await engine.debounce(job, n, key="doc-1", period=10))
            await trio.sleep(4)
        assert len(set(ids)) == 1
        assert await engine.wait(ids[0]) == 4
        # Started 10 s after the last call (at +16 s), not after the first.
        assert STARTED[4] - t0 == 26_000
        assert 0 not in STARTED
        later = await engine.debounce(job, 9, key="doc-1", period=10)
        assert later != ids[0]
        assert await engine.wait(later) == 9


async def test_debounce_max_wait_caps_the_delay(
    clock: durably.Clock, autojump_clock: trio.testing.MockClock
) -> None:
    async with _engine(MemoryStore(), clock=clock) as engine:
        t0 = clock.now_ms()
        ids = []
        for n in range(20):
            ids.append(await engine.debounce(job, n, key="k", period=5, max_wait=12))
            await trio.sleep(1)
        first = await engine.wait(ids[0])
        # Calls kept coming every second: the start came max_wait after the first call,
        # and the calls after it began the next execution.
        assert STARTED[first] - t0 == 12_000
        assert ids.count(ids[0]) == 13 and len(set(ids)) == 2
        assert await engine.wait(ids[-1]) == 19


async def test_cancelling_a_queued_execution_runs_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _engine(MemoryStore(), durably.Queue("q", concurrency=1)) as engine:
        blocker = await engine.enqueue("q", waiter, 0)
        queued = await engine.enqueue("q", job, 1)
        await engine.cancel(queued, reason="not needed")
        with pytest.raises(durably.ExecutionCancelledError):
            await engine.wait(queued)
        await engine.signal(blocker, "go")
        await engine.wait(blocker)
        assert 1 not in STARTED
        assert (await engine.queue_stats("q")).queued == 0


@durably.workflow("fanout")
async def fanout(ctx: durably.Context, n: int) -> list[str]:
    ids = [await ctx.enqueue("q", job, i, step_id=f"e{i}") for i in range(n)]
    try:
        await ctx.enqueue("q", job, 100, dedup_id="d", step_id="d1")
        await ctx.enqueue("q", job, 101, dedup_id="d", step_id="d2")
    except durably.DuplicateEnqueueError as exc:
        # Recorded: a replay raises it again, naming the same holder.
        ids.append("refused" if exc.existing not in ids else "?")
    return ["queued" if i != "refused" else i for i in ids]  # ids differ between runs


async def test_a_workflow_enqueues_durably_and_replays_its_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    queue = durably.Queue("q", concurrency=2)
    async with durably.Engine(store, workflows=[job, fanout], queues=[queue]) as engine:
        parent = await engine.start(fanout, 3)
        ids = await engine.wait(parent)
    assert ids[-1] == "refused"
    assert len(ids) == 4
    assert sorted(r.workflow for r in store.list_executions()) == ["fanout"] + ["job"] * 4
    report = await durably.testing.check_replay_async(fanout, 2, workflows=[job], queues=[queue])
    assert report.boundaries >= 5


async def test_the_store_keeps_the_declarations(tmp_path: object) -> None:
    store = MemoryStore()
    queue = durably.Queue("gpu", concurrency=4, rate_limit=(10, 60.0), priority=True)
    async with _engine(store, queue):
        pass
    assert store.list_queues() == [("gpu", queue.to_data())]
    assert durably.Queue.from_data("gpu", store.list_queues()[0][1]) == queue


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 0}, "concurrency must be a positive int"),
        ({"rate_limit": (10, 0)}, "rate_limit must be"),
        ({"rate_limit": 10}, "rate_limit must be"),
        ({"partition_concurrency": -1}, "partition_concurrency must be"),
    ],
)
def test_bad_declarations_say_what_to_do(options: dict[str, object], match: str) -> None:
    with pytest.raises(durably.ConfigurationError, match=match):
        durably.Queue("q", **options)  # type: ignore[arg-type]


def test_reserved_and_repeated_queue_names_are_refused() -> None:
    with pytest.raises(durably.ConfigurationError, match="reserved"):
        durably.Engine(MemoryStore(), queues=[durably.Queue("durably.x")])
    with pytest.raises(durably.ConfigurationError, match="declared twice"):
        durably.Engine(MemoryStore(), queues=[durably.Queue("a"), durably.Queue("a")])
