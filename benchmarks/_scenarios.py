"""The scenarios: each measures durably on a real, synced LmdbStore, with its baseline.

A scenario returns a ``Measured``: its samples (one per repeat), the baseline's samples
measured right before it, and extra figures worth reporting. Nothing here uses a mock
clock: timers and latencies are on the real clock, and every commit is fsynced.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

import durably
from durably.stores import LmdbStore

from . import _baselines, _workflows
from ._workflows import ALL, PROBE

#: The map is sized up front, as a deployment would size it; growth is not the subject.
MAP_SIZE = 1 << 30


@attrs.define
class Measured:
    samples: list[float]
    baseline: list[float]
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Bench:
    """What every scenario needs: sizes, repeats, a scratch directory, a progress line."""

    sizes: dict[str, int]
    repeats: int
    workdir: str
    say: Callable[[str], None]
    shared: dict[str, Any] = attrs.field(factory=dict)

    def store_path(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir)


def _open(path: str) -> LmdbStore:
    return LmdbStore(path, map_size=MAP_SIZE)  # sync=True: the default


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return trio.run(fn, *args)


def _around(baseline: Callable[[], float], fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Run ``trio.run(fn, *args)`` between two measurements of ``baseline``; their mean is
    the limit it is compared with.

    The disk and the CPU are shared with whatever else the machine does: a limit measured
    on both sides of the scenario drifts with it instead of being a snapshot."""
    before = baseline()
    result = trio.run(fn, *args)
    return (before + baseline()) / 2, result


async def poll_until(condition: Callable[[], bool], interval: float) -> None:
    """Wait until ``condition()`` holds, polling durable state (which has no change feed)."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


def _status(store: LmdbStore, eid: str) -> str | None:
    record = store.get_execution(eid)
    return None if record is None else record.status


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- sequential ------------------------------------------------------------------------


def sequential(b: Bench) -> Measured:
    runs, steps = b.sizes["sequential_runs"], 10
    baseline, samples = [], []
    for r in range(b.repeats):
        path = b.store_path("sequential")

        async def main(path: str) -> float:
            store = _open(path)
            try:
                async with durably.Engine(store, workflows=ALL) as engine:
                    started = time.perf_counter()
                    for _ in range(runs):
                        eid = await engine.start(_workflows.steps, steps)
                        await engine.wait(eid)
                    return time.perf_counter() - started
            finally:
                store.close()

        base, elapsed = _around(
            lambda: _baselines.raw_synced_commits(b.sizes["raw_commits"], b.workdir),
            main,
            path,
        )
        baseline.append(base)
        samples.append(runs * steps / elapsed)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} steps/s "
            f"(raw {baseline[-1]:,.0f} commits/s)"
        )
    return Measured(samples, baseline, {"runs": runs, "steps_per_run": steps})


# --- concurrent ------------------------------------------------------------------------


def concurrent(b: Bench) -> Measured:
    n, steps = b.sizes["concurrent"], 10
    baseline, samples = [], []
    for r in range(b.repeats):
        path = b.store_path("concurrent")

        async def main(path: str) -> tuple[float, Any]:
            store = _open(path)
            try:
                async with durably.Engine(store, workflows=ALL) as engine:

                    async def one(i: int) -> None:
                        await engine.wait(await engine.start(_workflows.steps, steps))

                    started = time.perf_counter()
                    async with trio.open_nursery() as nursery:
                        for i in range(n):
                            nursery.start_soon(one, i)
                    return time.perf_counter() - started, engine.statistics().commit
            finally:
                store.close()

        base, (elapsed, stats) = _around(
            lambda: _baselines.raw_batched_puts(b.sizes["raw_batches"], b.workdir),
            main,
            path,
        )
        baseline.append(base)
        samples.append(n * steps / elapsed)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} steps/s in {stats.batches:,} "
            f"commits (raw {baseline[-1]:,.0f} puts/s)"
        )
    return Measured(
        samples,
        baseline,
        {
            "executions": n,
            "steps_per_run": steps,
            "commits_last": stats.batches,
            "largest_batch_ops_last": stats.largest_batch,
        },
    )


# --- fanout ----------------------------------------------------------------------------


def fanout(b: Bench) -> Measured:
    """One execution, ``fanout`` steps through ``ctx.gather(limit=100)``: steps/s, and how
    many commits they took (group commit should make it a handful, not one per step)."""
    n, limit = b.sizes["fanout"], 100
    baseline, samples, commits = [], [], []
    for r in range(b.repeats):
        path = b.store_path("fanout")

        async def main(path: str) -> tuple[float, int]:
            store = _open(path)
            try:
                async with durably.Engine(store, workflows=ALL) as engine:
                    before = engine.statistics().commit.batches
                    started = time.perf_counter()
                    eid = await engine.start(_workflows.fanout, [n, limit])
                    await engine.wait(eid)
                    elapsed = time.perf_counter() - started
                    return elapsed, engine.statistics().commit.batches - before
            finally:
                store.close()

        base, (elapsed, used) = _around(
            lambda: _baselines.raw_batched_puts(b.sizes["raw_batches"], b.workdir),
            main,
            path,
        )
        baseline.append(base)
        samples.append(n / elapsed)
        commits.append(used)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} steps/s in {used} commits "
            f"(raw {baseline[-1]:,.0f} puts/s)"
        )
    return Measured(
        samples,
        baseline,
        {"steps": n, "limit": limit, "commits": commits, "commits_median": median(commits)},
    )


# --- starts ----------------------------------------------------------------------------


def starts(b: Bench) -> Measured:
    n = b.sizes["starts"]
    baseline, samples = [], []
    for r in range(b.repeats):
        path = b.store_path("starts")

        async def main(path: str) -> float:
            store = _open(path)
            try:
                async with durably.Engine(store, workflows=ALL) as engine:
                    # The window ends when the last start() returns (durable), not when
                    # trio next runs this task: that comes before or after the first run
                    # of the 10,000 new executions as the scheduler's batch order falls.
                    returned = [0.0]

                    async def start(i: int) -> None:
                        await engine.start(_workflows.wait_signal, i)
                        returned[0] = time.perf_counter()

                    started = time.perf_counter()
                    async with trio.open_nursery() as nursery:
                        for i in range(n):
                            nursery.start_soon(start, i)
                    return returned[0] - started
            finally:
                store.close()

        base, elapsed = _around(
            lambda: _baselines.raw_batched_puts(b.sizes["raw_batches"], b.workdir),
            main,
            path,
        )
        baseline.append(base)
        samples.append(n / elapsed)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} starts/s "
            f"(raw {baseline[-1]:,.0f} puts/s)"
        )
    return Measured(samples, baseline, {"starts": n})


# --- signal round trip -----------------------------------------------------------------


#: Synced commits in a signal round trip (see ``signal_round_trip``).
_ROUND_TRIP_COMMITS = 2


def signal_round_trip(b: Bench) -> tuple[Measured, Measured]:
    """Latency from ``engine.signal`` to the workflow's next step being durable.

    A round trip needs two synced commits: the signal into the mailbox, then the step,
    whose transaction also records the signal's receipt and consumes it. The baseline is
    two raw synced commits' time.
    """
    n = b.sizes["signals"]
    p50s, p99s, baseline = [], [], []
    for r in range(b.repeats):
        path = b.store_path("signal")

        async def main(path: str) -> list[float]:
            store = _open(path)
            PROBE.reset()
            latencies = []
            try:
                async with durably.Engine(store, workflows=ALL) as engine:
                    eid = await engine.start(_workflows.ping, n)
                    for i in range(n):
                        # A waiting workflow: its wait is durable before the signal goes.
                        await poll_until(lambda: _status(store, eid) == "waiting", 0)
                        acked = PROBE.expect(("ack", i))
                        started = time.perf_counter()
                        await engine.signal(eid, "ping")
                        await acked.wait()
                        latencies.append((PROBE.times[("ack", i)] - started) * 1000)
                    await engine.wait(eid)
            finally:
                store.close()
            return latencies

        rate, latencies = _around(
            lambda: _baselines.raw_synced_commits(b.sizes["raw_commits"], b.workdir),
            main,
            path,
        )
        baseline.append(_ROUND_TRIP_COMMITS / rate * 1000)
        p50s.append(_pct(latencies, 50))
        p99s.append(_pct(latencies, 99))
        b.say(
            f"repeat {r + 1}/{b.repeats}: p50 {p50s[-1]:.3f} ms, p99 {p99s[-1]:.3f} ms "
            f"({_ROUND_TRIP_COMMITS} raw commits {baseline[-1]:.3f} ms)"
        )
    extra = {"round_trips": n}
    return Measured(p50s, baseline, extra), Measured(p99s, baseline, extra)


# --- timers ----------------------------------------------------------------------------


def timers(b: Bench) -> Measured:
    """Lateness of ``n`` sleeps due at one instant, from due time to the sleep returning
    in the workflow (its ``TimerFired`` is written with the workflow's next commit, the
    outcome here). Baseline: waking ``n`` bare trio tasks plus writing ``n``
    events in 1,000-put synced transactions, the least that firing ``n`` timers costs.

    The due time must come after every sleep is durably armed, or lateness would measure
    the starts: a repeat whose last sleep was armed after the due time is run again with
    twice the lead."""
    n = b.sizes["timers"]
    lead_s = 1.0 + n / 2500
    baseline, samples, p50s, leads = [], [], [], []
    for r in range(b.repeats):
        switch = _baselines.trio_switches(1000, 100)
        puts = _baselines.raw_batched_puts(b.sizes["raw_batches"], b.workdir)
        baseline.append((n / switch + n / puts) * 1000)
        while True:
            late = _run(_timers_once, b.store_path("timers"), n, lead_s)
            if late is not None:
                break
            lead_s *= 2
            b.say(f"armed after the due time: again with a {lead_s:.0f} s lead")
        samples.append(_pct(late, 99))
        p50s.append(_pct(late, 50))
        leads.append(lead_s)
        b.say(
            f"repeat {r + 1}/{b.repeats}: p99 lateness {samples[-1]:.1f} ms, p50 "
            f"{p50s[-1]:.1f} ms (limit {baseline[-1]:.1f} ms)"
        )
    return Measured(samples, baseline, {"timers": n, "lead_s": leads, "p50_ms": p50s})


async def _timers_once(path: str, n: int, lead_s: float) -> list[float] | None:
    store = _open(path)
    _workflows.WOKE.clear()
    try:
        async with durably.Engine(store, workflows=ALL) as engine:
            due_ms = int((time.time() + lead_s) * 1000)
            ids: list[str] = []

            async def start(i: int) -> None:
                ids.append(await engine.start(_workflows.timer, [i, due_ms]))

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(start, i)
            # Armed: nothing is pending any more (the first commit of each execution
            # records its sleep and moves it from pending to sleeping).
            await poll_until(lambda: not store.list_executions(status="pending", limit=1), 0.001)
            armed_in_time = time.time() * 1000 < due_ms
            for eid in ids:
                await engine.wait(eid)
    finally:
        store.close()
    if not armed_in_time:
        return None
    return [_workflows.WOKE[i] * 1000 - due_ms for i in range(n)]


# --- parked memory and recovery --------------------------------------------------------


def _parked_store(b: Bench) -> tuple[str, dict[str, Any]]:
    """A store holding ``recovery`` waiting executions, made by the parked subprocess."""
    if "parked" in b.shared:
        return b.shared["parked"]  # type: ignore[no-any-return]
    n, live = b.sizes["parked"], b.sizes["parked_live"]
    path = b.store_path("parked")
    b.say(f"starting {n:,} waiting executions in a subprocess (max_live_executions={live})")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._parked", path, str(n), str(live)],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    b.shared["parked"] = (path, report)
    return path, report


def parked_memory(b: Bench) -> Measured:
    _, report = _parked_store(b)
    b.say(
        f"peak RSS {report['peak_rss_mb']:.0f} MB (idle engine {report['idle_rss_mb']:.0f} "
        f"MB), {report['n'] / report['setup_s']:,.0f} executions/s to set up"
    )
    per_exec = (report["peak_rss_mb"] - report["idle_rss_mb"]) * 1024 * 1024 / report["n"]
    return Measured(
        [report["peak_rss_mb"]],
        [report["idle_rss_mb"]],
        {**report, "bytes_per_execution_over_idle": round(per_exec)},
    )


async def restart(
    path: str, map_size: int = MAP_SIZE, ready: Callable[[], None] = lambda: None
) -> tuple[float, durably.RecoveryReport]:
    """Open the store and enter an engine over it (recovery runs on entry): the seconds
    until it is ready, and what a second, idempotent recovery then finds. ``ready`` is
    called then, with the engine still open."""
    started = time.perf_counter()
    store = LmdbStore(path, map_size=map_size)
    try:
        async with durably.Engine(store, workflows=ALL, max_live_executions=1000) as e:
            elapsed = time.perf_counter() - started
            # Ready: the last recovery is idempotent and finds nothing more to do.
            again = await e.recover()
            ready()
            return elapsed, again
    finally:
        store.close()


def recovery(b: Bench) -> Measured:
    path, report = _parked_store(b)
    n = report["n"]
    baseline, samples = [], []
    for r in range(b.repeats):
        count, scan_s = _baselines.raw_read_log(path, "executions", b"")
        baseline.append(scan_s)
        elapsed, report_again = _run(restart, path)
        samples.append(elapsed)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {elapsed:.2f} s to restart over {n:,} waiting "
            f"(raw scan of {count:,} records {scan_s:.2f} s)"
        )
    return Measured(samples, baseline, {"executions": n, "parked": report_again.parked})


# --- replay ----------------------------------------------------------------------------


def replay(b: Bench) -> Measured:
    """Rebuild one execution with an ``n``-event history: signal it after an engine
    restart, and time until its code has re-run past the whole history (read, decoded,
    every step answered from the log). Two synced commits fall inside the window: the
    signal itself and the recovery counter written before a first replay."""
    n = b.sizes["replay"]
    path = b.store_path("replay")
    b.say(f"recording a {n:,}-event history")

    async def setup() -> str:
        store = _open(path)
        try:
            async with durably.Engine(store, workflows=ALL) as engine:
                eid = await engine.start(_workflows.long_history, n - 1)
                await poll_until(lambda: _status(store, eid) == "waiting", 0.01)
                return eid
        finally:
            store.close()

    eid = _run(setup)
    baseline, samples, history = [], [], []
    for r in range(b.repeats):
        count, read_s = _baselines.raw_read_log(path, "events", eid.encode() + b"\x00")
        baseline.append(count / read_s)

        async def main(k: int) -> float:
            store = _open(path)
            PROBE.reset()
            try:
                async with durably.Engine(store, workflows=ALL) as engine:
                    rebuilt = PROBE.expect("rebuilt")
                    got = PROBE.expect(("go", k))
                    started = time.perf_counter()
                    await engine.signal(eid, "go")
                    await rebuilt.wait()
                    elapsed = PROBE.times["rebuilt"] - started
                    await got.wait()  # waiting again: ready for the next repeat
                    return elapsed
            finally:
                store.close()

        elapsed = _run(main, r)
        history.append(count)
        samples.append(count / elapsed)
        b.say(
            f"repeat {r + 1}/{b.repeats}: {count:,} events in {elapsed * 1000:.0f} ms = "
            f"{samples[-1]:,.0f} events/s (raw read+decode {baseline[-1]:,.0f}/s)"
        )
    return Measured(
        samples,
        baseline,
        {
            "history_events": history,
            "note": "includes 2 synced commits (the signal, the recovery counter)",
        },
    )


def median(values: list[float]) -> float:
    return statistics.median(values)
