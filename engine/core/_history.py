"""What a run learns from its log before it replays: facts about operator actions, the
workflow timeout, and how deadlines are computed.

Pure: the actor, the operator and the testing kit all read these, so that they compute
one deadline the same way.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from ._errors import ConfigurationError, type_name
from ._events import (
    ChildEnded,
    ChildStarted,
    Event,
    ExecutionResumed,
    ExecutionStarted,
    Fields,
    OperatorActed,
    StepFailed,
    event_of,
)
from ._records import Timer

#: The last millisecond a datetime can show (9999-12-31 23:59:59.999 UTC). Due times are
#: capped here: a wait asked to end later (``inf`` seconds, say) waits until then, which
#: is forever, and a record's wake-up time still reads as a datetime.
LAST_MS = 253_402_300_799_999

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def due_after(start_ms: int, seconds: float) -> int:
    """The due time ``seconds`` after ``start_ms``, rounded up to the next millisecond: a
    durable timer never fires before the instant asked for, and a positive wait never
    behaves as zero (it lasts at least a millisecond).

    The duration is read to the nanosecond first, so that 0.1 s is 100 ms and not 101
    (float products such as ``1.1 * 1000`` land a hair above the whole number). Zero is
    no wait; a negative duration is a due time already past.
    """
    ms = seconds * 1000
    if not ms > -LAST_MS:  # NaN (or an absurd negative), which no comparison can order
        raise ConfigurationError(f"a wait needs a number of seconds; got {seconds!r}")
    if ms > LAST_MS - start_ms:  # also inf
        return LAST_MS
    whole = math.ceil(round(ms, 6))
    if whole < 1 and seconds > 0:
        whole = 1
    return start_ms + whole


def due_at(moment: datetime) -> int:
    """The first epoch millisecond at or after the aware ``moment``, computed exactly
    (``timestamp() * 1000`` rounds up a whole millisecond one time in a hundred)."""
    return min(-((_EPOCH - moment) // _MS), LAST_MS)


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type_name(type(exc)),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


#: Timer id of an execution's workflow-level timeout in the timers index.
TIMEOUT_TIMER = "__workflow_timeout"


@attrs.frozen
class HistoryFacts:
    """What a run needs to know about operator actions in its log (read once per replay).

    ``rollback_round`` counts ``retry_rollback`` actions: a compensation that failed in an
    earlier round runs again. ``rerun_failed`` holds the steps whose last event is a
    ``StepFailed`` recorded before the last ``ExecutionResumed``: an operator retried the
    execution, so they run again instead of replaying their failure. ``attempt_started``
    is when the current attempt began (start, retry or retry_rollback): the workflow
    timeout is measured from it.
    """

    rollback_round: int = 0
    rerun_failed: frozenset[str] = frozenset()
    attempt_started: int | None = None
    #: The fire time a schedule started this run for (``ctx.scheduled_at``).
    scheduled_at: int | None = None


_NONE: frozenset[str] = frozenset()
#: The tags of the events the facts come from, but for the steps an operator's retry runs
#: again: a log read as ``Fields`` builds an ``Event`` for these alone.
_FACT_TAGS = frozenset((ExecutionResumed.tag, ExecutionStarted.tag, OperatorActed.tag))


def history_facts(entries: Sequence[Event | Fields]) -> HistoryFacts:
    rounds = 0
    resumed_at = -1
    started: int | None = None
    scheduled: int | None = None
    for index, event in enumerate(entries):
        if type(event) is dict:
            if event["t"] not in _FACT_TAGS:
                continue
            event = event_of(event)
        if isinstance(event, ExecutionResumed):
            resumed_at = index
            started = event.at
        elif isinstance(event, ExecutionStarted):
            started = event.at
            scheduled = event.scheduled_at
        elif isinstance(event, OperatorActed) and event.action == "retry_rollback":
            rounds += 1
            started = event.at
    if resumed_at < 0:  # no operator retry (the common case): nothing runs again
        return HistoryFacts(rounds, _NONE, started, scheduled)
    events = [event_of(e) if isinstance(e, dict) else e for e in entries]
    last: dict[str, tuple[int, Event]] = {}
    for index, event in enumerate(events):
        step_id = getattr(event, "step_id", None)
        if step_id is not None:
            last[step_id] = (index, event)
    rerun = frozenset(
        sid
        for sid, (index, event) in last.items()
        if isinstance(event, StepFailed) and index < resumed_at
    )
    return HistoryFacts(rounds, rerun, started, scheduled)


def open_children(events: Sequence[Event]) -> list[str]:
    """The children started in ``events`` that are not detached and whose end the log
    has not taken: what the parent-close policy cancels when the parent ends."""
    started: dict[str, str] = {}
    for event in events:
        if isinstance(event, ChildStarted) and not event.detached:
            started[event.step_id] = event.child_id
        elif isinstance(event, ChildEnded):
            started.pop(event.step_id, None)
    return list(started.values())


def timeout_timer(
    execution_id: str, timeout: float | None, facts: HistoryFacts, created_ms: int
) -> Timer | None:
    """The timer of a workflow's ``timeout=``, measured from its current attempt's start
    (its start, or its last operator retry): the actor arms it, the operator removes it."""
    if timeout is None:
        return None
    started = facts.attempt_started or created_ms
    return Timer(due_after(started, timeout), execution_id, TIMEOUT_TIMER)
