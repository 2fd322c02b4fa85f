"""The engine's one clock: wall-clock epoch milliseconds that advance with trio's clock.

Durable times (wake-at, timeouts, schedule fires) are epoch milliseconds in the log.
Waiting is done with trio deadlines. Anchoring the wall clock once and advancing it by
trio's clock ties the two together, so under ``trio.testing.MockClock`` sleeps, timeouts
and schedules all move in virtual time, and within one process time never goes backwards
(a wall clock that jumps back makes timers fire late, never twice).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import trio

#: Deadlines are set this much after the instant the clock turns to their due time
#: (``Clock.instant``, exact): a margin only, since that instant is already the first
#: trio time at which ``now_ms`` reads the due time.
_SLACK_S = 0.0001

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class Clock:
    """Epoch milliseconds = ``start`` + trio time elapsed since first use.

    One clock may be shared by engines started one after another in one ``trio.run``
    (tests that restart an engine in virtual time pass the same clock to each).
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise ValueError("Clock(start=...) needs an aware datetime")
        # Exact integers, not ``timestamp() * 1000``: that float reads about one
        # millisecond in a hundred a hair low, and truncated it started a clock early.
        self._start_ns = None if start is None else (start - _EPOCH) // _US * 1000
        if self._start_ns is not None and self._start_ns < 0:
            raise ValueError("Clock(start=...) must be in 1970 or later")
        self._wall0 = 0
        self._trio0: float | None = None

    def bind(self) -> None:
        """Anchor to the running trio clock (called by the engine on start).

        The start's sub-millisecond part is dropped (floored, exactly): the clock reads
        at most a millisecond behind the wall clock, never ahead, so a due time computed
        outside the engine from the wall clock is not reached early; and its
        milliseconds count from the instant it binds, so a wait started then lasts its
        full length in trio time too.
        """
        if self._trio0 is None:
            self._trio0 = trio.current_time()
            ns = self._start_ns if self._start_ns is not None else time.time_ns()
            self._wall0 = ns // 1_000_000

    def now_ms(self) -> int:
        """The engine's time now, in epoch milliseconds."""
        trio0 = self._trio0
        if trio0 is None:
            raise RuntimeError("the clock is used before the engine started")
        return self._wall0 + math.floor((trio.current_time() - trio0) * 1000)

    def deadline(self, due_ms: int) -> float:
        """The trio time at which ``due_ms`` has been reached: just after the instant
        the clock turns to it (``_SLACK_S``), never before."""
        return self.instant(due_ms) + _SLACK_S

    def instant(self, due_ms: int) -> float:
        """The first trio time at which ``now_ms`` reads ``due_ms`` (or later).

        ``trio0 + elapsed / 1000`` lands an ulp or so either side of it, and ``now_ms``
        (itself rounded) may turn a hair before or after the exact sum: so the estimate
        is stepped, one float at a time, to the first float at which ``now_ms``'s own
        arithmetic reads the due time. A wait that ends at its deadline then always
        finds it reached, and any trio time that reads it is at or after this instant.
        """
        trio0 = self._trio0
        assert trio0 is not None
        elapsed = due_ms - self._wall0
        at = trio0 + elapsed / 1000
        while math.floor((at - trio0) * 1000) < elapsed:  # short: move up
            at = math.nextafter(at, math.inf)
        while math.floor(((below := math.nextafter(at, -math.inf)) - trio0) * 1000) >= elapsed:
            at = below  # not the first that reads it: move down
        return at
