"""Shared fixtures: every store kind, and Hypothesis profiles.

``HYPOTHESIS_PROFILE=thorough`` runs the property tests with many more examples (nightly);
the default ``ci`` profile keeps the whole suite within the CI budget.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import durably
from durably.stores import LmdbStore, MemoryStore, Store

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["memory", "lmdb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes stores of one kind; an LMDB factory reopens the same path each call.

    LMDB stores are ``inline`` so that tests can run under trio's MockClock (autojump
    would otherwise run ahead of the commit thread).
    """
    opened: list[Store] = []
    memory = MemoryStore() if request.param == "memory" else None

    def make() -> Store:
        if memory is not None:
            return memory
        for old in opened:
            old.close()
        store = LmdbStore(tmp_path / "store", inline=True, map_size=1 << 20)
        opened.append(store)
        return store

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


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
