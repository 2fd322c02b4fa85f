"""The worker's end of the wake-up channel: the inbox drain, the calls it runs, the
watchers it tells, and the socket that makes it look sooner.

Rules of this module:

- The store is the truth. A client's write carries an inbox entry in its own transaction
  (``Notify``, ``PutCall``); the worker takes the entries (read and removed in one
  transaction) and then acts: spawn, signalled, cancel, run a call. Every action is
  idempotent and re-reads the store, and everything an entry asks for is also found by
  recovery at start, so an entry taken just before a crash costs nothing.
- The worker looks at the inbox whenever any datagram arrives and every
  ``poll_interval`` seconds regardless (one read transaction when it is empty), so with
  every hint lost a client's write is acted on within about ``poll_interval``.
- A datagram carries no authority: it only means "look at the inbox" (or, for a
  ``watch``, "tell this socket when that execution ends", bounded and validated).
- Nothing a datagram, an inbox entry or a call does can stop the listener: every handler
  catches and logs what it raises (``trio.Cancelled`` aside).
- The listener acts through a ``WorkerPort`` (the supervisor) and an ``answer`` callable
  (the engine's calls); it knows nothing else of the engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from durably.stores import ExpireReplies, InboxEntry, MailboxEntry, PutReply, Store, TakeInbox

from ..core._calls import (
    REPLY_TTL_MS,
    check_call,
    decode_request,
    encode_reply,
    is_socket_path,
)
from ..core._errors import DurablyError, PayloadError, StoreClosedError
from ..core._records import (
    CANCEL_SIGNAL,
    INBOX_CALL,
    INBOX_CANCEL,
    INBOX_SIGNAL,
    INBOX_START,
    cancel_args,
)
from ..core._status import TERMINAL
from . import _wire

if TYPE_CHECKING:
    from ..runtime._ownership import Ownership

log = logging.getLogger("durably")
SCHEDULE_OWNER = "schedule:"

#: Inbox entries taken per transaction.
_PAGE = 500
#: Watchers kept, per execution and in all; past either, the oldest is forgotten (its
#: client still re-reads the store every ``poll_interval``).
MAX_WATCHERS_PER_EXECUTION = 64
MAX_WATCHERS = 10_000
#: Longest execution id a watch may name (engine ids are 32 characters).
_MAX_ID_BYTES = 256


class WorkerPort(Protocol):
    """What the worker's end of the channel needs of the supervisor."""

    @property
    def parts(self) -> Any: ...

    @property
    def closing(self) -> bool: ...

    def spawn(
        self, execution_id: str, *, cancel: tuple[str | None, str | None] | None = None
    ) -> None: ...

    def signalled(self, execution_id: str, waiting: bool) -> None: ...

    def first_signal(self, execution_id: str, name: str) -> MailboxEntry | None: ...


class Listener:
    """The worker's end: drain the inbox, run clients' calls, tell watchers, listen."""

    def __init__(
        self,
        worker: WorkerPort,
        answer: Callable[[str, dict[str, Any]], Awaitable[Any]],
        path: str | None,
        poll_interval: float,
    ) -> None:
        self._worker = worker
        self._answer = answer
        self.path = path
        self._poll_interval = poll_interval
        self._sender = _wire.Sender()
        self._nursery: trio.Nursery | None = None
        self._kicked = trio.Event()
        self._kicked.set()  # the first look: what was written while no worker ran
        #: eid -> reply paths (oldest first), and every (eid, reply) in arrival order.
        self._watchers: dict[str, dict[str, None]] = {}
        self._watch_order: dict[tuple[str, str], None] = {}
        self.looks = 0
        """How many times the inbox was found holding entries (for tests and figures)."""
        #: A worker of many: takes only its shards' entries, watches only its executions.
        self.ownership: Ownership | None = None
        self._siblings = None if path is None else _wire.Siblings(path)
        #: Told of a schedule another worker of many changed (its owner arms it).
        self.on_schedule: Callable[[str], None] | None = None

    @property
    def _store(self) -> Store:
        store: Store = self._worker.parts.store
        return store

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = await self._bind()
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._drain_loop)
                if sock is not None:
                    nursery.start_soon(self._receive_loop, sock)
                token = trio.lowlevel.current_trio_token()
                # (A listener is made only for a store that other processes write.)
                threads.append(
                    threading.Thread(
                        target=self._poll, args=(stop, token), name="durably-inbox-poll"
                    )
                )
                # A store that hears of clients' writes itself (PostgreSQL's NOTIFY).
                listen = getattr(self._store, "listen_for_inbox", None)
                if listen is not None:
                    args = (self._hint(token), stop)
                    name = "durably-inbox-listen"
                    threads.append(threading.Thread(target=listen, args=args, name=name))
                for thread in threads:
                    thread.daemon = True
                    thread.start()
                task_status.started()
        finally:
            stop.set()
            for thread in threads:
                thread.join()  # at most one inbox read each: the store closes after this
            self._nursery = None
            self._sender.close()
            if sock is not None:
                sock.close()
                with contextlib.suppress(OSError):
                    os.unlink(str(self.path))

    async def _bind(self) -> trio.socket.SocketType | None:
        """The worker's socket, or None: without one, hints are lost and the periodic
        look still finds every write (a warning says so)."""
        if self.path is None:
            return None
        try:
            if _wire.is_fallback(self.path) and not _wire.private_directory(self.path):
                log.warning(
                    "durably: %s is not a private directory of this user; the worker "
                    "listens on no socket (clients' writes are found by the periodic look)",
                    os.path.dirname(self.path),
                )
                return None
            return await _wire.bind(self.path)
        except OSError as exc:
            log.warning(
                "durably: cannot listen on %s (%s); clients' writes are found by the "
                "periodic look every %s s",
                self.path,
                exc,
                self._poll_interval,
            )
            return None

    # --- looking at the inbox ---

    def hint_siblings(self) -> None:
        """Make the other workers of many look at the inbox now (this one wrote there
        for an execution of theirs); on PostgreSQL the write's NOTIFY does it."""
        if self._siblings is not None:
            for path in self._siblings.paths():
                if path != self.path:
                    self._sender.send(path, {"op": "look"})

    def kick(self) -> None:
        """Look at the inbox soon (a datagram arrived, or the periodic look found work)."""
        self._kicked.set()

    def _hint(self, token: trio.lowlevel.TrioToken) -> Callable[[], None]:
        """A ``kick`` callable from any thread (a no-op once the run is over)."""

        def hint() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self.kick)

        return hint

    def _poll(self, stop: threading.Event, token: trio.lowlevel.TrioToken) -> None:
        """The periodic look, on a thread of its own in real time: it does not depend on
        the event loop being free, and a virtual clock does not spin it through every
        interval of a long wait. Only a non-empty inbox reaches the loop."""
        failed = False
        while not stop.wait(self._poll_interval):
            try:
                waiting = self._store.inbox_waiting()
            except StoreClosedError:
                return
            except Exception as exc:
                if not failed:
                    log.warning("durably: the periodic look at the inbox failed: %s", exc)
                failed = True
                continue
            failed = False
            if waiting:
                try:
                    token.run_sync_soon(self.kick)
                except trio.RunFinishedError:
                    return

    async def _drain_loop(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked = trio.Event()
            await self.drain()

    async def drain(self) -> None:
        """Take what clients' writes left in the inbox and act on each entry."""
        try:
            while not self._worker.closing and self._store.inbox_waiting():
                self.looks += 1
                own = self.ownership
                take = TakeInbox(_PAGE) if own is None else own.take_inbox(_PAGE)
                [entries] = await self._worker.parts.committer.commit([take])
                for entry in entries:
                    self._act(entry)
                if not entries:
                    return
        except Exception as exc:
            log.warning("durably: taking the inbox failed (%s); the next look tries again", exc)

    def _act(self, entry: InboxEntry) -> None:
        try:
            if entry.kind == INBOX_CALL:
                if self._nursery is not None:
                    self._nursery.start_soon(self._run_call, entry.key, entry.request)
            elif entry.kind in (INBOX_START, INBOX_SIGNAL, INBOX_CANCEL):
                self._look_at(entry.key, entry.kind)
            else:
                log.warning(
                    "durably: an inbox entry of unknown kind %.40r (for %.80r) was ignored; "
                    "was it written by a newer durably?",
                    entry.kind,
                    entry.key,
                )
        except Exception:
            log.exception("durably: acting on the inbox entry %.80r failed", entry.key)

    def _look_at(self, eid: str, kind: str) -> None:
        if eid.startswith(SCHEDULE_OWNER):  # another worker of many changed a schedule
            if self.on_schedule is not None:
                self.on_schedule(eid[len(SCHEDULE_OWNER) :])
            return
        record = self._store.get_execution(eid)
        if record is None or record.status in TERMINAL:
            return
        if kind == INBOX_START:
            self._worker.spawn(eid)
        elif kind == INBOX_CANCEL:
            request = self._worker.first_signal(eid, CANCEL_SIGNAL)
            if request is not None:
                self._worker.spawn(eid, cancel=cancel_args(request.payload))
        else:
            awaited = record.waiting_signal
            waiting = awaited is not None and self._worker.first_signal(eid, awaited) is not None
            self._worker.signalled(eid, waiting)

    # --- calls ---

    async def _run_call(self, token: str, raw: bytes | Exception | None) -> None:
        """Run a client's call and store the answer; then tell the client's socket."""
        if raw is None:
            return  # withdrawn by its client before it was taken
        reply_to: str | None = None
        try:
            if isinstance(raw, Exception):
                raise raw
            request = decode_request(self._checked_size(raw), _wire.MAX_SOCKET_PATH)
            reply_to = request.reply
            if self._worker.parts.clock.now_ms() > request.deadline_ms:
                log.warning("durably: a client's call came after its caller gave up; not run")
                return
            method, args = check_call(request.method, request.args)
            answer = encode_reply(await self._answer(method, args))
        except DurablyError as exc:
            log.warning("durably: a client's call was refused: %s", exc)
            answer = encode_reply(error=exc)
        except Exception as exc:
            log.exception("durably: running a client's call failed")
            answer = encode_reply(
                error=DurablyError(
                    f"the worker failed running the call ({type(exc).__name__}: {exc}); "
                    "see the worker's log"
                )
            )
        await self._store_answer(token, answer, reply_to)

    def _checked_size(self, raw: bytes) -> bytes:
        limit = self._worker.parts.settings.max_payload_bytes
        if len(raw) > limit:
            raise PayloadError(
                f"the call's request is {len(raw)} bytes encoded, over the worker's "
                f"max_payload_bytes ({limit}); nothing was run. Keep large data outside "
                "the store (a file, an object store) and pass a reference to it."
            )
        return raw

    async def _store_answer(self, token: str, answer: bytes, reply_to: str | None) -> None:
        now = self._worker.parts.clock.now_ms()
        try:
            await self._worker.parts.committer.commit(
                [PutReply(token, now, answer), ExpireReplies(now - REPLY_TTL_MS)]
            )
        except Exception as exc:
            log.warning("durably: the answer to a client's call was not stored: %s", exc)
            return
        if reply_to is not None:
            self._sender.send(reply_to, {"op": "called", "eid": token})

    # --- datagrams and watchers ---

    async def _receive_loop(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                message = await _wire.receive(sock)
            except OSError as exc:
                log.warning("durably: reading the worker's socket failed: %s", exc)
                await trio.sleep(0.1)
                continue
            self.kick()  # any datagram at all: look at the inbox
            if message is not None and message.get("op") == "watch":
                try:
                    self._on_watch(message.get("eid"), message.get("reply"))
                except Exception:
                    log.exception("durably: a watch datagram could not be handled")

    def _on_watch(self, eid: Any, reply: Any) -> None:
        if not (
            isinstance(eid, str)
            and 0 < len(eid.encode(errors="replace")) <= _MAX_ID_BYTES
            and "\x00" not in eid
            and is_socket_path(reply, _wire.MAX_SOCKET_PATH)
        ):
            log.debug("durably: a malformed watch datagram was ignored")
            return
        if self.ownership is not None and not self.ownership.owns(eid):
            return  # another worker's: its owner answers the watch (clients hint every one)
        try:
            record = self._store.get_execution(eid)
        except DurablyError:
            record = None  # unreadable: the client re-reads and sees it quarantined
        if record is None or record.status in TERMINAL:
            self._sender.send(reply, {"op": "done", "eid": eid})
            return
        self._watch(eid, reply)

    def _watch(self, eid: str, reply: str) -> None:
        key = (eid, reply)
        if key in self._watch_order:
            del self._watch_order[key]  # watched again: now the newest
            self._watch_order[key] = None
            return
        replies = self._watchers.get(eid, {})
        if len(replies) >= MAX_WATCHERS_PER_EXECUTION:
            self._unwatch(eid, next(iter(replies)))
        if len(self._watch_order) >= MAX_WATCHERS:
            self._unwatch(*next(iter(self._watch_order)))
        self._watchers.setdefault(eid, {})[reply] = None
        self._watch_order[key] = None

    def _unwatch(self, eid: str, reply: str) -> None:
        self._watch_order.pop((eid, reply), None)
        replies = self._watchers.get(eid)
        if replies is not None:
            replies.pop(reply, None)
            if not replies:
                del self._watchers[eid]

    @property
    def watching(self) -> int:
        """How many (execution, client socket) watches are kept now."""
        return len(self._watch_order)

    def finished(self, execution_id: str) -> None:
        """An execution ended: tell the clients watching it."""
        for reply in self._watchers.pop(execution_id, {}):
            self._watch_order.pop((execution_id, reply), None)
            self._sender.send(reply, {"op": "done", "eid": execution_id})
