"""Targeted determinism cases the property tests found or that need a precise setup."""

from __future__ import annotations

from typing import Any

import pytest

import durably
from durably.testing import ReplayMismatch, check_upgrade


def _one() -> int:
    return 1


@durably.workflow("raises")
async def raises_v1(ctx: durably.Context, data: Any) -> None:
    await ctx.step("first", _one)
    await ctx.sleep(10, step_id="nap")
    raise RuntimeError("the business rule says no")


@durably.workflow("raises")
async def raises_v2(ctx: durably.Context, data: Any) -> None:
    # "first" and "nap" removed: the recorded history can no longer be reached.
    raise RuntimeError("the business rule says no")


def test_a_workflow_that_raises_before_reaching_its_history_is_nondeterminism() -> None:
    with pytest.raises(ReplayMismatch) as info:
        check_upgrade(raises_v1, raises_v2)
    assert "NonDeterminismError" in str(info.value)


@durably.workflow("swallows")
async def swallows_v1(ctx: durably.Context, data: Any) -> str:
    await ctx.step("charge", _one)
    await ctx.sleep(10, step_id="nap")
    return "charged"


@durably.workflow("swallows")
async def swallows_v2(ctx: durably.Context, data: Any) -> str:
    try:
        await ctx.step("charge-card", _one)  # renamed under running executions
    except Exception:  # an over-broad handler in user code
        return "fallback"
    await ctx.sleep(10, step_id="nap")
    return "charged"


def test_a_swallowed_nondeterminism_error_still_fails_the_execution() -> None:
    # The replay cursor does not move past a divergence, so the workflow's next durable
    # call (or its return) diverges again: swallowing the error cannot hide it.
    with pytest.raises(ReplayMismatch) as info:
        check_upgrade(swallows_v1, swallows_v2)
    assert "NonDeterminismError" in str(info.value)


def test_check_upgrade_accepts_a_compatible_change() -> None:
    @durably.workflow("swallows")
    async def appended(ctx: durably.Context, data: Any) -> Any:
        await ctx.step("charge", _one)
        await ctx.sleep(10, step_id="nap")
        await ctx.note("a step added at the end is compatible")
        return "charged"

    report = check_upgrade(swallows_v1, appended)
    assert report.status == "completed" and report.boundaries >= 3
