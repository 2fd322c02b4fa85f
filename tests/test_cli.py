"""The real console script, driven in subprocesses: the demo, then inspection and steering
of the store it leaves, with the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def durably(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("DURABLY_STORE", None)
    if store is not None:
        env["DURABLY_STORE"] = str(store)
    return subprocess.run(
        [sys.executable, "-m", "durably", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_demo_then_inspect_and_steer(tmp_path: Path) -> None:
    store = tmp_path / "shop.durably"
    demo = durably("demo", "--store", str(store))
    assert demo.returncode == 0, demo.stderr
    assert "killed (SIGKILL)" in demo.stdout
    assert "recovery found 1 parked" in demo.stdout
    assert "'tracking': 'TRK-991'" in demo.stdout
    assert "compensation.completed" in demo.stdout

    listing = durably("--store", str(store), "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and all("completed" in line for line in lines)
    eid = lines[0].split()[0]

    as_json = durably("list", "--json", "--status", "completed", store=store)
    assert next(e["id"] for e in json.loads(as_json.stdout)) == eid

    show = durably("--store", str(store), "show", eid)
    assert show.returncode == 0
    assert "signal.received" in show.stdout and "timer.fired" in show.stdout
    detail = json.loads(durably("show", eid, "--json", store=store).stdout)
    assert detail["execution"]["status"] == "completed"
    assert next(t["event"] for t in detail["timeline"]) == "started"

    late = durably("signal", eid, "shipped", '{"tracking": "x"}', store=store)
    assert late.returncode == 1 and "rejected" in late.stdout and "finished" in late.stdout
    bad_json = durably("signal", eid, "shipped", "{nope", store=store)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown = durably("show", "0" * 32, store=store)
    assert unknown.returncode == 3 and "no execution" in unknown.stderr
    assert durably("cancel", eid, store=store).stdout.strip() == "already completed"
    assert durably("schedules", store=store).returncode == 0


def test_missing_store_and_bad_usage(tmp_path: Path) -> None:
    missing = durably("--store", str(tmp_path / "nowhere"), "list")
    assert missing.returncode == 3 and "no durably store" in missing.stderr
    no_store = durably("list")
    assert no_store.returncode == 2 and "DURABLY_STORE" in no_store.stderr
    bad_status = durably("--store", str(tmp_path), "list", "--status", "sleepy")
    assert bad_status.returncode == 2
