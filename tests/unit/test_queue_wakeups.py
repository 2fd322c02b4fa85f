"""``Admission.next_ms`` read later than the ``take`` before it.

The queue manager takes at the instant its pass began, then asks for its next deadline
after the pass's commit (and even without one, a loaded process can be descheduled in
between); ``engine.queue_stats`` may promote due items meanwhile. So ``next_ms`` is asked
at an instant at which ``take`` has not been asked, and must say so when ``take`` would
admit there: an answer of ``None`` then leaves the queue waiting for an event that, once
nothing runs and nothing is offered, never comes (the stall of the SIGKILL queue test,
tests/faults/test_queue_crash.py).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import rule

from durably.core._queue import Admission, Queue

from .test_admission import AdmissionModel, ids


def test_a_rate_window_that_opened_since_the_take_is_due_at_once() -> None:
    admission = Admission(Queue("q", concurrency=5, rate_limit=(2, 1.0)))
    for name in "a b c".split():
        admission.offer(name, 0, None, 0)
    assert ids(admission.take(0)) == ["a", "b"]
    admission.ended("a")
    admission.ended("b")
    assert admission.take(999) == []  # the window is full until 1000
    assert admission.next_ms(999) == 1000
    # The deadline is computed a millisecond later than that take (the stalled worker's
    # case): the window opened meanwhile, so "c" may be admitted now, and next_ms says so.
    due = admission.next_ms(1000)
    assert due is not None and due <= 1000
    assert ids(admission.take(1000)) == ["c"]
    assert admission.next_ms(1000) is None


def test_an_item_promoted_by_stats_since_the_take_is_due_at_once() -> None:
    admission = Admission(Queue("q"))
    admission.offer("later", 0, None, 500)
    assert admission.take(0) == []
    assert admission.next_ms(0) == 500
    admission.stats(600)  # engine.queue_stats, during the pass's commit
    due = admission.next_ms(600)
    assert due is not None and due <= 600
    assert ids(admission.take(600)) == ["later"]


def test_nothing_admissible_later_is_not_due() -> None:
    """Not a busy loop: with the queue full, or its window full, nothing is due now."""
    admission = Admission(Queue("q", concurrency=1, rate_limit=(1, 1.0)))
    for name in "a b".split():
        admission.offer(name, 0, None, 0)
    assert ids(admission.take(0)) == ["a"]
    assert admission.next_ms(500) is None  # full: only an end frees a place
    admission.ended("a")
    assert admission.next_ms(500) == 1000  # the window still holds "b" back


class LaterLookModel(AdmissionModel):
    """The model of test_admission.py, with one more rule: time passes and ``next_ms``
    is asked before any ``take`` (perhaps after ``stats``), as the manager does after
    its pass's commit."""

    @rule(advance=st.sampled_from([1, 2, 5, 13]), stats=st.booleans())
    def look_later(self, advance: int, stats: bool) -> None:
        self.now += advance
        if stats:
            self.admission.stats(self.now)
        due = self.admission.next_ms(self.now)
        # Waking too early costs one pass (a take then says what is due, after now, as
        # the model's own check holds); waking too late, or never, loses admissions.
        if self._admissible(self.now):
            assert due is not None and due <= self.now, (due, self.now)


TestLaterLookModel = LaterLookModel.TestCase
