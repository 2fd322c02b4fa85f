"""Crash and resume with real processes: SIGKILL a worker mid-run, many times; a new
worker completes every execution, and no step whose result was recorded runs again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from durably.stores import LmdbStore

WORKER = Path(__file__).with_name("crash_worker.py")
N = 150


def _run_worker(
    store: Path, effects: Path, kill_after: float | None, *, after_start: bool = False
) -> bool:
    """Run the worker; SIGKILL it ``kill_after`` seconds after launch (or after it says
    it has started its executions). True if it ran to the end."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(store), str(effects), str(N)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if kill_after is None:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        return b"all done" in out
    if after_start:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line != b"started\n":  # finished or died: nothing to kill mid-run
            proc.wait()
            return False
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return False


@pytest.mark.slow
def test_sigkill_at_many_points_then_resume(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    effects = tmp_path / "effects.txt"
    rng = random.Random(1234)
    kills = 0
    # Kill points spread over start-up, starting, and the middle of the steps.
    for round_ in range(16):
        if round_ % 4 == 0:  # during start-up and the first starts
            _run_worker(store_dir, effects, kill_after=rng.uniform(0.05, 0.3))
        else:  # in the middle of the steps
            _run_worker(store_dir, effects, rng.uniform(0.0, 0.06), after_start=True)
        kills += 1
    assert _run_worker(store_dir, effects, kill_after=None)

    store = LmdbStore(store_dir, readonly=True)
    try:
        executions = store.list_executions(limit=None)
        assert len(executions) == N  # idempotent starts: none twice
        lines = effects.read_text().splitlines()
        runs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for line in lines:
            eid, step, pid = line.split()
            runs[(eid, step)].append(int(pid))
        for record in executions:
            assert record.status == "completed", record
            events = [orjson.loads(raw) for raw in store.read_events(record.id)]
            completed = {e["step_id"]: e["result"] for e in events if e["t"] == "step.completed"}
            assert len(completed) == 8
            for step, recorded_pid in completed.items():
                pids = runs[(record.id, step)]
                # at least once: the recorded run happened; exactly once after the record:
                # the recorded run is the last run of that step
                assert recorded_pid in pids
                assert pids[-1] == recorded_pid, (record.id, step, pids)
                assert pids.count(recorded_pid) == 1
                assert len(pids) <= kills + 1
            assert record.result == [completed[f"s{i}"] for i in range(8)]
    finally:
        store.close()
    assert os.path.getsize(effects) > 0
