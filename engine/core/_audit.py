"""The audit trail: a readable timeline derived from an execution's log.

Rules of this module:

- The trail is computed from the log's events, never stored on the side: it cannot drift
  from what happened, and an old log gets the trail of the current code.
- One event gives zero or more entries; status changes are derived (the status each
  event implies, compared with the one before). ``ValueRecorded`` gives none.
- Entries carry the event's sequence number in the log, so a reader can tell entries
  of one event apart from a later one, and page through a trail.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from ._events import (
    ChildEnded,
    ChildStarted,
    ChildWaiting,
    CompensationCompleted,
    CompensationFailed,
    Emitted,
    Enqueued,
    Event,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionStarted,
    GatherEnded,
    GatherStarted,
    Noted,
    OperatorActed,
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
from ._status import status_after, wait_of
from ._types import from_ms

#: The kinds of audit entries, in no particular order.
KINDS = (
    "status_changed",
    "step_completed",
    "step_retrying",
    "step_failed",
    "step_skipped",
    "sleep_scheduled",
    "sleep_completed",
    "signal_waiting",
    "signal_delivered",
    "signal_timed_out",
    "signal_rejected",
    "emitted",
    "switch_evaluated",
    "note",
    "compensation_completed",
    "compensation_failed",
    "operator_action",
    "child_started",
    "child_waiting",
    "child_ended",
    "gather_started",
    "gather_ended",
    "patched",
    "published",
)


@attrs.frozen
class AuditEntry:
    """One line of an execution's timeline.

    ``kind`` is one of ``durably.AUDIT_KINDS``; ``data`` holds the kind's details as
    JSON-shaped values (``status`` and ``previous`` for ``status_changed``,
    ``duration_ms`` for ``step_completed``, ``action``, ``by`` and ``reason`` for
    ``operator_action``, ...). ``seq`` is the event's position in the log.
    """

    execution_id: str
    seq: int | None
    at: datetime
    kind: str
    step_id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped: ``at`` as an ISO 8601 string."""
        return {
            "execution_id": self.execution_id,
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "step_id": self.step_id,
            "data": self.data,
        }


def _entries_of(event: Event) -> list[tuple[str, dict[str, Any]]]:
    match event:
        case StepCompleted():
            return [
                ("step_completed", {"duration_ms": event.duration_ms, "attempt": event.attempt})
            ]
        case StepRetrying():
            return [
                (
                    "step_retrying",
                    {
                        "attempt": event.attempt,
                        "retry_at": from_ms(event.retry_at).isoformat(),
                        "error": _brief(event.error),
                        "duration_ms": event.duration_ms,
                    },
                )
            ]
        case StepFailed():
            return [
                (
                    "step_failed",
                    {
                        "attempt": event.attempt,
                        "error": _brief(event.error),
                        "duration_ms": event.duration_ms,
                    },
                )
            ]
        case StepSkipped():
            return [
                ("step_skipped", {"result": event.result, "by": event.by, "reason": event.reason})
            ]
        case TimerStarted():
            return [("sleep_scheduled", {"wake_at": from_ms(event.wake_at).isoformat()})]
        case TimerFired():
            return [("sleep_completed", {})]
        case SignalWaiting():
            deadline = None if event.deadline is None else from_ms(event.deadline).isoformat()
            return [("signal_waiting", {"signal": event.signal, "deadline": deadline})]
        case SignalReceived():
            return [("signal_delivered", {"signal": event.signal, **_sender(event)})]
        case SignalTimedOut():
            return [("signal_timed_out", {"signal": event.signal})]
        case SignalRejected():
            brief = {"signal": event.signal, "expected": event.expected}
            return [("signal_rejected", {**brief, "error": _brief(event.error), **_sender(event)})]
        case Emitted():
            return [("emitted", {"event": event.event, "payload": event.payload})]
        case SwitchEvaluated():
            return [
                (
                    "switch_evaluated",
                    {"branch_id": event.branch_id, "duration_ms": event.duration_ms},
                )
            ]
        case Noted():
            return [("note", {"message": event.message, "meta": event.meta})]
        case CompensationCompleted():
            return [("compensation_completed", {"duration_ms": event.duration_ms})]
        case CompensationFailed():
            return [("compensation_failed", {"error": _brief(event.error), "round": event.round})]
        case OperatorActed():
            return [
                (
                    "operator_action",
                    {
                        "action": event.action,
                        "by": event.by,
                        "reason": event.reason,
                        "data": event.data,
                    },
                )
            ]
    return _composed_entries(event)


def _sender(event: SignalReceived | SignalRejected) -> dict[str, Any]:
    """``by`` and ``reason`` of a signal whose sender gave them (an operator's)."""
    if event.by is None and event.reason is None:
        return {}
    return {"by": event.by, "reason": event.reason}


def _composed_entries(event: Event) -> list[tuple[str, dict[str, Any]]]:
    """Entries of the composition primitives (children, gathers, patches, publishing)."""
    match event:
        case ChildStarted():
            data = {"child_id": event.child_id, "workflow": event.workflow}
            return [("child_started", {**data, "detached": event.detached})]
        case ChildWaiting():
            return [("child_waiting", {"child_id": event.child_id})]
        case ChildEnded():
            data = {"child_id": event.child_id, "status": event.status}
            return [("child_ended", {**data, "error": _brief(event.error or {})})]
        case GatherStarted():
            return [("gather_started", {"size": event.size})]
        case GatherEnded():
            return [("gather_ended", {"error_step": event.error_step})]
        case PatchMarked():
            return [("patched", {"patch": event.patch})]
        case Published():
            return [("published", {"key": event.key, "value": event.value})]
        case Enqueued():
            data = {"execution_id": event.execution_id, "queue": event.queue}
            return [("enqueued", {**data, "duplicate_of": event.duplicate_of})]
    return []


def _status_data(event: Event, status: str, previous: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status, "previous": previous}
    match event:
        case ExecutionStarted():
            data["workflow"] = event.workflow
        case ExecutionResumed():
            data.update(attempt=event.attempt, by=event.by, reason=event.reason)
        case ExecutionFailed():
            data["error"] = _brief(event.error)
        case ExecutionCancelled():
            data.update(by=event.by, reason=event.reason)
    return data


def _brief(error: dict[str, Any]) -> dict[str, Any]:
    # The traceback stays in the log (operator.get_execution_detail's steps show it);
    # a timeline line carries what and why.
    return {"type": error.get("type"), "message": error.get("message")}


class AuditTracker:
    """Turns events into entries, remembering each execution's last derived status.

    The live bus keeps one tracker for every execution it sees; it remembers at most
    ``capacity`` of them (least recently seen dropped first). A forgotten execution's next
    status entry has no ``previous`` status: the bus is best-effort, the log is whole.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._status: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        self._capacity = capacity

    def forget(self, execution_id: str) -> None:
        self._status.pop(execution_id, None)

    def entries(
        self, execution_id: str, events: Iterable[Event], first_seq: int | None
    ) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        status, waiting = self._status.get(execution_id, (None, "running"))
        for offset, event in enumerate(events):
            seq = None if first_seq is None else first_seq + offset
            at = from_ms(event.at)
            step_id = getattr(event, "step_id", None)
            if not isinstance(event, ValueRecorded):
                for kind, data in _entries_of(event):
                    out.append(AuditEntry(execution_id, seq, at, kind, step_id, data))
            new = status_after(event, status, waiting)
            if step_id is not None:
                waiting = wait_of(event).status
            if new is not None and new != status:
                data = _status_data(event, new, status)
                out.append(AuditEntry(execution_id, seq, at, "status_changed", None, data))
                status = new
        self._status[execution_id] = (status, waiting)
        self._status.move_to_end(execution_id)
        if len(self._status) > self._capacity:
            self._status.popitem(last=False)
        return out


def audit_trail(execution_id: str, events: Iterable[Event]) -> list[AuditEntry]:
    """The whole trail of an execution from its decoded log."""
    return AuditTracker().entries(execution_id, events, 0)
