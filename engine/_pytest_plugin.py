"""pytest fixtures for testing durably workflows (loaded by pytest through an entry point).

``durably_engine`` is a running engine on a fresh ``MemoryStore`` in virtual time, so a
test is: register the workflow, start it, assert. The test itself must also take
pytest-trio's ``autojump_clock``: pytest-trio picks the clock of a run from the test
function's own arguments only.
``durably_store`` is the store under it, for tests that restart an engine over the same
log with :func:`durably.testing.virtual_engine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio.testing

from durably.stores import MemoryStore

from ._engine import Engine
from .testing import virtual_engine


@pytest.fixture
def durably_store() -> MemoryStore:
    """A fresh in-memory store (same semantics as LMDB, no durability)."""
    return MemoryStore()


@pytest.fixture
async def durably_engine(
    durably_store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> AsyncIterator[Engine]:
    """A running engine over ``durably_store`` in virtual time; register workflows on it."""
    async with virtual_engine(store=durably_store) as engine:
        yield engine
