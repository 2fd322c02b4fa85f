"""A worker process for the crash tests: runs workflows on an LmdbStore until killed.

Usage: python crash_worker.py STORE_DIR EFFECTS_FILE N_EXECUTIONS

Each step appends "execution step pid" to EFFECTS_FILE *before* returning (the side
effect) and returns the pid that ran it (the recorded result). The parent kills this
process with SIGKILL at random moments and checks what the log and the effects say.
"""

from __future__ import annotations

import os
import random
import sys

import trio

import durably
from durably.stores import LmdbStore

STEPS = 8


async def effect(path: str, step: str) -> int:
    info = durably.current_step()
    assert info is not None
    await trio.sleep(random.uniform(0.005, 0.05))  # the step's I/O
    with open(path, "a") as f:  # noqa: ASYNC230 - a tiny append is the side effect itself
        f.write(f"{info.execution_id} {step} {os.getpid()}\n")
        f.flush()
    return os.getpid()


def make_workflow(effects: str) -> durably.WorkflowDefinition[int, list[int]]:
    @durably.workflow("crashy")
    async def crashy(ctx: durably.Context, n: int) -> list[int]:
        pids = []
        for i in range(STEPS):
            pids.append(await ctx.step(f"s{i}", effect, effects, f"s{i}"))
            if i == STEPS // 2:
                await ctx.sleep(0.01, step_id="breath")
        return pids

    return crashy


async def main(store_dir: str, effects: str, count: int) -> None:
    crashy = make_workflow(effects)
    store = LmdbStore(store_dir)
    # Kills here land every few tens of milliseconds, often while executions replay: the
    # crash-loop guard (tested on its own) would rightly dead-letter some; not this test.
    async with durably.Engine(store, workflows=[crashy], max_recovery_attempts=10_000) as engine:
        for i in range(count):
            # start-or-get: a restarted worker does not start them twice
            await engine.start(crashy, i, idempotency_key=f"job-{i}")
        print("started", flush=True)
        done = await engine.list_executions(status="completed", limit=None)
        while len(done) < count:
            await trio.sleep(0.02)
            done = await engine.list_executions(status="completed", limit=None)
        print("all done", flush=True)
    store.close()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
