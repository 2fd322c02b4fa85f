"""Composition under durably.aio: a gather of asyncio step bodies, children, a patch and a
continue-as-new, driven from a real asyncio loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import durably
import durably.aio


async def _fetch(n: int) -> int:
    await asyncio.sleep(0.001 * n)  # an asyncio body: it must run on the host loop
    return n * n


@durably.workflow("aio-kid")
async def kid(ctx: durably.Context, n: int) -> int:
    return await ctx.step("fetch", _fetch, n)


@durably.workflow("aio-fan")
async def fan(ctx: durably.Context, rounds: int) -> int:
    squares = await ctx.gather(*[ctx.step(f"sq{i}", _fetch, i) for i in range(20)], limit=5)
    kids = await ctx.gather(*[ctx.child(kid, i, step_id=f"kid{i}") for i in range(3)])
    if ctx.patched("publish-progress"):
        await ctx.publish("round", rounds)
    if rounds > 1:
        ctx.continue_as_new(rounds - 1)
    return sum(squares) + sum(kids)


def test_gather_children_patches_and_continue_as_new_under_asyncio(tmp_path: Path) -> None:
    async def main() -> tuple[int, durably.Execution]:
        async with durably.aio.Engine(tmp_path / "s", workflows=[fan, kid]) as engine:
            eid = await engine.start(fan, 3)
            assert await engine.read_published(eid, "round", wait=True) in (1, 2, 3)
            result = await engine.wait(eid, workflow=fan)
            receipt = await engine.signal_with_start(fan, 1, "poke", None, idempotency_key="k")
            assert receipt.delivery is not durably.SignalDelivery.REJECTED
            return result, await engine.get_execution(eid)

    result, execution = asyncio.run(main())
    assert result == sum(i * i for i in range(20)) + sum(i * i for i in range(3))
    assert execution.run == 3
