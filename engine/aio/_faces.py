"""``durably.aio.Engine`` and ``durably.aio.Client``: the trio faces, awaitable from asyncio.

Each wraps its trio twin, entered inside the loop's trio guest run (``_guest.py``) and
held there by one host task until the asyncio ``async with`` is left. Every call runs as
a job in the guest (``Guest.call``); the wrappers are made from the trio methods
themselves (``_bridged``), so their signatures, types and docstrings cannot drift from
the twins'.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import trio

from .._engine import Engine as TrioEngine, EngineStatistics
from ..core._errors import ConfigurationError
from ..core._workflow import WorkflowDefinition
from ..remote._client import Client as TrioClient
from ..runtime._gateway import Gateway
from ..runtime._supervisor import RecoveryReport
from ._guest import Guest, _uncancellable

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", TrioEngine, TrioClient)


def _bridged(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[_Face[Any], P], Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def call(self: _Face[Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
        # Guest.call, inlined: one coroutine fewer to create and resume on every call.
        guest = self._open_guest()
        job = guest.submit(method, (self._face, *args), kwargs)
        try:
            result: R = await job.future
        except asyncio.CancelledError:
            guest.cancel(job)
            raise
        return result

    return call


class _Face(Generic[F]):
    _kind = "Engine"

    def __init__(self, face: F) -> None:
        self._face: F = face
        self._guest: Guest | None = None
        self._host: asyncio.Future[None] | None = None
        self._stop: trio.Event | None = None

    @property
    def store(self) -> Any:
        """The open store (as on the trio twin)."""
        return self._face.store

    def register(self, definition: WorkflowDefinition[Any, Any]) -> None:
        """Add a workflow definition (as ``workflows=[...]`` does)."""
        self._face.register(definition)

    def workflows(self) -> list[WorkflowDefinition[Any, Any]]:
        """The registered workflow definitions."""
        return self._face.workflows()

    async def __aenter__(self) -> Any:
        if self._guest is not None:
            raise ConfigurationError(f"this durably.aio.{self._kind} is already open")
        guest = await Guest.acquire(self._kind)
        entered: asyncio.Future[None] = guest.loop.create_future()
        hold = guest.submit(self._hold, (entered,), {})
        host = hold.future
        try:
            # The host task fails before it enters when the twin refuses to open.
            await asyncio.wait([entered, host], return_when=asyncio.FIRST_COMPLETED)
            if not entered.done():
                await host  # raises the twin's error
        except BaseException:
            # Cancelled while opening: close the twin (its store lock with it) first.
            guest.cancel(hold)
            with contextlib.suppress(BaseException):
                await _uncancellable(host)
            await guest.release()
            raise
        self._guest, self._host = guest, host
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guest, host = self._guest, self._host
        assert guest is not None and host is not None and guest.token is not None
        self._guest = self._host = None
        stop = self._stop
        if stop is not None:
            guest.token.run_sync_soon(stop.set)
        try:
            await _uncancellable(host)  # every acknowledged write is flushed by now
        finally:
            await guest.release()

    async def _hold(self, entered: asyncio.Future[None]) -> None:
        """The guest task that keeps the twin open (its nursery lives here)."""
        self._stop = trio.Event()
        async with self._face:
            entered.set_result(None)
            await self._stop.wait()

    def _open_guest(self) -> Guest:
        guest = self._guest
        if guest is None:
            raise ConfigurationError(
                f"this durably.aio.{self._kind} is not open: use it inside `async with`"
            )
        return guest

    async def operate(self, action: str, execution_id: str, **kwargs: Any) -> None:
        """Run an operator action (``retry``, ``cancel``, ``force_fail``, ...) by name."""
        operate = type(self._face).operate
        await self._open_guest().call(operate, (self._face, action, execution_id), kwargs)

    start = _bridged(Gateway.start)
    start_and_wait = _bridged(Gateway.start_and_wait)
    wait = _bridged(Gateway.wait)
    wait_settled = _bridged(Gateway.wait_settled)
    signal = _bridged(Gateway.signal)
    signal_with_start = _bridged(Gateway.signal_with_start)
    read_published = _bridged(Gateway.read_published)
    cancel = _bridged(Gateway.cancel)
    request_cancel = _bridged(Gateway.request_cancel)
    get_execution = _bridged(Gateway.get_execution)
    list_executions = _bridged(Gateway.list_executions)
    schedule = _bridged(Gateway.schedule)
    ensure_schedule = _bridged(Gateway.ensure_schedule)
    update_schedule = _bridged(Gateway.update_schedule)
    pause_schedule = _bridged(Gateway.pause_schedule)
    resume_schedule = _bridged(Gateway.resume_schedule)
    remove_schedule = _bridged(Gateway.remove_schedule)
    get_schedule = _bridged(Gateway.get_schedule)
    list_schedules = _bridged(Gateway.list_schedules)
    enqueue = _bridged(Gateway.enqueue)
    debounce = _bridged(Gateway.debounce)
    queue_stats = _bridged(Gateway.queue_stats)


class Engine(_Face[TrioEngine]):
    """A worker for asyncio hosts (FastAPI, aiohttp, asyncio consumers).

    Takes ``durably.Engine``'s arguments; enter it with ``async with`` from asyncio (for
    example in a FastAPI lifespan). Underneath, the engine runs on trio in guest mode on
    the running loop: one thread, one process, the same log and guarantees. Step
    functions written for asyncio (``async def`` using asyncpg, httpx, ...) run as
    asyncio tasks on the host loop; their timeout and cancellation reach the task.
    """

    _kind = "Engine"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(TrioEngine(*args, **kwargs))

    async def __aenter__(self) -> Engine:
        await super().__aenter__()
        return self

    @property
    def last_recovery(self) -> RecoveryReport | None:
        """What the recovery at start found (``None`` before start)."""
        return self._face.last_recovery

    def statistics(self) -> EngineStatistics:
        """Live, queued and parked counts, timers fired, group-commit figures."""
        return self._face.statistics()

    audit = _bridged(TrioEngine.audit)
    recover = _bridged(TrioEngine.recover)


class Client(_Face[TrioClient]):
    """A client for asyncio code beside a worker: ``durably.Client``'s calls, awaitable
    from asyncio. Enter it with ``async with`` (a long-lived process keeps one open)."""

    _kind = "Client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(TrioClient(*args, **kwargs))

    async def __aenter__(self) -> Client:
        await super().__aenter__()
        return self

    audit = _bridged(TrioClient.audit)
