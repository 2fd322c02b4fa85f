"""The local wake-up channel's wire (engine/remote/_wire.py): socket paths, owner-only
sockets, datagrams of JSON objects over real AF_UNIX sockets, and the worker lock."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from durably.remote._wire import (
    MAX_DATAGRAM,
    Sender,
    bind,
    client_socket_path,
    is_fallback,
    private_directory,
    receive,
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
    directory = os.path.dirname(path)
    assert os.path.dirname(directory) == tempfile.gettempdir()
    assert os.path.basename(directory).startswith("durably-")
    assert os.path.basename(path) == "worker.sock"
    assert is_fallback(path) and not is_fallback(worker_socket_path(Path("/srv/s")))
    assert path == worker_socket_path(store)  # stable: clients find the worker
    assert path != worker_socket_path(Path(str(store) + "b"))  # one per store


def test_the_fallback_directory_must_be_private_and_ours(tmp_path: Path) -> None:
    mine = tmp_path / "durably-mine"
    assert private_directory(str(mine / "worker.sock"))  # made, 0700
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o700
    assert private_directory(str(mine / "worker.sock"))  # and found again
    shared = tmp_path / "durably-shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert not private_directory(str(shared / "worker.sock"))  # others may write there
    (tmp_path / "durably-file").write_text("not a directory")
    assert not private_directory(str(tmp_path / "durably-file" / "worker.sock"))
    (tmp_path / "durably-link").symlink_to(mine)
    assert not private_directory(str(tmp_path / "durably-link" / "worker.sock"))


def test_the_limit_counts_bytes_not_characters() -> None:
    store = Path("/" + "é" * 45)  # 46 characters, 91 bytes: 103 with /worker.sock
    assert len(str(store / "worker.sock")) <= 100
    assert is_fallback(worker_socket_path(store))


def test_client_socket_paths_are_unique_temp_paths() -> None:
    paths = {client_socket_path() for _ in range(20)}
    assert len(paths) == 20
    for path in paths:
        assert os.path.dirname(path) == tempfile.gettempdir()
        assert f"-c{os.getpid()}-" in os.path.basename(path)


# --- bind ---


async def test_bind_makes_an_owner_only_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    sock = await bind(path)
    with sock:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_bind_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    (await bind(path)).close()  # a dead process's socket file stays behind
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with await bind(path) as server, sender() as out:
        assert out.send(path, {"op": "wake"})
        assert await receive(server) == {"op": "wake"}


async def test_bind_replaces_a_leftover_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    path.write_text("junk")
    with await bind(str(path)):
        assert stat.S_ISSOCK(os.stat(path).st_mode)


# --- send and receive ---


@contextlib.contextmanager
def sender() -> Iterator[Sender]:
    out = Sender()
    try:
        yield out
    finally:
        out.close()


async def test_send_and_receive_a_json_object(tmp_path: Path) -> None:
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, sender() as out:
        message = {"op": "signal", "eid": "e-1", "name": "go", "n": [1, 2.5, None, True]}
        assert out.send(server_path, message) is True
        assert await receive(server) == message
        # Datagrams: one message per receive, in order.
        assert out.send(server_path, {"op": "wake", "i": 1})
        assert out.send(server_path, {"op": "wake", "i": 2})
        assert await receive(server) == {"op": "wake", "i": 1}
        assert await receive(server) == {"op": "wake", "i": 2}


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
        await client.sendto(b'{"op": "wake"}', server_path)
        assert await receive(server) == {"op": "wake"}


async def test_a_datagram_over_the_limit_is_refused_whole(tmp_path: Path) -> None:
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, await bind(str(tmp_path / "c.sock")) as client:
        fits = b'{"x": "' + b"a" * (MAX_DATAGRAM - 9) + b'"}'
        assert len(fits) == MAX_DATAGRAM
        await client.sendto(fits, server_path)
        assert await receive(server) == {"x": "a" * (MAX_DATAGRAM - 9)}
        await client.sendto(fits[:-2] + b'a"}', server_path)  # one byte more
        assert await receive(server) is None


def test_send_to_a_path_nobody_listens_on_is_false(tmp_path: Path) -> None:
    with sender() as out:
        assert out.send(str(tmp_path / "nobody.sock"), {"op": "wake"}) is False


async def test_send_to_a_dead_workers_socket_is_false(tmp_path: Path) -> None:
    dead = str(tmp_path / "w.sock")
    (await bind(dead)).close()
    with sender() as out:
        assert out.send(dead, {"op": "wake"}) is False


@pytest.mark.parametrize(
    "path", [None, 42, "", "/tmp/nul\x00inside", "/" + "x" * 300, "/nonexistent/dir/s"]
)
def test_send_to_a_bad_address_is_false_and_never_raises(path: object) -> None:
    with sender() as out:
        assert out.send(path, {"op": "done"}) is False


async def test_send_to_a_full_queue_returns_false_at_once(tmp_path: Path) -> None:
    server_path = str(tmp_path / "w.sock")
    with await bind(server_path) as server, sender() as out:
        sent = 0
        while out.send(server_path, {"op": "wake", "i": sent}):
            sent += 1
            assert sent < 10_000, "the receiver's queue never filled"
        assert sent > 0
        # Nothing was lost of what send reported sent; room again once read.
        assert await receive(server) == {"op": "wake", "i": 0}
        assert out.send(server_path, {"op": "wake", "i": "again"})


def test_a_closed_sender_sends_nothing(tmp_path: Path) -> None:
    out = Sender()
    out.close()
    out.close()
    assert out.send(str(tmp_path / "w.sock"), {"op": "wake"}) is False


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
