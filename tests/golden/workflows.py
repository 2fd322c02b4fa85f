"""The workflows of the golden logs, as the code stands today.

Each golden log in this directory was recorded by ``make_golden.py`` from these
workflows (or, for ``renamed``, from the old version kept in that script) and stopped
part-way; the golden test resumes it with this code. Change these workflows only in ways
that keep old executions replayable, exactly as you would in production; a change that
breaks them is what the golden test exists to catch.
"""

from __future__ import annotations

from typing import Any

import attrs

import durably

#: Step bodies that ran, in order ("name:attempt"): the golden test checks that a resumed
#: log re-runs none of the recorded ones.
RUNS: list[str] = []


@attrs.frozen
class Receipt:
    order: str
    amount: int


def _ran(name: str) -> None:
    info = durably.current_step()
    RUNS.append(f"{name}:{info.attempt if info else 0}")


def charge(order: str, amount: int) -> Receipt:
    _ran("charge")
    return Receipt(order, amount)


def reserve(order: str) -> list[str]:
    _ran("reserve")
    return [order, "shelf-4"]


def refuse(order: str) -> None:
    _ran("refuse")
    raise PermissionError(f"{order}: fraud check failed")


def refund(receipt: Receipt) -> None:
    _ran("refund")


def ship(order: str) -> str:
    _ran("ship")
    return f"shipped {order}"


def flaky(order: str) -> str:
    _ran("flaky")
    info = durably.current_step()
    if info is not None and info.attempt == 1:
        raise ConnectionError("carrier API down")
    return f"booked {order}"


@durably.workflow("golden-order")
async def order(ctx: durably.Context, data: dict[str, Any]) -> dict[str, Any]:
    """Every primitive once, then a wait for "finish" (where the golden log stops)."""
    receipt = await ctx.step("charge", charge, data["order"], data["amount"], compensate=refund)
    assert isinstance(receipt, Receipt)
    shelf = await ctx.step("reserve", reserve, data["order"])
    try:
        await ctx.step("fraud-check", refuse, data["order"])
        fraud = "passed"
    except durably.StepError as exc:
        fraud = exc.error_type
    stamp = ctx.now()
    luck = ctx.random()
    ticket = ctx.uuid()
    await ctx.sleep(60, step_id="cool-off")
    size = await ctx.switch(
        "size",
        data["amount"],
        [durably.Branch("small", lambda a: "small", match=lambda a: a < 100)],
        default=durably.Branch("large", lambda a: "large"),
    )
    await ctx.note("checked", step_id="checked", fraud=fraud)
    await ctx.emit("order.ready", {"order": data["order"]}, step_id="ready")
    approval = await ctx.wait_for_signal("approve", timeout=3600, step_id="approval")
    late = await ctx.wait_for_signal("late", timeout=30, step_id="late")
    finish = await ctx.wait_for_signal("finish", step_id="finish")
    if finish == "cancel":
        await ctx.rollback()
        shipped = None
    else:
        shipped = await ctx.step("ship", ship, data["order"])
    return {
        "receipt": attrs.asdict(receipt),
        "shelf": shelf,
        "fraud": fraud,
        "stamp": stamp.isoformat(),
        "luck": luck,
        "ticket": str(ticket),
        "size": size,
        "approval": repr(approval),
        "late": repr(late),
        "shipped": shipped,
    }


@durably.workflow("golden-retry")
async def retrying(ctx: durably.Context, data: str) -> str:
    """Stopped while waiting for the retry of a failed attempt."""
    await ctx.step("reserve", reserve, data)
    booked = await ctx.step("book", flaky, data, retry=durably.Retry(max_attempts=3, initial=30))
    return f"{booked} at {ctx.now().isoformat()}"


@durably.workflow("golden-sleeping")
async def sleeping(ctx: durably.Context, data: str) -> list[str]:
    """Stopped in the middle of a day-long durable sleep."""
    first = await ctx.step("reserve", reserve, data)
    await ctx.sleep(24 * 3600, step_id="wait-a-day")
    return [*first, await ctx.step("ship", ship, data)]


@durably.workflow("golden-renamed")
async def renamed(ctx: durably.Context, data: str) -> str:
    """Today's code renamed the step "charge" to "charge-card" (recorded as "charge")."""
    await ctx.step("charge-card", charge, data, 10)
    await ctx.sleep(60, step_id="cool-off")
    return await ctx.step("ship", ship, data)


WORKFLOWS = [order, retrying, sleeping, renamed]
