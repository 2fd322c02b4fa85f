"""``python -m benchmarks --sweep``: how cost grows with scale, as figures and plots.

Four curves, each point one of the harness's scenarios run at one size, with its measure
and its baseline: steps/s against executions started at once (``concurrent``), replay
time against history length (``replay``), recovery time and peak RSS against waiting
executions (``recovery``; each point's store is made by ``benchmarks._parked`` and
recovered by ``benchmarks._recover``, each a process of its own, so the peak RSS read is
the recovery's alone), and timer lateness against sleeps due at one instant
(``timers``). The figures go to ``benchmarks/results/sweep.json``, one PNG per curve to
``docs/images/sweep-*.png``, drawn with matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from . import _baselines, _scenarios, _sweep_plots
from ._scenarios import Bench

CURVES = ("concurrency", "replay", "recovery", "timers")
FULL = {
    "concurrency": [1, 10, 100, 1000, 10_000],
    "replay": [1000, 3000, 10_000, 30_000, 100_000],
    "recovery": [10_000, 30_000, 100_000, 300_000, 1_000_000],
    "timers": [1000, 3000, 10_000, 30_000, 100_000],
}
QUICK = {
    "concurrency": [1, 10, 100, 1000],
    "replay": [500, 2000, 10_000],
    "recovery": [1000, 5000, 20_000],
    "timers": [200, 1000, 5000],
}
#: Synced 1,000-put transactions per raw-puts baseline (quick, full).
RAW_BATCHES = {True: 20, False: 100}
#: The store's map: a million waiting executions take about 1.1 GB of it.
MAP_SIZE = 4 << 30
#: What recovery is held to at a million waiting executions (1.5 GB, in the MB the
#: harness reports: ru_maxrss KiB / 1024).
BOUND = {"waiting": 1_000_000, "recovery_s": 10.0, "peak_rss_mb": 1536.0}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

Curve = dict[str, Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="how cost grows with scale: four curves to benchmarks/results/sweep.json and "
        "docs/images/sweep-*.png (1 repeat unless --repeats)",
    )
    parser.add_argument("--curve", action="append", choices=CURVES, help="with --sweep: only these")
    parser.add_argument("--points", type=int, help="with --sweep: the N smallest points per curve")
    parser.add_argument("--images", help="with --sweep: where the PNGs go")
    parser.add_argument(
        "--replot", action="store_true", help="with --sweep: redraw the PNGs of a saved report"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values)


def growth(points: list[dict[str, Any]], x: str, y: str) -> list[float]:
    """The local exponent between each two neighbouring points: ``y`` grows as ``x`` to
    this power (1: linearly, 0: not at all; for a rate, 0 means cost linear in ``x``)."""
    return [
        round(math.log(b[y] / a[y]) / math.log(b[x] / a[x]), 2)
        for a, b in itertools.pairwise(points)
    ]


@contextmanager
def _point(b: Bench, **sizes: int) -> Iterator[Bench]:
    """A bench for one point, whose stores are deleted when the point is done."""
    workdir = tempfile.mkdtemp(prefix="point-", dir=b.workdir)
    try:
        yield Bench(
            sizes={"raw_batches": b.sizes["raw_batches"], **sizes},
            repeats=b.repeats,
            workdir=workdir,
            say=b.say,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def concurrency(b: Bench, sizes: list[int]) -> Curve:
    points = []
    for n in sizes:
        b.say(f"concurrency: {n:,} executions x 10 steps")
        with _point(b, concurrent=n) as at:
            m = _scenarios.concurrent(at)
        points.append(
            {
                "executions": n,
                "steps_per_s": _median(m.samples),
                "samples": m.samples,
                "raw_puts_per_s": _median(m.baseline),
                "commits_last": m.extra["commits_last"],
            }
        )
    return {
        "what": "executions x 10 steps started at once, until all finished (concurrent)",
        "x": "executions",
        "y": ["steps_per_s"],
        "points": points,
        "growth": {"steps_per_s": growth(points, "executions", "steps_per_s")},
    }


def replay(b: Bench, sizes: list[int]) -> Curve:
    points = []
    for n in sizes:
        b.say(f"replay: a {n:,}-event history")
        with _point(b, replay=n) as at:
            m = _scenarios.replay(at)
        history = m.extra["history_events"]
        times = [count / rate for count, rate in zip(history, m.samples, strict=True)]
        points.append(
            {
                "events": n,
                "history_events": history[0],
                "time_ms": _median(times) * 1000,
                "events_per_s": _median(m.samples),
                "samples_ms": [t * 1000 for t in times],
                "raw_events_per_s": _median(m.baseline),
            }
        )
    return {
        "what": "restart, signal one execution: until its code is past an n-event history "
        "(replay; includes 2 synced commits)",
        "x": "events",
        "y": ["time_ms", "events_per_s"],
        "points": points,
        "growth": {"time_ms": growth(points, "events", "time_ms")},
    }


def _json_of(module: str, *args: object) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _recovery_point(b: Bench, n: int) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="recovery-", dir=b.workdir)
    try:
        b.say(f"recovery: making {n:,} waiting executions (a subprocess)")
        made = _json_of("benchmarks._parked", path, n, 1000, MAP_SIZE)
        store_mb = os.path.getsize(os.path.join(path, "data.mdb")) / 1e6
        runs = []
        for r in range(b.repeats):
            count, scan_s = _baselines.raw_read_log(path, "executions", b"")
            run = _json_of("benchmarks._recover", path, MAP_SIZE)
            runs.append({**run, "raw_scan_s": scan_s, "records": count})
            b.say(
                f"repeat {r + 1}/{b.repeats}: {run['recovery_s']:.2f} s over {n:,} waiting, "
                f"peak RSS {run['peak_rss_mb']:,.0f} MB (raw scan {scan_s:.2f} s)"
            )
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return {
        "waiting": n,
        "recovery_s": _median([r["recovery_s"] for r in runs]),
        "peak_rss_mb": _median([r["peak_rss_mb"] for r in runs]),
        "raw_scan_s": _median([r["raw_scan_s"] for r in runs]),
        "store_mb": store_mb,
        "setup_s": made["setup_s"],
        "runs": runs,
    }


def recovery(b: Bench, sizes: list[int]) -> Curve:
    points = [_recovery_point(b, n) for n in sizes]
    at_bound = [p for p in points if p["waiting"] == BOUND["waiting"]]
    holds = None
    if at_bound:
        p = at_bound[0]
        holds = p["recovery_s"] <= BOUND["recovery_s"] and p["peak_rss_mb"] <= BOUND["peak_rss_mb"]
    return {
        "what": "restart over waiting executions until parked and ready (recovery), in a "
        "fresh process: its time and peak RSS (VmHWM, its own high-water mark)",
        "x": "waiting",
        "y": ["recovery_s", "peak_rss_mb"],
        "points": points,
        "growth": {
            "recovery_s": growth(points, "waiting", "recovery_s"),
            "peak_rss_mb": growth(points, "waiting", "peak_rss_mb"),
        },
        "bound": {**BOUND, "holds": holds},
    }


def timers(b: Bench, sizes: list[int]) -> Curve:
    points = []
    for n in sizes:
        b.say(f"timers: {n:,} sleeps due at one instant")
        with _point(b, timers=n) as at:
            m = _scenarios.timers(at)
        points.append(
            {
                "timers": n,
                "p50_ms": _median(m.extra["p50_ms"]),
                "p99_ms": _median(m.samples),
                "samples_p99_ms": m.samples,
                "limit_ms": _median(m.baseline),
                "lead_s": m.extra["lead_s"],
            }
        )
    return {
        "what": "sleeps due at one instant: lateness from due time to each sleep returning "
        "(timers); limit: n bare trio wakes + n batched raw puts",
        "x": "timers",
        "y": ["p50_ms", "p99_ms"],
        "points": points,
        "growth": {
            "p50_ms": growth(points, "timers", "p50_ms"),
            "p99_ms": growth(points, "timers", "p99_ms"),
        },
    }


MEASURES: dict[str, Callable[[Bench, list[int]], Curve]] = {
    "concurrency": concurrency,
    "replay": replay,
    "recovery": recovery,
    "timers": timers,
}


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(report: dict[str, Any]) -> str:
    lines = []
    for name, curve in report["curves"].items():
        for p in curve["points"]:
            figures = ", ".join(f"{key} {_fmt(p[key])}" for key in curve["y"])
            lines.append(f"{name:<12} {curve['x']} {p[curve['x']]:>9,}: {figures}")
        for key, slopes in curve["growth"].items():
            lines.append(f"{name:<12} {key} grows as {curve['x']}^({', '.join(map(str, slopes))})")
        if curve.get("bound"):
            lines.append(f"{name:<12} bound at {BOUND['waiting']:,}: {curve['bound']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str] | None, machine: Callable[[str], Any]) -> int:
    """The sweep: measure the curves asked for, write the report after each, then plot."""
    plt = _sweep_plots.pyplot()  # before minutes of measuring: missing matplotlib fails now
    output = args.output or os.path.join(
        RESULTS, "sweep-quick.json" if args.quick else "sweep.json"
    )
    images = args.images or (
        os.path.join(RESULTS, "sweep-quick") if args.quick else os.path.join(ROOT, "docs", "images")
    )
    if args.replot:
        with open(output) as fh:
            report = json.load(fh)
    else:
        report = _measure(args, argv, machine, output)
    for path in _sweep_plots.draw(plt, report, images):
        print(f"plot: {path}")
    print(table(report))
    print(f"report: {output}")
    return 0


def _measure(
    args: argparse.Namespace,
    argv: list[str] | None,
    machine: Callable[[str], Any],
    output: str,
) -> dict[str, Any]:
    plan = {
        name: [max(1, int(n * args.scale)) for n in (QUICK if args.quick else FULL)[name]][
            : args.points
        ]
        for name in args.curve or CURVES
    }
    repeats = args.repeats or 1
    workdir = tempfile.mkdtemp(prefix="durably-sweep-", dir=args.dir)

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    bench = Bench(
        sizes={"raw_batches": RAW_BATCHES[args.quick]}, repeats=repeats, workdir=workdir, say=say
    )
    started = time.perf_counter()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "complete": False,
        "machine": machine(workdir),
        "plan": plan,
        "repeats": repeats,
        "curves": {},
    }
    try:
        for index, (name, sizes) in enumerate(plan.items(), 1):
            print(f"[{index}/{len(plan)}] {name}: {sizes}", file=sys.stderr, flush=True)
            report["curves"][name] = MEASURES[name](bench, sizes)
            report["elapsed_s"] = time.perf_counter() - started
            _write(report, output)  # a sweep stopped half-way still leaves its figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["complete"] = True
    report["load_average_now"] = os.getloadavg()
    _write(report, output)
    return report


def _write(report: dict[str, Any], output: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as fh:
        json.dump(report, fh, indent=2)
