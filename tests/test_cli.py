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


PROCS = Path(__file__).parent / "engine" / "client_procs.py"


@pytest.mark.slow
def test_retry_through_a_running_worker_and_describe(tmp_path: Path) -> None:
    store = tmp_path / "store"
    flag = tmp_path / "flag"
    worker = subprocess.Popen(
        [sys.executable, str(PROCS), "worker", str(store), str(tmp_path / "e"), "99"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"ready\n"
    try:
        script = (
            "import trio, durably, sys\n"
            "sys.path.insert(0, sys.argv[3])\n"
            "from client_procs import flaky\n"
            "async def main():\n"
            "    async with durably.Client(sys.argv[1], workflows=[flaky]) as c:\n"
            "        eid = await c.start(flaky, sys.argv[2])\n"
            "        try:\n"
            "            await c.wait(eid, timeout=30)\n"
            "        except durably.ExecutionFailedError:\n"
            "            print(eid)\n"
            "trio.run(main)\n"
        )
        first = subprocess.run(
            [sys.executable, "-c", script, str(store), str(flag), str(PROCS.parent)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        eid = first.stdout.strip()
        assert len(eid) == 32, first.stderr
        assert "failed" in durably("show", eid, store=store).stdout
        flag.write_text("now present")
        retried = durably("retry", eid, "--reason", "flag restored", store=store)
        assert retried.returncode == 0, retried.stderr
        detail = json.loads(durably("show", eid, "--json", store=store).stdout)
        timeline = [t["event"] for t in detail["timeline"]]
        assert "operator" in timeline and "resumed" in timeline
        again = durably("retry", eid, store=store)  # not failed now: refused clearly
        assert again.returncode == 1
        assert "only a failed execution can be retried" in again.stderr
    finally:
        worker.kill()
        worker.wait()

    (tmp_path / "flows.py").write_text(
        "import durably\n"
        "@durably.workflow('shape', defaults={'n': 1})\n"
        "async def shape(ctx, data: dict) -> None:\n"
        "    await ctx.step('a', print)\n"
        "    await ctx.sleep(5, step_id='nap')\n"
    )
    described = subprocess.run(
        [sys.executable, "-m", "durably", "describe", "flows:shape", "--mermaid"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert described.returncode == 0, described.stderr
    assert "flowchart" in described.stdout and "sleep 5 s" in described.stdout
