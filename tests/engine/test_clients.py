"""Clients in other processes: one worker executes, several clients start, signal and
wait on the same LMDB store concurrently; everything completes exactly once."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

import durably
from durably.stores import LmdbStore

PROCS = Path(__file__).with_name("client_procs.py")


@pytest.mark.slow
def test_worker_and_three_clients_complete_everything_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    effects = tmp_path / "effects.txt"
    clients, per_client = 3, 400
    # The store exists before the clients start (they never create the worker lock).
    LmdbStore(store).close()
    worker = subprocess.Popen(
        [sys.executable, str(PROCS), "worker", str(store), str(effects), str(clients * per_client)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"ready\n"
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROCS), "client", str(store), f"c{n}", str(per_client)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(clients)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert b"ok" in out
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()[-3000:]

    runs = Counter(line.split()[0] for line in effects.read_text().splitlines())
    reader = LmdbStore(store, readonly=True)
    try:
        done = reader.list_executions(status="completed", limit=None)
        assert len(done) == clients * per_client
        assert len(reader.list_executions(limit=None)) == clients * per_client
        assert all(runs[r.id] == 1 for r in done)  # no crash here: exactly once
    finally:
        reader.close()


@pytest.mark.slow
def test_second_worker_is_refused_but_clients_are_welcome(tmp_path: Path) -> None:
    store = tmp_path / "store"
    worker = subprocess.Popen(
        [sys.executable, str(PROCS), "worker", str(store), str(tmp_path / "e"), "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"ready\n"
    try:
        second = subprocess.run(
            [sys.executable, "-c", f"import durably.stores as s; s.LmdbStore({str(store)!r})"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode != 0
        assert "StoreLockedError" in second.stderr and str(worker.pid) in second.stderr
        client = subprocess.run(
            [sys.executable, str(PROCS), "client", str(store), "solo", "1"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert client.returncode == 0, client.stderr.decode()[-2000:]
    finally:
        worker.wait(timeout=60)


async def test_client_reads_and_reports_without_a_worker(tmp_path: Path) -> None:
    @durably.workflow("noop")
    async def noop(ctx: durably.Context, data: None) -> str:
        return "ok"

    async with durably.Client(
        tmp_path / "s", workflows=[noop], poll_interval=0.05, create=True
    ) as client:
        eid = await client.start(noop)
        assert (await client.get_execution(eid)).status is durably.Status.PENDING
        with pytest.raises(durably.WaitTimeoutError):
            await client.wait(eid, timeout=0.3)
    # a worker started later finds the pending execution
    async with durably.Engine(tmp_path / "s", workflows=[noop]) as engine:
        assert await engine.wait(eid) == "ok"
    _ = trio


@pytest.mark.slow
async def test_client_schedules_run_in_the_worker(tmp_path: Path) -> None:
    store = tmp_path / "store"
    flag = tmp_path / "flag"
    flag.write_text("here")
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before any trio work
        [sys.executable, str(PROCS), "worker", str(store), str(tmp_path / "e"), "999"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"ready\n"
    try:
        async with durably.Client(store) as client:
            # The client registers no workflow: the worker validates and owns the write.
            sid = await client.ensure_schedule("flaky", str(flag), id="poll", interval=0.2)
            assert sid == "poll"
            with pytest.raises(durably.UnknownWorkflowError):
                await client.ensure_schedule("nope", None, id="bad", interval=1)
            with trio.fail_after(20):
                # Fires happen in another process: the store is the place to look.
                while len(await client.list_executions(workflow="flaky")) < 3:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await client.pause_schedule("poll")
            paused = await client.get_schedule("poll")
            assert paused.status.value == "paused"
            await client.remove_schedule("poll")
            with pytest.raises(durably.UnknownScheduleError):
                await client.get_schedule("poll")
    finally:
        worker.kill()
        worker.wait()
