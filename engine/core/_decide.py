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

import math
from collections.abc import Sequence
from typing import Any

import attrs

from ._errors import NonDeterminismError
from ._events import (
    Event,
    SignalReceived,
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
from ._records import AddTimer, MailboxEntry, Op, RemoveTimer, TakeSignal, Timer

# --- step ---


@attrs.frozen
class Replayed:
    """The log answers the step: its recorded (JSON-shaped) result."""

    data: Any


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


def step(recorded: Sequence[Event] | None, sid: str, rerun_failed: frozenset[str]) -> Any:
    """``Replayed``, ``Reraise`` or ``Run`` for a step whose log holds ``recorded``.

    A failure recorded before an operator's retry (``rerun_failed``) runs again, with a
    fresh set of attempts.
    """
    if recorded is None:
        return FIRST_RUN
    last = recorded[-1]
    if isinstance(last, StepCompleted | StepSkipped):
        return Replayed(last.result)
    if isinstance(last, StepFailed):
        return FIRST_RUN if sid in rerun_failed else Reraise(last.error)
    assert isinstance(last, StepRetrying)
    return Run(last.attempt + 1, last.retry_at)


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
    execution_id: str, sid: str, now: int, seconds: float | None, until_ms: float | None
) -> tuple[TimerStarted, list[Op]]:
    wake_at = math.ceil(until_ms) if until_ms is not None else due_after(now, seconds or 0)
    started = TimerStarted(at=now, step_id=sid, wake_at=wake_at)
    return started, [AddTimer(Timer(wake_at, execution_id, sid))]


# --- signals ---


def signal(
    recorded: Sequence[Event] | None, execution_id: str, sid: str, name: str
) -> Event | None:
    """The recorded answer of a signal wait: ``SignalReceived``, ``SignalTimedOut``, the
    ``SignalWaiting`` of a wait still open, or ``None`` (a first run).

    Raises ``NonDeterminismError`` when the code now waits for another signal.
    """
    if recorded is None:
        return None
    last = recorded[-1]
    if isinstance(last, SignalReceived | SignalTimedOut):
        return last
    waiting = recorded[0]
    assert isinstance(waiting, SignalWaiting)
    if waiting.signal != name:
        raise NonDeterminismError(
            f"execution {execution_id}: {sid!r} waited for signal {waiting.signal!r}, the "
            f"code now waits for {name!r}",
            execution_id=execution_id,
            step_id=sid,
            recorded=waiting.signal,
            attempted=name,
        )
    return waiting


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
    waiting: SignalWaiting, execution_id: str, entry: MailboxEntry | None, now: int
) -> tuple[Event, list[Op]] | None:
    """What an open wait records now: the oldest buffered ``entry`` consumed (the take and
    the record in one transaction), a timeout once ``now`` reaches the deadline, or
    ``None`` (wait on)."""
    sid, deadline = waiting.step_id, waiting.deadline
    ops: list[Op] = []
    if deadline is not None:
        ops.append(RemoveTimer(Timer(deadline, execution_id, sid)))
    if entry is not None:
        ops.insert(0, TakeSignal(execution_id, entry.seq))
        received = SignalReceived(
            at=now,
            step_id=sid,
            signal=waiting.signal,
            payload=entry.payload,
            mailbox_seq=entry.seq,
        )
        return received, ops
    if deadline is not None and now >= deadline:
        return SignalTimedOut(at=now, step_id=sid, signal=waiting.signal), ops
    return None
