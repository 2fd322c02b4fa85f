"""The local wake-up channel (engine/remote/_channel.py, _listener.py) over real AF_UNIX
sockets: hints only make the worker look at the store's inbox; watches; strangers' bytes.

A ``Listener`` over a ``MemoryStore`` (a real committer) acts through a fake
``WorkerPort`` that records its calls; clients are ``ClientChannel``s or a bare
"stranger" socket sending any bytes. A datagram is queued when ``sendto`` returns, so
``wait_all_tasks_blocked`` sees it handled. The inbox drain and the calls are in
``test_inbox.py``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from durably.core._records import CANCEL_SIGNAL, INBOX_CALL, INBOX_CANCEL, INBOX_START
from durably.remote import _listener
from durably.remote._channel import ClientChannel
from durably.remote._wire import bind, client_socket_path, receive
from durably.stores import LmdbStore, Notify, PutSignal

from ._listener_harness import (
    Harness,
    Stranger,
    is_socket,
    open_client,
    put,
    sock_path,
    stranger_socket,
)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture
async def stranger() -> AsyncIterator[Stranger]:
    async with stranger_socket() as pair:
        yield pair


# --- a hint is only "look at the inbox" ---


async def test_a_hint_makes_the_listener_act_on_the_inbox_not_on_the_message(
    h: Harness,
) -> None:
    put(h.store, "e1", "pending")
    async with h.running(), open_client(h.path) as client:
        assert client.hint({"op": "wake", "eid": "probe"})  # no entry for probe
        await trio.testing.wait_all_tasks_blocked()
        assert h.worker.calls == []  # a hint carries no authority
        await h.commit([Notify("e1", INBOX_START)])
        assert client.hint({"op": "anything at all"})
        await trio.testing.wait_all_tasks_blocked()
    assert h.worker.calls == [("spawn", "e1", None)]
    assert not h.store.inbox_waiting()


async def test_a_strangers_call_datagram_runs_nothing(h: Harness, stranger: Stranger) -> None:
    # On main, one datagram could force-fail an execution: a call now travels through the
    # store, so whoever may only write to the socket cannot ask for anything.
    sock, path = stranger
    message = {
        "op": "call",
        "eid": "t1",
        "method": "force_fail",
        "args": {"execution_id": "probe", "reason": "hostile"},
        "reply": path,
    }
    async with h.running():
        await sock.sendto(orjson.dumps(message), h.path)
        await h.still_serving()
        with trio.move_on_after(0.2) as idle:
            await receive(sock)
        assert idle.cancelled_caught  # and nothing is answered
    assert h.answers == []


# --- wait_finished: the worker's "done" ---


async def test_wait_finished_returns_when_the_worker_says_done(
    h: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    put(h.store, "done1", "completed")
    async with h.running(), open_client(h.path) as client:
        for eid in ("done1", "nobody"):  # finished or unknown: answered at once
            start = trio.current_time()
            await client.wait_finished(eid, poll_interval=60)
            assert trio.current_time() == start
        # While the execution runs, the worker keeps the watch: the client wakes at the
        # poll interval (and re-reads the store), then watches again.
        start = trio.current_time()
        await client.wait_finished("probe", poll_interval=2.5)
        assert trio.current_time() - start == pytest.approx(2.5)
        start = trio.current_time()
        returned = trio.Event()

        async def wait() -> None:
            await client.wait_finished("probe", poll_interval=60)
            returned.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert not returned.is_set()
            h.listener.finished("probe")
            await returned.wait()
        assert trio.current_time() == start  # woken by the message, not the poll


async def test_finished_tells_every_watcher_once_and_only_of_its_execution(
    h: Harness, stranger: Stranger, autojump_clock: trio.testing.MockClock
) -> None:
    put(h.store, "other")
    sock, path = stranger
    async with h.running(), open_client(h.path) as client:
        for eid in ("probe", "probe", "other"):  # watched twice: told once
            h.hint({"op": "watch", "eid": eid, "reply": path})
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.wait_finished, "probe", 60)
            await trio.testing.wait_all_tasks_blocked()
            h.listener.finished("probe")
        assert trio.current_time() == start  # the client was told
        assert await receive(sock) == {"op": "done", "eid": "probe"}
        h.listener.finished("probe")  # no watchers left: nothing sent
        with trio.move_on_after(10) as idle:
            await receive(sock)
        assert idle.cancelled_caught  # no second done, none for "other"
        assert h.crash is None


async def test_watchers_are_bounded_per_execution_and_in_all(
    h: Harness, stranger: Stranger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listener, "MAX_WATCHERS", 100)
    for i in range(3):
        put(h.store, f"e{i}")
    sock, path = stranger
    async with h.running():
        # One execution: at most MAX_WATCHERS_PER_EXECUTION sockets, the newest kept.
        for n in range(_listener.MAX_WATCHERS_PER_EXECUTION + 10):
            h.hint({"op": "watch", "eid": "e0", "reply": f"/tmp/nobody-{n}"})
            await trio.testing.wait_all_tasks_blocked()  # the socket queues ten at most
        h.hint({"op": "watch", "eid": "e0", "reply": path})
        await trio.testing.wait_all_tasks_blocked()
        assert h.listener.watching == _listener.MAX_WATCHERS_PER_EXECUTION
        # In all: the oldest watch goes when the bound is reached.
        for n in range(150):
            h.hint({"op": "watch", "eid": f"e{1 + n % 2}", "reply": f"/tmp/nobody-{n}"})
            await trio.testing.wait_all_tasks_blocked()
        assert h.listener.watching == 100
        h.listener.finished("e0")  # e0's watches were the oldest: forgotten
        with trio.move_on_after(0.2) as idle:
            await receive(sock)
        assert idle.cancelled_caught
        await h.still_serving()


# --- the fallback: the store is the truth ---


async def test_a_hint_when_no_worker_listens_is_dropped_silently(tmp_path: Path) -> None:
    dead = sock_path(tmp_path, "dead")
    (await bind(dead)).close()  # a dead worker's socket file
    for worker_path in (dead, sock_path(tmp_path, "nobody")):
        async with open_client(worker_path) as client:
            assert client.path is not None and is_socket(client.path)
            assert client.hint({"op": "wake", "eid": "e1"}) is False
        assert not is_socket(client.path)


async def test_a_hint_to_a_full_queue_returns_at_once_and_is_dropped(h: Harness) -> None:
    # Nobody reads the worker's socket here: its queue fills, and the client never waits.
    sock = await bind(h.path)
    with sock:
        async with open_client(h.path) as client:
            sent = 0
            while client.hint({"op": "wake", "i": sent}):
                sent += 1
                assert sent < 10_000, "the receiver's queue never filled"
            assert sent > 0
            assert client.hint({"op": "wake"}) is False  # still full: dropped, not queued
            assert await receive(sock) == {"op": "wake", "i": 0}


@pytest.mark.parametrize("worker", ["nobody", "dead", "none"])
async def test_without_a_worker_waits_fall_back_to_polling(
    tmp_path: Path, worker: str, autojump_clock: trio.testing.MockClock
) -> None:
    path: str | None = sock_path(tmp_path, "w")
    if worker == "dead":
        (await bind(str(path))).close()
    elif worker == "none":
        path = None  # a store without a path: no channel at all
    async with open_client(path) as client:
        assert (client.path is None) == (worker == "none")
        for _ in range(3):
            start = trio.current_time()
            await client.wait_finished("e1", poll_interval=1.5)
            assert trio.current_time() - start == pytest.approx(1.5)


# --- bytes from a stranger ---

WRONG_SHAPES: list[dict[str, Any]] = [
    {},
    {"op": "wake"},
    {"op": "wake", "eid": None},
    {"op": "wake", "eid": 1},
    {"op": "wake", "eid": ["probe"]},
    {"eid": "probe"},
    {"op": ["wake"], "eid": "probe"},
    {"op": "WAKE", "eid": "probe"},
    {"op": "arm", "eid": "probe"},
    {"op": "done", "eid": "probe"},
    {"op": "called", "eid": "probe", "value": "x"},
    {"op": "watch", "eid": "probe"},
    {"op": "watch", "eid": "probe", "reply": 42},
    {"op": "watch", "eid": "", "reply": "/tmp/x"},
    {"op": "watch", "eid": None, "reply": "/tmp/x"},
    {"op": "watch", "eid": "probe\x00", "reply": "/tmp/x"},
    {"op": "watch", "eid": "x" * 300, "reply": "/tmp/x"},
    {"op": "watch", "eid": "probe", "reply": "relative/path"},
    {"op": "watch", "eid": "probe", "reply": "/tmp/nul\x00inside"},
    {"op": "call", "eid": "t1", "method": "retry"},
    {"op": "call", "eid": "t1", "method": "retry", "args": [1, 2], "reply": "/tmp/x"},
    {"op": "wake", "eid": "x" * 3_000},
    {"op": "wake", "eid": "probe\x00"},
    {"op": "signal", "eid": "é" * 1_000, "name": "go"},
    {"op": "watch", "eid": "x" * 1_000, "reply": "/nonexistent/durably.sock"},
]
GARBAGE = [
    b"",
    b"\xff\xfe\x00 not json",
    b"{unterminated",
    b'{"op": "wake", "eid": "\xff\xfe"}',  # not UTF-8 inside a valid-looking object
    b'{"op": "wake", "eid": "\\ud800"}',  # a lone surrogate
    b"[" * 5000 + b"]" * 5000,
    b'{"op": "wake", "eid": 1' + b"0" * 400 + b"}",
    b'{"op": "wake", "eid": 1e999}',
    b'[{"op": "wake", "eid": "probe"}]',
    b'"wake"',
    b"null",
    orjson.dumps({"op": "wake", "eid": "probe" + "x" * 100_000}),  # over the size limit
    orjson.dumps({"op": "watch", "eid": "probe", "reply": "/tmp/" + "x" * 5000}),
    *map(orjson.dumps, WRONG_SHAPES),
]


@pytest.mark.parametrize("raw", GARBAGE, ids=lambda raw: f"{len(raw)}B:{raw[:30]!r}")
async def test_the_listener_ignores_and_survives_bytes_from_a_stranger(
    h: Harness, stranger: Stranger, raw: bytes
) -> None:
    async with h.running():
        await stranger[0].sendto(raw, h.path)
        await h.still_serving()
    assert h.answers == []


async def test_a_strangers_watch_is_answered(h: Harness, stranger: Stranger) -> None:
    sock, path = stranger
    async with h.running():
        h.hint({"op": "watch", "eid": "x" * 200, "reply": path})
        assert await receive(sock) == {"op": "done", "eid": "x" * 200}  # unknown: done
        await h.still_serving()


@pytest.fixture
def stream_socket() -> Iterator[str]:
    path = client_socket_path()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        sock.listen()
        yield path
    os.unlink(path)


@pytest.mark.parametrize(
    "reply",
    ["", "/tmp/" + "x" * 200, "STREAM", "/nonexistent/dir/sock", "/tmp"],
    ids=["reply-empty", "reply-too-long", "reply-a-stream-socket", "reply-missing", "reply-a-dir"],
)
async def test_a_strangers_bad_reply_address_does_not_crash_the_listener(
    h: Harness, stream_socket: str, reply: str
) -> None:
    # Sending "done" to such an address fails (EINVAL, "path too long", EPROTOTYPE...):
    # caught and logged, like every send.
    put(h.store, "done1", "completed")
    put(h.store, "live")
    reply = stream_socket if reply == "STREAM" else reply
    async with h.running():
        h.hint({"op": "watch", "eid": "done1", "reply": reply})  # answered at once
        h.hint({"op": "watch", "eid": "live", "reply": reply})  # kept, told at the end
        await trio.testing.wait_all_tasks_blocked()
        h.listener.finished("live")
        await h.still_serving()


async def test_an_empty_id_does_not_crash_a_listener_over_lmdb(
    tmp_path: Path, stranger: Stranger
) -> None:
    # LmdbStore.get_execution("") raises lmdb.BadValsizeError (not a DurablyError): a
    # datagram never reads the store with an id it did not check, and an inbox entry
    # whose id cannot be read is logged and dropped.
    db = LmdbStore(tmp_path / "store", inline=True, map_size=1 << 20)
    try:
        h = Harness(tmp_path, store=db)
        async with h.running():
            h.hint({"op": "wake", "eid": ""})
            h.hint({"op": "watch", "eid": "", "reply": stranger[1]})
            await h.commit([Notify("", k) for k in (INBOX_START, INBOX_CANCEL, INBOX_CALL)])
            h.hint()
            await h.still_serving()
    finally:
        db.close()


async def test_an_inbox_entry_of_an_unknown_kind_is_logged_and_dropped(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async with h.running():
        await h.commit([Notify("probe", "from-the-future")])
        h.hint()
        await h.still_serving()
    assert "unknown kind 'from-the-future'" in caplog.text
    assert not h.store.inbox_waiting()


# --- cancel and signal entries ---


async def test_signal_and_cancel_entries_wake_what_the_store_says(h: Harness) -> None:
    put(h.store, "waits", "waiting", waiting_signal="go")
    put(h.store, "other", "waiting", waiting_signal="go")
    put(h.store, "stop", "sleeping")
    put(h.store, "no-request", "sleeping")
    async with h.running():
        await h.commit(
            [
                PutSignal("waits", "go", 1),
                PutSignal("other", "not-go", 2),
                PutSignal("stop", CANCEL_SIGNAL, {"reason": "late", "by": "ops"}),
                Notify("waits", "signal"),
                Notify("other", "signal"),
                Notify("stop", INBOX_CANCEL),
                Notify("no-request", INBOX_CANCEL),
            ]
        )
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
    assert sorted(h.worker.calls) == [
        ("signalled", "other", False),  # not the signal it waits for: buffered
        ("signalled", "waits", True),
        ("spawn", "stop", ("late", "ops")),
    ]


@pytest.mark.parametrize("kind", [INBOX_START, "signal", INBOX_CANCEL])
@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", None])
async def test_entries_for_finished_or_unknown_executions_are_dropped(
    h: Harness, kind: str, status: str | None
) -> None:
    if status is not None:
        put(h.store, "e1", status, waiting_signal="go")
    async with h.running():
        await h.commit([Notify("e1", kind), Notify("e1", INBOX_CALL)])  # a call of nothing
        h.hint()
        await h.still_serving()
    assert not h.store.inbox_waiting()


# --- closing ---


async def test_the_listener_removes_its_socket_when_it_stops(h: Harness) -> None:
    async with h.running():
        assert is_socket(h.path)
    assert not is_socket(h.path)
    assert h.crash is None
    h.listener.finished("probe")  # after the end: nothing to send, nothing raised
    async with open_client(h.path) as client:
        assert client.hint({"op": "wake", "eid": "probe"}) is False  # dropped
    assert h.worker.calls == []


async def test_close_twice_is_fine(tmp_path: Path) -> None:
    never_opened = ClientChannel(sock_path(tmp_path, "w"))
    never_opened.close()
    never_opened.close()
    async with open_client(sock_path(tmp_path, "w")) as client:
        path = client.path
    assert path is not None and not is_socket(path)
    client.close()  # the second close (open_client closed it)
    ClientChannel(None).close()


@pytest.mark.parametrize("how", ["hint", "wait_finished", "open"])
async def test_a_hint_after_close_does_not_raise(
    tmp_path: Path, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_client(sock_path(tmp_path, "w")) as client:
        pass
    if how == "hint":
        assert client.hint({"op": "wake", "eid": "e1"}) is False
    elif how == "wait_finished":
        start = trio.current_time()
        await client.wait_finished("e1", poll_interval=1)
        assert trio.current_time() - start == pytest.approx(1)
    else:
        async with trio.open_nursery() as nursery:
            await client.open(nursery)  # a closed channel stays closed
        assert client.hint({"op": "wake"}) is False


async def test_close_while_the_client_nursery_runs_does_not_crash_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    channel = ClientChannel(sock_path(tmp_path, "w"))
    woke = []
    async with trio.open_nursery() as nursery:
        await channel.open(nursery)

        async def waiter() -> None:
            await channel.wait_finished("e1", poll_interval=60)
            woke.append(trio.current_time())

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        channel.close()  # the receive task ends; the waiter wakes (and would re-read)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == [start]
        nursery.cancel_scope.cancel()
