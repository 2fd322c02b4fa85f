"""What each durable primitive decides, given the log, the facts and the time.

Rules of this module:

- Pure: no I/O, no clock, no trio. A decider takes what was recorded for one step id (the
  replayer's answer), the run's facts and ``now``, and returns what to do: answer from
  the log, run the body, wait, or record these events with these ops. ``Context`` applies
  the decision (``runtime/_context.py``); the record's status follows from the events
  (``_status.py``), never from here.
- Deadlines come from ``due_after``: rounded up, so a durable timer never fires before
  the instant asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ._errors import NonDeterminismError
from ._events import (
    Event,
    Fields,
    SignalReceived,
    SignalRejected,
    SignalTimedOut,
    SignalWaiting,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    TimerFired,
    TimerStarted,
)
from ._history import due_after
from ._records import (
    AddTimer,
    MailboxEntry,
    Op,
    RemoveTimer,
    RequireNoSignal,
    TakeSignal,
    Timer,
)

# --- step ---


#: The tags of the events that answer a step from the log. The decision is then the
#: recorded event's fields themselves (a ``dict``, the JSON-shaped ``result`` under
#: ``"result"``), not a wrapper around them, nor an ``Event``: every replayed step takes
#: this branch, and a frozen attrs instance made for it cost more than the rest of the
#: decision (measured: 0.55 us a decision with it, 0.09 us without).
REPLAYED = frozenset((StepCompleted.tag, StepSkipped.tag))


@attrs.frozen
class Reraise:
    """The log answers the step with its recorded failure."""

    error: dict[str, Any]


@attrs.frozen
class Run:
    """Run the body as ``attempt``; first wait until ``retry_at`` (a recorded backoff)."""

    attempt: int = 1
    retry_at: int | None = None


FIRST_RUN = Run()


def step(last: Fields | None, sid: str, rerun_failed: frozenset[str]) -> Any:
    """``last`` itself (one of ``REPLAYED``), ``Reraise`` or ``Run`` for a step whose
    last recorded event has the fields ``last`` (``Replayer.issue_last``).

    A failure recorded before an operator's retry (``rerun_failed``) runs again, with a
    fresh set of attempts.
    """
    if last is None:
        return FIRST_RUN
    tag = last["t"]
    if tag in REPLAYED:
        return last
    if tag == StepFailed.tag:
        return FIRST_RUN if sid in rerun_failed else Reraise(last["error"])
    assert tag == StepRetrying.tag
    return Run(last["attempt"] + 1, last["retry_at"])


def step_failed(
    execution_id: str,
    sid: str,
    error: dict[str, Any],
    *,
    attempt: int,
    now: int,
    duration_ms: float,
    retry_delay: float | None,
) -> tuple[Event, list[Op]]:
    """The record of a failed attempt: a retry (with its backoff timer) when the policy
    gives a delay, else the step's failure."""
    if retry_delay is None:
        failed = StepFailed(
            at=now, step_id=sid, error=error, duration_ms=duration_ms, attempt=attempt
        )
        return failed, []
    retry_at = due_after(now, retry_delay)
    retrying = StepRetrying(
        at=now,
        step_id=sid,
        error=error,
        attempt=attempt,
        retry_at=retry_at,
        duration_ms=duration_ms,
    )
    return retrying, [AddTimer(Timer(retry_at, execution_id, sid))]


# --- sleep ---

FIRED = -1


def sleep(recorded: Sequence[Event] | None) -> int | None:
    """``FIRED`` if the sleep is over, its recorded wake time if it was begun, else
    ``None`` (a first run)."""
    if recorded is None:
        return None
    if isinstance(recorded[-1], TimerFired):
        return FIRED
    started = recorded[0]
    assert isinstance(started, TimerStarted)
    return started.wake_at


def sleep_started(
    execution_id: str, sid: str, now: int, seconds: float | None, until_ms: int | None
) -> tuple[TimerStarted, list[Op]]:
    """The record of a sleep's start. ``until_ms`` is ``due_at(until)``; an instant
    already past wakes at ``now`` (recorded so: a zero sleep, and no due time before
    1970 for the timers index to refuse)."""
    wake_at = max(until_ms, now) if until_ms is not None else due_after(now, seconds or 0)
    started = TimerStarted(at=now, step_id=sid, wake_at=wake_at)
    return started, [AddTimer(Timer(wake_at, execution_id, sid))]


# --- signals ---
#
# Which buffered signal a wait takes is one rule, read by the wait, by the store's
# ``PutSignal`` (to say "delivered") and by the timeout's ``RequireNoSignal``: the oldest
# entry of its name sent at or before its deadline (so a ``timeout=0`` poll takes what is
# buffered). A signal sent after the deadline is never taken by that wait, however late
# the wait looks (a worker down at the deadline): it stays buffered for a later wait, as
# its receipt said. Inside a gather, members' open waits for one name share its entries
# in the order they began (``taken_in_gather``).


def takes(entry: MailboxEntry, name: str, deadline: int | None) -> bool:
    """Whether a wait for ``name`` with ``deadline`` takes ``entry``."""
    if entry.signal != name:
        return False
    return deadline is None or entry.at is None or entry.at <= deadline


def first_taken(
    entries: Sequence[MailboxEntry], name: str, deadline: int | None
) -> MailboxEntry | None:
    """The entry a wait for ``name`` takes now: the oldest it takes, if any."""
    for entry in entries:
        if takes(entry, name, deadline):
            return entry
    return None


def taken_in_gather(
    entries: Sequence[MailboxEntry], waits: Iterable[SignalWaiting], waiting: SignalWaiting
) -> MailboxEntry | None:
    """The entry the open wait ``waiting`` of a gather's member takes now, when ``waits``
    (the gather's open waits, ``waiting``'s among them) may want the same entries.

    The waits for one name share its entries in the order they began (``SignalWaiting``'s
    ``at``; waits begun at one instant in step-id order), each the oldest left that it
    takes: what a member takes is then the log's and the mailbox's answer, never the order
    in which the scheduler happened to run the members it woke (nor whether a resumed run
    found the signal buffered before some of them looked).
    """
    name = waiting.signal
    mine = _begun(waiting)
    ahead = sorted((w for w in waits if w.signal == name and _begun(w) < mine), key=_begun)
    if not ahead:
        return first_taken(entries, name, waiting.deadline)
    left = [e for e in entries if e.signal == name]
    for wait in ahead:
        entry = first_taken(left, name, wait.deadline)
        if entry is not None:
            left = [e for e in left if e.seq != entry.seq]
    return first_taken(left, name, waiting.deadline)


def _begun(wait: SignalWaiting) -> tuple[int, str]:
    return wait.at, wait.step_id


def receipt(
    older: Sequence[MailboxEntry],
    entry: MailboxEntry,
    waiting_signal: str | None,
    timer: tuple[int, str] | None,
    cancel_signal: str,
) -> bool:
    """Whether the wait that is open takes ``entry``, just buffered behind ``older``:
    ``DELIVERED``. ``timer`` is the waiting record's, its wait's deadline."""
    if waiting_signal != entry.signal:
        return False
    deadline = None if timer is None else timer[0]
    if not takes(entry, entry.signal, deadline):
        return False  # sent after the deadline: the wait is over
    for other in older:
        if other.signal == cancel_signal or takes(other, entry.signal, deadline):
            return False  # a cancellation ends it first, or the wait takes that one
    return True


def signal(
    recorded: Sequence[Event] | None, execution_id: str, sid: str, name: str
) -> Event | None:
    """The recorded answer of a signal wait: ``SignalReceived``, ``SignalRejected``,
    ``SignalTimedOut``, the ``SignalWaiting`` of a wait still open (an operator's retry
    may have opened it again after a rejection), or ``None`` (a first run).

    Raises ``NonDeterminismError`` when the code now waits for another signal.
    """
    if recorded is None:
        return None
    last = recorded[-1]
    if isinstance(last, SignalReceived | SignalTimedOut | SignalRejected):
        return last
    waiting = recorded[0]
    assert isinstance(waiting, SignalWaiting) and isinstance(last, SignalWaiting)
    if waiting.signal != name:
        raise NonDeterminismError(
            f"execution {execution_id}: {sid!r} waited for signal {waiting.signal!r}, the "
            f"code now waits for {name!r}",
            execution_id=execution_id,
            step_id=sid,
            recorded=waiting.signal,
            attempted=name,
        )
    return last


def signal_waiting(
    execution_id: str, sid: str, name: str, now: int, timeout: float | None
) -> tuple[SignalWaiting, list[Op]]:
    deadline = None if timeout is None else due_after(now, timeout)
    waiting = SignalWaiting(at=now, step_id=sid, signal=name, deadline=deadline)
    ops: list[Op] = []
    if deadline is not None:
        ops.append(AddTimer(Timer(deadline, execution_id, sid)))
    return waiting, ops


def signal_outcome(
    waiting: SignalWaiting,
    execution_id: str,
    entry: MailboxEntry | None,
    now: int,
    misfit: tuple[str, str] | None = None,
) -> tuple[Event, list[Op]] | None:
    """What an open wait records now: the ``entry`` it takes (``first_taken``) consumed,
    as received or, when its payload does not fit (``misfit``: the expected type's name
    and why), as rejected; a timeout once ``now`` reaches the deadline; or ``None`` (wait
    on). The take rides with the record, in one transaction; a timeout carries
    ``RequireNoSignal``, so it is refused if a signal the wait takes came meanwhile."""
    sid, deadline = waiting.step_id, waiting.deadline
    ops: list[Op] = []
    if deadline is not None:
        ops.append(RemoveTimer(Timer(deadline, execution_id, sid)))
    if entry is not None:
        ops.insert(0, TakeSignal(execution_id, entry.seq))
        if misfit is not None:
            expected, why = misfit
            rejected = SignalRejected(
                at=now,
                step_id=sid,
                signal=waiting.signal,
                payload=entry.payload,
                mailbox_seq=entry.seq,
                expected=expected,
                error={"type": "durably.SignalPayloadError", "message": why},
                by=entry.by,
                reason=entry.reason,
            )
            return rejected, ops
        received = SignalReceived(
            at=now,
            step_id=sid,
            signal=waiting.signal,
            payload=entry.payload,
            mailbox_seq=entry.seq,
            by=entry.by,
            reason=entry.reason,
        )
        return received, ops
    if deadline is not None and now >= deadline:
        ops.append(RequireNoSignal(execution_id, waiting.signal, deadline))
        return SignalTimedOut(at=now, step_id=sid, signal=waiting.signal), ops
    return None
