"""``durably.sync.Client``: the client's calls, blocking, safe from many threads at once.

One background thread runs a trio loop holding a ``durably.Client`` open; each call is
handed to it with ``trio.from_thread.run`` and blocks its caller until answered, so a
thread-pooled WSGI server shares one client. Rules:

- One client per process and store: open it once (at import or first use) and share it;
  ``Client.shared(path)`` keeps that one for you.
- A process forked after the client opened (gunicorn's pre-fork) must not use the
  parent's thread, which does not exist in the child: the call says so; open the client
  after the fork (``post_fork`` hook), or use ``Client.shared``, which reopens in a child.
- Closing waits for the calls in flight, then for the client to flush (every write that
  returned is durable already; closing loses nothing).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import trio

from ..core._errors import ConfigurationError
from ..remote._client import Client as TrioClient
from ..runtime._gateway import Gateway

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Client, P], R]:
    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(method, *args, **kwargs)

    return call


class Client:
    """``durably.Client``'s calls for synchronous code; takes the same arguments.

    Use it as a context manager or call ``open()`` and ``close()``; every method blocks
    until the store has the write (or the answer is read) and may be called from any
    thread.
    """

    _shared: ClassVar[dict[tuple[int, str], Client]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._client: TrioClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stop: trio.Event | None = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, path: str | os.PathLike[str], **kwargs: Any) -> Client:
        """The one open client of this process for ``path`` (opened on first use, and
        again in a forked child)."""
        key = (os.getpid(), os.fspath(path))
        with cls._shared_lock:
            client = cls._shared.get(key)
            if client is None:
                client = cls(path, **kwargs).open()
                cls._shared[key] = client
            return client

    def open(self) -> Client:
        """Start the client's thread and open the store; returns ``self``."""
        with self._lock:
            if self._thread is not None:
                raise ConfigurationError("this durably.sync.Client is already open")
            opened = threading.Event()
            failure: list[BaseException] = []
            self._thread = threading.Thread(
                target=trio.run,
                args=(self._run, opened, failure),
                name="durably.sync.Client",
                daemon=True,
            )
            self._thread.start()
            opened.wait()
            if failure:
                self._thread.join()
                self._thread = None
                raise failure[0]
        return self

    def close(self) -> None:
        """Close the client: wait for calls in flight, then stop its thread."""
        with self._lock:
            thread, token, stop = self._thread, self._token, self._stop
            if thread is None or token is None or stop is None:
                return
            if os.getpid() == self._pid:
                try:
                    token.run_sync_soon(stop.set)
                except trio.RunFinishedError:
                    pass
                thread.join()
            self._thread = self._token = self._stop = None

    def __enter__(self) -> Client:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _run(self, opened: threading.Event, failure: list[BaseException]) -> None:
        try:
            client = TrioClient(*self._args, **self._kwargs)
            async with client:
                self._client = client
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                opened.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to open(), which raises it in its thread
            if opened.is_set():
                raise
            failure.append(exc)
        finally:
            self._client = None
            opened.set()

    def _call(self, method: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        if os.getpid() != self._pid:
            raise ConfigurationError(
                "this durably.sync.Client was opened before a fork, and its thread is not "
                "in this process: open clients after forking (a post_fork hook), or use "
                "durably.sync.Client.shared(path), which opens one per process"
            )
        token, client = self._token, self._client
        if token is None or client is None:
            raise ConfigurationError(
                "this durably.sync.Client is not open: use `with durably.sync.Client(path) "
                "as client:` or call open()"
            )
        try:
            return trio.from_thread.run(
                functools.partial(method, client, *args, **kwargs), trio_token=token
            )
        except trio.RunFinishedError:
            raise ConfigurationError("this durably.sync.Client was closed") from None

    start = _blocking(Gateway.start)
    start_and_wait = _blocking(Gateway.start_and_wait)
    wait = _blocking(Gateway.wait)
    wait_settled = _blocking(Gateway.wait_settled)
    signal = _blocking(Gateway.signal)
    signal_with_start = _blocking(Gateway.signal_with_start)
    read_published = _blocking(Gateway.read_published)
    cancel = _blocking(Gateway.cancel)
    request_cancel = _blocking(Gateway.request_cancel)
    get_execution = _blocking(Gateway.get_execution)
    list_executions = _blocking(Gateway.list_executions)
    schedule = _blocking(Gateway.schedule)
    ensure_schedule = _blocking(Gateway.ensure_schedule)
    update_schedule = _blocking(Gateway.update_schedule)
    pause_schedule = _blocking(Gateway.pause_schedule)
    resume_schedule = _blocking(Gateway.resume_schedule)
    remove_schedule = _blocking(Gateway.remove_schedule)
    get_schedule = _blocking(Gateway.get_schedule)
    list_schedules = _blocking(Gateway.list_schedules)
    enqueue = _blocking(Gateway.enqueue)
    debounce = _blocking(Gateway.debounce)
    queue_stats = _blocking(Gateway.queue_stats)

    def operate(self, action: str, execution_id: str, **kwargs: Any) -> None:
        """Run an operator action (``retry``, ``cancel``, ``force_fail``, ...) by name."""
        self._call(TrioClient.operate, action, execution_id, **kwargs)
