"""The scheduler actor: one heap of due times for every live timer.

It loads the store's timers index on start (timers survive restarts; an overdue one fires
at once), waits on a trio deadline for the earliest (no polling), and on each due timer
calls the engine's ``on_timer``. It never writes: the woken execution records that its
timer fired, in the same transaction that removes the timer from the index, so a crash
between firing and recording re-fires a timer that the log then ignores, never twice.

Timers due together fire in bounded batches with a checkpoint between, so thousands due
at one instant neither starve the other tasks nor get lost. Disarming is lazy: a removed
timer stays in the heap and is skipped when popped.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Callable

import trio

from durably.stores import NEVER_MS, Store, Timer

from ._clock import Clock
from ._latch import Done

_Key = tuple[int, str, str]


def _bursting(heap: list[_Key], now: int, n: int) -> bool:
    """Whether at least ``n`` timers of ``heap`` are due at ``now``. The due ones form a
    subtree at a heap's root: this walks it until ``n`` are found, so a pass with few due
    timers pays for those few."""
    if len(heap) < n:
        return False
    found, todo = 0, [0]
    while todo:
        i = todo.pop()
        if i < len(heap) and heap[i][0] <= now:
            found += 1
            if found >= n:
                return True
            todo += (2 * i + 1, 2 * i + 2)
    return False


def _hop(deadline: float, now: float) -> float:
    """Where to wake for ``deadline``: a little early when it is far, then again for the
    rest (the loop comes back here while nothing is due).

    Linux lets an epoll wait overrun by 0.1 % of its length (up to 100 ms) to batch
    wake-ups, and trio's sleeps are epoll waits: measured here, a 3 s wait woke 3.4 ms
    late, and a timer due in minutes would fire up to 100 ms late. Waking 0.2 % + 1 ms
    early leaves a short last wait whose overrun is tens of microseconds.
    """
    remaining = deadline - now
    if remaining <= 0.01 or remaining == float("inf"):
        return deadline
    return deadline - remaining * 0.002 - 0.001


class Scheduler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_timer: Callable[[int, str, str], None],
        *,
        batch: int = 1000,
        freeze_gc: bool = True,
    ) -> None:
        self._store = store
        self._freeze_gc = freeze_gc
        self._clock = clock
        #: Called for each due timer; replaceable until ``run`` (the engine hands it the
        #: supervisor's bound method once that exists: no forwarding call per fire).
        self.on_timer = on_timer
        self._batch = batch
        self._heap: list[_Key] = []
        self._armed: set[_Key] = set()
        self._changed = trio.Event()
        #: Set while the scheduler is behind (due timers not yet fired), released once it
        #: has fired them all: woken executions wait on it before their durable work
        #: (``ExecutionActor.settle``), so that timers due together all resume before
        #: any of them finishes. Uncancellable like the commit wait (a trio.Event would
        #: hold a closure per waiter for the length of the burst); the wait always ends,
        #: since the scheduler fires in bounded batches until none is due, and releases
        #: it on the way out too.
        self.behind: Done | None = None
        #: Whether the cyclic collector's objects are frozen for a burst (``_loop``).
        self._frozen = False
        self.fired = 0
        #: Told how late (ms) each timer fired (telemetry); ``None``: not measured.
        self.on_late: Callable[[int], None] | None = None
        #: A worker of many arms only the timers of the shards it holds.
        self.accepts: Callable[[str], bool] | None = None

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, timer: Timer) -> None:
        key = (timer.due_ms, timer.owner, timer.timer_id)
        if key in self._armed or (self.accepts is not None and not self.accepts(timer.owner)):
            return
        self._armed.add(key)
        heapq.heappush(self._heap, key)
        if self._heap[0] == key:
            self._changed.set()

    def disarm(self, timer: Timer) -> None:
        self._armed.discard((timer.due_ms, timer.owner, timer.timer_id))

    def disarm_where(self, owned: Callable[[str], bool]) -> None:
        """Disarm every timer whose owner ``owned`` says (a worker of many lost them)."""
        for key in [key for key in self._armed if owned(key[1])]:
            self._armed.discard(key)  # in place: the loop holds the set

    def load(self) -> int:
        """Arm every timer of the store's index; returns how many."""
        timers = self._store.due_timers(NEVER_MS)
        for timer in timers:
            self.arm(timer)
        return len(timers)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._loop()
        finally:
            if self.behind is not None:  # never leave a woken execution waiting
                self.behind.set()
                self.behind = None
            self._thaw()

    def _freeze(self) -> None:
        """Freeze what the cyclic collector tracks (``gc.freeze``) for a burst of due timers.

        The young generations then still hold the objects of the executions armed before
        the burst (about 90,000 for 10,000 executions armed together), and every woken
        execution adds a few that live until the release; a collection that the burst's
        allocations trigger traverses all of them, and a full one the whole heap: measured
        on the timers benchmark, about 30 % of the burst, and 150-300 ms more when a full
        collection lands in it. Frozen again before each batch, the collector sees only
        what the last tick made. Objects that become cyclic garbage meanwhile are collected
        after the thaw. Left alone if the collector is off, or if the host froze objects
        itself (the thaw would release them too).
        """
        if self._frozen:
            gc.freeze()
        elif gc.isenabled() and not gc.get_freeze_count():
            gc.freeze()
            self._frozen = True

    def _thaw(self) -> None:
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    async def _loop(self) -> None:
        heap = self._heap
        armed = self._armed
        on_timer = self.on_timer
        on_late = self.on_late
        while True:
            now = self._clock.now_ms()
            if self._frozen or (
                self._freeze_gc and self.behind is None and _bursting(heap, now, self._batch)
            ):
                self._freeze()
            fired = 0
            while heap and heap[0][0] <= now and fired < self._batch:
                key = heapq.heappop(heap)
                if key not in armed:
                    continue
                armed.discard(key)
                fired += 1
                on_timer(*key)
                if on_late is not None:
                    on_late(now - key[0])
            self.fired += fired
            if fired >= self._batch or (fired and self.behind is not None):
                # Behind (or just caught up): the executions woken so far resume in the
                # next tick; their durable work waits for the pass that fires nothing.
                if self.behind is None:
                    self.behind = Done()
                await trio.lowlevel.checkpoint()
                continue
            if self.behind is not None:
                self.behind.set()
                self.behind = None
            self._thaw()
            self._changed = trio.Event()
            deadline = self._clock.deadline(heap[0][0]) if heap else float("inf")
            with trio.move_on_at(_hop(deadline, trio.current_time())):
                await self._changed.wait()
