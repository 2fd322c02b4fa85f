"""Fixtures for the workflow-language tests: one virtual clock shared across restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import durably


@pytest.fixture
def clock() -> durably.Clock:
    """One engine clock for every engine of a test, so virtual time stays consistent."""
    return durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))
