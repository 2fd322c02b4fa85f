"""The examples of docs/testing.md, as real tests (a test checks the page quotes them)."""

# ruff: noqa: E402 - the page quotes this file block by block, imports where they are used

from __future__ import annotations

# --- example: check_replay ---
from typing import Any

import durably
from durably.testing import check_replay

sent: list[str] = []


def charge(order: str) -> str:
    return f"receipt-{order}"


def send_email(order: str) -> None:
    sent.append(order)


@durably.workflow("checkout")
async def checkout(ctx: durably.Context, order: str) -> dict[str, Any]:
    receipt = await ctx.step("charge", charge, order)
    approved = await ctx.wait_for_signal("approve", timeout=3600, step_id="approval")
    if isinstance(approved, durably.TimedOut):
        return {"receipt": receipt, "shipped": False}
    await ctx.sleep(60, step_id="cool-off")
    await ctx.step("email", send_email, order)
    return {"receipt": receipt, "shipped": True, "at": ctx.now().isoformat()}


def test_checkout_survives_a_crash_anywhere() -> None:
    report = check_replay(checkout, "A-17", signals=[(120.5, "approve", None)])
    assert report.result["shipped"] is True
    assert report.boundaries > 5  # every commit of the run was a crash point


def test_checkout_times_out_the_same_way_after_a_crash() -> None:
    report = check_replay(checkout, "A-17")  # nobody approves
    assert report.result == {"receipt": "receipt-A-17", "shipped": False}


# --- example: trio test ---
from durably.testing import check_replay_async


async def test_checkout_from_a_trio_test(autojump_clock: Any) -> None:
    report = await check_replay_async(checkout, "B-2", signals=[("waiting", "approve", None)])
    assert report.status == "completed"


# --- example: fixtures ---
async def test_checkout_with_the_engine_fixture(
    durably_engine: durably.Engine, autojump_clock: Any
) -> None:
    durably_engine.register(checkout)
    eid = await durably_engine.start(checkout, "C-3")
    await durably_engine.signal(eid, "approve")
    result = await durably_engine.wait(eid)  # an hour of virtual time takes milliseconds
    assert result["shipped"] is True


# --- example: restart ---
from durably.stores import MemoryStore
from durably.testing import virtual_engine


async def test_checkout_resumes_after_a_restart(autojump_clock: Any) -> None:
    store = MemoryStore()
    clock = durably.Clock(durably.testing.DEFAULT_START)
    async with virtual_engine(checkout, store=store, clock=clock) as engine:
        eid = await engine.start(checkout, "D-4")  # now waiting for "approve"
    async with virtual_engine(checkout, store=store, clock=clock) as engine:
        await engine.signal(eid, "approve")
        assert (await engine.wait(eid))["shipped"] is True


# --- example: hypothesis ---
from hypothesis import given

from durably.testing import deliveries


@given(deliveries([("approve", None)], max_delay=7200))
def test_checkout_replays_whenever_approval_comes(signals: list[Any]) -> None:
    check_replay(checkout, "E-5", signals=signals)


# --- mistake: random ---
import random

import pytest

from durably.testing import ReplayMismatch


@durably.workflow("raffle")
async def raffle(ctx: durably.Context, entrant: str) -> str:
    lucky = random.random() < 0.5  # WRONG: a new value on every replay
    await ctx.sleep(1, step_id="suspense")
    if lucky:
        return await ctx.step("prize", charge, entrant)
    return await ctx.step("consolation", send_email, entrant) or "next time"


def test_raffle_reading_random_outside_ctx_is_caught() -> None:
    with pytest.raises(ReplayMismatch, match=r"differs|NonDeterminism"):
        for seed in range(20):  # each seed is one more chance for the replay to differ
            random.seed(seed)
            check_replay(raffle, "F-6")


# --- fix: random ---
@durably.workflow("raffle-fixed")
async def raffle_fixed(ctx: durably.Context, entrant: str) -> str:
    lucky = ctx.random() < 0.5  # recorded on first use, the same on every replay
    await ctx.sleep(1, step_id="suspense")
    if lucky:
        return await ctx.step("prize", charge, entrant)
    return await ctx.step("consolation", send_email, entrant) or "next time"


def test_raffle_fixed_replays() -> None:
    check_replay(raffle_fixed, "F-6")


# --- mistake: clock ---
from datetime import UTC, datetime


@durably.workflow("stamp")
async def stamp(ctx: durably.Context, order: str) -> str:
    now = datetime.now(UTC)  # WRONG: the wall clock, read again on every replay
    return await ctx.step("stamp", str, now.isoformat())


def test_stamp_reading_the_clock_outside_ctx_is_caught() -> None:
    with pytest.raises(ReplayMismatch, match="step 'stamp'"):
        check_replay(stamp, "G-7")


# --- mistake: unrecorded ---
stock = {"widget": 1}


def reserve(sku: str) -> str:
    stock[sku] -= 1
    return f"reserved {sku}"


@durably.workflow("reserve")
async def reserve_item(ctx: durably.Context, sku: str) -> str:
    if stock[sku] > 0:  # WRONG: outside state, read again (changed) on replay
        result = await ctx.step("reserve", reserve, sku)
    else:
        result = await ctx.step("backorder", str, f"backordered {sku}")
    await ctx.sleep(3600, step_id="hold")
    return result


def test_branching_on_unrecorded_state_is_caught() -> None:
    with pytest.raises(ReplayMismatch, match="'backorder'"):
        check_replay(reserve_item, "widget", before_run=lambda: stock.update(widget=1))


# --- fix: unrecorded ---
def in_stock(sku: str) -> bool:
    return stock[sku] > 0


@durably.workflow("reserve-fixed")
async def reserve_fixed(ctx: durably.Context, sku: str) -> str:
    if await ctx.step("in-stock", in_stock, sku):  # the answer is recorded
        result = await ctx.step("reserve", reserve, sku)
    else:
        result = await ctx.step("backorder", str, f"backordered {sku}")
    await ctx.sleep(3600, step_id="hold")
    return result


def test_branching_on_a_recorded_value_replays() -> None:
    check_replay(reserve_fixed, "widget", before_run=lambda: stock.update(widget=1))


# --- mistake: rename ---
from durably.testing import check_upgrade


@durably.workflow("checkout")
async def checkout_v2(ctx: durably.Context, order: str) -> dict[str, Any]:
    receipt = await ctx.step("charge-card", charge, order)  # renamed from "charge"
    approved = await ctx.wait_for_signal("approve", timeout=3600, step_id="approval")
    if isinstance(approved, durably.TimedOut):
        return {"receipt": receipt, "shipped": False}
    await ctx.sleep(60, step_id="cool-off")
    await ctx.step("email", send_email, order)
    return {"receipt": receipt, "shipped": True, "at": ctx.now().isoformat()}


def test_renaming_a_step_under_running_executions_is_caught() -> None:
    with pytest.raises(ReplayMismatch, match="'charge'"):
        check_upgrade(checkout, checkout_v2, "H-8", signals=[(120.5, "approve", None)])


# --- end of examples ---
