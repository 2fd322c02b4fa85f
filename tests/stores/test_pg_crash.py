"""Crash safety of PostgresStore with real processes: SIGKILL a writer at random moments.

What must hold after every kill: each batch the child reported as committed is present
and complete; no batch is partly present (the server rolls back the transaction of a
connection that died); the store opens clean, its worker lock is free again, and it
takes new writes. ``DURABLY_CRASH_KILLS`` scales the campaign as for LMDB's.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("psycopg", reason="PostgresStore needs durably[postgres]")

from durably.stores import PostgresStore, PutMeta, Timer

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("pg_child.py")
KILLS = max(int(os.environ.get("DURABLY_CRASH_KILLS", "40")) // 4, 5)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The kill and the batches are LMDB's crash test's own: one campaign, two stores.
lmdb_crash = _load("test_crash")
child = lmdb_crash.child


def _spawn(mode: str, dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )


def _check_batch(store: PostgresStore, n: int) -> None:
    eid = f"b{n:06d}"
    count = child.events_in(n)
    record = store.get_execution(eid)
    assert record is not None, f"batch {n}: execution missing"
    assert record.input == {"batch": n, "events": count}, f"batch {n}: wrong record"
    assert store.read_events(eid) == [child.event_body(n, i) for i in range(count)], n
    assert store.get_meta(f"batch-{n}") == count, f"batch {n}: meta entry"


def _verify(dsn: str, acked: set[int], checked: int) -> int:
    # As the worker: the killed writer's lock must be free again.
    store = PostgresStore(dsn)
    try:
        total = store.get_meta("next") or 0
        ids = [r.id for r in store.list_executions()]
        assert ids == [f"b{n:06d}" for n in range(total)], "executions are not 0..next-1"
        assert store.due_timers(1 << 62) == [Timer(n, f"b{n:06d}", "t") for n in range(total)]
        assert store.get_meta(f"batch-{total}") is None, "a batch beyond `next` left a trace"
        missing = sorted(acked - set(range(total)))
        assert not missing, f"acknowledged batches lost: {missing[:10]}"
        for n in range(checked, total):
            _check_batch(store, n)
        return total
    finally:
        store.close()


def test_sigkill_during_batches_loses_nothing_acknowledged(postgres_dsn: str) -> None:
    rng = random.Random(int(os.environ.get("DURABLY_CRASH_SEED", "0")) or None)
    acked: set[int] = set()
    checked = 0
    in_flight_committed = 0
    for _ in range(KILLS):
        reported = lmdb_crash._kill_at_random(_spawn("writer", postgres_dsn), rng, b"acked ")
        assert reported == list(range(checked, checked + len(reported))), reported
        acked.update(reported)
        total = _verify(postgres_dsn, acked, checked)
        in_flight_committed += total - (max(acked) + 1)
        assert total - (max(acked) + 1) in (0, 1), "more than the in-flight batch committed"
        checked = total
    store = PostgresStore(postgres_dsn)
    try:
        store.apply([PutMeta("after", 1)])
        for n in range(checked):
            _check_batch(store, n)
    finally:
        store.close()
    print(
        f"{KILLS} kills, {checked} batches committed, {len(acked)} acknowledged, "
        f"{in_flight_committed} committed but unreported at the kill"
    )


def test_a_killed_worker_frees_its_lock(postgres_dsn: str) -> None:
    holder = _spawn("hold", postgres_dsn)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line.startswith(b"ready"), holder.stderr.read() if holder.stderr else line
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        PostgresStore(postgres_dsn)
    holder.kill()
    holder.communicate()
    PostgresStore(postgres_dsn).close()  # taken at once: the server ended the session
