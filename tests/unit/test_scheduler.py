"""The scheduler actor (engine/runtime/_scheduler.py), driven through its API in virtual time.

A harness runs a ``Scheduler`` over a ``MemoryStore`` under pytest-trio's
``autojump_clock`` and records every ``on_timer`` call with the engine clock's reading at
that moment, so a test can say exactly when each timer fired.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from durably.runtime._clock import _SLACK_S, Clock
from durably.runtime._latch import Done, refuse_abort
from durably.runtime._scheduler import Scheduler, _bursting, _hop
from durably.stores import AddTimer, MemoryStore, RemoveTimer, Timer

START = datetime(2030, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)

Fire = tuple[int, int, str, str]  # (clock reading, due_ms, owner, timer_id)


def at(offset_ms: int, owner: str = "e1", timer_id: str = "t") -> Timer:
    return Timer(START_MS + offset_ms, owner, timer_id)


class Harness:
    def __init__(
        self,
        *,
        store: MemoryStore | None = None,
        batch: int = 1000,
        then: Callable[[int, str, str], None] | None = None,
        start: datetime = START,
        freeze_gc: bool = True,
    ) -> None:
        self.store = store if store is not None else MemoryStore()
        self.clock = Clock(start)
        self.clock.bind()
        self.fires: list[Fire] = []
        self.then = then
        self.scheduler = Scheduler(
            self.store, self.clock, self._on_timer, batch=batch, freeze_gc=freeze_gc
        )

    def _on_timer(self, due_ms: int, owner: str, timer_id: str) -> None:
        self.fires.append((self.clock.now_ms(), due_ms, owner, timer_id))
        if self.then is not None:
            self.then(due_ms, owner, timer_id)

    def offsets(self) -> list[tuple[int, int, str, str]]:
        """The fires with both times as offsets from the start, for readable asserts."""
        return [(now - START_MS, due - START_MS, o, t) for now, due, o, t in self.fires]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[trio.CancelScope]:
        """The scheduler runs inside the block; the scope it yields stops it."""
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def run(task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    await self.scheduler.run(task_status=task_status)

            await nursery.start(run)
            yield scope
            scope.cancel()


async def settle(scheduler: Scheduler) -> None:
    """What a woken execution does before its durable work (ExecutionActor.settle)."""
    behind = scheduler.behind
    if behind is not None and behind.join():
        await trio.lowlevel.wait_task_rescheduled(refuse_abort)
    else:
        await trio.lowlevel.cancel_shielded_checkpoint()


# --- arming, order, timing ---


async def test_timers_fire_in_due_order_each_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    for timer in [at(3000), at(1000, "b"), at(2000), at(1000, "a"), at(1000, "a", "s")]:
        h.scheduler.arm(timer)
    assert len(h.scheduler) == 5
    async with h.running():
        await trio.sleep(10)
    assert h.offsets() == [
        (1000, 1000, "a", "s"),
        (1000, 1000, "a", "t"),
        (1000, 1000, "b", "t"),
        (2000, 2000, "e1", "t"),
        (3000, 3000, "e1", "t"),
    ]
    assert len(h.scheduler) == 0
    assert h.scheduler.fired == 5


async def test_nothing_fires_before_its_due_time(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.scheduler.arm(at(5000))
    async with h.running():
        await trio.sleep(4.999)
        assert h.fires == []
        await trio.sleep(0.002)
        assert h.offsets() == [(5000, 5000, "e1", "t")]


async def test_arm_after_start_with_nothing_armed(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    async with h.running():
        await trio.sleep(60)
        h.scheduler.arm(at(61_500))
        await trio.sleep(5)
    assert h.offsets() == [(61_500, 61_500, "e1", "t")]


async def test_a_timer_armed_earlier_than_the_current_wait_fires_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(10_000, "late"))
    async with h.running():
        await trio.sleep(1)  # the scheduler now waits for the 10 s timer
        h.scheduler.arm(at(2000, "early"))
        await trio.sleep(20)
    assert h.offsets() == [(2000, 2000, "early", "t"), (10_000, 10_000, "late", "t")]


async def test_a_timer_armed_later_than_the_current_wait_fires_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(2000, "first"))
    async with h.running():
        await trio.sleep(1)
        h.scheduler.arm(at(5000, "second"))
        await trio.sleep(20)
    assert h.offsets() == [(2000, 2000, "first", "t"), (5000, 5000, "second", "t")]


async def test_an_overdue_timer_fires_at_once(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.scheduler.arm(at(-60_000))
    async with h.running():
        await trio.testing.wait_all_tasks_blocked()
        assert h.offsets() == [(0, -60_000, "e1", "t")]


async def test_a_timer_armed_in_the_past_while_waiting_fires_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(3_600_000))
    async with h.running():
        await trio.sleep(10)
        h.scheduler.arm(at(1000, "overdue"))
        await trio.testing.wait_all_tasks_blocked()
        assert h.offsets() == [(10_000, 1000, "overdue", "t")]


@pytest.mark.parametrize("offset_ms", [3_000, 600_000, 3 * 86_400_000 + 7])
async def test_a_far_timer_fires_on_the_millisecond(
    autojump_clock: trio.testing.MockClock, offset_ms: int
) -> None:
    # The scheduler wakes early for a far deadline (_hop) and waits again for the rest.
    h = Harness()
    h.scheduler.arm(at(offset_ms))
    async with h.running():
        await trio.sleep(offset_ms / 1000 + 1)
    assert h.offsets() == [(offset_ms, offset_ms, "e1", "t")]


@pytest.mark.parametrize("offset", [0.0, 0.3337, 12_345.678_901_2])
@pytest.mark.parametrize("start_us", [0, 1, 400, 999_999])
async def test_a_timer_fires_on_its_millisecond_whatever_the_sub_millisecond_phase(
    autojump_clock: trio.testing.MockClock, offset: float, start_us: int
) -> None:
    # Trio time and the engine's start both carry sub-millisecond parts: a timer fires
    # once the clock reads its due time, not a microsecond before, and not a
    # millisecond after.
    autojump_clock.jump(offset)
    h = Harness(start=START + timedelta(microseconds=start_us))
    base = h.clock.now_ms()
    dues = [base, base + 1, base + 2, base + 1000, base + 3_600_001]
    for due in dues:
        h.scheduler.arm(Timer(due, "e1", str(due)))
    async with h.running():
        await trio.testing.wait_all_tasks_blocked()
        assert [fire[1] for fire in h.fires] == [base]  # due in the current millisecond
        for due in dues[1:]:
            await trio.sleep_until(h.clock.deadline(due) - _SLACK_S - 1e-6)
            assert h.fires[-1][1] < due
            await trio.sleep_until(h.clock.deadline(due))
            await trio.testing.wait_all_tasks_blocked()
            assert h.fires[-1][:2] == (due, due)
    assert len(h.fires) == len(dues)


# --- duplicates and disarming ---


async def test_arming_the_same_timer_twice_fires_it_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(1000))
    h.scheduler.arm(at(1000))
    assert len(h.scheduler) == 1
    async with h.running():
        h.scheduler.arm(at(1000))
        await trio.sleep(5)
        h.scheduler.arm(at(1000))  # armed again after it fired: fires again, once
        await trio.sleep(5)
    assert h.offsets() == [(1000, 1000, "e1", "t"), (5000, 1000, "e1", "t")]


async def test_same_owner_and_id_at_other_due_times_are_distinct(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(1000))
    h.scheduler.arm(at(2000))
    assert len(h.scheduler) == 2
    async with h.running():
        await trio.sleep(5)
    assert [f[1] - START_MS for f in h.fires] == [1000, 2000]


async def test_a_disarmed_timer_does_not_fire(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.scheduler.arm(at(1000, "a"))
    h.scheduler.arm(at(2000, "b"))
    h.scheduler.disarm(at(1000, "a"))
    h.scheduler.disarm(at(9999, "never armed"))  # not an error
    assert len(h.scheduler) == 1
    async with h.running():
        await trio.sleep(5)
    assert h.offsets() == [(2000, 2000, "b", "t")]


async def test_disarming_the_awaited_timer_while_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    h.scheduler.arm(at(2000, "a"))
    h.scheduler.arm(at(3000, "b"))
    async with h.running():
        await trio.sleep(1)
        h.scheduler.disarm(at(2000, "a"))
        await trio.sleep(5)
    assert h.offsets() == [(3000, 3000, "b", "t")]
    assert len(h.scheduler) == 0


async def test_disarm_then_rearm_fires_once(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    h.scheduler.arm(at(1000))
    h.scheduler.disarm(at(1000))
    h.scheduler.arm(at(1000))
    assert len(h.scheduler) == 1
    async with h.running():
        await trio.sleep(5)
    assert h.offsets() == [(1000, 1000, "e1", "t")]
    assert h.scheduler.fired == 1


# --- load ---


async def test_load_arms_the_stores_timers_index(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    store.apply(
        [
            AddTimer(at(3000, "e2", "sleep-1")),
            AddTimer(at(-5000, "e1", "overdue")),
            AddTimer(at(1000, "schedule:nightly", "fire")),
            AddTimer(at(2000, "e3", "removed")),
            RemoveTimer(at(2000, "e3", "removed")),
        ]
    )
    h = Harness(store=store)
    assert h.scheduler.load() == 3
    assert len(h.scheduler) == 3
    async with h.running():
        await trio.sleep(10)
    assert h.offsets() == [
        (0, -5000, "e1", "overdue"),
        (1000, 1000, "schedule:nightly", "fire"),
        (3000, 3000, "e2", "sleep-1"),
    ]


async def test_load_does_not_duplicate_armed_timers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    store.apply([AddTimer(at(1000, "a")), AddTimer(at(2000, "b"))])
    h = Harness(store=store)
    h.scheduler.arm(at(1000, "a"))
    h.scheduler.load()
    h.scheduler.load()
    assert len(h.scheduler) == 2
    async with h.running():
        await trio.sleep(5)
    assert [f[2] for f in h.fires] == ["a", "b"]


async def test_load_of_an_empty_store(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    assert h.scheduler.load() == 0
    assert len(h.scheduler) == 0


# --- the two-hop wait ---


def test_hop_near_or_infinite_deadline_is_the_deadline() -> None:
    assert _hop(100.0, 100.0) == 100.0
    assert _hop(100.0, 120.0) == 100.0  # already past
    assert _hop(100.005, 100.0) == 100.005
    assert _hop(float("inf"), 5.0) == float("inf")


@pytest.mark.parametrize("remaining", [0.02, 1.0, 3.0, 60.0, 3600.0, 86_400.0 * 30])
def test_hop_wakes_a_little_early_for_a_far_deadline(remaining: float) -> None:
    now = 1000.0
    deadline = now + remaining
    wake = _hop(deadline, now)
    assert now < wake < deadline
    # early by about 0.2 % + 1 ms: never more
    assert deadline - wake <= remaining * 0.002 + 0.001 + 1e-9


@pytest.mark.parametrize("remaining", [0.02, 3.0, 3600.0, 86_400.0 * 30])
def test_hops_reach_the_deadline_in_a_few_waits(remaining: float) -> None:
    now = 1000.0
    deadline = now + remaining
    wakes = []
    while now < deadline:
        now = _hop(deadline, now)
        wakes.append(now)
        assert len(wakes) <= 5
    assert wakes[-1] == deadline
    assert len(wakes) >= 2


# --- bursts and the behind latch ---


async def test_a_lone_timer_leaves_no_behind_latch(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[Done | None] = []
    h = Harness(then=lambda *_: seen.append(h.scheduler.behind))
    h.scheduler.arm(at(1000))
    async with h.running():
        await trio.sleep(5)
        assert h.scheduler.behind is None
    assert seen == [None]


async def test_behind_is_released_after_the_whole_burst_fired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    resumed: list[tuple[str, int]] = []
    latches: list[Done | None] = []

    async def woken(owner: str) -> None:
        await settle(h.scheduler)
        resumed.append((owner, h.scheduler.fired))

    async with trio.open_nursery() as nursery:

        def then(due_ms: int, owner: str, timer_id: str) -> None:
            latches.append(h.scheduler.behind)
            nursery.start_soon(woken, owner)

        h = Harness(batch=3, then=then)
        for i in range(10):
            h.scheduler.arm(at(1000, f"e{i}"))
        async with h.running():
            await trio.sleep(5)
            assert h.scheduler.behind is None

    assert len(h.fires) == 10
    assert sorted(owner for owner, _ in resumed) == [f"e{i}" for i in range(10)]
    # Every woken execution resumed only once all ten had fired.
    assert {fired for _, fired in resumed} == {10}
    # The first batch fired before the latch existed; the later ones under one latch.
    assert latches[:3] == [None, None, None]
    behind = latches[3]
    assert isinstance(behind, Done)
    assert all(latch is behind for latch in latches[3:])
    assert behind.is_set()


async def test_no_woken_execution_goes_on_before_the_last_of_its_burst_woke(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The last, partial batch of a burst also waits for one more pass: the executions it
    # woke have run to their settle point before the earlier ones are released. (Task
    # order within a trio tick is random; four bursts make a regression near certain
    # to show.)
    arrived: dict[int, set[str]] = {}
    went_on: list[tuple[int, int]] = []

    async def woken(due_ms: int, owner: str) -> None:
        arrived.setdefault(due_ms, set()).add(owner)
        await settle(h.scheduler)
        went_on.append((due_ms, len(arrived[due_ms])))

    async with trio.open_nursery() as nursery:
        h = Harness(batch=3, then=lambda due, owner, _: nursery.start_soon(woken, due, owner))
        for burst in range(4):
            for i in range(10):
                h.scheduler.arm(at(1000 * (burst + 1), f"e{i}"))
        async with h.running():
            await trio.sleep(10)

    assert len(went_on) == 40
    assert {seen for _, seen in went_on} == {10}


async def test_behind_is_released_when_the_scheduler_stops_mid_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    resumed: list[str] = []
    stop: list[trio.CancelScope] = []
    latches: list[Done] = []

    async def woken(owner: str) -> None:
        await settle(h.scheduler)
        resumed.append(owner)

    async with trio.open_nursery() as nursery:

        def then(due_ms: int, owner: str, timer_id: str) -> None:
            nursery.start_soon(woken, owner)
            if h.scheduler.behind is not None:
                latches.append(h.scheduler.behind)
            if len(h.fires) == 3:
                stop[0].cancel()

        h = Harness(batch=2, then=then)
        for i in range(6):
            h.scheduler.arm(at(1000, f"e{i}"))
        async with h.running() as scope:
            stop.append(scope)
            await trio.sleep(5)
        behind = latches[-1]
        released = behind.is_set()
        behind.set()  # so that a regression fails this test instead of hanging it

    # Stopped after its second batch: the executions woken so far are not left waiting.
    assert released
    assert len(h.fires) == 4
    assert sorted(resumed) == ["e0", "e1", "e2", "e3"]
    assert h.scheduler.behind is None
    assert len(h.scheduler) == 2  # the unfired ones stay armed


async def test_thousands_due_at_once_all_fire_once(autojump_clock: trio.testing.MockClock) -> None:
    first_ran_at: list[int] = []
    resumed: list[int] = []

    async def woken() -> None:
        if not first_ran_at:
            first_ran_at.append(h.scheduler.fired)
        await settle(h.scheduler)
        resumed.append(h.scheduler.fired)

    async with trio.open_nursery() as nursery:
        h = Harness(then=lambda *_: nursery.start_soon(woken))
        for i in range(5000):
            h.scheduler.arm(at(1000, f"e{i}", f"t{i % 3}"))
        for i in range(0, 5000, 7):  # duplicates change nothing
            h.scheduler.arm(at(1000, f"e{i}", f"t{i % 3}"))
        assert len(h.scheduler) == 5000
        async with h.running():
            await trio.sleep(5)

    counts = Counter((due, owner, tid) for _, due, owner, tid in h.fires)
    assert len(counts) == 5000
    assert set(counts.values()) == {1}
    assert h.scheduler.fired == 5000
    assert len(h.scheduler) == 0
    assert all(now == due for now, due, _, _ in h.fires)
    # Fired in bounded batches: woken executions got to run before the burst ended ...
    assert first_ran_at == [1000]
    # ... and all resumed their durable work only once it had.
    assert len(resumed) == 5000
    assert set(resumed) == {5000}


# --- the collector during a burst ---


def test_bursting_counts_the_due_subtree_of_the_heap() -> None:
    import heapq

    heap: list[tuple[int, str, str]] = []
    for i in range(50):
        heapq.heappush(heap, (100 if i % 2 else 200, f"e{i}", "t"))
    assert _bursting(heap, 100, 25)
    assert not _bursting(heap, 100, 26)
    assert _bursting(heap, 200, 50)
    assert not _bursting(heap, 99, 1)
    assert not _bursting(heap[:10], 200, 11)


async def test_a_burst_freezes_the_collector_until_the_release(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frozen_while_fired: list[bool] = []
    h = Harness(batch=3, then=lambda *_: frozen_while_fired.append(gc.get_freeze_count() > 0))
    for i in range(10):
        h.scheduler.arm(at(1000, f"e{i}"))
    h.scheduler.arm(at(5000, "late"))  # one due alone later: no burst, no freeze
    assert gc.get_freeze_count() == 0
    async with h.running():
        await trio.sleep(10)
        assert gc.get_freeze_count() == 0  # thawed once caught up
    assert frozen_while_fired == [True] * 10 + [False]


async def test_with_the_option_off_a_burst_never_touches_the_collector(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frozen: list[bool] = []
    h = Harness(batch=3, then=lambda *_: frozen.append(gc.get_freeze_count() > 0), freeze_gc=False)
    for i in range(10):
        h.scheduler.arm(at(1000, f"e{i}"))
    async with h.running():
        await trio.sleep(5)
    assert frozen == [False] * 10


async def test_a_burst_leaves_objects_the_host_froze_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gc.freeze()
    try:
        h = Harness(batch=3)
        for i in range(10):
            h.scheduler.arm(at(1000, f"e{i}"))
        async with h.running():
            await trio.sleep(5)
        assert len(h.fires) == 10
        assert gc.get_freeze_count() > 0  # not thawed by the scheduler
    finally:
        gc.unfreeze()


async def test_a_scheduler_stopped_mid_burst_thaws_the_collector(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop: list[trio.CancelScope] = []

    def then(due_ms: int, owner: str, timer_id: str) -> None:
        if len(h.fires) == 4:
            stop[0].cancel()

    h = Harness(batch=2, then=then)
    for i in range(6):
        h.scheduler.arm(at(1000, f"e{i}"))
    async with h.running() as scope:
        stop.append(scope)
        await trio.sleep(5)
    assert len(h.fires) == 4
    assert gc.get_freeze_count() == 0
