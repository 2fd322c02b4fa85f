"""Peers on durably's workload shapes, in the same run, for users to compare themselves.

Only DBOS Transact for now, on its SQLite default (``pip install -e '.[bench]'``). Each
measurement runs in a fresh process with a fresh database. A peer that is not installed
is skipped with the reason in the report; a peer that fails is reported, never fatal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_all(bench: Any) -> dict[str, Any]:
    return {"dbos": dbos(bench)}


def dbos_once(scenario: str, n: int, target: str) -> float | str:
    """One DBOS measurement in a process of its own (DBOS is a process-wide singleton) on
    ``target`` (a directory for its SQLite default, or a PostgreSQL URL): steps/s, or the
    last lines of its error."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._dbos_peer", scenario, str(n), target],
        capture_output=True,
        text=True,
        cwd=_ROOT,
        timeout=1800,
    )
    if proc.returncode != 0:
        return "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["steps_per_s"])


def dbos(bench: Any) -> dict[str, Any]:
    if importlib.util.find_spec("dbos") is None:
        bench.say("DBOS is not installed (pip install -e '.[bench]'): skipped")
        return {"skipped": "not installed; pip install -e '.[bench]'"}
    shapes = {
        "sequential": ("peer_sequential_runs", "one 10-step workflow at a time"),
        "concurrent": ("peer_concurrent", "executions x 10 steps at once (asyncio)"),
    }
    out: dict[str, Any] = {"backend": "SQLite (its default)", "scenarios": {}}
    for scenario, (size_key, what) in shapes.items():
        n = bench.sizes[size_key]
        samples = []
        for r in range(bench.repeats):
            with tempfile.TemporaryDirectory(dir=bench.workdir) as directory:
                got = dbos_once(scenario, n, directory)
            if isinstance(got, str):
                bench.say(f"DBOS {scenario} failed: {got.replace(chr(10), ' | ')}")
                out["scenarios"][scenario] = {"error": got}
                break
            samples.append(got)
            bench.say(f"DBOS {scenario} repeat {r + 1}/{bench.repeats}: {samples[-1]:,.0f} steps/s")
        else:
            out["scenarios"][scenario] = {
                "what": what,
                "unit": "steps/s",
                "size": n,
                "median": statistics.median(samples),
                "min": min(samples),
                "max": max(samples),
                "samples": samples,
            }
    return out
