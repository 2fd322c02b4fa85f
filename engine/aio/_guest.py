"""One trio guest run per asyncio loop, shared by every durably face on that loop.

Trio allows one run per thread, so the engines and clients of one loop share it. The run
starts with the first face that enters and ends when the last one leaves. Rules:

- Work crosses from asyncio to trio only through ``TrioToken.run_sync_soon`` (safe from
  any context) and back only through asyncio futures, resolved from trio's side of the
  same thread.
- Calls cross in batches: those made in one asyncio iteration wait in ``_inbox`` and are
  carried over by one ``run_sync_soon`` (one write to trio's wake-up socket), not one
  each; in trio they run on reused worker tasks (``_jobs.py``).
- Cancelling the asyncio awaiter cancels the trio job (its worker's cancel scope, and the
  worker with it); a job that ends because the whole run is stopping fails its future
  with ``ConfigurationError``.
- The host owns signals: asyncio (or uvicorn) installs the SIGINT handler and the signal
  wake-up fd, so the guest is started with ``host_uses_signal_set_wakeup_fd=True`` and
  never turns Ctrl-C into a trio ``KeyboardInterrupt``; the host's own shutdown leaves
  each face's ``async with``, which closes its engine cleanly.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ..core._errors import ConfigurationError
from ..runtime._primitive import host_await
from ._jobs import Call, Workers
from ._steps import HostSteps

R = TypeVar("R")

_guests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = weakref.WeakKeyDictionary()

_STOPPED = "the durably guest run has stopped"


class Guest:
    """The trio run hosted by one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._done: asyncio.Future[None] = loop.create_future()
        self._inbox: list[Call] = []
        self._steps = HostSteps(loop)
        self._workers = Workers()

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
        # Every task of the run copies the context the run starts in, so the host's step
        # runner is set once, there, for every job and the actors it starts; in a copy,
        # so that the asyncio code entering the first face does not see it.
        contextvars.copy_context().run(self._start_run, started)
        await started

    def _start_run(self, started: asyncio.Future[None]) -> None:
        host_await.set(self._steps)
        trio.lowlevel.start_guest_run(
            self._main,
            started,
            run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self.loop.call_soon,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=True,
        )

    async def _main(self, started: asyncio.Future[None]) -> None:
        self.token = self._steps.token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                started.set_result(None)
                await self._stop.wait()
                self._workers.close()
                nursery.cancel_scope.cancel()
        finally:
            # A batch still to come fails its calls instead of meeting a closed nursery.
            self._nursery = None

    def _finished(self, result: Any) -> None:  # an outcome.Outcome
        self._nursery = None
        # Every accepted drain has run by now; this only makes sure no awaiter is left.
        self._fail(self._inbox)
        self._inbox = []
        if self._done.done():
            return
        try:
            result.unwrap()
        except BaseException as exc:  # the run's own failure, for the last face to see
            self._done.set_exception(exc)
        else:
            self._done.set_result(None)

    async def call(
        self, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        """``await fn(*args, **kwargs)`` in the guest, awaited from asyncio."""
        call = self.submit(fn, args, kwargs)
        try:
            result: R = await call.future
        except asyncio.CancelledError:
            self.cancel(call)
            raise
        return result

    def submit(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Call:
        """Queue a call for the guest; its future resolves when the job ends."""
        call = Call(self.loop.create_future(), fn, args, kwargs)
        token = self.token
        if token is None or self._done.done():
            call.future.set_exception(ConfigurationError(_STOPPED))
            return call
        inbox = self._inbox
        inbox.append(call)
        if len(inbox) == 1:  # later calls of this iteration ride on the same crossing
            try:
                token.run_sync_soon(self._drain)
            except trio.RunFinishedError:
                self._fail(inbox)
                inbox.clear()
        return call

    def cancel(self, call: Call) -> None:
        """Cancel the call's job (from asyncio); a no-op once it has ended."""
        future = call.future
        if future.done() and not future.cancelled():
            return
        token = self.token
        if token is not None:
            try:
                token.run_sync_soon(call.cancel)
            except trio.RunFinishedError:
                pass

    def _drain(self) -> None:
        calls, self._inbox = self._inbox, []
        nursery = self._nursery
        if nursery is None:
            self._fail(calls)
            return
        self._workers.run(nursery, calls)

    @staticmethod
    def _fail(calls: list[Call]) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(ConfigurationError(_STOPPED))


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
