"""What an execution's log says about each of its commands: the operator's read model.

Pure: it reads decoded events and builds views; the operator and the dashboard show them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from ._audit import AuditEntry
from ._events import (
    ChildEnded,
    ChildStarted,
    CompensationCompleted,
    CompensationFailed,
    Emitted,
    Enqueued,
    Event,
    GatherEnded,
    GatherStarted,
    Noted,
    PatchMarked,
    Published,
    SignalReceived,
    SignalRejected,
    SignalTimedOut,
    SignalWaiting,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    SwitchEvaluated,
    TimerFired,
    TimerStarted,
    ValueRecorded,
)
from ._types import Execution, from_ms


@attrs.frozen
class ExecutionPage:
    """One page of ``list_executions``; pass ``next_after`` as ``after=`` for the next."""

    items: list[Execution]
    next_after: str | None


@attrs.frozen
class StepView:
    """One recorded command of an execution, as its log tells it.

    ``kind`` is the command (``step``, ``sleep``, ``signal``, ``emit``, ``note``,
    ``switch``, ``compensate``, ``value``, ``child``, ``gather``, ``patch``,
    ``publish``); ``status`` where it stands (``completed``,
    ``failed``, ``retrying``, ``skipped``, ``waiting``, ``timed_out``, ``rejected``: a
    signal whose payload did not fit, its ``error`` says why); ``result`` the
    recorded value (a step's result, a signal's payload, a switch's result). Internal
    commands have ids starting with ``__`` or ``rollback:``.
    """

    step_id: str
    kind: str
    status: str
    attempts: int
    result: Any
    error: dict[str, Any] | None
    duration_ms: float | None
    started_at: datetime
    updated_at: datetime
    branch_id: str | None = None

    @property
    def internal(self) -> bool:
        return self.step_id.startswith(("__", "rollback:"))


@attrs.frozen
class ChildView:
    """A child execution its parent started: where, which, and how it ended (``status``
    is ``running`` until the parent has taken its end)."""

    step_id: str
    execution_id: str
    workflow: str
    status: str
    detached: bool


@attrs.frozen
class ExecutionDetail:
    """What ``get_execution_detail`` returns: the record, its steps and its audit trail,
    its children and the values it published (the latest under each key)."""

    execution: Execution
    steps: list[StepView]
    audit: list[AuditEntry]
    children: list[ChildView] = attrs.field(factory=list)
    published: dict[str, Any] = attrs.field(factory=dict)


def children_of(events: list[Event]) -> list[ChildView]:
    """The children a log started, in the order it started them."""
    views: dict[str, ChildView] = {}
    for event in events:
        if isinstance(event, ChildStarted):
            views[event.step_id] = ChildView(
                event.step_id, event.child_id, event.workflow, "running", event.detached
            )
        elif isinstance(event, ChildEnded) and event.step_id in views:
            views[event.step_id] = attrs.evolve(views[event.step_id], status=event.status)
    return list(views.values())


def published_of(events: list[Event]) -> dict[str, Any]:
    """The latest value a log published under each key (``ctx.publish``)."""
    return {e.key: e.value for e in events if isinstance(e, Published)}


def last_event(events: list[Event], step_id: str) -> Event | None:
    for event in reversed(events):
        if getattr(event, "step_id", None) == step_id:
            return event
    return None


def steps_of(events: list[Event]) -> list[StepView]:
    """The recorded commands of a log, in the order they were first recorded."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        step_id = getattr(event, "step_id", None)
        if step_id is not None:
            groups.setdefault(step_id, []).append(event)
    return [_view(step_id, group) for step_id, group in groups.items()]


def _view(step_id: str, group: list[Event]) -> StepView:
    first, last = group[0], group[-1]
    kind = first.command or "?"
    result: Any = None
    error: dict[str, Any] | None = None
    duration: float | None = None
    branch: str | None = None
    status = "completed"
    attempts = sum(1 for e in group if isinstance(e, StepCompleted | StepFailed | StepRetrying))
    match last:
        case StepCompleted():
            result, duration = last.result, last.duration_ms
        case StepSkipped():
            status, result = "skipped", last.result
        case StepFailed():
            status, error, duration = "failed", last.error, last.duration_ms
        case StepRetrying():
            status, error, duration = "retrying", last.error, last.duration_ms
        case TimerStarted() | SignalWaiting():
            status = "waiting"
        case TimerFired():
            pass
        case SignalReceived():
            result = last.payload
        case SignalTimedOut():
            status = "timed_out"
        case SignalRejected():
            status, error = "rejected", last.error
        case ValueRecorded():
            result = last.value
        case Emitted():
            result = last.payload
        case Noted():
            result = {"message": last.message, "meta": last.meta}
        case SwitchEvaluated():
            result, duration, branch = last.result, last.duration_ms, last.branch_id
        case CompensationCompleted():
            duration = last.duration_ms
        case CompensationFailed():
            status, error = "failed", last.error
        case ChildStarted():
            status, result = "waiting", {"execution_id": last.child_id}
        case ChildEnded():
            status, result, error = last.status, last.result, last.error
        case GatherStarted():
            status = "waiting"
        case GatherEnded():
            status = "completed" if last.error_step is None else "failed"
            result = {"size": first.size} if isinstance(first, GatherStarted) else None
        case PatchMarked():
            result = last.patch
        case Published():
            result = {"key": last.key, "value": last.value}
        case Enqueued():
            result = {"execution_id": last.execution_id, "queue": last.queue}
            if last.duplicate_of is not None:
                status, error = "failed", {"type": "durably.DuplicateEnqueueError"}
    return StepView(
        step_id=step_id,
        kind=kind,
        status=status,
        attempts=attempts,
        result=result,
        error=error,
        duration_ms=duration,
        started_at=from_ms(first.at),
        updated_at=from_ms(last.at),
        branch_id=branch,
    )
