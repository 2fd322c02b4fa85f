"""Calls carried through the store, at any size up to ``max_payload_bytes``; and a new
store is owner-only: its directory, its files, its socket.

On main a call travelled as one datagram that the worker read 64 KiB of: a schedule with
a 100 KB input timed out after 30 s with a vague error, one of 300 KB raised a raw
``OSError: Message too long``.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import durably
from durably.remote._wire import worker_socket_path
from durably.stores import LmdbStore

from ._helpers import worker

KB = 1000


@pytest.mark.slow
@pytest.mark.parametrize("size", [100 * KB, 300 * KB])
async def test_a_schedule_call_with_a_large_input_is_run_by_the_worker(
    tmp_path: Path, size: int
) -> None:
    with worker(tmp_path / "store") as w:
        big = "x" * size
        async with durably.Client(w.reader) as c:
            sid = await c.schedule("quick", big, delay=3600)
            assert (await c.get_schedule(sid)).input == big
            assert await c.ensure_schedule("quick", big, id="every", interval=3600) == "every"
            assert (await c.get_schedule("every")).input == big
            await c.update_schedule("every", input=big + "!")
            assert (await c.get_schedule("every")).input == big + "!"


@pytest.mark.slow
async def test_a_call_over_max_payload_bytes_is_refused_saying_so(tmp_path: Path) -> None:
    with worker(tmp_path / "store", max_payload=200 * KB) as w:
        async with durably.Client(w.reader, max_payload_bytes=200 * KB) as c:
            with pytest.raises(durably.PayloadError, match=r"over max_payload_bytes \(200000\)"):
                await c.schedule("quick", "x" * 300 * KB, delay=3600)
        # A client allowed more than the worker: the worker refuses, and says why.
        async with durably.Client(w.reader) as c:
            with pytest.raises(
                durably.PayloadError, match=r"over the worker's max_payload_bytes \(200000\)"
            ):
                await c.schedule("quick", "x" * 300 * KB, delay=3600)
            assert await c.list_schedules() == []


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def test_a_new_store_is_owner_only(tmp_path: Path) -> None:
    store = tmp_path / "shop.durably"
    async with durably.Engine(store):
        assert _mode(store) == 0o700
        for name in ("data.mdb", "lock.mdb", "worker.lock", "worker.sock"):
            assert _mode(store / name) == 0o600, name
        other = LmdbStore(tmp_path / "elsewhere", lock=False)  # another store, a client
        try:
            async with durably.Client(other) as c:
                assert c._channel.path is not None
                assert _mode(c._channel.path) == 0o600
        finally:
            other.close()


async def test_the_fallback_socket_of_a_long_path_is_owner_only(tmp_path: Path) -> None:
    store = tmp_path / ("long-" * 25)
    path = worker_socket_path(store)
    assert os.path.dirname(os.path.dirname(path)) == tempfile.gettempdir()
    async with durably.Engine(store):
        assert _mode(os.path.dirname(path)) == 0o700
        assert _mode(path) == 0o600
    assert not _exists(path)


async def test_a_fallback_directory_others_can_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / ("shared-" * 20)
    path = worker_socket_path(store)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.chmod(os.path.dirname(path), 0o777)  # as if another user had made it first
    try:
        with caplog.at_level(logging.WARNING, logger="durably"):
            async with durably.Engine(store):
                await trio.lowlevel.checkpoint()
                assert not _exists(path)
        assert "is not a private directory of this user" in caplog.text
    finally:
        os.rmdir(os.path.dirname(path))
