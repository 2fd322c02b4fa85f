"""The admission policy of a queue (``durably.core._queue.Admission``), without trio.

Each limit on its own first (concurrency, partitions, the rate window, priority, arrival
order, delays, turns between partitions), then the calls the manager makes around a
commit (``refused``, offers again, ``admitted_before``, ``remember``, ``expired``), and a
state machine that drives random sequences of them against a reference model.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from durably.core._errors import ConfigurationError
from durably.core._queue import STATS_WINDOW_MS, Admission, Item, Queue


def ids(items: list[Item]) -> list[str]:
    return [item.execution_id for item in items]


def fill(admission: Admission, names: str, *, at: int = 0, partition: str | None = None) -> None:
    for name in names.split():
        admission.offer(name, 0, partition, at)


# --- one limit at a time ---


def test_concurrency_admits_up_to_its_limit_and_the_next_when_one_ends() -> None:
    admission = Admission(Queue("q", concurrency=2))
    fill(admission, "a b c d")
    assert ids(admission.take(0)) == ["a", "b"]
    assert admission.take(0) == []  # full: only an end frees a place
    assert admission.next_ms(0) is None
    admission.ended("b")
    assert ids(admission.take(5)) == ["c"]
    assert sorted(admission.running) == ["a", "c"]


def test_partition_concurrency_bounds_each_key_and_not_the_keyless() -> None:
    admission = Admission(Queue("q", partition_concurrency=1))
    fill(admission, "a1 a2", partition="a")
    fill(admission, "b1 b2", partition="b")
    fill(admission, "n1 n2")  # no partition key: no partition limit
    assert sorted(ids(admission.take(0))) == ["a1", "b1", "n1", "n2"]
    assert admission.take(0) == []
    admission.ended("a1")
    assert ids(admission.take(0)) == ["a2"]
    admission.ended("b2")  # not running yet: it leaves the queue, b1 still runs
    admission.ended("a2")
    assert admission.take(0) == [] and admission.queued == 0


def test_the_rate_window_is_half_open() -> None:
    admission = Admission(Queue("q", rate_limit=(2, 1.0)))
    fill(admission, "a b c d e")
    assert ids(admission.take(0)) == ["a", "b"]
    assert admission.take(999) == []
    assert admission.next_ms(999) == 1000  # the admissions at 0 stop counting at 1000
    assert ids(admission.take(1000)) == ["c", "d"]
    assert admission.take(1999) == []
    assert ids(admission.take(2000)) == ["e"]


def test_the_rate_window_slides_with_each_admission() -> None:
    admission = Admission(Queue("q", rate_limit=(2, 1.0)))
    admission.offer("a", 0, None, 0)
    assert ids(admission.take(0)) == ["a"]
    fill(admission, "b c d", at=500)
    assert ids(admission.take(500)) == ["b"]
    assert admission.next_ms(500) == 1000
    assert ids(admission.take(1000)) == ["c"]  # the one at 0 left; the one at 500 still counts
    assert admission.next_ms(1000) == 1500
    assert ids(admission.take(1500)) == ["d"]


def test_a_fractional_rate_period_rounds_up_to_whole_milliseconds() -> None:
    admission = Admission(Queue("q", rate_limit=(1, 0.0105)))
    fill(admission, "a b")
    assert ids(admission.take(0)) == ["a"]
    assert admission.take(10) == []
    assert admission.next_ms(10) == 11
    assert ids(admission.take(11)) == ["b"]


def test_a_rate_limit_and_a_concurrency_limit_hold_together() -> None:
    admission = Admission(Queue("q", concurrency=1, rate_limit=(5, 1.0)))
    fill(admission, "a b")
    assert ids(admission.take(0)) == ["a"]
    assert admission.next_ms(0) is None  # full: no window to wait for
    admission.ended("a")
    assert ids(admission.take(0)) == ["b"]


# --- order ---


def test_priority_admits_lower_numbers_first_then_arrival() -> None:
    admission = Admission(Queue("q", concurrency=1, priority=True))
    for name, priority in [("p3", 3), ("p1a", 1), ("p2", 2), ("p1b", 1), ("p0", 0), ("m", -5)]:
        admission.offer(name, priority, None, 0)
    order = []
    while taken := admission.take(0):
        order += ids(taken)
        admission.ended(taken[0].execution_id)
    assert order == ["m", "p0", "p1a", "p1b", "p2", "p3"]


def test_without_priority_the_queue_keeps_arrival_order() -> None:
    admission = Admission(Queue("q"))
    for name, priority in [("a", 9), ("b", 1), ("c", 5)]:
        admission.offer(name, priority, None, 0)
    assert ids(admission.take(0)) == ["a", "b", "c"]


def test_arrival_order_within_a_priority_counts_from_the_offer_not_the_due_time() -> None:
    admission = Admission(Queue("q"))
    admission.offer("early-but-delayed", 0, None, 50)
    admission.offer("later", 0, None, 0)
    assert ids(admission.take(0)) == ["later"]  # the delayed one is not ready yet
    admission.offer("last", 0, None, 0)
    assert ids(admission.take(50)) == ["early-but-delayed", "last"]


def test_priority_counts_across_partitions_when_a_better_one_arrives_later() -> None:
    # A partition's turn is ordered by its head's priority: a better head arriving in a
    # partition already among the turns moves its turn forward.
    admission = Admission(Queue("q", concurrency=1, priority=True))
    admission.offer("a-low", 5, "a", 0)
    admission.offer("b-mid", 3, "b", 0)
    assert ids(admission.take(0)) == ["b-mid"]
    admission.ended("b-mid")
    admission.offer("a-urgent", 0, "a", 0)
    admission.offer("b-mid2", 3, "b", 0)
    assert ids(admission.take(1)) == ["a-urgent"]


def test_priority_counts_across_partitions_when_a_head_leaves() -> None:
    # The head of "a" (priority 0) is cancelled once lined up: "a" must not keep a turn
    # at priority 0, ahead of "b" at 4, for its next one at priority 9.
    admission = Admission(Queue("q", concurrency=1, priority=True))
    admission.offer("x", 0, None, 0)
    assert ids(admission.take(0)) == ["x"]
    admission.offer("a-first", 0, "a", 0)
    admission.offer("a-later", 9, "a", 0)
    admission.offer("b", 4, "b", 0)
    assert admission.take(1) == []  # full, but all three are lined up now
    admission.ended("a-first")
    admission.ended("x")
    assert ids(admission.take(2)) == ["b"]


# --- turns between partitions ---


def test_a_small_partition_is_not_starved_by_a_big_one_one_at_a_time() -> None:
    admission = Admission(Queue("q", concurrency=1))
    for i in range(10_000):
        admission.offer(f"big{i}", 0, "big", 0)
    for i in range(10):
        admission.offer(f"small{i}", 0, "small", 0)
    order = []
    for _ in range(20):
        (item,) = admission.take(0)
        order.append(item.execution_id)
        admission.ended(item.execution_id)
    assert sorted(x for x in order if x.startswith("small")) == [f"small{i}" for i in range(10)]
    assert order[:4] == ["big0", "small0", "big1", "small1"]  # turns alternate


def test_a_small_partition_is_not_starved_within_one_take() -> None:
    admission = Admission(Queue("q"))
    for i in range(10_000):
        admission.offer(f"big{i}", 0, "big", 0)
    for i in range(10):
        admission.offer(f"small{i}", 0, "small", 0)
    taken = ids(admission.take(0))
    assert len(taken) == 10_010
    assert {f"small{i}" for i in range(10)} <= set(taken[:20])


def test_partition_concurrency_admits_the_small_partition_in_the_first_pass() -> None:
    admission = Admission(Queue("q", partition_concurrency=3))
    for i in range(10_000):
        admission.offer(f"big{i}", 0, "big", 0)
    for i in range(10):
        admission.offer(f"small{i}", 0, "small", 0)
    assert Counter(x[:3] for x in ids(admission.take(0))) == {"big": 3, "sma": 3}


def test_a_partition_that_was_full_takes_its_turn_again_when_one_ends() -> None:
    admission = Admission(Queue("q", concurrency=2, partition_concurrency=1))
    fill(admission, "a1 a2", partition="a")
    fill(admission, "b1 b2", partition="b")
    assert ids(admission.take(0)) == ["a1", "b1"]
    admission.ended("a1")
    assert ids(admission.take(0)) == ["a2"]


# --- delays and next_ms ---


def test_a_delayed_item_waits_for_its_time_and_says_when() -> None:
    admission = Admission(Queue("q"))
    admission.offer("later", 0, None, 500)
    assert admission.take(0) == []
    assert admission.next_ms(0) == 500
    assert admission.stats(0).delayed == 1
    assert admission.take(499) == []
    assert ids(admission.take(500)) == ["later"]
    assert admission.next_ms(500) is None


def test_next_ms_is_none_with_nothing_queued_or_no_place() -> None:
    admission = Admission(Queue("q", concurrency=1, rate_limit=(1, 10.0)))
    assert admission.next_ms(0) is None
    fill(admission, "a b")
    admission.take(0)
    assert admission.next_ms(0) is None  # the window is full, but so is the queue
    admission.ended("a")
    assert admission.next_ms(0) == 10_000  # now only the window holds "b" back


def test_next_ms_wakes_for_a_delay_even_while_the_window_is_full() -> None:
    admission = Admission(Queue("q", rate_limit=(1, 10.0)))
    admission.offer("a", 0, None, 0)
    admission.take(0)
    admission.offer("b", 0, None, 3000)
    assert admission.next_ms(0) == 3000
    assert admission.take(3000) == []
    assert admission.next_ms(3000) == 10_000


# --- offers again (debounce), refusals, recovery ---


def test_an_offer_again_moves_the_due_time_and_keeps_the_place() -> None:
    admission = Admission(Queue("q"))
    admission.offer("x", 0, None, 100)
    admission.offer("y", 0, None, 300)
    admission.offer("x", 0, None, 300)  # debounced: later
    assert admission.take(100) == []
    assert admission.next_ms(100) == 300  # the stale due time at 100 is gone
    assert ids(admission.take(300)) == ["x", "y"]


def test_an_offer_again_can_bring_the_due_time_forward() -> None:
    admission = Admission(Queue("q"))
    admission.offer("x", 0, None, 1000)
    admission.offer("x", 0, None, 10)
    assert ids(admission.take(10)) == ["x"]
    assert admission.take(1000) == []  # the older due time admits nothing twice


def test_an_identical_offer_and_an_offer_of_a_running_execution_change_nothing() -> None:
    admission = Admission(Queue("q", concurrency=5))
    fill(admission, "a b")
    admission.offer("a", 0, None, 0)
    assert admission.queued == 2
    assert ids(admission.take(0)) == ["a", "b"]
    admission.offer("a", 0, None, 0)  # a late hint for an admitted execution
    assert admission.queued == 0 and admission.take(0) == []


def test_refused_gives_the_reservation_back() -> None:
    admission = Admission(Queue("q", concurrency=1, rate_limit=(1, 60.0)))
    fill(admission, "a b")
    (item,) = admission.take(0)
    admission.refused(item)  # the store found it no longer queued (cancelled)
    assert admission.running == {} and "a" not in admission
    assert admission.log == type(admission.log)()
    assert ids(admission.take(0)) == ["b"]  # neither the place nor the window slot is lost


def test_a_reservation_given_back_and_offered_again_keeps_its_place() -> None:
    # The manager's path when the commit fails: refused, then offered again.
    admission = Admission(Queue("q", concurrency=1))
    fill(admission, "a b c")
    (item,) = admission.take(0)
    admission.refused(item)
    admission.offer(item.execution_id, item.priority, item.partition, item.ready_ms)
    assert ids(admission.take(1)) == ["a"]


def test_a_refusal_that_moved_the_due_time_waits_for_it() -> None:
    # The manager's path when the store says a debounce moved it: refused, then offered
    # at its new time.
    admission = Admission(Queue("q"))
    admission.offer("d", 0, None, 100)
    (item,) = admission.take(100)
    admission.refused(item)
    admission.offer("d", 0, None, 400)
    assert admission.take(399) == []
    assert admission.next_ms(399) == 400
    assert ids(admission.take(400)) == ["d"]


def test_admitted_before_counts_against_the_limits_until_it_ends() -> None:
    admission = Admission(Queue("q", concurrency=2, partition_concurrency=1))
    admission.offer("p", 0, "k", 0)
    admission.admitted_before("p", "k")  # found running at recovery
    admission.admitted_before("p", "k")  # told twice: counted once
    admission.admitted_before("r", None)
    assert admission.queued == 0 and len(admission.running) == 2
    fill(admission, "k2", partition="k")
    fill(admission, "n")
    assert admission.take(0) == []
    admission.ended("r")
    assert ids(admission.take(0)) == ["n"]  # k2's partition is still full
    admission.ended("p")
    admission.ended("n")
    assert ids(admission.take(0)) == ["k2"]


def test_more_admitted_before_than_the_limit_admits_nothing_until_below_it() -> None:
    admission = Admission(Queue("q", concurrency=1))
    admission.admitted_before("x", None)
    admission.admitted_before("y", None)  # the declaration was lowered since
    fill(admission, "z")
    admission.ended("x")
    assert admission.take(0) == []
    admission.ended("y")
    assert ids(admission.take(0)) == ["z"]


def test_remembered_admissions_fill_the_rate_window() -> None:
    admission = Admission(Queue("q", rate_limit=(2, 1.0)))
    admission.remember(400, "old1")
    admission.remember(900, "old2")
    fill(admission, "a b", at=900)
    assert admission.take(1000) == []
    assert admission.next_ms(1000) == 1400
    assert ids(admission.take(1400)) == ["a"]
    assert ids(admission.take(1900)) == ["b"]


def test_expired_returns_what_no_window_needs_oldest_first() -> None:
    short = Admission(Queue("q", rate_limit=(100, 1.0)))
    fill(short, "a b")
    short.take(0)
    short.offer("c", 0, None, 10)
    short.take(10)
    assert short.expired(STATS_WINDOW_MS - 1) == []  # the stats minute still needs them
    assert short.expired(STATS_WINDOW_MS) == [(0, "a"), (0, "b")]
    assert short.expired(STATS_WINDOW_MS + 10) == [(10, "c")]
    long = Admission(Queue("q", rate_limit=(1, 120.0)))
    fill(long, "a")
    long.take(0)
    assert long.expired(119_999) == []  # the rate window is longer than the minute
    assert long.expired(120_000) == [(0, "a")]


def test_the_window_is_not_kept_without_a_rate_limit() -> None:
    # Every admission of an unlimited queue used to stay in the window forever.
    admission = Admission(Queue("q"))
    for i in range(1000):
        admission.offer(f"e{i}", 0, None, 0)
    admission.take(0)
    assert len(admission._window) == 0
    assert admission.expired(STATS_WINDOW_MS) and not admission.log


def test_stats_count_what_the_queue_holds() -> None:
    admission = Admission(Queue("q", concurrency=1))
    admission.offer("run", 0, None, 0)
    admission.take(1000)
    admission.offer("wait", 0, None, 1000)
    admission.offer("older", 0, None, 500)
    admission.offer("delayed", 0, None, 9000)
    stats = admission.stats(4000)
    assert (stats.name, stats.queued, stats.delayed, stats.running) == ("q", 3, 1, 1)
    assert stats.oldest_wait_s == 3.5
    assert stats.admitted_per_second == 1 / 60
    assert admission.stats(1000 + STATS_WINDOW_MS).admitted_per_second == 0


def test_contains_names_queued_and_running_executions() -> None:
    admission = Admission(Queue("q", concurrency=1))
    fill(admission, "a b")
    admission.take(0)
    assert "a" in admission and "b" in admission and "c" not in admission
    admission.ended("a")
    assert "a" not in admission


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"partition_concurrency": -1},
        {"rate_limit": (0, 1.0)},
        {"rate_limit": (1, 0)},
        {"rate_limit": (1, float("inf"))},
        {"rate_limit": [1, 1.0]},
        {"priority": 1},
    ],
)
def test_a_bad_declaration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Queue("q", **kwargs)


def test_a_declaration_survives_the_store() -> None:
    queue = Queue("q", concurrency=3, rate_limit=(5, 0.5), partition_concurrency=2, priority=True)
    assert Queue.from_data("q", queue.to_data()) == queue


# --- the model ---

NAMES = (f"e{i:06}" for i in itertools.count())
#: Rate periods the model draws: (seconds declared, whole milliseconds they round up to).
PERIODS = [(0.001, 1), (0.005, 5), (0.0125, 13)]


class AdmissionModel(RuleBasedStateMachine):
    """Random offers, takes as time passes, ends, refusals and restarts, against a model:
    a dict of queued items and one of running ones, with every admission's time."""

    @initialize(
        concurrency=st.none() | st.integers(1, 4),
        partition_concurrency=st.none() | st.integers(1, 3),
        rate=st.none() | st.tuples(st.integers(1, 3), st.sampled_from(PERIODS)),
        priority=st.booleans(),
    )
    def declare(
        self,
        concurrency: int | None,
        partition_concurrency: int | None,
        rate: tuple[int, tuple[float, int]] | None,
        priority: bool,
    ) -> None:
        self.queue = Queue(
            "q",
            concurrency=concurrency,
            partition_concurrency=partition_concurrency,
            rate_limit=None if rate is None else (rate[0], rate[1][0]),
            priority=priority,
        )
        self.period = 0 if rate is None else rate[1][1]
        self.admission = Admission(self.queue)
        self.now = 0
        self.arrivals = itertools.count()
        #: eid -> (priority, partition, ready_ms, arrival)
        self.queued: dict[str, tuple[int, str | None, int, int]] = {}
        self.arrival: dict[str, int] = {}
        self.running: dict[str, str | None] = {}
        self.admissions: list[tuple[int, str]] = []
        self.forgotten: set[tuple[int, str]] = set()
        self.ever: set[str] = set()
        #: What the last take reserved and nothing has ended since: what may be refused.
        self.taken: dict[str, Item] = {}

    # --- what the queue is told ---

    @rule(
        priority=st.integers(-2, 2),
        partition=st.sampled_from([None, "a", "b", "c"]),
        delay=st.sampled_from([0, 0, 0, 1, 3, 10]),
    )
    def offer(self, priority: int, partition: str | None, delay: int) -> None:
        eid = next(NAMES)
        self.arrival[eid] = next(self.arrivals)
        self._offer(eid, priority, partition, self.now + delay)

    def _offer(self, eid: str, priority: int, partition: str | None, ready: int) -> None:
        priority = priority if self.queue.priority else 0
        self.admission.offer(eid, priority, partition, ready)
        self.queued[eid] = (priority, partition, ready, self.arrival[eid])

    @precondition(lambda self: self.queued)
    @rule(data=st.data(), delay=st.integers(0, 10), priority=st.integers(-2, 2))
    def offer_again(self, data: st.DataObject, delay: int, priority: int) -> None:
        """A debounce moves the due time (and, said again, perhaps its priority)."""
        eid = data.draw(st.sampled_from(sorted(self.queued)))
        self._offer(eid, priority, self.queued[eid][1], self.now + delay)

    @rule(advance=st.sampled_from([0, 0, 1, 2, 5, 13, 60_000]))
    def take(self, advance: int) -> None:
        self.now += advance
        self.taken = {}
        for item in self.admission.take(self.now):
            self._admitted(item)
        self._check_nothing_more_fits()
        self._check_next_ms()

    def _admitted(self, item: Item) -> None:
        """Checked one by one in the order ``take`` chose them."""
        eid = item.execution_id
        assert eid in self.queued, f"{eid} admitted but not queued"
        assert eid not in self.ever, f"{eid} admitted twice"
        priority, partition, ready, _ = self.queued[eid]
        assert (item.priority, item.partition, item.ready_ms) == (priority, partition, ready)
        assert ready <= self.now, f"{eid} admitted at {self.now}, due at {ready}"
        line = [
            (p, a, other)
            for other, (p, part, r, a) in self.queued.items()
            if part == partition and r <= self.now
        ]
        assert min(line)[2] == eid, f"{eid} admitted before {min(line)[2]} of its partition"
        better = [
            other
            for other, (p, part, r, _) in self.queued.items()
            if p < priority and r <= self.now and self._has_room(part)
        ]
        assert not better, f"{eid} (priority {priority}) admitted before {better}"
        del self.queued[eid]
        self.running[eid] = partition
        self.ever.add(eid)
        self.admissions.append((self.now, eid))
        self.taken[eid] = item
        self._check_limits()

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        self._end(data.draw(st.sampled_from(sorted(self.running))))

    def _end(self, eid: str) -> None:
        self.admission.ended(eid)
        del self.running[eid]
        self.taken = {}

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        eid = data.draw(st.sampled_from(sorted(self.queued)))
        self.admission.ended(eid)
        del self.queued[eid]

    @precondition(lambda self: self.taken)
    @rule(data=st.data(), again=st.booleans())
    def refused(self, data: st.DataObject, again: bool) -> None:
        """The commit after the take did not admit one: it left the queue, or (``again``)
        the commit failed and it is offered again at once, as the manager does."""
        eid = data.draw(st.sampled_from(sorted(self.taken)))
        item = self.taken.pop(eid)
        self.admission.refused(item)
        del self.running[eid]
        self.ever.discard(eid)
        self.admissions.remove((item.taken_ms, eid))
        if again:
            self._offer(eid, item.priority, item.partition, item.ready_ms)

    @rule(partition=st.sampled_from([None, "a", "b"]), queued=st.booleans(), data=st.data())
    def admitted_before(self, partition: str | None, queued: bool, data: st.DataObject) -> None:
        """An execution found admitted (an operator's retry ran it, or a queued one was
        found running): it takes a place, so only when one is free (recovery's case of
        more than the limit is the unit tests')."""
        if not self._room():
            return
        fits = sorted(e for e, v in self.queued.items() if self._has_room(v[1]))
        if queued and fits:
            eid = data.draw(st.sampled_from(fits))
            partition = self.queued.pop(eid)[1]
        elif self._has_room(partition):
            eid = next(NAMES)
        else:
            return
        self.admission.admitted_before(eid, partition)
        self.running[eid] = partition
        self.ever.add(eid)
        self.taken = {}

    @rule()
    def restart(self) -> None:
        """A new worker: the store's queued records offered in creation order, the
        admitted ones counted, the admissions it keeps remembered."""
        self.admission = Admission(self.queue)
        for eid in sorted(self.queued, key=lambda e: self.queued[e][3]):
            priority, partition, ready, _ = self.queued[eid]
            self.admission.offer(eid, priority, partition, ready)
        for eid, partition in self.running.items():
            self.admission.admitted_before(eid, partition)
        if self.queue.rate_limit is not None:
            for at, eid in sorted(set(self.admissions) - self.forgotten):
                self.admission.remember(at, eid)
        self.taken = {}

    @rule()
    def expire(self) -> None:
        keep = max(self.period, STATS_WINDOW_MS)
        gone = self.admission.expired(self.now)
        # Oldest first; within one millisecond, in the order they were admitted.
        assert [at for at, _ in gone] == sorted(at for at, _ in gone)
        for at, eid in gone:
            assert at <= self.now - keep and (at, eid) in self.admissions
        self.forgotten |= set(gone)

    # --- the checks ---

    def _room(self) -> bool:
        limit = self.queue.concurrency
        return limit is None or len(self.running) < limit

    def _has_room(self, partition: str | None) -> bool:
        limit = self.queue.partition_concurrency
        count = sum(1 for p in self.running.values() if p == partition)
        return partition is None or limit is None or count < limit

    def _in_window(self, at: int) -> int:
        return sum(1 for t, _ in self.admissions if at - self.period < t <= at)

    def _check_limits(self) -> None:
        if self.queue.concurrency is not None:
            assert len(self.running) <= self.queue.concurrency
        if self.queue.partition_concurrency is not None:
            per = Counter(p for p in self.running.values() if p is not None)
            assert max(per.values(), default=0) <= self.queue.partition_concurrency
        if self.queue.rate_limit is not None:
            assert self._in_window(self.now) <= self.queue.rate_limit[0]

    def _admissible(self, at: int) -> bool:
        """Whether something the model holds could be admitted at ``at``."""
        if not self._room():
            return False
        rate = self.queue.rate_limit
        if rate is not None and self._in_window(at) >= rate[0]:
            return False
        return any(r <= at and self._has_room(p) for _, p, r, _ in self.queued.values())

    def _check_nothing_more_fits(self) -> None:
        assert not self._admissible(self.now), "take left out what fits"

    def _check_next_ms(self) -> None:
        """``next_ms`` is after now, and not after the first instant something fits by
        time passing alone (with no end and no offer meanwhile)."""
        woken = self.admission.next_ms(self.now)
        times = sorted(
            {r for _, _, r, _ in self.queued.values() if r > self.now}
            | {t + self.period for t, _ in self.admissions if t + self.period > self.now}
        )
        first = next((t for t in times if self._admissible(t)), None)
        if woken is not None:
            assert woken > self.now
        if first is not None:
            assert woken is not None and woken <= first, (woken, first)

    @invariant()
    def stats_agree(self) -> None:
        stats = self.admission.stats(self.now)
        assert stats.queued == len(self.queued) == self.admission.queued
        assert stats.running == len(self.running)
        assert stats.delayed == sum(1 for _, _, r, _ in self.queued.values() if r > self.now)
        assert all(eid in self.admission for eid in [*self.queued, *self.running])

    def teardown(self) -> None:
        """Nothing is lost: once every execution ends and time passes, each one queued is
        admitted, once, in the order and within the limits checked all along."""
        if not hasattr(self, "admission"):
            return
        for _ in range(10 * len(self.queued) + 10):
            for eid in sorted(self.running):
                self._end(eid)
            if not self.queued:
                break
            woken = self.admission.next_ms(self.now)
            if woken is not None:
                self.now = max(self.now, woken)
            for item in self.admission.take(self.now):
                self._admitted(item)
        assert not self.queued, f"never admitted: {sorted(self.queued)}"


TestAdmissionModel = AdmissionModel.TestCase
