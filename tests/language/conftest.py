"""Fixtures for the workflow-language tests: one virtual clock shared across restarts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

import durably

Settle = Callable[..., Awaitable[durably.Execution]]


@pytest.fixture
def clock() -> durably.Clock:
    """One engine clock for every engine of a test, so virtual time stays consistent."""
    return durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))


async def _settle(engine: durably.Engine, execution_id: str, *wanted: str) -> durably.Execution:
    # Subscribed before reading the record, so a change in between is not missed.
    async with engine.subscribe(emits=False, audit=True, execution_id=execution_id) as sub:
        execution = await engine.get_execution(execution_id)
        if execution.status in wanted:
            return execution
        async for entry in sub:
            if entry.kind == "status_changed" and entry.data["status"] in wanted:
                return await engine.get_execution(execution_id)
    raise AssertionError(f"the engine stopped before {execution_id} became {wanted}")


@pytest.fixture
def settle() -> Settle:
    """``await settle(engine, eid, "waiting", ...)``: wait (on the bus) for a status."""
    return _settle
