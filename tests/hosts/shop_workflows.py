"""The order workflow the host tests serve: asyncio steps, a signal, an HTTP ledger.

Each step posts its idempotency key to the ledger server at ``SHOP_LEDGER`` (run by the
test) with httpx's asyncio client, so the test can tell what ran: a step runs at least
once, and its key makes the effect exactly once.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

import durably


async def append_to_ledger(line: str) -> None:
    async with httpx.AsyncClient() as http:  # an asyncio library: runs on the host loop
        response = await http.post(os.environ["SHOP_LEDGER"], content=line.encode())
        response.raise_for_status()


async def _record(what: str) -> str:
    step = durably.current_step()
    assert step is not None
    await append_to_ledger(f"{step.idempotency_key} {what}")
    return what


@durably.workflow("order")
async def order(ctx: durably.Context, data: dict[str, Any]) -> str:
    await ctx.step("reserve", _record, f"reserve {data['id']}")
    await ctx.wait_for_signal("approve", step_id="approval")
    await ctx.step("ship", _record, f"ship {data['id']}")
    return f"shipped {data['id']}"
