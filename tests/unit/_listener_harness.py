"""A worker's listener over a real store, real committer and real AF_UNIX sockets, acting
through a ``WorkerPort`` that records its calls; shared by the channel and inbox tests."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from durably.core._records import INBOX_START
from durably.remote._channel import ClientChannel
from durably.remote._listener import Listener
from durably.remote._wire import Sender, bind, client_socket_path, worker_socket_path
from durably.runtime._clock import Clock
from durably.runtime._commit import Committer
from durably.runtime._ports import Settings, first_signal
from durably.stores import (
    CreateExecution,
    ExecutionRecord,
    MailboxEntry,
    MemoryStore,
    Notify,
    Store,
)

Answer = Callable[[str, dict[str, Any]], Awaitable[Any]]
Stranger = tuple[trio.socket.SocketType, str]  # a bare socket and the path it is bound at


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def put(store: Store, eid: str, status: str = "running", **changes: Any) -> None:
    record = ExecutionRecord(
        id=eid, workflow="wf", status=status, input=None, created_ms=1, updated_ms=1, **changes
    )
    store.apply([CreateExecution(record, [b"event 0"])])


def sock_path(tmp_path: Path, name: str) -> str:
    """A socket path in ``tmp_path`` (in the temp dir if ``tmp_path`` is too long for one)."""
    (tmp_path / name).mkdir(exist_ok=True)
    return worker_socket_path(tmp_path / name)


class FakeWorker:
    """The ``WorkerPort`` a listener acts through: exactly the protocol, recording calls;
    its parts are real (the store, a committer, a clock, the settings)."""

    def __init__(self, store: Store, max_payload_bytes: int) -> None:
        self.parts = SimpleNamespace(
            store=store,
            committer=Committer(store),
            clock=Clock(),
            settings=Settings(max_payload_bytes=max_payload_bytes),
        )
        self.closing = False
        self.calls: list[tuple[Any, ...]] = []

    def spawn(self, execution_id: str, *, cancel: tuple[Any, Any] | None = None) -> None:
        self.calls.append(("spawn", execution_id, cancel))

    def signalled(self, execution_id: str, waiting: bool) -> None:
        self.calls.append(("signalled", execution_id, waiting))

    def first_signal(self, execution_id: str, name: str) -> MailboxEntry | None:
        return first_signal(self.parts.store, execution_id, name)


class Harness:
    """A listener on a socket next to the store; ``crash`` keeps what ended it, if anything."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        store: Store | None = None,
        poll: float = 5.0,
        max_payload_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.store = store if store is not None else MemoryStore()
        self.worker = FakeWorker(self.store, max_payload_bytes)
        self.path = sock_path(tmp_path, "store")
        self.answers: list[tuple[str, dict[str, Any]]] = []
        self.answer: Answer = self._answer
        self.listener = Listener(self.worker, lambda m, a: self.answer(m, a), self.path, poll)
        self.crash: BaseException | None = None
        self.sender = Sender()
        put(self.store, "probe")

    async def _answer(self, method: str, args: dict[str, Any]) -> Any:
        self.answers.append((method, args))
        return f"answer to {method}"

    async def commit(self, ops: list[Any]) -> list[Any]:
        return await self.worker.parts.committer.commit(ops)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Harness]:
        self.worker.parts.clock.bind()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.worker.parts.committer.run)

            async def run(task_status: trio.TaskStatus[None]) -> None:
                try:
                    await self.listener.run(task_status=task_status)
                except Exception as exc:
                    self.crash = exc

            await nursery.start(run)
            try:
                yield self
            finally:
                self.sender.close()
                self.worker.parts.committer.close()
                nursery.cancel_scope.cancel()

    def hint(self, message: Any = None) -> None:
        """Any datagram at all: the listener looks at the inbox."""
        assert self.sender.send(self.path, {"op": "wake"} if message is None else message)

    async def still_serving(self) -> None:
        """After a bad message: the listener did nothing, is alive, and acts on a write."""
        await trio.testing.wait_all_tasks_blocked()
        assert self.crash is None, repr(self.crash)
        assert self.worker.calls == []
        await self.commit([Notify("probe", INBOX_START)])
        self.hint()
        await trio.testing.wait_all_tasks_blocked()
        assert self.worker.calls == [("spawn", "probe", None)]
        self.worker.calls.clear()


@asynccontextmanager
async def stranger_socket() -> AsyncIterator[Stranger]:
    """A bare datagram socket anyone could open, bound so it can be replied to."""
    path = client_socket_path()
    sock = await bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


@asynccontextmanager
async def open_client(worker_path: str | None) -> AsyncIterator[ClientChannel]:
    """A client's channel as ``Client`` runs it: its nursery ends before ``close``."""
    channel = ClientChannel(worker_path)
    try:
        async with trio.open_nursery() as nursery:
            await channel.open(nursery)
            yield channel
            nursery.cancel_scope.cancel()
    finally:
        channel.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (real time, bounded) until ``condition()`` holds: for the listener's poll
    thread, which runs on the real clock."""
    with trio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - the thread has no event to wait on
            await trio.sleep(0.005)
