"""The soak's worker: starts executions at a steady pace and runs them until killed.

Usage: python soak_worker.py STORE_DIR EFFECTS_FILE N_EXECUTIONS STARTS_PER_SECOND [N_CLIENT]

Starts ``job-0`` .. ``job-(N-1)`` with idempotency keys (a restarted worker skips the ones
already started), then waits for all of them, and for the ``N_CLIENT`` executions that
client processes (``soak_client.py``) start and signal. Each step appends ``execution
step pid`` to EFFECTS_FILE before returning (the side effect) and returns its pid (the
recorded result).
"""

from __future__ import annotations

import os
import random
import sys

import trio

import durably
from durably.stores import LmdbStore

STEPS = 4


async def effect(path: str, step: str) -> int:
    info = durably.current_step()
    assert info is not None
    await trio.sleep(random.uniform(0.0, 0.03))  # the step's I/O
    with open(path, "a") as f:  # noqa: ASYNC230 - a tiny append is the side effect itself
        f.write(f"{info.execution_id} {step} {os.getpid()}\n")
    await trio.sleep(random.uniform(0.0, 0.01))  # the reply: a kill here re-runs the step
    return os.getpid()


def make_workflow(effects: str) -> durably.WorkflowDefinition[int, list[int]]:
    @durably.workflow("soak")
    async def soak(ctx: durably.Context, n: int) -> list[int]:
        pids = []
        for i in range(STEPS):
            pids.append(await ctx.step(f"s{i}", effect, effects, f"s{i}"))
            if i == 1:
                await ctx.sleep(random.uniform(0.05, 0.5), step_id="pause")
        return pids

    return soak


def make_signalled(effects: str) -> durably.WorkflowDefinition[int, list[int]]:
    """The clients' workflow: it waits for the signal "go", then runs the same steps."""

    @durably.workflow("soak-signal")
    async def signalled(ctx: durably.Context, n: int) -> list[int]:
        await ctx.wait_for_signal("go", step_id="go")
        return [await ctx.step(f"s{i}", effect, effects, f"s{i}") for i in range(STEPS)]

    return signalled


async def main(store_dir: str, effects: str, count: int, rate: float, clients: int) -> None:
    soak = make_workflow(effects)
    store = LmdbStore(store_dir)
    workflows = [soak, make_signalled(effects)]
    # A kill lands every second or two, often while executions replay at start-up; the
    # crash-loop guard is tested on its own and must not dead-letter anything here.
    async with durably.Engine(store, workflows=workflows, max_recovery_attempts=1000) as engine:
        for i in range(count):
            key = f"job-{i}"
            if store.find_idempotent("soak", key) is None:
                await engine.start(soak, i, idempotency_key=key)
                await trio.sleep(1 / rate)
        # Polling the store is the point: it says what is durable.
        while len(await engine.list_executions(status="completed", limit=None)) < count + clients:  # noqa: ASYNC110
            await trio.sleep(0.1)
        print("all done", flush=True)
    store.close()


if __name__ == "__main__":
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), clients)
