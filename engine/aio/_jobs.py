"""The guest's job runners: the trio side of every call made from asyncio.

A trio task and a cancel scope each cost about as much as a whole durable step, and a
call needs both (a task to run in, a scope to be cancelled by its asyncio awaiter). So
the tasks are workers that outlive their calls: a worker runs one call after another
under one scope, parking between them; the next batch of calls goes to the parked
workers first and spawns new ones only for the rest. Rules:

- A worker runs one call at a time, and a call's ``scope`` is set only while it runs on
  one: cancelling a call that has ended (or not begun) cancels nothing else.
- A cancelled scope cannot be reused: the worker whose call was cancelled ends with it.
- At most ``IDLE_WORKERS`` park; a worker finding them all there ends instead.
- Workers share one context (the run's, see ``Guest._start``): a call must not leave a
  context variable set for the next (none of the faces' calls set any).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from ..core._errors import ConfigurationError

#: Parked workers kept for the next calls. A parked worker is a trio task of about 2 KB,
#: and a burst of calls up to this size reuses them all when the next burst comes.
IDLE_WORKERS = 1024

_STOPPED_DURING = "the durably guest run stopped during this call"


class Call:
    """One call into the guest: what to run, its asyncio future, and its trio scope."""

    __slots__ = ("args", "cancelled", "fn", "future", "kwargs", "scope")

    def __init__(
        self,
        future: asyncio.Future[Any],
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.scope: trio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """In trio: cancel the call while it runs, or keep it from starting."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class Workers:
    """The pool of job runners of one guest run (used from trio's side only)."""

    def __init__(self) -> None:
        # Parked workers, most recent last (insertion order); a dict, for the O(1)
        # removal of one whose wait is aborted.
        self._idle: dict[trio.lowlevel.Task, None] = {}

    def close(self) -> None:
        """End the parked workers (the run is stopping): cheaper than cancelling them."""
        idle, self._idle = self._idle, {}
        for worker in idle:
            trio.lowlevel.reschedule(worker, outcome.Value(None))

    def run(self, nursery: trio.Nursery, calls: list[Call]) -> None:
        """Start ``calls``: on parked workers first, on new ones for the rest."""
        idle = self._idle
        for call in calls:
            if idle:
                worker, _ = idle.popitem()
                trio.lowlevel.reschedule(worker, outcome.Value(call))
            else:
                nursery.start_soon(self._work, call)

    async def _work(self, first: Call) -> None:
        task = trio.lowlevel.current_task()
        call: Call | None = first
        del first  # the worker outlives its first call

        def abort(_: Any) -> trio.lowlevel.Abort:
            del self._idle[task]  # the run is stopping: a parked worker just ends
            return trio.lowlevel.Abort.SUCCEEDED

        with trio.CancelScope() as scope:
            while call is not None:  # None: retired by ``close``
                future = call.future
                if call.cancelled or future.done():  # cancelled before it began
                    if not future.done():
                        future.cancel()
                else:
                    # The call runs in this frame (not a helper coroutine): one frame
                    # fewer to create and to pass through on each of its suspensions.
                    call.scope = scope
                    try:
                        result = await call.fn(*call.args, **call.kwargs)
                    except trio.Cancelled:  # ours or the run's: it ends the worker too
                        if not future.done():
                            future.set_exception(ConfigurationError(_STOPPED_DURING))
                        raise
                    except BaseException as exc:  # handed to the awaiter, whatever it is
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                        del result
                    call.scope = None
                    if scope.cancel_called:  # cancelled as it ended: the scope is spent
                        return
                if len(self._idle) >= IDLE_WORKERS:
                    return
                del call, future  # a parked worker keeps no caller's result alive
                self._idle[task] = None
                call = await trio.lowlevel.wait_task_rescheduled(abort)
