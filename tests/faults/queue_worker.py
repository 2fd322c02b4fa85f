"""A worker process for the queue crash test: serves one rate-limited queue of bounded
concurrency on an LmdbStore until every execution has completed, or until killed.

Usage: python queue_worker.py STORE_DIR LEDGER_FILE TOTAL

The one step of every execution appends ``start`` and ``end`` lines to LEDGER_FILE
(``kind execution_id monotonic_ns wall_ns pid``), written with O_APPEND and fsynced
before the step goes on, so the ledger outlives the process that wrote it.
"""

from __future__ import annotations

import os
import random
import sys
import time

import trio

import durably
from durably.stores import LmdbStore

QUEUE = durably.Queue("crash-q", concurrency=5, rate_limit=(50, 0.5))


def result_of(n: int) -> int:
    """What the execution of input ``n`` returns (the test checks it)."""
    return 3 * n + 1


def _append(fd: int, kind: str, execution_id: str) -> None:
    # Stamps are taken before the write: a start stamp is never later than the step's
    # real start, an end stamp never later than its real end.
    line = f"{kind} {execution_id} {time.monotonic_ns()} {time.time_ns()} {os.getpid()}\n"
    os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
    os.fsync(fd)


def make(ledger: int) -> durably.WorkflowDefinition[int, int]:
    async def work(n: int) -> int:
        info = durably.current_step()
        assert info is not None
        await trio.to_thread.run_sync(_append, ledger, "start", info.execution_id)
        await trio.sleep(random.uniform(0.002, 0.006))  # the step's I/O
        await trio.to_thread.run_sync(_append, ledger, "end", info.execution_id)
        return result_of(n)

    @durably.workflow("queue-crash-job")
    async def job(ctx: durably.Context, n: int) -> int:
        return await ctx.step("work", work, n)

    return job


async def main(store_dir: str, ledger_path: str, total: int) -> None:
    ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    job = make(ledger)
    store = LmdbStore(store_dir)
    async with durably.Engine(
        store, workflows=[job], queues=[QUEUE], max_recovery_attempts=10_000
    ) as engine:
        print("ready", flush=True)
        while True:
            await trio.sleep(0.05)
            stats = await engine.queue_stats(QUEUE.name)
            if stats.queued or stats.running:
                continue
            done = store.list_executions(status="completed", limit=None)
            if sum(r.workflow == job.name for r in done) >= total:
                break
        print("all done", flush=True)
    store.close()
    os.close(ledger)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
