"""Step bodies written for asyncio, run on the host loop.

Under ``durably.aio`` every awaitable a step body returns (an ``async def`` step using
asyncpg, httpx, ``asyncio.sleep``) becomes an asyncio task on the host loop, and the
step's trio task waits for it. A trio cancellation (the step's timeout, a cancel of the
execution, the engine stopping) cancels the asyncio task and waits for it to end, so the
body's ``finally`` blocks run before the step is recorded as failed or parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import outcome
import trio

from ..runtime._primitive import host_await as _host_await


@contextmanager
def host_await(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Within this block (and the trio tasks it starts), step awaitables go to ``loop``."""

    async def on_host(awaitable: Awaitable[Any]) -> Any:
        return await _on_host(loop, awaitable)

    token = _host_await.set(on_host)
    try:
        yield
    finally:
        _host_await.reset(token)


async def _on_host(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any]) -> Any:
    task = asyncio.ensure_future(awaitable, loop=loop)
    token = trio.lowlevel.current_trio_token()
    waiter = trio.lowlevel.current_task()
    cancel_asked = False

    def done(finished: asyncio.Future[Any]) -> None:
        result: outcome.Outcome[Any]
        if cancel_asked and finished.cancelled():
            result = outcome.Value(None)  # the checkpoint below raises trio's Cancelled
        else:
            result = outcome.capture(finished.result)
        try:
            token.run_sync_soon(trio.lowlevel.reschedule, waiter, result)
        except trio.RunFinishedError:
            pass

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
