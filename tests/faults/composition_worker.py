"""A worker process for the composition crash test: parents that fan out to children and
steps, and a chain that continues as new, on an LmdbStore, until killed.

Usage: python composition_worker.py STORE_DIR EFFECTS_FILE N_PARENTS

Every step body appends "execution step pid" to EFFECTS_FILE before returning.
"""

from __future__ import annotations

import os
import random
import sys

import trio

import durably
from durably.stores import LmdbStore

KIDS = 4
LOOPS = 30


async def effect(path: str, step: str) -> int:
    info = durably.current_step()
    assert info is not None
    await trio.sleep(random.uniform(0.002, 0.03))  # the step's I/O
    with open(path, "a") as f:  # noqa: ASYNC230 - a tiny append is the side effect itself
        f.write(f"{info.execution_id} {step} {os.getpid()}\n")
        f.flush()
    return os.getpid()


def make(effects: str) -> list[durably.WorkflowDefinition[object, object]]:
    @durably.workflow("crash-kid")
    async def kid(ctx: durably.Context, n: int) -> int:
        await ctx.step("work", effect, effects, "work")
        await ctx.sleep(0.01, step_id="nap")
        return n

    @durably.workflow("crash-parent")
    async def parent(ctx: durably.Context, n: int) -> int:
        steps = [ctx.step(f"s{i}", effect, effects, f"s{i}") for i in range(3)]
        kids = [ctx.child(kid, i, step_id=f"kid{i}") for i in range(KIDS)]
        got = await ctx.gather(*steps, *kids, limit=4)
        return sum(got[3:])

    @durably.workflow("crash-chain")
    async def chain(ctx: durably.Context, i: int) -> int:
        await ctx.step("tick", effect, effects, f"tick{i}")
        if i < LOOPS:
            ctx.continue_as_new(i + 1)
        return i

    return [parent, kid, chain]  # type: ignore[list-item]


async def main(store_dir: str, effects: str, count: int) -> None:
    parent, kid, chain = make(effects)
    store = LmdbStore(store_dir)
    async with durably.Engine(
        store, workflows=[parent, kid, chain], max_recovery_attempts=10_000
    ) as engine:
        ids = [await engine.start(parent, i, idempotency_key=f"p{i}") for i in range(count)]
        ids.append(await engine.start(chain, 0, idempotency_key="chain"))
        print("started", flush=True)
        while True:
            records = [await engine.get_execution(eid) for eid in ids]
            if all(r.status == "completed" for r in records):
                break
            await trio.sleep(0.02)
        print("all done", flush=True)
    store.close()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
