"""PostgresStore on a real server: what the conformance suite does not reach. A batch's
reads see its own writes; long scans cross chunks; a batch of steps costs two round
trips; durably's tables are made once under concurrent opens and a newer version is
refused; the worker lock; and a lost connection or a stopped server is a clear
``StoreError`` that wrote nothing, after which the store reconnects."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="PostgresStore needs durably[postgres]")

import durably  # noqa: E402
from durably.stores import (  # noqa: E402
    Append,
    CreateExecution,
    ExecutionRecord,
    MemoryStore,
    Notify,
    Op,
    PostgresStore,
    PutExecution,
    PutMeta,
    PutSignal,
    ResetLog,
    TakeInbox,
    TakeSignal,
)
from durably.stores._pg_schema import DDL_VERSION  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres"


def record(eid: str, status: str = "running", **kw: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=eid, workflow="wf", status=status, input=None, created_ms=1, updated_ms=1, **kw
    )


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn)
    yield opened
    opened.close()


def answers(store: Any, batch: Sequence[Op]) -> Any:
    try:
        return store.apply(batch)
    except Exception as exc:
        return type(exc).__name__


def test_a_batch_reads_its_own_writes_as_memory_does(store: PostgresStore) -> None:
    """Scans inside a batch see the batch's puts and deletes (the write buffer merged
    into the server's rows), as MemoryStore's do: a receipt behind a taken entry, a
    timeout check behind a new signal, a log reset over a new append, the inbox."""
    model = MemoryStore()
    setup: list[Op] = [
        CreateExecution(record("w", "waiting", waiting_signal="go"), [b"e0"]),
        PutSignal("w", "go", 1),
    ]
    batches: list[list[Op]] = [
        [TakeSignal("w", 0), PutSignal("w", "go", 2)],  # delivered: the older one is taken
        [PutSignal("w", "go", 3), PutSignal("w", "go", 4)],
        [Append("w", 1, [b"e1", b"e2"]), ResetLog("w", [b"fresh"])],
        [Notify("w", "signal"), Notify("x", "start"), TakeInbox(10)],
        [ResetLog("w", []), Append("w", 0, [b"again"]), TakeSignal("w", 1), TakeSignal("w", 2)],
        [PutExecution(record("w", "completed")), PutSignal("w", "go", 5)],
    ]
    for batch in [setup, *batches]:
        assert answers(store, batch) == answers(model, batch), batch
        assert store.read_events("w") == model.read_events("w")
        assert store.mailbox("w") == model.mailbox("w")
        assert store.list_executions(status="waiting") == model.list_executions(status="waiting")
    assert store.read_events("w") == [b"again"]
    assert not store.inbox_waiting()


def test_long_scans_cross_chunks_in_reads_and_writes(store: PostgresStore) -> None:
    events = [f"event {n}".encode() for n in range(3000)]
    store.apply([CreateExecution(record("long"), events)])
    assert store.read_events("long") == events
    assert store.read_events("long", 1234) == events[1234:]
    # A reset deletes the log through one scan of the write transaction, chunk by chunk.
    store.apply([ResetLog("long", [b"new"])])
    assert store.read_events("long") == [b"new"]
    store.apply([CreateExecution(record(f"r{n:04d}"), []) for n in range(300)])
    listed = store.list_executions(status="running")
    assert [r.id for r in listed] == ["long"] + [f"r{n:04d}" for n in range(300)]
    assert [r.id for r in store.list_executions(status="running", after="r0149", limit=3)] == [
        "r0150",
        "r0151",
        "r0152",
    ]


def test_a_batch_of_steps_costs_two_round_trips(store: PostgresStore) -> None:
    """BEGIN, the lock and one prefetch of every key the ops read; then the writes with
    the COMMIT: two waits for the server, however many executions the batch holds."""
    store.apply([CreateExecution(record(f"e{n}"), [b"started"]) for n in range(200)])
    assert store.last_round_trips == 2
    store.apply([Append(f"e{n}", 1, [b"step"]) for n in range(200)])
    assert store.last_round_trips == 2
    store.apply([PutExecution(record(f"e{n}", "completed")) for n in range(200)])
    assert store.last_round_trips == 2
    assert store.read_events("e199") == [b"started", b"step"]
    assert len(store.list_executions(status="completed")) == 200
    big = bytes(range(256)) * (64 << 10)  # 16 MiB, the default payload cap
    store.apply([Append("e0", 2, [big])])
    assert store.read_events("e0", 2) == [big]


def _tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'durably%' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_concurrent_first_opens_make_the_tables_once(postgres_dsn: str) -> None:
    start = threading.Barrier(4)
    opened: list[PostgresStore] = []
    failed: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(postgres_dsn, lock=False))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed
    for each in opened:
        each.close()
    assert _tables(postgres_dsn) == ["public.durably_kv", "public.durably_schema"]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT version FROM durably_schema").fetchall() == [(DDL_VERSION,)]


def test_a_store_of_a_newer_durably_is_refused_and_left_alone(postgres_dsn: str) -> None:
    PostgresStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("UPDATE durably_schema SET version = %s", (DDL_VERSION + 1,))
    with pytest.raises(durably.StoreVersionError, match="Upgrade durably") as info:
        PostgresStore(postgres_dsn)
    assert f"table version {DDL_VERSION + 1}" in str(info.value)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT version FROM durably_schema").fetchall() == [(DDL_VERSION + 1,)]
        conn.execute("UPDATE durably_schema SET version = %s", (DDL_VERSION,))
    # The layout's own version (meta "schema"), as LmdbStore checks it.
    with PostgresStoreOpen(postgres_dsn) as store:
        store.apply([PutMeta("schema", 99)])
    with pytest.raises(durably.StoreVersionError, match="layout version 99"):
        PostgresStore(postgres_dsn)


class PostgresStoreOpen:
    def __init__(self, dsn: str, **kw: Any) -> None:
        self.store = PostgresStore(dsn, **kw)

    def __enter__(self) -> PostgresStore:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def test_create_false_refuses_a_database_without_a_store(postgres_dsn: str) -> None:
    with pytest.raises(durably.StoreNotFoundError, match="create=True"):
        PostgresStore(postgres_dsn, create=False)
    assert _tables(postgres_dsn) == []
    PostgresStore(postgres_dsn).close()
    with PostgresStoreOpen(postgres_dsn, create=False, lock=False) as store:
        assert store.get_meta("schema") is not None


def test_one_worker_per_store(postgres_dsn: str) -> None:
    with PostgresStoreOpen(postgres_dsn) as worker:
        with pytest.raises(durably.StoreLockedError, match=f"pid {os.getpid()}") as info:
            PostgresStore(postgres_dsn)
        assert "durably.Client" in str(info.value)
        assert worker.try_worker_lock() is None
        with PostgresStoreOpen(postgres_dsn, lock=False) as client:
            client.apply([PutMeta("client", 1)])
        with PostgresStoreOpen(postgres_dsn, schema="other"):
            pass  # another schema is another store, with a lock of its own
    held = PostgresStoreOpen(postgres_dsn)  # the worker's close released the lock
    held.store.close()


def _terminate_others(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_a_lost_connection_fails_the_call_then_the_store_reconnects(
    store: PostgresStore, postgres_dsn: str
) -> None:
    store.apply([CreateExecution(record("c"), [b"e0"])])
    assert store.get_execution("c") is not None
    assert _terminate_others(postgres_dsn) >= 2  # the writer and the reader
    with pytest.raises(durably.StoreUnavailableError, match="server runs") as info:
        store.apply([Append("c", 1, [b"lost"])])
    assert "cannot be reached while writing a batch" in str(info.value)
    with pytest.raises(durably.StoreUnavailableError):
        store.read_events("c")
    assert store.read_events("c") == [b"e0"]  # nothing of the failed batch was written
    store.apply([Append("c", 1, [b"e1"])])
    assert store.read_events("c") == [b"e0", b"e1"]


def test_a_wrong_dsn_names_the_server_and_never_the_password(postgres_dsn: str) -> None:
    wrong = postgres_dsn.replace("/durably_test_", "/no_such_db_") + "&password=s3cret"
    with pytest.raises(durably.StoreUnavailableError, match="no_such_db_") as info:
        PostgresStore(wrong)
    assert "s3cret" not in str(info.value)
    with pytest.raises(durably.ConfigurationError, match="does not parse"):
        PostgresStore("host=x dbname")


def test_a_stopped_server_is_a_clear_store_error(tmp_path: Path) -> None:
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True)
    if started.returncode == 3:
        pytest.skip("PostgreSQL's server binaries are not installed")
    assert started.returncode == 0, started.stderr
    env = dict(
        line.removeprefix("export ").replace("'", "").split("=", 1)
        for line in started.stdout.splitlines()
    )
    try:
        store = PostgresStore(env["DURABLY_TEST_POSTGRES"])
        store.apply([PutMeta("before", 1)])
    finally:
        subprocess.run([str(SCRIPT), "stop", env["DURABLY_TEST_POSTGRES_DIR"]], check=True)
    with pytest.raises(durably.StoreUnavailableError, match="Check that the server runs"):
        store.apply([PutMeta("after", 1)])
    with pytest.raises(durably.StoreUnavailableError):
        store.get_meta("before")
    store.close()
    with pytest.raises(durably.StoreUnavailableError, match="opening the store"):
        PostgresStore(env["DURABLY_TEST_POSTGRES"])


def test_importing_the_stores_needs_no_psycopg() -> None:
    code = (
        "import sys, durably, durably.stores; assert 'psycopg' not in sys.modules; "
        "durably.stores.PostgresStore; assert 'psycopg' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
