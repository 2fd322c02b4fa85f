"""A client's end of the wake-up channel: hints to the worker, the wake-ups it sends
back, and calls carried through the store (see ``_wire.py`` and ``_listener.py``).

Rules of this module:

- Every hint follows a durable write that carries its inbox entry; the hint is sent
  before the client's call returns, at once and without waiting (``Sender``): a full
  queue or no worker drops it, and the worker's periodic look finds the entry.
- A call (schedule change, operator action) is a request in the store; the worker's
  answer is a record in the store, which this client takes (reads and removes). The
  datagrams either way only say "look now"; without them, both sides re-read the store.
- ``close`` is idempotent; after it, hints are silent no-ops and waits fall back to
  their poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import trio

from durably.stores import Op, PutCall, TakeReply, WithdrawCall

from ..core import _errors
from ..core._calls import CALL_TIMEOUT_S, decode_reply, encode_request
from ..core._errors import DurablyError, PayloadError
from ..core._shards import ROUTE_MARK
from . import _wire

log = logging.getLogger("durably")

Commit = Callable[[list[Op]], Awaitable[list[Any]]]


class ClientChannel:
    """A client's end: its reply socket, the hints it sends, the wake-ups it waits for."""

    def __init__(self, worker_path: str | None) -> None:
        self.worker_path = worker_path
        self.path: str | None = None
        self._socket: trio.socket.SocketType | None = None
        self._sender: _wire.Sender | None = None
        self._closed = False
        self._finished: dict[str, trio.Event] = {}
        self._called: dict[str, trio.Event] = {}
        self._siblings = None if worker_path is None else _wire.Siblings(worker_path)

    async def open(self, nursery: trio.Nursery) -> None:
        if self.worker_path is None or self._closed:
            return
        if _wire.is_fallback(self.worker_path) and not _wire.private_directory(self.worker_path):
            log.warning(
                "durably: %s is not a private directory of this user; no hints are sent "
                "there (the worker finds this client's writes by its periodic look)",
                os.path.dirname(self.worker_path),
            )
            return
        self._sender = _wire.Sender()
        path = _wire.client_socket_path()
        try:
            self._socket = await _wire.bind(path)
        except OSError as exc:
            log.warning("durably: no reply socket (%s); waits re-read the store", exc)
            return
        self.path = path
        nursery.start_soon(self._receive, self._socket)

    def close(self) -> None:
        """Close the sockets (idempotent); waits in progress wake and re-read the store."""
        if self._closed:
            return
        self._closed = True
        if self._sender is not None:
            self._sender.close()
        if self._socket is not None:
            self._socket.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for waiters in (self._finished, self._called):
            for event in waiters.values():
                event.set()
            waiters.clear()

    def hint(self, message: dict[str, Any]) -> bool:
        """Tell the worker to look at the store now; False if it did not go (no worker,
        a full queue, a closed channel): the worker's periodic look will find it."""
        if self._closed or self._sender is None or self._siblings is None:
            return False
        sent = False
        for path in self._siblings.paths():  # the one worker, or each of many
            sent = self._sender.send(path, message) or sent
        return sent

    async def _receive(self, sock: trio.socket.SocketType) -> None:
        """The worker's wake-ups ("done", "called"); anything else is ignored."""
        while True:
            try:
                message = await _wire.receive(sock)
            except (trio.ClosedResourceError, OSError):
                return  # closed (perhaps while this task still ran)
            if message is None or not isinstance(message.get("eid"), str):
                continue
            op = message.get("op")
            waiters = self._finished if op == "done" else self._called if op == "called" else {}
            event = waiters.pop(message["eid"], None)
            if event is not None:
                event.set()

    async def _wait(self, waiters: dict[str, trio.Event], key: str, seconds: float) -> None:
        event = waiters.get(key)
        if event is None and not self._closed:
            event = waiters[key] = trio.Event()
        with trio.move_on_after(seconds):
            if event is not None:
                await event.wait()
            else:
                await trio.sleep_forever()

    async def wait_finished(self, execution_id: str, poll_interval: float) -> None:
        """Ask the worker to say when the execution ends; wake at ``poll_interval`` at
        the latest, in case the worker is not running (the caller re-reads the store)."""
        if self.path is not None and not self._closed:
            self.hint({"op": "watch", "eid": execution_id, "reply": self.path})
        await self._wait(self._finished, execution_id, poll_interval)

    async def call(
        self,
        commit: Commit,
        now_ms: Callable[[], int],
        method: str,
        args: dict[str, Any],
        *,
        max_payload_bytes: int,
        poll_interval: float,
        store_path: str,
        route: str | None = None,
    ) -> Any:
        """Have the store's worker run ``method`` through the store; its answer, or its
        error as the same durably error type. Gives up after ``CALL_TIMEOUT_S``.
        ``route``: the execution (or ``schedule:<id>``) it concerns, whose owner runs it
        when many workers serve the store (``core/_shards.py``)."""
        token = secrets.token_hex(16)
        if route is not None:
            token = f"{route}{ROUTE_MARK}{token}"
        deadline_ms = now_ms() + int(CALL_TIMEOUT_S * 1000)
        try:
            request = encode_request(method, args, self.path, deadline_ms)
        except TypeError as exc:
            raise PayloadError(
                f"the arguments of {method} cannot be stored as JSON: {exc}"
            ) from exc
        if len(request) > max_payload_bytes:
            raise PayloadError(
                f"the {method} request is {len(request)} bytes encoded, over "
                f"max_payload_bytes ({max_payload_bytes}); nothing was sent. Keep large "
                "data outside the store (a file, an object store) and pass a reference to it."
            )
        await commit([PutCall(token, request)])
        self.hint({"op": "call", "eid": token})
        deadline = trio.current_time() + CALL_TIMEOUT_S
        while True:
            # Outside any cancel scope of ours: an answer taken is never dropped.
            [reply] = await commit([TakeReply(token)])
            left = deadline - trio.current_time()
            if reply is not None or left <= 0:
                break
            await self._wait(self._called, token, min(poll_interval, left))
        self._called.pop(token, None)
        if reply is None:
            await self._withdraw(commit, token, method, store_path)
        if isinstance(reply, Exception):
            raise reply
        answer = decode_reply(reply)
        if answer.error is not None:
            raise _rebuild_error(answer.kind or "", answer.error)
        return answer.value

    async def _withdraw(self, commit: Commit, token: str, method: str, store_path: str) -> NoReturn:
        [pending] = await commit([WithdrawCall(token)])
        if pending:
            raise DurablyError(
                f"the worker of {store_path} did not take the {method} request within "
                f"{CALL_TIMEOUT_S:g} s (is it running? is its event loop blocked?); the "
                "request was withdrawn and nothing was done"
            )
        raise DurablyError(
            f"the worker of {store_path} took the {method} request but did not answer "
            f"within {CALL_TIMEOUT_S:g} s; check the state before trying again"
        )


def _rebuild_error(kind: str, message: str) -> DurablyError:
    """The worker's error as the same durably error type (message only: the worker's
    exception object does not cross the process boundary)."""
    cls = getattr(_errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, DurablyError)):
        cls = DurablyError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error
