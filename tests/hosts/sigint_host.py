"""An asyncio program embedding durably.aio, for the Ctrl-C test: it prints each
acknowledged start, then waits to be interrupted."""

from __future__ import annotations

import asyncio
import sys

import durably
import durably.aio


@durably.workflow("nap")
async def nap(ctx: durably.Context, n: int) -> int:
    await ctx.sleep(3600, step_id="nap")
    return n


async def main(path: str) -> None:
    try:
        async with durably.aio.Engine(path, workflows=[nap]) as engine:
            for n in range(5):
                print("started", await engine.start(nap, n), flush=True)
            await asyncio.sleep(3600)
    finally:
        print("closed", flush=True)  # after the engine has left: its writes are flushed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
