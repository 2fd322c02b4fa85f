"""LmdbStore facts: map growth, one worker per path, corruption detected, schema checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from durably import CorruptRecordError, StoreError, StoreLockedError
from durably.stores import (
    Append,
    CreateExecution,
    ExecutionRecord,
    LmdbStore,
    PutMeta,
    PutSchedule,
    PutSignal,
)

CHILD = Path(__file__).with_name("lmdb_child.py")
KIB = 1 << 10


def _record(eid: str) -> ExecutionRecord:
    return ExecutionRecord(
        id=eid, workflow="wf", status="running", input=None, created_ms=1, updated_ms=1
    )


def _child(mode: str, path: Path, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _open_in_child(mode: str, path: Path) -> dict[str, Any]:
    proc = _child(mode, path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding ``tmp_path / "store"`` as its worker."""
    proc = _child("hold", tmp_path / "store")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# --- map growth ---------------------------------------------------------------------------


def test_map_grows_without_losing_data(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path, map_size=64 * KIB, inline=True)
    start = store.map_size()
    body = b"x" * (3 * KIB)
    events = 0
    # ~6 MiB in batches of ~30 KiB, and one batch larger than the map was at its start.
    for n in range(200):
        store.apply([CreateExecution(_record(f"e{n:04d}"), [body] * 10)])
        events += 10
    store.apply([Append("e0000", 10, [b"y" * (128 * KIB)])])
    grown = store.map_size()
    assert grown >= 6 * (1 << 20) > start
    for n in range(200):
        assert store.read_events(f"e{n:04d}") == [body] * 10 + (
            [b"y" * (128 * KIB)] if n == 0 else []
        )
    assert len(store.list_executions(status="running")) == 200
    store.close()

    # Reopening with a smaller map_size must neither shrink the map nor lose anything.
    again = LmdbStore(path, map_size=64 * KIB, inline=True)
    try:
        assert again.map_size() >= grown
        assert again.read_events("e0199") == [body] * 10
        assert len(again.list_executions()) == 200
        again.apply([Append("e0199", 10, [body])])  # and it still writes
    finally:
        again.close()


def test_max_map_size_stops_growth_with_a_clear_error(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "store", map_size=64 * KIB, max_map_size=256 * KIB)
    try:
        store.apply([PutMeta("small", 1)])
        with pytest.raises(StoreError, match="max_map_size") as info:
            store.apply([PutMeta("ok", 2), PutMeta("huge", "x" * (512 * KIB))])
        assert "raise max_map_size" in str(info.value)
        assert store.get_meta("ok") is None, "part of the refused batch was written"
        store.apply([PutMeta("after", 3)])  # the store still works
        assert store.get_meta("after") == 3
        assert store.get_meta("small") == 1
    finally:
        store.close()


# --- one worker per path ------------------------------------------------------------------


def test_second_worker_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path)
    try:
        store.apply([PutMeta("probe", "hello")])
        refused = _open_in_child("open-worker", path)
        assert refused["ok"] is False
        assert refused["type"] == "StoreLockedError"
        assert str(path) in refused["message"]
        assert f"pid {os.getpid()}" in refused["message"]
        # Clients and readers are welcome while the worker runs.
        assert _open_in_child("open-client", path) == {"ok": True, "meta": "hello"}
        assert _open_in_child("open-readonly", path) == {"ok": True, "meta": "hello"}
    finally:
        store.close()
    # Closing the worker frees the path.
    assert _open_in_child("open-worker", path) == {"ok": True, "meta": "hello"}


def test_lock_names_the_holder_and_dies_with_it(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    path = tmp_path / "store"
    with pytest.raises(StoreLockedError) as info:
        LmdbStore(path)
    assert str(path) in str(info.value)
    assert f"pid {holder.pid}" in str(info.value)
    client = LmdbStore(path, lock=False)
    client.apply([PutMeta("probe", 1)])  # a client writes beside the worker
    client.close()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The kernel dropped the flock with the process: the path is free at once.
    store = LmdbStore(path)
    try:
        assert store.get_meta("probe") == 1
        store.apply([PutMeta("probe", 2)])
    finally:
        store.close()


def test_refused_open_keeps_nothing_open(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    path = tmp_path / "store"
    for _ in range(3):  # a refused open must not leak a descriptor holding a lock
        with pytest.raises(StoreLockedError):
            LmdbStore(path)
    holder.stdin.close()  # type: ignore[union-attr]
    assert holder.wait(timeout=30) == 0
    LmdbStore(path).close()


def test_readonly_open_of_a_missing_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(StoreError, match="no store at"):
        LmdbStore(path, readonly=True)
    assert not path.exists(), "a read-only open created the directory"


def test_readonly_store_refuses_writes(tmp_path: Path) -> None:
    LmdbStore(tmp_path / "s").close()
    reader = LmdbStore(tmp_path / "s", readonly=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            reader.apply([PutMeta("x", 1)])
    finally:
        reader.close()


# --- corruption ---------------------------------------------------------------------------


def _tamper(path: Path, table: str, key: bytes, change: Any) -> None:
    """Rewrite one stored value directly through the lmdb module."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        db = env.open_db(table.encode(), create=False)
        with env.begin(write=True) as txn:
            raw = txn.get(key, db=db)
            assert raw is not None, f"no {key!r} in {table}"
            txn.put(key, change(bytearray(raw)), db=db)
    finally:
        env.close()


def _flip(index: int) -> Any:
    def change(raw: bytearray) -> bytes:
        raw[index] ^= 0x01
        return bytes(raw)

    return change


@pytest.fixture
def two_executions(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    store = LmdbStore(path)
    store.apply(
        [
            CreateExecution(_record("good"), [b"g0", b"g1"]),
            CreateExecution(_record("bad"), [b"event zero", b"event one"]),
            PutSignal("bad", "sig", {"a": 1}),
            PutSchedule("nightly", {"cron": "0 0 * * *"}),
        ]
    )
    store.close()
    return path


@pytest.mark.parametrize(
    ("table", "key", "change", "read", "words"),
    [
        ("events", b"bad\x00\x00\x00\x00\x01", _flip(-1), "events", "checksum"),
        ("events", b"bad\x00\x00\x00\x00\x01", _flip(6), "events", "checksum"),
        ("events", b"bad\x00\x00\x00\x00\x00", lambda raw: bytes(raw[:3]), "events", "truncated"),
        ("events", b"bad\x00\x00\x00\x00\x00", _flip(0), "events", "format version"),
        ("executions", b"bad", _flip(-3), "record", "checksum"),
        ("mailbox", b"bad\x00\x00\x00\x00\x00", _flip(-2), "mailbox", "checksum"),
    ],
)
def test_corrupt_record_is_detected(
    two_executions: Path, table: str, key: bytes, change: Any, read: str, words: str
) -> None:
    _tamper(two_executions, table, key, change)
    store = LmdbStore(two_executions)
    try:
        reader = {
            "events": lambda: store.read_events("bad"),
            "record": lambda: store.get_execution("bad"),
            "mailbox": lambda: store.mailbox("bad"),
        }[read]
        with pytest.raises(CorruptRecordError, match=words) as info:
            reader()
        assert info.value.execution_id == "bad"
        # The other execution is unaffected.
        assert store.read_events("good") == [b"g0", b"g1"]
        assert store.get_execution("good") == _record("good")
    finally:
        store.close()


def test_corrupt_schedule_is_detected(two_executions: Path) -> None:
    _tamper(two_executions, "schedules", b"nightly", _flip(-2))
    store = LmdbStore(two_executions)
    try:
        with pytest.raises(CorruptRecordError, match="nightly"):
            store.get_schedule("nightly")
    finally:
        store.close()


def test_missing_event_is_detected(two_executions: Path) -> None:
    env = lmdb.open(str(two_executions), max_dbs=16)
    db = env.open_db(b"events", create=False)  # not inside the write txn: it would deadlock
    with env.begin(write=True) as txn:
        txn.delete(b"bad\x00\x00\x00\x00\x00", db=db)
    env.close()
    store = LmdbStore(two_executions)
    try:
        with pytest.raises(CorruptRecordError, match="event 0 of execution bad is missing"):
            store.read_events("bad")
    finally:
        store.close()


# --- schema version -----------------------------------------------------------------------


@pytest.mark.parametrize("opener", [{}, {"lock": False}, {"readonly": True}])
def test_schema_mismatch_is_refused(tmp_path: Path, opener: dict[str, Any]) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path)
    store.apply([PutMeta("schema", 99)])
    store.close()
    with pytest.raises(StoreError, match="schema version 99") as info:
        LmdbStore(path, **opener)
    assert str(path) in str(info.value)
    assert "Upgrade durably" in str(info.value)
    # The refusal released everything: the path can be opened (and refused) again.
    with pytest.raises(StoreError, match="schema version 99"):
        LmdbStore(path)


def test_new_store_records_its_schema(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "store")
    try:
        from durably.stores._layout import SCHEMA_VERSION

        assert store.get_meta("schema") == SCHEMA_VERSION
    finally:
        store.close()


# --- map growth seen from other threads and processes -------------------------------------


def test_reads_while_another_thread_grows_the_map(tmp_path: Path) -> None:
    """The commit actor grows the map in a worker thread while the event loop reads."""
    store = LmdbStore(tmp_path / "store", map_size=64 * KIB, sync=False)
    done = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(300):
                store.apply([CreateExecution(_record(f"e{n:05d}"), [b"x" * (30 * KIB)])])
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        reads = 0
        while not done.is_set():
            for record in store.list_executions(limit=20):
                assert store.read_events(record.id) == [b"x" * (30 * KIB)]
            reads += 1
    finally:
        thread.join()
    assert not failure, failure
    assert store.map_size() > 8 << 20 and reads > 0
    store.close()


def test_client_reads_while_the_worker_process_grows_the_map(tmp_path: Path) -> None:
    path = tmp_path / "store"
    LmdbStore(path, map_size=64 * KIB).close()
    client = LmdbStore(path, lock=False)
    writer = _child("writer", path)  # grows its map from 256 KiB while it writes
    try:
        assert writer.stdout is not None
        seen = 0
        while seen < 150:  # the writer acknowledges batches; the client keeps reading
            line = writer.stdout.readline()
            assert line.startswith("acked"), writer.stderr.read() if writer.stderr else line
            seen = int(line.split()[1])
            assert (client.get_meta("next") or 0) >= seen + 1
            assert client.get_execution(f"b{seen:06d}") is not None
    finally:
        writer.kill()
        writer.wait()
    assert client.map_size() > 1 << 20, "the client never saw the map grow"
    client.close()
