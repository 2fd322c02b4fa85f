"""An execution actor's waiting half: its wake-up flag, parking when asked, and a wait
in two halves, so that the hottest waits (a sleep, a signal wait) park in their own frame.

Every waiting execution resumes through each coroutine frame it holds when it is woken
(thousands at once when their timers fall due together; measured here, about 0.4 us per
frame per resume), so these waits hold as few as the code allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from durably.stores import ExecutionRecord, Timer

from ._latch import Wake, park, parking
from ._primitive import _ControlFlow
from ._recorder import Recorder

if TYPE_CHECKING:
    from ._ports import ActorHost


class _Suspend(_ControlFlow):
    """Internal: unwind the workflow so that the actor can park."""


class Waiting(Recorder):
    """The actor's waits (``ExecutionActor`` is the rest)."""

    __slots__ = ("broadcast", "park_requested", "wake", "woken")

    def __init__(self, host: ActorHost, record: ExecutionRecord) -> None:
        super().__init__(host, record)
        self.wake = Wake()
        self.woken = False
        self.park_requested = False
        #: While a ``ctx.gather`` runs: the wake its member tasks share (None otherwise).
        self.broadcast: trio.Event | None = None

    def wake_up(self) -> None:
        """Something this execution may wait for happened (a timer, a signal)."""
        self.woken = True
        self.wake.set()
        broadcast = self.broadcast
        if broadcast is not None:
            self.broadcast = trio.Event()
            broadcast.set()

    def request_park(self) -> None:
        self.park_requested = True
        self.wake.set()

    async def wait_wake(self, timer: Timer | None) -> None:
        """Wait for a wake-up while live, or park (raise ``_Suspend``) if asked to.

        A wake that arrives while the actor is busy is remembered (``woken``) and consumed
        by the next wait; one that arrives as it parks makes the engine run it again.
        The hottest waits (a sleep, a signal wait) do its halves in their own frame:
        ``if actor.wait_begin(timer): try: await park(...) finally: actor.unidle()``,
        then ``actor.woke()``.
        """
        broadcast = self.broadcast
        if broadcast is not None:
            # A gather's members wait together: each re-checks its own condition after
            # any wake. It never parks (its waits overlap; the record says running).
            self.replay_done()
            if timer is not None:
                self.parts.scheduler.arm(timer)
            await broadcast.wait()
            self.deferred = True
            return
        if self.wait_begin(timer):
            try:
                await park(parking(self.wake.abort))
            finally:
                self.unidle()
            self.woke()

    def wait_begin(self, timer: Timer | None) -> bool:
        """The first half of a wait outside a gather: arm ``timer``; ``True`` if the
        caller must now park on ``wake`` (then ``unidle`` always, and ``woke`` once
        woken), ``False`` if a wake-up came already. Raises ``_Suspend`` to park."""
        self.replay_done()
        if timer is not None:
            self.parts.scheduler.arm(timer)
        if self.woken:
            self.woken = False
            return False
        host = self.host
        if self.park_requested or host.should_park():
            raise _Suspend
        wake = self.wake
        if wake.flag:
            wake.flag = False
            self.woken = False
            self.deferred = True
            return False
        host.idle[self.execution_id] = self
        wake.task = trio.lowlevel.current_task()
        return True

    def unidle(self) -> None:
        self.wake.task = None
        self.host.idle.pop(self.execution_id, None)

    def woke(self) -> None:
        """The second half of a wait, once woken."""
        self.wake.flag = False
        if self.park_requested:
            raise _Suspend
        self.woken = False
        self.deferred = True
