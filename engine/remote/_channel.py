"""The worker's and the clients' ends of the local wake-up channel (see ``_wire.py``).

Rules of this module:

- The store is the truth, hints are not: every hint follows a durable write, and a lost
  one costs latency. The worker polls for pending executions only while clients are
  active; recovery finds everything else at start.
- Calls that must not race the worker's own writes (operator actions, schedule changes)
  are run by the worker when one holds the store (``in_worker``), answered over the
  channel; with no worker, by the caller under the worker lock.
- One writer per socket: trio refuses two concurrent sends on one socket (``lock``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio

from ..core._errors import ConfigurationError, DurablyError
from ..core._types import Status
from . import _wire

if TYPE_CHECKING:
    from .._engine import Engine

#: The reserved mailbox name under which a cancellation request is made durable.
CANCEL_SIGNAL = "durably.cancel"

OPERATOR_ACTIONS = ("retry", "cancel", "force_fail", "skip_step", "retry_rollback")
SCHEDULE_CALLS = (
    "schedule",
    "ensure_schedule",
    "pause_schedule",
    "resume_schedule",
    "update_schedule",
    "remove_schedule",
)


def cancel_args(payload: Any) -> tuple[str | None, str | None]:
    if isinstance(payload, dict):
        return payload.get("reason"), payload.get("by")
    return None, None


class Channel:
    """One engine's end of the wake-up channel: the worker's listener, or a client's
    reply socket, and the hints both send."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.socket: trio.socket.SocketType | None = None
        self.path: str | None = None
        self.worker_path: str | None = None
        self.watchers: dict[str, set[str]] = {}
        self.hinted = trio.Event()
        self.lock = trio.Lock()
        self.replies: dict[str, tuple[trio.Event, list[dict[str, Any]]]] = {}

    async def open_client(self, nursery: trio.Nursery) -> None:
        self.path = _wire.client_socket_path()
        self.socket = await _wire.bind(self.path)
        nursery.start_soon(self.receive)

    def close_client(self) -> None:
        if self.socket is not None and not self.engine.worker:
            self.socket.close()
            if self.path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)

    async def listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The worker's end: act on clients' hints, and poll for what a lost hint missed."""
        assert self.worker_path is not None
        sock = await _wire.bind(self.worker_path)
        self.socket = sock
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.poll_pending)
                task_status.started()
                while True:
                    message = await _wire.receive(sock)
                    self.hinted.set()
                    if message is not None:
                        self.on_hint(message)
        finally:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.worker_path)

    def on_hint(self, message: dict[str, Any]) -> None:
        op, eid = message.get("op"), message.get("eid")
        if not isinstance(eid, str):
            return
        try:
            record = self.engine.store.get_execution(eid)
        except DurablyError:
            return
        if op == "call":
            reply = message.get("reply")
            if isinstance(reply, str) and self.engine._nursery is not None:
                self.engine._nursery.start_soon(self.remote_call, message, reply)
            return
        if op == "watch":
            reply = message.get("reply")
            if isinstance(reply, str):
                if record is None or Status(record.status).terminal:
                    self.hint_soon({"op": "done", "eid": eid}, reply)
                else:
                    self.watchers.setdefault(eid, set()).add(reply)
            return
        if record is None or Status(record.status).terminal:
            return
        if op == "cancel":
            entry = self.engine.first_signal(eid, CANCEL_SIGNAL)
            if entry is not None:
                self.engine.spawn(eid, cancel=cancel_args(entry.payload))
        elif op == "signal":
            name = message.get("name")
            self.engine._signalled(eid, str(name), record.waiting_signal == name)
        elif op == "wake":
            self.engine.spawn(eid)

    async def receive(self) -> None:
        """The client's end: the worker's answers (finished executions, operator results)."""
        assert self.socket is not None
        while True:
            message = await _wire.receive(self.socket)
            if message is None or not isinstance(message.get("eid"), str):
                continue
            eid = message["eid"]
            if message.get("op") == "done":
                event = self.engine._finished_events.pop(eid, None)
                if event is not None:
                    event.set()
            elif message.get("op") == "called":
                waiter = self.replies.pop(eid, None)
                if waiter is not None:
                    waiter[1].append(message)
                    waiter[0].set()

    async def remote_call(self, message: dict[str, Any], reply: str) -> None:
        """The worker runs a client's call (see ``in_worker``) and answers it."""
        answer: dict[str, Any] = {"op": "called", "eid": message["eid"], "error": None}
        method = str(message.get("method"))
        args = dict(message.get("args") or {})
        try:
            if method in OPERATOR_ACTIONS:
                eid = args.pop("execution_id")
                await getattr(self.engine.operator, method)(eid, **args)
            elif method in SCHEDULE_CALLS:
                if isinstance(args.get("at"), str):
                    args["at"] = datetime.fromisoformat(args["at"])
                value = await getattr(self.engine, method)(**args)
                answer["value"] = value if isinstance(value, str) else None
            else:
                raise ConfigurationError(f"unknown call {method!r}")
        except DurablyError as exc:
            answer["error"] = str(exc)
            answer["kind"] = type(exc).__name__
        await self.hint(answer, reply)

    async def in_worker(
        self, method: str, wire_args: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a call that must not race the worker's own writes (operator actions,
        schedule changes) where it is safe.

        In the worker, or on a store no worker holds (its lock is held meanwhile, so none
        starts), ``local`` runs here. Otherwise the worker runs ``method`` with the
        JSON-shaped ``wire_args`` and answers over the wake-up channel.
        """
        if self.engine.worker:
            return await local()
        store_path = getattr(self.engine.store, "path", None)
        lock = None if store_path is None else _wire.try_worker_lock(store_path)
        if store_path is None or lock is not None:
            try:
                return await local()
            finally:
                if lock is not None:
                    lock.close()
        token = secrets.token_hex(8)
        answered, waiter = trio.Event(), list[dict[str, Any]]()
        self.replies[token] = (answered, waiter)
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
        self.replies.pop(token, None)
        if not waiter:
            raise DurablyError(
                f"the worker of {store_path} did not answer the {method} request within "
                "30 s; check the state before trying again"
            )
        error = waiter[0].get("error")
        if error:
            raise _rebuild_error(str(waiter[0].get("kind")), str(error))
        return waiter[0].get("value")

    async def poll_pending(self) -> None:
        """Fallback for hints that never arrived: start pending executions nobody runs.

        Polls only while clients are active (a hint arrived since the last poll): a hint
        is lost only when the worker's queue overflows, that is under client traffic, and
        work written while no worker ran is found by recovery. An idle worker never polls.
        """
        while True:
            await self.hinted.wait()
            self.hinted = trio.Event()
            await trio.sleep(self.engine.poll_interval)
            for record in self.engine.store.list_executions(status="pending", limit=1000):
                if record.id not in self.engine.live and record.id not in self.engine._runq:
                    self.engine.spawn(record.id)

    def hint_soon(self, message: dict[str, Any], to: str | None = None) -> None:
        if self.engine._nursery is not None and self.socket is not None:
            self.engine._nursery.start_soon(self.hint, message, to)

    async def hint(self, message: dict[str, Any], to: str | None = None) -> None:
        target = to if to is not None else self.worker_path
        if self.socket is None or target is None:
            return
        async with self.lock:  # one writer per socket (trio refuses two)
            await _wire.send(self.socket, target, message)


def _rebuild_error(kind: str, message: str) -> DurablyError:
    """The worker's error as the same durably error type (message only: the worker's
    exception object does not cross the process boundary)."""
    from ..core import _errors
    from ..runtime import _schedules

    cls = getattr(_errors, kind, None) or getattr(_schedules, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, DurablyError)):
        cls = DurablyError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error
