"""Solo turns: how the crash-loop guard tells which execution killed the process.

Rules of this module:

- A *suspect* (an execution counted at a restart and not cleared by progress since) runs
  alone among suspects: one turn at a time, from before its count is bumped until it
  makes progress (its first commit), reaches a wait, or ends. A death during a turn is
  then counted against that suspect only (executions with a clear count run beside it,
  and a death counts once against them too; that makes them suspects, at the back).
- The most-counted suspect goes first: a culprit, counted at every death, stays ahead of
  an innocent counted once beside it, which therefore is not counted again until the
  culprit is dead-lettered. Suspects recovered together all queue before the first turn
  is given, so the order does not depend on which task trio runs first.
- A turn that has reached new work lasts at most ``max_replay_seconds`` more (a step
  body waiting for hours must not hold the others back); the suspect then runs on beside
  the next one, its count kept until its own progress clears it.
"""

from __future__ import annotations

import heapq

import trio


class Turn:
    """One suspect's turn; ``release`` ends it (once; later calls do nothing)."""

    __slots__ = ("_gate", "_scope")

    def __init__(self, gate: SoloGate) -> None:
        self._gate: SoloGate | None = gate
        self._scope: trio.CancelScope | None = None

    def release(self) -> None:
        gate = self._gate
        if gate is None:
            return
        self._gate = None
        if self._scope is not None:
            self._scope.cancel()
        gate.pass_on()

    def bound(self, seconds: float | None) -> None:
        """End the turn ``seconds`` from now unless it is released before."""
        gate = self._gate
        if gate is None or seconds is None or gate.nursery is None or self._scope is not None:
            return
        self._scope = trio.CancelScope()
        gate.nursery.start_soon(self._expire, trio.current_time() + seconds)

    async def _expire(self, deadline: float) -> None:
        assert self._scope is not None
        with self._scope:  # cancelled by release
            await trio.sleep_until(deadline)
            self.release()


class SoloGate:
    """Gives suspects their turns, one at a time, most-counted first."""

    def __init__(self) -> None:
        #: Where bounded turns keep their timer (the supervisor's nursery, while it runs).
        self.nursery: trio.Nursery | None = None
        self._queue: list[tuple[int, int]] = []
        self._waiting: dict[int, trio.Event] = {}
        self._seq = 0
        self._busy = False

    async def turn(self, count: int) -> Turn:
        """Wait for the turn of a suspect counted ``count`` times."""
        seq = self._seq
        self._seq += 1
        event = self._waiting[seq] = trio.Event()
        heapq.heappush(self._queue, (-count, seq))
        if not self._busy:
            self._busy = True
            # Suspects recovered together are spawned in one go and arrive in one tick:
            # let them all queue, then give the first turn.
            await trio.lowlevel.cancel_shielded_checkpoint()
            self.pass_on()
        try:
            await event.wait()
        except BaseException:
            if self._waiting.pop(seq, None) is None:  # given the turn as it was cancelled
                self.pass_on()
            raise
        return Turn(self)

    def pass_on(self) -> None:
        """Give the next turn (the last one has ended)."""
        while self._queue:
            _, seq = heapq.heappop(self._queue)
            event = self._waiting.pop(seq, None)
            if event is not None:  # not cancelled while it waited
                event.set()
                return
        self._busy = False
