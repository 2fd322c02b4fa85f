"""One trio guest run per asyncio loop, shared by every durably face on that loop.

Trio allows one run per thread, so the engines and clients of one loop share it. The run
starts with the first face that enters and ends when the last one leaves. Rules:

- Work crosses from asyncio to trio only through ``TrioToken.run_sync_soon`` (safe from
  any context) and back only through asyncio futures, resolved from trio's side of the
  same thread.
- Cancelling the asyncio awaiter cancels the trio job (its own cancel scope); a job that
  ends because the whole run is stopping fails its future with ``ConfigurationError``.
- The host owns signals: asyncio (or uvicorn) installs the SIGINT handler and the signal
  wake-up fd, so the guest is started with ``host_uses_signal_set_wakeup_fd=True`` and
  never turns Ctrl-C into a trio ``KeyboardInterrupt``; the host's own shutdown leaves
  each face's ``async with``, which closes its engine cleanly.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ..core._errors import ConfigurationError
from ._steps import host_await

R = TypeVar("R")

_guests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = weakref.WeakKeyDictionary()


class Guest:
    """The trio run hosted by one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._done: asyncio.Future[None] = loop.create_future()

    @classmethod
    async def acquire(cls, face: str) -> Guest:
        """The running loop's guest (started if need be), with one more user."""
        loop = _running_loop(face)
        guest = _guests.get(loop)
        if guest is None or guest._done.done():
            guest = cls(loop)
            _guests[loop] = guest
            await guest._start()
        guest.users += 1
        return guest

    async def release(self) -> None:
        """One user fewer; the last one stops the run and waits for it to end."""
        self.users -= 1
        if self.users > 0:
            return
        if _guests.get(self.loop) is self:
            del _guests[self.loop]
        stop = self._stop
        if self.token is not None and stop is not None:
            self.token.run_sync_soon(stop.set)
        await _uncancellable(self._done)

    async def _start(self) -> None:
        started: asyncio.Future[None] = self.loop.create_future()
        trio.lowlevel.start_guest_run(
            self._main,
            started,
            run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self.loop.call_soon,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=True,
        )
        await started

    async def _main(self, started: asyncio.Future[None]) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            started.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _finished(self, result: Any) -> None:  # an outcome.Outcome
        self._nursery = None
        if self._done.done():
            return
        try:
            result.unwrap()
        except BaseException as exc:  # the run's own failure, for the last face to see
            self._done.set_exception(exc)
        else:
            self._done.set_result(None)

    def run(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> asyncio.Future[R]:
        """Run ``await fn(*args, **kwargs)`` in the guest; its future, for asyncio."""
        future: asyncio.Future[R] = self.loop.create_future()
        token = self.token
        if token is None or self._done.done():
            future.set_exception(ConfigurationError("the durably guest run has stopped"))
            return future

        def spawn() -> None:
            if self._nursery is None:
                if not future.done():
                    future.set_exception(ConfigurationError("the durably guest run has stopped"))
                return
            self._nursery.start_soon(self._job, future, fn, args, kwargs)

        token.run_sync_soon(spawn)
        return future

    async def _job(
        self,
        future: asyncio.Future[Any],
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        token = self.token
        assert token is not None
        # Jobs are spawned from a trio callback, not from a task of ours: each sets the
        # host's step runner for itself and the actors it starts (they copy its context).
        with trio.CancelScope() as scope, host_await(self.loop):

            def cancelled(done: asyncio.Future[Any]) -> None:
                if done.cancelled():
                    try:
                        token.run_sync_soon(scope.cancel)
                    except trio.RunFinishedError:
                        pass

            future.add_done_callback(cancelled)
            if future.done():  # cancelled before the job began
                return
            try:
                result = await fn(*args, **kwargs)
            except trio.Cancelled:
                if not future.done():
                    future.set_exception(
                        ConfigurationError("the durably guest run stopped during this call")
                    )
                raise
            except BaseException as exc:  # handed to the awaiter, whatever it is
                if not future.done():
                    future.set_exception(exc)
                return
            if not future.done():
                future.set_result(result)


def _running_loop(face: str) -> asyncio.AbstractEventLoop:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        raise ConfigurationError(
            f"durably.aio.{face} is for asyncio hosts, and this code runs under trio: "
            f"use durably.{face} instead"
        )
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            f"durably.aio.{face} must be entered with `async with` from asyncio code "
            f"(a running event loop); from trio use durably.{face}, from synchronous "
            "code durably.sync.Client"
        ) from None


async def _uncancellable(future: asyncio.Future[Any]) -> Any:
    """Await ``future`` to its end even if the awaiter is cancelled meanwhile (then
    re-raise the cancellation): acknowledged writes must be flushed before we return."""
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result
