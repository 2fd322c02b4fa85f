"""Composition under SIGKILL: parents fanning out to steps and children, and a chain that
continues as new, killed again and again. A new worker completes everything; no child is
started twice; no step whose result was recorded runs again; the chain's log stays small."""

from __future__ import annotations

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

WORKER = Path(__file__).with_name("composition_worker.py")
PARENTS = 12


def _run(store: Path, effects: Path, kill_after: float | None) -> bool:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(store), str(effects), str(PARENTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if kill_after is None:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        return b"all done" in out
    line = proc.stdout.readline()
    if line == b"started\n":
        time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return False


@pytest.mark.slow
def test_children_gathers_and_chains_survive_sigkill(tmp_path: Path) -> None:
    store_dir, effects = tmp_path / "store", tmp_path / "effects.txt"
    rng = random.Random(99)
    for _ in range(12):
        _run(store_dir, effects, rng.uniform(0.0, 0.25))
    assert _run(store_dir, effects, None)

    runs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for line in effects.read_text().splitlines():
        eid, step, pid = line.split()
        runs[(eid, step)].append(int(pid))
    store = LmdbStore(store_dir, readonly=True)
    try:
        records = store.list_executions(limit=None)
        parents = [r for r in records if r.workflow == "crash-parent"]
        kids = [r for r in records if r.workflow == "crash-kid"]
        chains = [r for r in records if r.workflow == "crash-chain"]
        assert len(parents) == PARENTS and len(chains) == 1
        assert len(kids) == PARENTS * 4, "a child was started twice (or not at all)"
        for record in records:
            assert record.status == "completed", record
            events = [orjson.loads(raw) for raw in store.read_events(record.id)]
            for event in events:
                if event["t"] != "step.completed":
                    continue
                step = event["step_id"] if record.workflow != "crash-chain" else None
                key = (record.id, step or f"tick{record.run - 1}")
                # The recorded result names the run whose effect it is; any run after it
                # would be a recorded step run again.
                pids = runs[key]
                assert pids and pids[-1] == event["result"], (key, pids, event)
        for parent in parents:
            assert parent.result == sum(range(4))
        by_parent = defaultdict(int)
        for kid in kids:
            by_parent[kid.parent_id] += 1
        assert set(by_parent.values()) == {4}
        chain = chains[0]
        assert chain.result == 30 and chain.run == 31
        assert len(store.read_events(chain.id)) <= 3  # started, step, completed
    finally:
        store.close()
