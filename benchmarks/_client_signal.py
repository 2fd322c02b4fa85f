"""Client signal round trip: a client process signals an execution that waits in a worker
process; the time until the worker acts on it (its workflow runs the next step).

Two figures, each p50 and p99: with the wake-up hint delivered, and with the worker's
socket removed, so that every hint is lost and the worker's periodic look at the inbox
(``poll_interval``, 1 s, the default) is what finds each signal: about half an interval
on average, one interval at worst.

``python -m benchmarks._client_signal PATH N`` is the worker: it starts one execution
that waits for ``N`` signals in turn, prints its id, and runs until the execution ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import orjson
import trio

import durably
from durably.remote._wire import worker_socket_path
from durably.stores import LmdbStore

from . import _baselines
from ._scenarios import MAP_SIZE, Bench, Measured, _pct

POLL_INTERVAL = 1.0
#: A round trip is two synced commits: the client's signal (with its inbox entry), the
#: worker's taking of the inbox (the step after it is durable one commit later).
_ROUND_TRIP_COMMITS = 2


@durably.workflow("bench.client_ping")
async def client_ping(ctx: durably.Context, n: int) -> int:
    """Wait for ``n`` signals; after each, a step records the wall time it ran at."""
    for i in range(n):
        await ctx.wait_for_signal("ping", step_id=f"wait{i}")
        await ctx.step(f"acted{i}", time.time)
    return n


async def _worker(path: str, n: int) -> None:
    store = LmdbStore(path, map_size=MAP_SIZE)
    try:
        async with durably.Engine(
            store, workflows=[client_ping], poll_interval=POLL_INTERVAL
        ) as engine:
            eid = await engine.start(client_ping, n)
            print(eid, flush=True)
            await engine.wait(eid)
    finally:
        store.close()


async def _client(path: str, eid: str, n: int) -> list[float]:
    """Signal ``n`` times, each once the worker has acted on the one before and waits
    again; the latencies, in ms."""
    sent: list[float] = []
    events: list[dict[str, Any]] = []
    async with durably.Client(path) as client:
        for i in range(n):
            # The worker's state is in the store, which has no change feed: read it.
            while f"wait{i}" not in {
                e.get("step_id") for e in events if e["t"] == "signal.waiting"
            }:
                await trio.sleep(0.001)
                events += map(orjson.loads, client.store.read_events(eid, len(events)))
            sent.append(time.time())
            await client.signal(eid, "ping")
        await client.wait(eid, timeout=60 + n * 2 * POLL_INTERVAL)
        events = [orjson.loads(raw) for raw in client.store.read_events(eid)]
    acted = {e["step_id"]: e["result"] for e in events if e["t"] == "step.completed"}
    return [(acted[f"acted{i}"] - sent[i]) * 1000 for i in range(n)]


def _round_trips(b: Bench, n: int, lose_hints: bool) -> list[float]:
    path = b.store_path("client-signal")
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._client_signal", path, str(n)],
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert worker.stdout is not None
        eid = worker.stdout.readline().decode().strip()
        if lose_hints:
            os.unlink(worker_socket_path(path))
        return trio.run(_client, path, eid, n)
    finally:
        worker.wait(timeout=120)


def client_signal(b: Bench) -> dict[str, Measured]:
    """Both variants, each beside its baseline: two raw synced commits for the hinted
    round trip, ``poll_interval`` for the lost one."""
    figures: dict[str, list[float]] = {key: [] for key in ("p50", "p99", "lp50", "lp99")}
    baseline: list[float] = []
    for r in range(b.repeats):
        rate = _baselines.raw_synced_commits(b.sizes["raw_commits"], b.workdir)
        baseline.append(_ROUND_TRIP_COMMITS / rate * 1000)
        hinted = _round_trips(b, b.sizes["client_signals"], lose_hints=False)
        lost = _round_trips(b, b.sizes["client_signals_lost"], lose_hints=True)
        for key, values in (("p50", hinted), ("lp50", lost)):
            figures[key].append(_pct(values, 50))
        for key, values in (("p99", hinted), ("lp99", lost)):
            figures[key].append(_pct(values, 99))
        b.say(
            f"repeat {r + 1}/{b.repeats}: hinted p50 {figures['p50'][-1]:.2f} ms, p99 "
            f"{figures['p99'][-1]:.2f} ms; hints lost p50 {figures['lp50'][-1]:.0f} ms, "
            f"p99 {figures['lp99'][-1]:.0f} ms ({_ROUND_TRIP_COMMITS} raw commits "
            f"{baseline[-1]:.2f} ms)"
        )
    hinted_extra = {"round_trips": b.sizes["client_signals"], "processes": 2}
    lost_extra = {"round_trips": b.sizes["client_signals_lost"], "poll_interval_s": POLL_INTERVAL}
    poll_ms = [POLL_INTERVAL * 1000] * b.repeats
    return {
        "client_signal_p50": Measured(figures["p50"], baseline, hinted_extra),
        "client_signal_p99": Measured(figures["p99"], baseline, hinted_extra),
        "client_signal_lost_p50": Measured(figures["lp50"], poll_ms, lost_extra),
        "client_signal_lost_p99": Measured(figures["lp99"], poll_ms, lost_extra),
    }


if __name__ == "__main__":
    trio.run(_worker, sys.argv[1], int(sys.argv[2]))
