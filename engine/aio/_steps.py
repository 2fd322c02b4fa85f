"""Step bodies written for asyncio, run on the host loop.

Under ``durably.aio`` every awaitable a step body returns (an ``async def`` step using
asyncpg, httpx, ``asyncio.sleep``) becomes an asyncio task on the host loop, and the
step's trio task waits for it. A trio cancellation (the step's timeout, a cancel of the
execution, the engine stopping) cancels the asyncio task and waits for it to end, so the
body's ``finally`` blocks run before the step is recorded as failed or parked.

The trio tasks of the bodies that end in one asyncio iteration are woken by one
``run_sync_soon`` (one write to trio's wake-up socket), not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import outcome
import trio


class HostSteps:
    """The ``host_await`` of one guest run: awaits step awaitables on ``loop``."""

    __slots__ = ("_loop", "_wakes", "token")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.token: trio.lowlevel.TrioToken | None = None  # set once the run has started
        self._wakes: list[tuple[trio.lowlevel.Task, outcome.Outcome[Any]]] = []

    async def __call__(self, awaitable: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(awaitable, loop=self._loop)
        waiter = trio.lowlevel.current_task()
        cancel_asked = False

        def done(finished: asyncio.Future[Any]) -> None:
            result: outcome.Outcome[Any]
            if cancel_asked and finished.cancelled():
                result = outcome.Value(None)  # the checkpoint below raises trio's Cancelled
            else:
                result = outcome.capture(finished.result)
            self._wake(waiter, result)

        def abort(_: Any) -> trio.lowlevel.Abort:
            nonlocal cancel_asked
            cancel_asked = True
            task.cancel()
            return trio.lowlevel.Abort.FAILED  # rescheduled by ``done`` once the task ends

        task.add_done_callback(done)
        value = await trio.lowlevel.wait_task_rescheduled(abort)
        if cancel_asked:
            await trio.lowlevel.checkpoint()
        return value

    def _wake(self, waiter: trio.lowlevel.Task, result: outcome.Outcome[Any]) -> None:
        self._wakes.append((waiter, result))
        if len(self._wakes) > 1:
            return  # the crossing already asked for carries this one too
        assert self.token is not None  # a step runs inside the run
        try:
            self.token.run_sync_soon(self._flush)
        except trio.RunFinishedError:
            self._wakes.clear()  # the run, and its waiting tasks, are gone

    def _flush(self) -> None:
        wakes, self._wakes = self._wakes, []
        for waiter, result in wakes:
            trio.lowlevel.reschedule(waiter, result)
