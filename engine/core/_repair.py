"""How an operator's action changes an execution's record: pure, beside the status table.

The operator (in the runtime) holds the execution, reads its log, and asks these functions
what the record becomes; nothing here writes.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import OperatorError
from ._events import Event, SignalRejected, SignalWaiting
from ._records import AddTimer, ExecutionRecord, Op, Timer
from ._status import RUNNING, wait_of


@attrs.frozen
class Change:
    events: list[Event]
    record: ExecutionRecord
    ops: list[Op] = attrs.field(factory=list)


def require(record: ExecutionRecord, allowed: tuple[str, ...], action: str, why: str) -> None:
    if record.status not in allowed:
        raise OperatorError(
            f"{action}: execution {record.id} is {record.status}; {why} "
            f"(allowed: {', '.join(allowed)}). Nothing was changed."
        )


def resumed_record(
    record: ExecutionRecord,
    events: list[Event],
    now: int,
    *,
    attempt: int,
    restore: bool,
) -> tuple[ExecutionRecord, list[Op]]:
    """The record of an execution that runs again, and the ops that re-arm its wait.

    With ``restore``, an execution stopped while it waited (force-failed during a sleep,
    a signal wait or a retry's backoff) is recorded as waiting there again, with its
    timer back in the index: it stays parked until its signal or timer wakes it, as it
    was. Without (no engine at hand), it is left ``running``: an engine's recovery
    replays it, and the replay restores the wait in the record itself.
    """
    last = next((e for e in reversed(events) if getattr(e, "step_id", None)), None)
    wait = wait_of(last) if restore else RUNNING
    status, waiting, timer = wait.status, wait.signal, wait.timer
    ops: list[Op] = []
    if timer is not None:
        ops.append(AddTimer(Timer(timer[0], record.id, timer[1])))
    resumed = attrs.evolve(
        record,
        status=status,
        attempt=attempt,
        error=None,
        result=None,
        reason=None,
        recoveries=0,
        timer=timer,
        waiting_signal=waiting,
        updated_ms=now,
    )
    return resumed, ops


def reopened_wait(events: list[Event], now: int) -> SignalWaiting | None:
    """The signal wait an operator's retry opens again, if the execution stopped at one
    that rejected a signal (its payload did not fit the signal's type).

    Appended with the retry, so that the replay finds the wait open and waits for the
    next signal (the rejected one was consumed): a signal cannot put an execution beyond
    repair. The deadline stays the recorded one: a retry does not move it.
    """
    last = next((e for e in reversed(events) if getattr(e, "step_id", None)), None)
    if not isinstance(last, SignalRejected):
        return None
    first = next(e for e in events if isinstance(e, SignalWaiting) and e.step_id == last.step_id)
    return SignalWaiting(at=now, step_id=last.step_id, signal=last.signal, deadline=first.deadline)


def ended_record(
    record: ExecutionRecord,
    now: int,
    status: str,
    *,
    reason: str,
    error: dict[str, Any] | None = None,
) -> ExecutionRecord:
    return attrs.evolve(
        record,
        status=status,
        reason=reason,
        error=error,
        timer=None,
        waiting_signal=None,
        updated_ms=now,
    )
