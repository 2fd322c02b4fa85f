"""How an execution's status follows from its events: one table, used everywhere.

Rules of this module (everything that decides a status lives here):

- ``STATUS_AFTER`` maps an event type to the status the execution is in right after it.
  Events not in the table that answer a workflow command (they carry a ``step_id``) leave
  it ``running``; the others leave it as it was.
- A wait (a sleep, a signal wait, a retry's backoff) is also what the record says the
  execution waits for: ``wait_of`` reads it from the event that began the wait, so the
  actor, the operator and the audit trail cannot disagree about it.
- ``record_changes`` is what the execution's record takes from an event: its status, the
  signal it waits for and its pending timer. The actor applies it with the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._events import (
    ChildEnded,
    ChildWaiting,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionStarted,
    OperatorActed,
    SignalReceived,
    SignalRejected,
    SignalTimedOut,
    SignalWaiting,
    StepRetrying,
    TimerFired,
    TimerStarted,
)
from ._records import child_signal

#: The status an event of the operator's "run again" kind returns the execution to: the
#: wait its last command left it in (``Wait.status``), or ``running``.
RESUMED = "<resumed>"
#: The status ``ExecutionFailed`` carries itself (``failed`` or ``compensation_failed``).
OWN = "<own>"
#: Unchanged.
KEEP = "<keep>"

STATUS_AFTER: Mapping[type[Event], str] = MappingProxyType(
    {
        ExecutionStarted: "pending",
        ExecutionResumed: RESUMED,
        OperatorActed: KEEP,  # retry_rollback: RESUMED (see status_after)
        TimerStarted: "sleeping",
        SignalWaiting: "waiting",
        ChildWaiting: "waiting",
        StepRetrying: "retrying",
        ExecutionCompleted: "completed",
        ExecutionFailed: OWN,
        ExecutionCancelled: "cancelled",
    }
)

#: Statuses of an execution that has ended (nothing more runs; the log is closed).
TERMINAL = frozenset(("completed", "failed", "compensation_failed", "cancelled"))


@attrs.frozen
class Wait:
    """What an execution waits for: its status, the awaited signal and its timer."""

    status: str
    signal: str | None = None
    timer: tuple[int, str] | None = None


RUNNING = Wait("running")


def wait_of(event: Event | None) -> Wait:
    """The wait ``event`` begins (``RUNNING`` for any event that begins none)."""
    match event:
        case TimerStarted():
            return Wait("sleeping", None, (event.wake_at, event.step_id))
        case SignalWaiting():
            timer = None if event.deadline is None else (event.deadline, event.step_id)
            return Wait("waiting", event.signal, timer)
        case StepRetrying():
            return Wait("retrying", None, (event.retry_at, event.step_id))
        case ChildWaiting():
            return Wait("waiting", child_signal(event.child_id), None)
    return RUNNING


def status_after(event: Event, current: str | None, resumed: str) -> str | None:
    """The status right after ``event`` (``None``: unchanged); ``resumed`` is the status
    an operator's resume returns it to (see ``wait_of``)."""
    rule = STATUS_AFTER.get(type(event))
    if rule is None:
        return "running" if getattr(event, "step_id", None) is not None else current
    if rule == KEEP:
        if isinstance(event, OperatorActed) and event.action == "retry_rollback":
            return resumed
        return None
    if rule == RESUMED:
        return resumed
    if rule == OWN:
        assert isinstance(event, ExecutionFailed)
        return event.status
    return rule


_ENDS_WAIT: Mapping[str, Any] = MappingProxyType(
    {"status": "running", "waiting_signal": None, "timer": None}
)
_NONE: Mapping[str, Any] = MappingProxyType({})


def record_changes(event: Event) -> Mapping[str, Any]:
    """The record fields ``event`` sets (status, awaited signal, timer), if any.

    On the path of every step: most events (a completed step) change nothing, and return
    one shared empty mapping.
    """
    kind = type(event)
    if kind in _WAIT_ENDERS:
        return _ENDS_WAIT
    rule = STATUS_AFTER.get(kind)
    if rule is None or rule == KEEP or rule == RESUMED:
        return _NONE
    if rule in _WAITS:
        wait = wait_of(event)
        return {"status": wait.status, "waiting_signal": wait.signal, "timer": wait.timer}
    status = event.status if isinstance(event, ExecutionFailed) else rule
    return {"status": status, "waiting_signal": None, "timer": None}


_WAIT_ENDERS = frozenset((TimerFired, SignalReceived, SignalRejected, SignalTimedOut, ChildEnded))
_WAITS = frozenset(("sleeping", "waiting", "retrying"))
