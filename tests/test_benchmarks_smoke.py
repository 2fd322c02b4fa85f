"""The benchmark harness runs end to end and writes a complete report.

Speed is never asserted here (it is measured in ``benchmarks/``): this only checks that
``python -m benchmarks --quick`` exits 0 and that its JSON report holds every scenario
with its figures, its baseline and a machine description. Peers are skipped to keep it
short; sizes are scaled down to keep it within seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = {
    "sequential",
    "concurrent",
    "fanout",
    "queue",
    "queue_admit_p50",
    "queue_admit_p99",
    "queue_rate",
    "queue_rate_max",
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
    "multi_process",
    "multi_process_one",
}
#: Figures reported beside their baseline without a target: their ``met`` is ``None``.
UNTARGETED = {"queue_admit_p50", "queue_admit_p99", "multi_process_one"}


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
        if name in UNTARGETED:
            assert figures["met"] is None and figures["target"] == "none (reported)", name
        else:
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


def test_queue_scenario_reports_its_figures_and_keeps_the_limits(tmp_path: Path) -> None:
    """The queue scenario alone at a tiny size: its five figures, and what the queue
    promises whatever the speed (never more running than its concurrency, never more
    admissions in a window than its rate limit, every execution admitted)."""
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
            "queue",
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
    scenarios = report["scenarios"]
    assert set(scenarios) == {n for n in SCENARIOS if n.startswith("queue")}
    assert report["sizes"]["queue"] == 200 and report["sizes"]["queue_rate"] == 50
    run = scenarios["queue"]["extra"]["runs"][0]
    assert run["queued_peak_running"] <= 100 and run["unqueued_peak_running"] <= 100
    assert run["queued_steps_per_s"] == pytest.approx(3 * scenarios["queue"]["median"])
    rate = scenarios["queue_rate_max"]
    assert rate["baseline"]["median"] == 50
    assert 0 < rate["median"] <= 50 and rate["met"] is True
    assert rate["extra"]["runs"][0]["admitted"] == rate["extra"]["executions"] == 250
    for p in ("p50", "p99"):
        handover = scenarios[f"queue_admit_{p}"]
        assert handover["median"] > 0 and handover["baseline"]["median"] > 0, p
    # A figure without a target prints "-" where the others print yes or no.
    table = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--markdown", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert rows["queue_admit_p99"].endswith("| none (reported) | - |")
    assert rows["queue_rate_max"].endswith("| <= 1 x limit | yes |")


def test_multi_process_scenario_runs_every_mode_in_processes(tmp_path: Path) -> None:
    """The multi-process scenario alone at a tiny size: the one worker, 1 worker of many
    and N of many each ran, every worker of many held its share of the 64 shards from the
    go to the end, and every execution was served."""
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--quick", "--scale", "0.1"),
            *("--only", "multi_process", "--dir", str(tmp_path), "--output", str(report_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert set(report["scenarios"]) == {"multi_process", "multi_process_one"}
    extra = report["scenarios"]["multi_process"]["extra"]
    workers, runs = extra["workers"], extra["runs"]
    assert workers >= 2 and extra["executions"] == 20 and extra["attempts"] == 1
    assert [r["workers"] for r in runs["single"] + runs["one"] + runs["n"]] == [1, 1, workers]
    assert runs["single"][0]["shards"] == [None] and runs["one"][0]["shards"] == [64]
    many = runs["n"][0]
    assert sum(many["shards"]) == 64 and len(many["shards"]) == workers
    assert [w["shards_at_end"] for w in many["per_worker"]] == many["shards"]
    for run in runs["single"] + runs["one"] + runs["n"]:
        assert sum(w["executions"] for w in run["per_worker"]) == 20
        assert run["steps_per_s"] > 0 and run["commits"] > 0
    assert [r["workers"] for r in runs["spin_one"] + runs["spin_n"]] == [1, workers]
    assert extra["machine_parallel"][0] > 0
    one = report["scenarios"]["multi_process_one"]
    assert one["met"] is None and one["ratio"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


#: The quick sweep's two smallest points of each curve (benchmarks/_sweep.py QUICK).
SWEEP_POINTS = {
    "concurrency": [1, 10],
    "replay": [500, 2000],
    "recovery": [1000, 5000],
    "timers": [200, 1000],
}


def test_quick_sweep_writes_every_curve_and_its_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report_path, images, scratch = tmp_path / "sweep.json", tmp_path / "images", tmp_path / "s"
    scratch.mkdir()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--sweep", "--quick", "--points", "2"),
            *("--dir", str(scratch), "--output", str(report_path), "--images", str(images)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["repeats"] == 1
    assert set(report["curves"]) == set(SWEEP_POINTS)
    for name, curve in report["curves"].items():
        points = curve["points"]
        assert [p[curve["x"]] for p in points] == SWEEP_POINTS[name], name
        for p in points:
            for key in curve["y"]:
                assert math.isfinite(p[key]) and p[key] > 0, (name, key)
        assert all(len(slopes) == 1 for slopes in curve["growth"].values()), name
    recovery = report["curves"]["recovery"]
    # Every waiting execution was recovered parked; the bound is judged at 1,000,000 only.
    assert [p["runs"][0]["parked"] for p in recovery["points"]] == SWEEP_POINTS["recovery"]
    assert recovery["bound"]["holds"] is None
    assert sorted(p.name for p in images.iterdir()) == [
        f"sweep-{n}.png" for n in sorted(SWEEP_POINTS)
    ]
    for png in images.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png.name
    assert list(scratch.iterdir()) == []  # every store was deleted
    assert "replay" in proc.stdout and "plot: " in proc.stdout


def test_sweep_without_matplotlib_says_how_to_install_it(tmp_path: Path) -> None:
    """Without matplotlib the sweep stops before measuring anything, naming the extra."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['matplotlib'] = None\n"
            "from benchmarks.__main__ import main\n"
            f"sys.exit(main(['--sweep', '--quick', '--output', {str(tmp_path / 'r.json')!r}]))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "pip install -e '.[bench]'" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_postgres_section_reports_durably_and_dbos_on_one_server(
    tmp_path: Path, postgres_server: str
) -> None:
    """``--only postgres`` at a tiny size against the test server: durably's rows with
    their raw baselines, DBOS's beside them when it is installed, and no database left
    behind. The DSN is given in libpq's key=value form, which DBOS is handed as a URL."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = make_conninfo(**conninfo_to_dict(postgres_server))
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--quick", "--scale", "0.1"),
            *("--only", "postgres", "--postgres", dsn),
            *("--dir", str(tmp_path), "--output", str(report_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["scenarios"] == {}
    section = report["postgres"]
    assert section["server"]["synchronous_commit"] == "on"
    assert set(section["shapes"]) == {"sequential", "concurrent"}
    sizes = {"sequential": ("runs", 4), "concurrent": ("executions", 20)}
    has_dbos = importlib.util.find_spec("dbos") is not None
    for shape, figures in section["shapes"].items():
        ours = figures["durably"]
        key, n = sizes[shape]
        assert ours[key] == n and len(ours["samples"]) == 1, shape
        for value in (ours["median"], ours["baseline"]["median"], ours["ratio"]):
            assert math.isfinite(value) and value > 0, shape
        assert ours["ratio"] == pytest.approx(ours["median"] / ours["baseline"]["median"])
        assert f"postgres durably {shape}: " in proc.stdout
        if has_dbos:
            assert figures["dbos"][key] == n and figures["dbos"]["median"] > 0, figures["dbos"]
            assert figures["durably_over_dbos"]["ratio"] == pytest.approx(
                ours["median"] / figures["dbos"]["median"]
            )
        else:
            assert "not installed" in figures["dbos"]["skipped"]
    assert section["shapes"]["concurrent"]["durably"]["commits"][0] < 20 * 10  # grouped
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'durably_bench_%'"
        ).fetchall()
    assert left == []
    table = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--markdown", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "| postgres durably concurrent |" in table


def test_only_postgres_needs_a_server() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "postgres"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--postgres DSN" in proc.stderr
