"""DBOS Transact on durably's workload shapes, in its own process.

``python -m benchmarks._dbos_peer SCENARIO N WHERE`` prints one JSON line. ``WHERE`` is a
directory (DBOS's SQLite default, a database file in it) or a ``postgresql://`` URL (its
production configuration: the system database on PostgreSQL, DBOS's own defaults
otherwise). DBOS is a process-wide singleton, so each measurement gets a fresh process
and a fresh database. Workflows and steps are DBOS's own decorators; each step is
durable (checkpointed to its system database) before the next runs, as in durably.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from dbos import DBOS, DBOSConfig


@DBOS.step()
def add_one(i: int) -> int:
    return i + 1


@DBOS.workflow()
def ten_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += add_one(i)
    return total


@DBOS.step()
async def add_one_async(i: int) -> int:
    return i + 1


@DBOS.workflow()
async def ten_steps_async(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one_async(i)
    return total


def main(scenario: str, n: int, where: str) -> dict[str, float]:
    if where.startswith(("postgresql://", "postgres://")):
        url = where
    else:
        url = "sqlite:///" + os.path.join(where, "dbos.sqlite")
    config: DBOSConfig = {
        "name": "durably-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        if scenario == "sequential":
            started = time.perf_counter()
            for _ in range(n):
                ten_steps(10)
            elapsed = time.perf_counter() - started
        elif scenario == "concurrent":

            async def run() -> float:
                t0 = time.perf_counter()
                await asyncio.gather(*(ten_steps_async(10) for _ in range(n)))
                return time.perf_counter() - t0

            elapsed = asyncio.run(run())
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        DBOS.destroy()
    return {"steps": n * 10, "seconds": elapsed, "steps_per_s": n * 10 / elapsed}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
