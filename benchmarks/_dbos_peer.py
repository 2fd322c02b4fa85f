"""DBOS Transact on its SQLite default, on durably's workload shapes, in its own process.

``python -m benchmarks._dbos_peer SCENARIO N DIR`` prints one JSON line. DBOS is a
process-wide singleton, so each measurement gets a fresh process and a fresh database.
Workflows and steps are DBOS's own decorators; each step is durable (checkpointed to
SQLite) before the next runs, as in durably.
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


def main(scenario: str, n: int, directory: str) -> dict[str, float]:
    config: DBOSConfig = {
        "name": "durably-bench",
        "system_database_url": "sqlite:///" + os.path.join(directory, "dbos.sqlite"),
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
