"""The local wake-up channel's wire (engine/remote/_wire.py): socket paths, datagrams of
JSON objects over real AF_UNIX sockets, and the worker lock."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from durably.remote._wire import (
    bind,
    client_socket_path,
    receive,
    send,
    worker_socket_path,
)
from durably.stores._flock import try_lock as try_worker_lock

# --- socket paths ---


def test_worker_socket_sits_in_the_store_directory() -> None:
    assert worker_socket_path(Path("/srv/app/store")) == "/srv/app/store/worker.sock"


def test_worker_socket_path_is_absolute_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    expected = worker_socket_path((tmp_path / "real").resolve())
    assert worker_socket_path(Path("real")) == expected
    assert worker_socket_path(Path("link")) == expected


def test_a_socket_path_of_exactly_100_bytes_is_kept() -> None:
    store = "/" + "a" * (100 - len("/worker.sock") - 1)
    path = worker_socket_path(Path(store))
    assert path == store + "/worker.sock"
    assert len(path.encode()) == 100


def test_a_store_path_too_long_for_a_socket_falls_back_to_a_hashed_temp_path() -> None:
    store = Path("/" + "a" * (100 - len("/worker.sock")))  # one byte too long
    path = worker_socket_path(store)
    assert os.path.dirname(path) == tempfile.gettempdir()
    name = os.path.basename(path)
    assert name.startswith("durably-")
    assert name.endswith(".sock")
    assert path == worker_socket_path(store)  # stable: clients find the worker
    assert path != worker_socket_path(Path(str(store) + "b"))  # one per store


def test_the_limit_counts_bytes_not_characters() -> None:
    store = Path("/" + "é" * 45)  # 46 characters, 91 bytes: 103 with /worker.sock
    assert len(str(store / "worker.sock")) <= 100
    path = worker_socket_path(store)
    assert os.path.dirname(path) == tempfile.gettempdir()


def test_client_socket_paths_are_unique_temp_paths() -> None:
    paths = {client_socket_path() for _ in range(20)}
    assert len(paths) == 20
    for path in paths:
        assert os.path.dirname(path) == tempfile.gettempdir()
        assert f"-c{os.getpid()}-" in os.path.basename(path)


# --- bind ---


async def test_bind_makes_a_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    sock = await bind(path)
    with sock:
        assert stat.S_ISSOCK(os.stat(path).st_mode)


async def test_bind_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    (await bind(path)).close()  # a dead process's socket file stays behind
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with await bind(path) as server, await bind(str(tmp_path / "c.sock")) as client:
        assert await send(client, path, {"op": "wake"})
        assert await receive(server) == {"op": "wake"}


async def test_bind_replaces_a_leftover_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    path.write_text("junk")
    with await bind(str(path)):
        assert stat.S_ISSOCK(os.stat(path).st_mode)


# --- send and receive ---


async def test_send_and_receive_a_json_object(tmp_path: Path) -> None:
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, await bind(str(tmp_path / "c.sock")) as client:
        message = {"op": "signal", "eid": "e-1", "name": "go", "n": [1, 2.5, None, True]}
        assert await send(client, server_path, message) is True
        assert await receive(server) == message
        # Datagrams: one message per receive, in order.
        assert await send(client, server_path, {"op": "wake", "i": 1})
        assert await send(client, server_path, {"op": "wake", "i": 2})
        assert await receive(server) == {"op": "wake", "i": 1}
        assert await receive(server) == {"op": "wake", "i": 2}


async def test_reply_to_the_senders_path(tmp_path: Path) -> None:
    server_path, client_path = str(tmp_path / "w.sock"), str(tmp_path / "c.sock")
    with await bind(server_path) as server, await bind(client_path) as client:
        assert await send(client, server_path, {"op": "watch", "reply": client_path})
        request = await receive(server)
        assert request is not None
        assert await send(server, request["reply"], {"op": "done", "eid": "e"})
        assert await receive(client) == {"op": "done", "eid": "e"}


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe not json", b"{unterminated", b"[1, 2]", b'"text"', b"42", b"null", b""],
)
async def test_receive_of_anything_but_a_json_object_is_none(tmp_path: Path, raw: bytes) -> None:
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, await bind(str(tmp_path / "c.sock")) as client:
        await client.sendto(raw, server_path)
        assert await receive(server) is None
        # The socket still works afterwards.
        assert await send(client, server_path, {"op": "wake"})
        assert await receive(server) == {"op": "wake"}


async def test_send_to_a_path_nobody_listens_on_is_false(tmp_path: Path) -> None:
    with await bind(str(tmp_path / "c.sock")) as client:
        assert await send(client, str(tmp_path / "nobody.sock"), {"op": "wake"}) is False


async def test_send_to_a_dead_workers_socket_is_false(tmp_path: Path) -> None:
    dead = str(tmp_path / "w.sock")
    (await bind(dead)).close()
    with await bind(str(tmp_path / "c.sock")) as client:
        assert await send(client, dead, {"op": "wake"}) is False


async def test_send_to_a_full_queue_gives_up_false(tmp_path: Path) -> None:
    # Real clock on purpose: send waits up to one second for room, then gives up.
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, await bind(str(tmp_path / "c.sock")) as client:
        sent = 0
        while await send(client, server_path, {"op": "wake", "i": sent}):
            sent += 1
            assert sent < 10_000, "the receiver's queue never filled"
        assert sent > 0
        # Nothing was lost of what send reported sent; room again once read.
        assert await receive(server) == {"op": "wake", "i": 0}
        assert await send(client, server_path, {"op": "wake", "i": "again"})


# --- the worker lock ---


def test_worker_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    first = try_worker_lock(tmp_path)
    assert first is not None
    assert (tmp_path / "worker.lock").exists()
    try:
        assert try_worker_lock(tmp_path) is None
        assert try_worker_lock(tmp_path) is None
    finally:
        first.close()
    again = try_worker_lock(tmp_path)
    assert again is not None
    again.close()


def test_worker_locks_of_two_stores_are_independent(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = try_worker_lock(tmp_path / "a")
    b = try_worker_lock(tmp_path / "b")
    try:
        assert a is not None
        assert b is not None
    finally:
        for handle in (a, b):
            if handle is not None:
                handle.close()
