"""How the timers index must agree with the records it serves.

A timer key carries no checksum (its bytes are its order), so a flipped bit in one reads
back as another, plausible timer. The record is checksummed and says what the index must
hold: the engine's recovery (which reads every waiting record anyway) and ``durably
check`` compare the two with these functions.

- A waiting execution's pending timer (``record.timer``: a sleep, a signal's timeout, a
  retry's backoff) must be in the index exactly; if it is not, the index entry was
  damaged, and the execution is quarantined (its log is intact: an operator's retry
  resumes it).
- A workflow timeout's due time is not in the record (it is derived from the log), but it
  lies between the execution's creation and its last record change, each plus the
  timeout; without an entry in that window (widened by :data:`CLOCK_SLACK_MS` for a wall
  clock set back across a restart), recovery arms one at the latest the deadline can be,
  so a damaged entry makes the timeout late by that window at most, never by years.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._history import TIMEOUT_TIMER, due_after
from ._records import ExecutionRecord, Timer

#: How far a due time may stray from the record's own times before it is doubted.
CLOCK_SLACK_MS = 3_600_000

_NONE: tuple[Timer, ...] = ()


class TimerIndex:
    """The timers index as loaded, by owner (most owners have one timer, some two)."""

    __slots__ = ("_first", "_more")

    def __init__(self, timers: Iterable[Timer]) -> None:
        self._first: dict[str, Timer] = {}
        self._more: dict[str, list[Timer]] = {}
        first = self._first
        for timer in timers:
            if first.setdefault(timer.owner, timer) is not timer:
                self._more.setdefault(timer.owner, []).append(timer)

    def of(self, owner: str) -> Sequence[Timer]:
        one = self._first.get(owner)
        if one is None:
            return _NONE
        return (one, *self._more.get(owner, _NONE))

    def has(self, owner: str, due_ms: int, timer_id: str) -> bool:
        return any(t.due_ms == due_ms and t.timer_id == timer_id for t in self.of(owner))


def missing_wait_timer(record: ExecutionRecord, index: TimerIndex) -> str | None:
    """Why the record's pending timer is not in the index as it says, or ``None``."""
    if record.timer is None:
        return None
    due, timer_id = record.timer
    if index.has(record.id, due, timer_id):
        return None
    found = [f"{t.timer_id!r} due at {t.due_ms}" for t in index.of(record.id)] or ["none"]
    return (
        f"its timer {timer_id!r} due at {due} is not in the store's timers index (found "
        f"{', '.join(found)}): a timer key is damaged"
    )


def timeout_window(record: ExecutionRecord, timeout_s: float) -> tuple[int, int]:
    """The earliest and latest due time the workflow timeout's timer can have.

    The current attempt began at the execution's creation or at an operator's retry,
    which rewrote the record: after ``created_ms``, no later than ``updated_ms``.
    """
    return (
        due_after(record.created_ms, timeout_s) - CLOCK_SLACK_MS,
        due_after(record.updated_ms, timeout_s) + CLOCK_SLACK_MS,
    )


def timeout_in_window(record: ExecutionRecord, index: TimerIndex, timeout_s: float) -> bool:
    earliest, latest = timeout_window(record, timeout_s)
    return any(
        t.timer_id == TIMEOUT_TIMER and earliest <= t.due_ms <= latest for t in index.of(record.id)
    )
