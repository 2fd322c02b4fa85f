"""The public view of a schedule: its kind, status, cadence and the runs it started."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

import attrs

CatchUp = Literal["latest", "all", "skip"]
"""What a recurring schedule does about fires missed while no engine ran."""
Overlap = Literal["allow", "skip"]
"""What a fire does while the schedule's previous execution is still active."""


class ScheduleStatus(enum.StrEnum):
    """Where a schedule is."""

    ACTIVE = "active"
    """It will fire at ``next_fire_at``."""
    PAUSED = "paused"
    """Kept, but not firing until resumed."""
    DONE = "done"
    """A one-off schedule that has fired (or a cron expression with no future match)."""


@attrs.frozen
class Schedule:
    """A read-only view of a schedule: its definition, its state, and what it started."""

    id: str
    workflow: str
    input: Any
    status: ScheduleStatus
    cron: str | None
    """The cron expression, for a cron schedule."""
    timezone: str | None
    """The IANA timezone the cron expression is read in, for a cron schedule."""
    interval: float | None
    """Seconds between fires, for an interval schedule."""
    at: datetime | None
    """The fire time of a one-off schedule."""
    catch_up: CatchUp
    overlap: Overlap
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    executions: tuple[str, ...]
    """Ids of the executions it started, oldest first (the most recent 100)."""
    runs: int
    """Executions started in all (``executions`` keeps only the most recent)."""
    skipped: int
    """Fires not run: by ``overlap="skip"``, or missed during downtime with ``catch_up="skip"``."""
    last_error: str | None
    """Why the last fire could not start an execution, if it could not."""

    @property
    def kind(self) -> Literal["once", "cron", "interval"]:
        if self.cron is not None:
            return "cron"
        if self.interval is not None:
            return "interval"
        return "once"
