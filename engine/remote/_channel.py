"""The worker's and the clients' ends of the local wake-up channel (see ``_wire.py``).

Rules of this module:

- The store is the truth, hints are not: every hint follows a durable write, and a lost
  one costs latency. The worker polls for pending executions only while clients are
  active; recovery finds everything else at start.
- The worker's end (``Listener``) acts through a ``WorkerPort`` (the supervisor) and an
  ``answer`` callable (the engine's calls); it knows nothing else of the engine.
- Calls that must not race the worker's own writes (operator actions, schedule changes)
  are run by the worker when one holds the store, answered over the channel
  (``ClientChannel.call``); with no worker, by the caller under the worker lock.
- One writer per socket: trio refuses two concurrent sends on one socket (``lock``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from durably.stores import ExecutionRecord, MailboxEntry, Store

from ..core import _errors
from ..core._errors import DurablyError
from ..core._records import CANCEL_SIGNAL, cancel_args
from ..core._status import TERMINAL
from . import _wire


class WorkerPort(Protocol):
    """What the worker's end of the channel needs of the supervisor."""

    live: dict[str, Any]
    runq: dict[str, Any]

    @property
    def parts(self) -> Any: ...

    def spawn(
        self, execution_id: str, *, cancel: tuple[str | None, str | None] | None = None
    ) -> None: ...

    def signalled(self, execution_id: str, waiting: bool) -> None: ...

    def first_signal(self, execution_id: str, name: str) -> MailboxEntry | None: ...


class Listener:
    """The worker's end: act on clients' hints, answer their calls, and poll for what a
    lost hint missed."""

    def __init__(
        self,
        worker: WorkerPort,
        answer: Callable[[str, dict[str, Any]], Awaitable[Any]],
        path: str,
        poll_interval: float,
    ) -> None:
        self._worker = worker
        self._answer = answer
        self.path = path
        self._poll_interval = poll_interval
        self._socket: trio.socket.SocketType | None = None
        self._nursery: trio.Nursery | None = None
        self._watchers: dict[str, set[str]] = {}
        self._hinted = trio.Event()
        self._lock = trio.Lock()

    @property
    def _store(self) -> Store:
        store: Store = self._worker.parts.store
        return store

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = await _wire.bind(self.path)
        self._socket = sock
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._poll_pending)
                task_status.started()
                while True:
                    message = await _wire.receive(sock)
                    self._hinted.set()
                    if message is not None:
                        self._on_hint(message)
        finally:
            self._nursery = None
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def finished(self, execution_id: str) -> None:
        """An execution ended: tell the clients watching it."""
        for reply in self._watchers.pop(execution_id, ()):
            self._send_soon({"op": "done", "eid": execution_id}, reply)

    def _on_hint(self, message: dict[str, Any]) -> None:
        op, eid = message.get("op"), message.get("eid")
        if not isinstance(eid, str):
            return
        try:
            record: ExecutionRecord | None = self._store.get_execution(eid)
        except DurablyError:
            return
        if op == "call":
            reply = message.get("reply")
            if isinstance(reply, str) and self._nursery is not None:
                self._nursery.start_soon(self._remote_call, message, reply)
            return
        if op == "watch":
            reply = message.get("reply")
            if isinstance(reply, str):
                if record is None or record.status in TERMINAL:
                    self._send_soon({"op": "done", "eid": eid}, reply)
                else:
                    self._watchers.setdefault(eid, set()).add(reply)
            return
        if record is None or record.status in TERMINAL:
            return
        if op == "cancel":
            entry = self._worker.first_signal(eid, CANCEL_SIGNAL)
            if entry is not None:
                self._worker.spawn(eid, cancel=cancel_args(entry.payload))
        elif op == "signal":
            name = message.get("name")
            self._worker.signalled(eid, record.waiting_signal == name)
        elif op == "wake":
            self._worker.spawn(eid)

    async def _remote_call(self, message: dict[str, Any], reply: str) -> None:
        answer: dict[str, Any] = {"op": "called", "eid": message["eid"], "error": None}
        try:
            value = await self._answer(str(message.get("method")), dict(message.get("args") or {}))
            answer["value"] = value if isinstance(value, str) else None
        except DurablyError as exc:
            answer["error"] = str(exc)
            answer["kind"] = type(exc).__name__
        await self._send(answer, reply)

    async def _poll_pending(self) -> None:
        """Fallback for hints that never arrived: start pending executions nobody runs.

        Polls only while clients are active (a hint arrived since the last poll): a hint
        is lost only when the worker's queue overflows, that is under client traffic, and
        work written while no worker ran is found by recovery. An idle worker never polls.
        """
        while True:
            await self._hinted.wait()
            self._hinted = trio.Event()
            await trio.sleep(self._poll_interval)
            for record in self._store.list_executions(status="pending", limit=1000):
                if record.id not in self._worker.live and record.id not in self._worker.runq:
                    self._worker.spawn(record.id)

    def _send_soon(self, message: dict[str, Any], to: str) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._send, message, to)

    async def _send(self, message: dict[str, Any], to: str) -> None:
        if self._socket is None:
            return
        async with self._lock:  # one writer per socket (trio refuses two)
            await _wire.send(self._socket, to, message)


class ClientChannel:
    """A client's end: its reply socket, the hints it sends, the answers it waits for."""

    def __init__(self, worker_path: str | None) -> None:
        self.worker_path = worker_path
        self.path: str | None = None
        self._socket: trio.socket.SocketType | None = None
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._finished: dict[str, trio.Event] = {}
        self._replies: dict[str, tuple[trio.Event, list[dict[str, Any]]]] = {}

    async def open(self, nursery: trio.Nursery) -> None:
        if self.worker_path is None:
            return
        self.path = _wire.client_socket_path()
        self._socket = await _wire.bind(self.path)
        self._nursery = nursery
        nursery.start_soon(self._receive)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            if self.path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)

    async def _receive(self) -> None:
        """The worker's answers (finished executions, call results)."""
        assert self._socket is not None
        while True:
            message = await _wire.receive(self._socket)
            if message is None or not isinstance(message.get("eid"), str):
                continue
            eid = message["eid"]
            if message.get("op") == "done":
                event = self._finished.pop(eid, None)
                if event is not None:
                    event.set()
            elif message.get("op") == "called":
                waiter = self._replies.pop(eid, None)
                if waiter is not None:
                    waiter[1].append(message)
                    waiter[0].set()

    def hint_soon(self, message: dict[str, Any]) -> None:
        if self._nursery is not None and self._socket is not None:
            self._nursery.start_soon(self.hint, message)

    async def hint(self, message: dict[str, Any]) -> None:
        if self._socket is None or self.worker_path is None:
            return
        async with self._lock:
            await _wire.send(self._socket, self.worker_path, message)

    async def wait_finished(self, execution_id: str, poll_interval: float) -> None:
        """Ask the worker to say when the execution ends; wake at ``poll_interval`` at
        the latest, in case the worker is not running (the caller re-reads the store)."""
        event = self._finished.get(execution_id)
        if event is None:
            event = self._finished[execution_id] = trio.Event()
        await self.hint({"op": "watch", "eid": execution_id, "reply": self.path})
        with trio.move_on_after(poll_interval):
            await event.wait()

    async def call(self, method: str, wire_args: dict[str, Any], store_path: str) -> Any:
        """Have the store's worker run ``method`` and wait for its answer (30 s)."""
        token = secrets.token_hex(8)
        answered, waiter = trio.Event(), list[dict[str, Any]]()
        self._replies[token] = (answered, waiter)
        message = {
            "op": "call",
            "eid": token,
            "method": method,
            "args": wire_args,
            "reply": self.path,
        }
        with trio.move_on_after(30):
            await self.hint(message)
            await answered.wait()
        self._replies.pop(token, None)
        if not waiter:
            raise DurablyError(
                f"the worker of {store_path} did not answer the {method} request within "
                "30 s; check the state before trying again"
            )
        error = waiter[0].get("error")
        if error:
            raise _rebuild_error(str(waiter[0].get("kind")), str(error))
        return waiter[0].get("value")


def _rebuild_error(kind: str, message: str) -> DurablyError:
    """The worker's error as the same durably error type (message only: the worker's
    exception object does not cross the process boundary)."""
    cls = getattr(_errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, DurablyError)):
        cls = DurablyError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error
