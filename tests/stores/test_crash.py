"""Crash safety with real processes: SIGKILL a writer at random moments, then reopen.

What must hold after every kill: each batch the child reported as committed is present
and complete; no batch is partly present; the store opens clean and takes new writes.
``DURABLY_CRASH_KILLS=500`` runs a longer campaign than CI's default.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from durably.stores import LmdbStore, PutMeta, Timer
from durably.stores._layout import SCHEMA_VERSION

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("lmdb_child.py")
KILLS = int(os.environ.get("DURABLY_CRASH_KILLS", "40"))


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lmdb_child", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


def _spawn(mode: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_at_random(proc: subprocess.Popen[bytes], rng: random.Random, prefix: bytes) -> list[int]:
    """Let the child report a random number of lines, SIGKILL it, return every report.

    Only complete lines count: a line cut by the kill was not fully reported.
    """
    assert proc.stdout is not None
    reported: list[int] = []
    wanted = rng.randint(1, 8)
    while len(reported) < wanted:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"the child died on its own: {err.decode()}")
        reported.append(int(line.removeprefix(prefix)))
    if rng.random() < 0.7:
        time.sleep(rng.random() * 0.004)  # the moment of the kill, not a wait for anything
    proc.send_signal(signal.SIGKILL)
    # From the same buffered reader: readline() may have buffered lines already.
    rest = proc.stdout.read()
    assert proc.wait() == -signal.SIGKILL
    for line in rest.split(b"\n")[:-1]:  # the last piece has no newline: not reported
        reported.append(int(line.removeprefix(prefix)))
    return reported


def _check_batch(store: LmdbStore, n: int) -> None:
    eid = f"b{n:06d}"
    count = child.events_in(n)
    record = store.get_execution(eid)
    assert record is not None, f"batch {n}: execution missing"
    assert record.input == {"batch": n, "events": count}, f"batch {n}: wrong record"
    events = store.read_events(eid)
    assert events == [child.event_body(n, i) for i in range(count)], f"batch {n}: events"
    assert store.get_meta(f"batch-{n}") == count, f"batch {n}: meta entry"


def _verify(path: Path, acked: set[int], checked: int) -> int:
    """Check the store after a kill; return its batch count. Batches < checked were
    fully checked before and only their presence is checked again."""
    store = LmdbStore(path, map_size=256 << 10)
    try:
        total = store.get_meta("next") or 0
        # The batches present are exactly 0..total-1: nothing missing, nothing extra (a
        # half-written batch would show as an execution, timer or meta beyond `next`).
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


def test_sigkill_during_synced_batches_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "store"
    rng = random.Random(int(os.environ.get("DURABLY_CRASH_SEED", "0")) or None)
    acked: set[int] = set()
    checked = 0
    unacked_but_committed = 0
    for _ in range(KILLS):
        reported = _kill_at_random(_spawn("writer", path), rng, b"acked ")
        # A restarted writer continues at `next`: reports are consecutive from there.
        assert reported == list(range(checked, checked + len(reported))), reported
        acked.update(reported)
        total = _verify(path, acked, checked)
        # The batch in flight at the kill may have committed without being reported.
        unacked_but_committed += total - (max(acked) + 1)
        assert total - (max(acked) + 1) in (0, 1), "more than the in-flight batch committed"
        checked = total
    # After the campaign: the store still takes writes, and everything is there.
    store = LmdbStore(path)
    try:
        store.apply([PutMeta("after", 1)])
        for n in range(checked):
            _check_batch(store, n)
        print(
            f"{KILLS} kills, {checked} batches committed, {len(acked)} acknowledged, "
            f"{unacked_but_committed} committed but unreported at the kill, "
            f"map {store.map_size() >> 10} KiB"
        )
    finally:
        store.close()


def test_sigkill_while_creating_a_store_reopens_clean(tmp_path: Path) -> None:
    rng = random.Random()
    kills = max(KILLS // 3, 10)
    for k in range(kills):
        root = tmp_path / f"run{k}"
        root.mkdir()
        proc = _spawn("creator", root)
        assert proc.stdout is not None
        # Wait for one finished creation so the kill lands in the creation loop, not at
        # interpreter start-up; then kill within the next few creations.
        assert proc.stdout.readline().startswith(b"created"), proc.stderr
        time.sleep(rng.random() * 0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        stores = sorted(root.iterdir(), key=lambda p: int(p.name))
        for where in stores:  # the last one was being created when the kill came
            store = LmdbStore(where)
            try:
                assert store.get_meta("schema") == SCHEMA_VERSION, (
                    f"{where}: no schema after reopening"
                )
                assert store.list_executions() == []
                store.apply([PutMeta("probe", where.name)])
                assert store.get_meta("probe") == where.name
            finally:
                store.close()
