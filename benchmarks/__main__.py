"""``python -m benchmarks``: run the scenarios, print a table, write a JSON report."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import (
    _aio,
    _baselines,
    _client_signal,
    _multi,
    _peers,
    _postgres,
    _queue,
    _scenarios,
    _sweep,
)
from ._scenarios import Bench, Measured
from ._specs import SPECS, Spec

FULL = {
    "sequential_runs": 200,
    "concurrent": 1000,
    "fanout": 1000,
    "queue": 10_000,
    "queue_rate": 1000,
    "starts": 10_000,
    "signals": 1000,
    "client_signals": 200,
    "client_signals_lost": 20,
    "timers": 10_000,
    "parked": 100_000,
    "parked_live": 1000,
    "replay": 10_000,
    "raw_commits": 2000,
    "raw_batches": 100,
    "peer_sequential_runs": 200,
    "peer_concurrent": 1000,
    "multi_process": 1000,
    "multi_process_attempts": 3,
}
QUICK = {
    "sequential_runs": 40,
    "concurrent": 200,
    "fanout": 1000,
    "queue": 2000,
    "queue_rate": 500,
    "starts": 2000,
    "signals": 200,
    "client_signals": 40,
    "client_signals_lost": 5,
    "timers": 1000,
    "parked": 5000,
    "parked_live": 500,
    "replay": 2000,
    "raw_commits": 500,
    "raw_batches": 20,
    "peer_sequential_runs": 20,
    "peer_concurrent": 100,
    "multi_process": 200,
    "multi_process_attempts": 1,
}


RUNNERS: dict[str, Callable[[Bench], Any]] = {
    "sequential": _scenarios.sequential,
    "concurrent": _scenarios.concurrent,
    "fanout": _scenarios.fanout,
    "queue": _queue.queue,
    "starts": _scenarios.starts,
    "signal": _scenarios.signal_round_trip,
    "client_signal": _client_signal.client_signal,
    "timers": _scenarios.timers,
    "parked_memory": _scenarios.parked_memory,
    "recovery": _scenarios.recovery,
    "replay": _scenarios.replay,
    "concurrent_aio": _aio.concurrent_aio,
    "signal_aio": _aio.signal_aio,
    "multi_process": _multi.multi_process,
}


def _ratio(spec: Spec, value: float, base: float) -> float:
    return value / base if spec.ratio.startswith("figure") else base / value


def _summary(spec: Spec, m: Measured) -> dict[str, Any]:
    value, base = statistics.median(m.samples), statistics.median(m.baseline)
    if len(m.samples) == len(m.baseline):
        # Each repeat against the limit measured around it: the neighbours' load moves both.
        ratio = statistics.median(
            _ratio(spec, v, b) for v, b in zip(m.samples, m.baseline, strict=True)
        )
    else:
        ratio = _ratio(spec, value, base)
    met = spec.met(value, ratio)
    return {
        "what": spec.what,
        "unit": spec.unit,
        "median": value,
        "min": min(m.samples),
        "max": max(m.samples),
        "samples": m.samples,
        "baseline": {
            "what": spec.baseline,
            "unit": spec.baseline_unit,
            "median": base,
            "min": min(m.baseline),
            "max": max(m.baseline),
            "samples": m.baseline,
        },
        "ratio": ratio,
        "ratio_is": spec.ratio + (" (median over repeats)" if len(m.samples) > 1 else ""),
        "target": spec.target_text(),
        "met": met,
        "extra": m.extra,
    }


def _versions() -> dict[str, str]:
    out = {}
    for name in ("durably", "trio", "lmdb", "orjson", "cattrs", "attrs", "dbos", "sqlalchemy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(workdir: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": _versions(),
        "disk": _baselines.disk_of(workdir),
        "load_average_at_start": os.getloadavg(),
    }


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(results: dict[str, Any], peers: dict[str, Any]) -> str:
    head = ("scenario", "median", "min", "max", "unit", "baseline", "ratio", "target", "met")
    rows = [head]
    for name, r in results.items():
        rows.append(
            (
                name,
                _fmt(r["median"]),
                _fmt(r["min"]),
                _fmt(r["max"]),
                r["unit"],
                _fmt(r["baseline"]["median"]) + " " + r["baseline"]["unit"],
                f"{r['ratio']:.2f}",
                r["target"],
                {True: "yes", False: "NO", None: "-"}[r["met"]],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for peer, figures in peers.items():
        if "skipped" in figures:
            lines.append(f"peer {peer}: skipped ({figures['skipped']})")
            continue
        for scenario, f in figures.get("scenarios", {}).items():
            if "error" in f:
                lines.append(f"peer {peer} {scenario}: failed ({f['error']})")
                continue
            ours = results.get(scenario)
            versus = f" (durably {ours['median'] / f['median']:.1f}x)" if ours else ""
            lines.append(f"peer {peer} {scenario}: {_fmt(f['median'])} {f['unit']}{versus}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The results of a saved report as the Markdown table of docs/performance.md."""
    lines = [
        "| scenario | median | min - max | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["scenarios"].items():
        base = r["baseline"]
        lines.append(
            f"| {name} | {_fmt(r['median'])} {r['unit']} | {_fmt(r['min'])} - {_fmt(r['max'])} "
            f"| {_fmt(base['median'])} {base['unit']} ({base['what']}) "
            f"| {r['ratio']:.2f} ({r['ratio_is']}) | {r['target']} "
            f"| {({True: 'yes', False: '**no**', None: '-'})[r['met']]} |"
        )
    for peer, figures in report.get("peers", {}).items():
        for scenario, f in figures.get("scenarios", {}).items():
            if "median" not in f:
                continue
            ours = report["scenarios"].get(scenario)
            versus = f"; durably {ours['median'] / f['median']:.1f}x" if ours else ""
            lines.append(
                f"| {peer} {scenario} ({figures.get('backend', '')}) | {_fmt(f['median'])} "
                f"{f['unit']} | {_fmt(f['min'])} - {_fmt(f['max'])} | | {versus.lstrip('; ')} "
                "| | |"
            )
    lines += _postgres.markdown_rows(report.get("postgres", {}))
    return "\n".join(lines)


def _redacted(args: list[str]) -> str:
    """The command line with a DSN's password masked (the report is kept in the repo)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", " ".join(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="durably's benchmarks on a synced LmdbStore, each beside its "
        "physical-limit baseline measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*sorted(RUNNERS), "peers", "postgres"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 3, quick 1)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size by this factor"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peer comparison")
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        help="add durably and DBOS on this PostgreSQL server "
        "(auto: a throw-away one from .ci/postgres)",
    )
    parser.add_argument("--dir", help="where the temporary stores go (default: system temp)")
    parser.add_argument(
        "--output", help="JSON report path (default: benchmarks/results/{quick,full}.json)"
    )
    parser.add_argument(
        "--markdown", metavar="REPORT", help="print a saved JSON report as a Markdown table"
    )
    _sweep.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.sweep:
        return _sweep.run(args, argv, machine)
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return 0

    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if key not in ("parked_live", "multi_process_attempts"):  # a bound, a count of tries
            sizes[key] = max(1, int(sizes[key] * args.scale))
    sizes["parked_live"] = min(sizes["parked_live"], sizes["parked"])
    repeats = args.repeats or (1 if args.quick else 3)
    only = args.only or [*RUNNERS, "peers"]
    if args.postgres and "postgres" not in only:
        only.append("postgres")
    if "postgres" in only and not args.postgres:
        parser.error("--only postgres needs --postgres DSN (or auto)")
    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        "quick.json" if args.quick else "full.json",
    )
    workdir = tempfile.mkdtemp(prefix="durably-bench-", dir=args.dir)

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    bench = Bench(sizes=sizes, repeats=repeats, workdir=workdir, say=say)
    info = machine(workdir)
    print(
        f"durably benchmarks: {info['cores']} cores, Python {info['python']}, "
        f"{info['disk'].get('fs', '?')} on {info['disk'].get('device', '?')}, "
        f"repeats={repeats}{', quick' if args.quick else ''}",
        file=sys.stderr,
    )
    results: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    postgres: dict[str, Any] = {}
    started = time.perf_counter()

    def write_report(complete: bool) -> None:
        # Written after every scenario: a run stopped half-way still leaves its figures.
        report = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m benchmarks " + _redacted(sys.argv[1:] if argv is None else argv),
            "complete": complete,
            "machine": info,
            "sizes": sizes,
            "repeats": repeats,
            "elapsed_s": time.perf_counter() - started,
            "load_average_now": os.getloadavg(),
            "scenarios": results,
            "peers": peers,
            **({"postgres": postgres} if postgres else {}),
        }
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as fh:
            json.dump(report, fh, indent=2)

    try:
        for index, name in enumerate(only, 1):
            print(f"[{index}/{len(only)}] {name}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if name == "peers":
                if not args.no_peers:
                    peers = _peers.run_all(bench)
            elif name == "postgres":
                postgres = _postgres.run(bench, args.postgres, peers=not args.no_peers)
            elif name == "signal":
                p50, p99 = RUNNERS[name](bench)
                results["signal_p50"] = _summary(SPECS["signal_p50"], p50)
                results["signal_p99"] = _summary(SPECS["signal_p99"], p99)
            else:
                measured = RUNNERS[name](bench)
                # A runner may report several figures (a dict of them, by spec name).
                for key, m in (
                    measured if isinstance(measured, dict) else {name: measured}
                ).items():
                    results[key] = _summary(SPECS[key], m)
            say(f"done in {time.perf_counter() - t0:.1f} s")
            write_report(complete=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(complete=True)
    print("\n".join([table(results, peers), *_postgres.lines(postgres)]))
    print(f"report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
