"""The queue scenario: executions through a durable queue, beside the same executions
started without one at the same concurrency, in the same repeat.

- *unqueued*: ``n`` executions of a ``STEPS``-step workflow started with ``engine.start``,
  ``CONCURRENCY`` at a time: a caller starts the next each time one finishes (the
  hand-over a queue does for its users);
- *queued*: the same ``n`` enqueued at once on ``Queue("q", concurrency=CONCURRENCY)``;
- *admission latency*, in both: from an execution's end being committed (its slot
  freeing, seen by a subscriber of the supervisor's commits) to the first step of the
  execution that takes the slot starting (its body runs). The k-th slot freed is the one
  the k-th execution after the first ``CONCURRENCY`` takes, so the two sorted time lists
  are paired in order;
- *rate-limited*: ``RATE_WINDOWS x rate`` executions enqueued at once on a queue with
  ``rate_limit=(rate, 1.0)`` and no concurrency limit (so only the rate limit binds),
  read back from the records' ``admitted_ms``.

Every run opens its own synced ``LmdbStore`` with the engine's defaults, as
``concurrent`` does. Nothing is asserted while timing: the figures are reported.
"""

from __future__ import annotations

import bisect
import statistics
import time
from typing import Any

import attrs
import trio

import durably
from durably.core._events import ExecutionCompleted

from . import _workflows
from ._scenarios import Bench, Measured, _open, _pct
from ._workflows import ALL

#: Running executions at once, in both the queued and the unqueued run.
CONCURRENCY = 100
#: Steps per execution: a short workflow, so the cost of starting one shows.
STEPS = 3
#: The rate-limited run admits this many windows' worth of executions.
RATE_WINDOWS = 5
#: When each execution's first step body began (``time.perf_counter``); see ``queued``.
FIRST: list[float] = []


def _first(i: int) -> int:
    FIRST.append(time.perf_counter())
    return i + 1


@durably.workflow("bench.queued")
async def queued(ctx: durably.Context, n: int) -> int:
    """``n`` trivial steps in a row (``bench.steps``), the first noting when it began."""
    total = await ctx.step("s0", _first, 0)
    for i in range(1, n):
        total += await ctx.step(f"s{i}", _workflows.add_one, i)
    return total


WORKFLOWS: list[Any] = [*ALL, queued]


@attrs.frozen
class Run:
    elapsed_s: float
    #: Slot freed -> the next execution's first step, ms, one per hand-over.
    handover_ms: list[float]
    #: The most executions between their first step and their end at any moment.
    peak_running: int
    #: Seconds from the first call until the last ``start``/``enqueue`` returned.
    calls_s: float


def _watch_ends(engine: durably.Engine) -> list[float]:
    """When each execution's end was committed, from the supervisor's commit feed."""
    ends: list[float] = []

    def seen(execution_id: str, events: Any) -> None:
        if events and isinstance(events[-1], ExecutionCompleted):
            ends.append(time.perf_counter())

    engine._supervisor.subscribers.append(seen)  # type: ignore[union-attr]
    return ends


def _run(elapsed: float, ends: list[float], calls_s: float) -> Run:
    starts, ends = sorted(FIRST), sorted(ends)
    handover = [(s - e) * 1000 for s, e in zip(starts[CONCURRENCY:], ends, strict=False)]
    # Running at a moment: first steps begun minus ends committed by then.
    peak = running = 0
    for _, delta in sorted([(s, 1) for s in starts] + [(e, -1) for e in ends]):
        running += delta
        peak = max(peak, running)
    return Run(elapsed, handover, peak, calls_s)


async def _unqueued(path: str, n: int) -> Run:
    store = _open(path)
    FIRST.clear()
    try:
        async with durably.Engine(store, workflows=WORKFLOWS) as engine:
            ends = _watch_ends(engine)
            left, last_call = [n], [0.0]

            async def caller() -> None:
                while left[0]:
                    left[0] -= 1
                    eid = await engine.start(queued, STEPS)
                    last_call[0] = time.perf_counter()
                    await engine.wait(eid)

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(CONCURRENCY):
                    nursery.start_soon(caller)
            elapsed = time.perf_counter() - started
            return _run(elapsed, ends, last_call[0] - started)
    finally:
        store.close()


async def _enqueue_all(
    engine: durably.Engine, queue: durably.Queue, n: int, ids: list[str]
) -> tuple[float, float]:
    """Enqueue ``n`` executions at once, then wait until all have completed: (all
    finished, last enqueued) in seconds from the first call.

    The end is seen from the supervisor's commit feed, not by ``n`` callers each waiting
    on ``engine.wait``: a queue's users hand the waiting to the queue, and 10,000 waiting
    tasks would measure trio's scheduler rather than the queue."""
    last_call = [0.0]
    ended = [0]
    done = trio.Event()

    def seen(execution_id: str, events: Any) -> None:
        if events and isinstance(events[-1], ExecutionCompleted):
            ended[0] += 1
            if ended[0] >= n:
                done.set()

    engine._supervisor.subscribers.append(seen)  # type: ignore[union-attr]

    async def one() -> None:
        ids.append(await engine.enqueue(queue, queued, STEPS))
        last_call[0] = time.perf_counter()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    await done.wait()
    return time.perf_counter() - started, last_call[0] - started


async def _queued(path: str, n: int) -> Run:
    store = _open(path)
    FIRST.clear()
    queue = durably.Queue("q", concurrency=CONCURRENCY)
    try:
        async with durably.Engine(store, workflows=WORKFLOWS, queues=[queue]) as engine:
            ends = _watch_ends(engine)
            elapsed, calls_s = await _enqueue_all(engine, queue, n, [])
            return _run(elapsed, ends, calls_s)
    finally:
        store.close()


async def _limited(path: str, n: int, rate: int) -> list[int]:
    """The admission times (epoch ms, sorted) of ``n`` executions enqueued at once on a
    queue admitting at most ``rate`` per second."""
    store = _open(path)
    FIRST.clear()
    queue = durably.Queue("r", rate_limit=(rate, 1.0))
    try:
        async with durably.Engine(store, workflows=WORKFLOWS, queues=[queue]) as engine:
            ids: list[str] = []
            await _enqueue_all(engine, queue, n, ids)
            records = [store.get_execution(eid) for eid in ids]
            return sorted(r.admitted_ms for r in records if r is not None and r.admitted_ms)
    finally:
        store.close()


def rate_figures(admitted_ms: list[int], count: int, period_ms: int) -> tuple[float, int]:
    """(steady admissions/s, most admissions in any half-open ``period_ms`` window).

    Once the limit binds, each admission after the first ``count`` uses the place in the
    window that the admission ``count`` before it leaves: the mean time between the two
    is how long a place takes to come back (``period_ms`` at best, more when admission
    is late as the window opens), and ``count`` over it is the rate sustained. The first
    window is left out of the rate: it only shows how fast the enqueues came."""
    a = admitted_ms
    gaps = [a[k] - a[k - count] for k in range(count, len(a))]
    steady = count / (statistics.fmean(gaps) / 1000) if gaps else float("nan")
    most = max((bisect.bisect_left(a, t + period_ms) - i for i, t in enumerate(a)), default=0)
    return steady, most


def queue(b: Bench) -> dict[str, Measured]:
    """The queue's figures (see the module's docstring), each beside its unqueued twin or
    the queue's limit, measured in the same repeat."""
    n = max(b.sizes["queue"], 2 * CONCURRENCY)
    rate = b.sizes["queue_rate"]
    keys = ("rate", "base_rate", "p50", "base_p50", "p99", "base_p99", "steady", "most")
    figures: dict[str, list[float]] = {k: [] for k in keys}
    runs: list[dict[str, Any]] = []
    limited: list[dict[str, Any]] = []
    for r in range(b.repeats):
        # Alternate which goes first, so a drift of the machine does not favour one.
        order = ("unqueued", "queued") if r % 2 == 0 else ("queued", "unqueued")
        got = {
            name: trio.run(
                _unqueued if name == "unqueued" else _queued, b.store_path(f"queue-{name}"), n
            )
            for name in order
        }
        plain, q = got["unqueued"], got["queued"]
        admitted = trio.run(_limited, b.store_path("queue-rate"), RATE_WINDOWS * rate, rate)
        steady, most = rate_figures(admitted, rate, 1000)
        for key, value in (
            ("rate", n / q.elapsed_s),
            ("base_rate", n / plain.elapsed_s),
            ("p50", _pct(q.handover_ms, 50)),
            ("base_p50", _pct(plain.handover_ms, 50)),
            ("p99", _pct(q.handover_ms, 99)),
            ("base_p99", _pct(plain.handover_ms, 99)),
            ("steady", steady),
            ("most", most),
        ):
            figures[key].append(value)
        runs.append(
            {
                "queued_steps_per_s": n * STEPS / q.elapsed_s,
                "unqueued_steps_per_s": n * STEPS / plain.elapsed_s,
                "queued_enqueues_per_s": n / q.calls_s,
                "queued_peak_running": q.peak_running,
                "unqueued_peak_running": plain.peak_running,
            }
        )
        span = (admitted[-1] - admitted[0]) / 1000 if admitted else 0.0
        limited.append({"admitted": len(admitted), "first_to_last_admission_s": span})
        b.say(
            f"repeat {r + 1}/{b.repeats}: queued {figures['rate'][-1]:,.0f} executions/s "
            f"({runs[-1]['queued_steps_per_s']:,.0f} steps/s), unqueued "
            f"{figures['base_rate'][-1]:,.0f} ({runs[-1]['unqueued_steps_per_s']:,.0f} steps/s); "
            f"admission p50 {figures['p50'][-1]:.2f} ms p99 {figures['p99'][-1]:.2f} ms "
            f"(unqueued {figures['base_p50'][-1]:.2f} / {figures['base_p99'][-1]:.2f} ms); "
            f"rate-limited {steady:,.0f}/s steady, at most {most:,} in 1 s (limit {rate:,})"
        )
    extra = {
        "executions": n,
        "steps_per_run": STEPS,
        "concurrency": CONCURRENCY,
        "queued_steps_per_s_median": statistics.median(r["queued_steps_per_s"] for r in runs),
        "unqueued_steps_per_s_median": statistics.median(r["unqueued_steps_per_s"] for r in runs),
        "runs": runs,
    }
    limit = [float(rate)] * b.repeats
    rate_extra = {"rate_limit": [rate, 1.0], "executions": RATE_WINDOWS * rate, "runs": limited}
    handovers = {"handovers_per_run": n - CONCURRENCY}
    return {
        "queue": Measured(figures["rate"], figures["base_rate"], extra),
        "queue_admit_p50": Measured(figures["p50"], figures["base_p50"], handovers),
        "queue_admit_p99": Measured(figures["p99"], figures["base_p99"], handovers),
        "queue_rate": Measured(figures["steady"], limit, rate_extra),
        "queue_rate_max": Measured(figures["most"], limit, rate_extra),
    }
