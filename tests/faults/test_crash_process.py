"""Entries 3, 4 and 5 with real processes: SIGKILL during group commits, SIGKILL while the
store is being created, and a second worker on a path that one already holds."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import trio

import durably
from durably.stores import LmdbStore

from ._helpers import WORKER, lmdb_engine, run_worker

pytestmark = pytest.mark.slow


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _check_all_or_none(store_dir: Path, acked: dict[str, str]) -> dict[str, int]:
    """Every acknowledged start exists; every record agrees with its log (a record change
    rides in the same batch as its event, so a torn batch would show as a disagreement)."""
    store = LmdbStore(store_dir, readonly=True)
    statuses: dict[str, int] = {}
    try:
        for key, eid in acked.items():
            assert store.find_idempotent("batchy", key) == eid
        for record in store.list_executions(limit=None):
            log = [orjson.loads(raw) for raw in store.read_events(record.id)]  # no gaps
            tags = [e["t"] for e in log]
            assert tags[0] == "started"
            steps = tags.count("step.completed")
            # A worker's own start is created running (it runs it at once): a record that
            # says running may hold no step yet; none says pending.
            if record.status == "running":
                assert steps <= 3 and tags == ["started"] + ["step.completed"] * steps
            else:
                assert record.status == "completed"
                assert tags == ["started"] + ["step.completed"] * 3 + ["completed"]
                assert record.result == sum(e.get("result", 0) for e in log[1:4])
            statuses[record.status] = statuses.get(record.status, 0) + 1
    finally:
        store.close()
    return statuses


def test_03_crash_during_group_commit_keeps_all_or_none(tmp_path: Path) -> None:
    store_dir, count = tmp_path / "store", 200
    rng = random.Random(3)
    acked: dict[str, str] = {}
    for _ in range(3):
        proc = _spawn("group-commit", str(store_dir), str(count))
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.05, 0.4))  # mid-burst: batches of many producers in flight
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.decode().splitlines():
            if line.startswith("ack "):
                _, key, eid = line.split()
                acked[key] = eid
        _check_all_or_none(store_dir, acked)
    assert acked  # the kills landed after acknowledgements, not before any
    final = run_worker("group-commit", str(store_dir), str(count))
    assert final.returncode == 0, final.stderr
    assert _check_all_or_none(store_dir, acked) == {"completed": count}


def test_04_crash_while_the_store_is_being_created_reopens_clean(tmp_path: Path) -> None:
    started = time.monotonic()
    probe = run_worker("create", str(tmp_path / "probe"))
    assert probe.returncode == 0, probe.stderr
    whole = time.monotonic() - started
    rng = random.Random(4)
    killed_midway = 0
    for i in range(4):
        store_dir = tmp_path / f"store{i}"
        proc = _spawn("create", str(store_dir))
        time.sleep(rng.uniform(0.3, 1.0) * whole)  # import, open, create the tables, ...
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_midway += proc.returncode == -signal.SIGKILL
        assert run_worker("create", str(store_dir)).stdout.strip() == '{"result": "hello store"}'
    assert killed_midway >= 2


async def test_04_partial_store_files_reopen_clean(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("hello")
    async def hello(ctx: durably.Context, name: str) -> str:
        return await ctx.step("greet", lambda: f"hello {name}")

    # What a crash can leave: the directory alone, the lock file alone, empty LMDB files.
    leftovers = {"dir": [], "lock": ["worker.lock"], "empty": ["data.mdb", "lock.mdb"]}
    for name, files in leftovers.items():
        store_dir = tmp_path / name
        store_dir.mkdir()
        for file in files:
            (store_dir / file).touch()
        async with lmdb_engine(store_dir, [hello]) as engine:
            assert (await engine.start_and_wait(hello, name)).data == f"hello {name}"


async def test_05_second_worker_on_the_same_path_is_refused_at_once(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "store"
    holder = _spawn("hold", str(store_dir))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"holding\n"
        with pytest.raises(durably.StoreLockedError, match=f"pid {holder.pid}") as info:
            async with durably.Engine(store_dir):
                pass
        assert "one worker" in str(info.value)
        # A client (lock=False) may still open it, e.g. to read.
        client = LmdbStore(store_dir, lock=False)
        assert client.list_executions() == []
        client.close()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel freed the lock with the holder: the path opens at once.
    async with durably.Engine(store_dir) as engine:
        assert await engine.list_executions() == []
