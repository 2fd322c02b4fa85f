"""Parked memory, run in a process of its own so that its peak RSS is its alone.

``python -m benchmarks._parked PATH N LIVE [MAP_SIZE]`` starts ``N`` executions that wait
for a signal on an engine with ``max_live_executions=LIVE`` over an LmdbStore at ``PATH``
(its map ``MAP_SIZE`` bytes, 1 GiB unless given: a million executions need more), waits
until every one is durably waiting, and prints one JSON line: RSS with the engine open
and nothing started (the floor), the process's peak RSS, and the setup time. The store is
left in place: the recovery scenario restarts an engine over it.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import trio

import durably
from durably.stores import LmdbStore

from ._workflows import ALL, wait_signal

#: Starts in flight at once: a client starting executions in waves, not 100,000 tasks.
_WAVE = 1000


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def _main(path: str, n: int, live: int, map_size: int) -> dict[str, float]:
    store = LmdbStore(path, map_size=map_size)
    try:
        async with durably.Engine(store, workflows=ALL, max_live_executions=live) as engine:
            idle_kb = _status_kb("VmRSS")
            started = time.perf_counter()
            for base in range(0, n, _WAVE):
                async with trio.open_nursery() as nursery:
                    for i in range(base, min(n, base + _WAVE)):
                        nursery.start_soon(engine.start, wait_signal, i)
            starts_s = time.perf_counter() - started
            # Durably waiting once nothing is left pending (the first commit of each
            # execution moves it straight from pending to waiting).
            while store.list_executions(status="pending", limit=1):  # noqa: ASYNC110
                await trio.sleep(0.05)  # durable state has no change feed to wait on
            await trio.sleep(0.2)  # let the last actors park
            setup_s = time.perf_counter() - started
            peak_live = engine.peak_live
            live_now = engine.statistics().live
    finally:
        store.close()
    # VmHWM, this process's own high-water mark: Linux carries the spawning process's
    # RSS into ``ru_maxrss`` across exec (kept beside it in the report).
    peak_kb = _status_kb("VmHWM")
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": n,
        "max_live_executions": live,
        "idle_rss_mb": idle_kb / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "ru_maxrss_mb": maxrss_kb / 1024,
        "rss_anon_mb_end": _status_kb("RssAnon") / 1024,
        "rss_file_mb_end": _status_kb("RssFile") / 1024,
        "starts_s": starts_s,
        "setup_s": setup_s,
        "peak_live": peak_live,
        "live_at_end": live_now,
    }


if __name__ == "__main__":
    map_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 30
    result = trio.run(_main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), map_size)
    print(json.dumps(result))
