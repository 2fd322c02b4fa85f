"""Entries 1 and 2: a real process SIGKILLed just after a step's side effect (before its
record), and just after its record. Steps run at least once; results are recorded once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from ._helpers import events, run_worker

pytestmark = pytest.mark.slow


def test_01_crash_after_side_effect_before_record_reruns_the_step(tmp_path: Path) -> None:
    store, effects = tmp_path / "store", tmp_path / "effects.txt"
    first = run_worker("effect-crash", str(store), str(effects))
    assert first.returncode == -signal.SIGKILL  # died inside the step, after its effect
    second = run_worker("effect-crash", str(store), str(effects))
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    eid = out["execution_id"]

    runs = [line.split() for line in effects.read_text().splitlines()]
    assert len(runs) == 2  # the step ran again: at least once
    keys = {key for key, _, _ in runs}
    assert keys == {f"{eid}:charge"}  # the same idempotency key both times
    pids = [int(pid) for _, _, pid in runs]
    assert pids[0] != pids[1]
    # Recorded exactly once, with the re-run's result, which the workflow returned.
    log = events(store, eid)
    charges = [e for e in log if e["t"] == "step.completed" and e["step_id"] == "charge"]
    assert len(charges) == 1
    assert charges[0]["result"] == pids[1] == out["result"]["charged_by"]
    assert [e["t"] for e in log].count("completed") == 1


def test_02_crash_after_the_record_does_not_rerun_the_step(tmp_path: Path) -> None:
    store, effects = tmp_path / "store", tmp_path / "effects.txt"
    first = run_worker("record-crash", str(store), str(effects))
    assert first.returncode == -signal.SIGKILL  # died after the charge was recorded
    second = run_worker("record-crash", str(store), str(effects))
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)

    runs = effects.read_text().splitlines()
    assert len(runs) == 1  # replay returned the recorded value; the body never re-ran
    first_pid = int(runs[0].split()[2])
    assert out["result"] == {"charged_by": first_pid, "receipt": "sent"}
    log = events(store, out["execution_id"])
    assert [e["step_id"] for e in log if e["t"] == "step.completed"] == ["charge", "receipt"]
