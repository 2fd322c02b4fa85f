"""The benchmark harness runs end to end and writes a complete report.

Speed is never asserted here (it is measured in ``benchmarks/``): this only checks that
``python -m benchmarks --quick`` exits 0 and that its JSON report holds every scenario
with its figures, its baseline and a machine description. Peers are skipped to keep it
short; sizes are scaled down to keep it within seconds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = {
    "sequential",
    "concurrent",
    "fanout",
    "starts",
    "signal_p50",
    "signal_p99",
    "client_signal_p50",
    "client_signal_p99",
    "client_signal_lost_p50",
    "client_signal_lost_p99",
    "timers",
    "recovery",
    "parked_memory",
    "replay",
    "concurrent_aio",
    "signal_aio",
}


def test_quick_run_writes_a_complete_report(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scale",
            "0.25",
            "--no-peers",
            "--dir",
            str(tmp_path),
            "--output",
            str(report_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert set(report["scenarios"]) == SCENARIOS
    for name, figures in report["scenarios"].items():
        for key in ("median", "min", "max", "ratio"):
            assert math.isfinite(figures[key]) and figures[key] > 0, (name, key)
        assert figures["min"] <= figures["median"] <= figures["max"], name
        assert figures["baseline"]["median"] > 0, name
        assert isinstance(figures["met"], bool), name
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["packages"]["durably"]
    assert "peers" in report
    # Progress went to stderr and the table to stdout.
    assert "[1/" in proc.stderr
    assert "scenario" in proc.stdout and "replay" in proc.stdout
    # The temporary stores are cleaned up (only the report is left).
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_only_runs_one_scenario(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scale",
            "0.1",
            "--only",
            "replay",
            "--dir",
            str(tmp_path),
            "--output",
            str(report_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert set(report["scenarios"]) == {"replay"}
    assert report["peers"] == {}
