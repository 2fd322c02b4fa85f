"""The one rule of which signal a wait takes, read by the wait, the store's receipt and
the timeout's guard; and how a rejection is recorded, replayed and reopened (pure)."""

from __future__ import annotations

import pytest

from durably.core import _decide as decide
from durably.core._errors import NonDeterminismError
from durably.core._events import (
    ExecutionFailed,
    SignalReceived,
    SignalRejected,
    SignalTimedOut,
    SignalWaiting,
)
from durably.core._records import CANCEL_SIGNAL, MailboxEntry, RequireNoSignal, TakeSignal
from durably.core._repair import reopened_wait
from durably.core._status import record_changes

WAITING = SignalWaiting(at=0, step_id="w", signal="go", deadline=100)


def entry(seq: int, signal: str = "go", at: int | None = 10) -> MailboxEntry:
    return MailboxEntry(seq, signal, {"n": seq}, None, at)


def test_a_wait_takes_the_oldest_signal_of_its_name_sent_by_its_deadline() -> None:
    assert decide.takes(entry(0, at=100), "go", 100)  # at the deadline: in time
    assert not decide.takes(entry(0, at=101), "go", 100)  # after it: the wait is over
    assert not decide.takes(entry(0, "other"), "go", 100)
    assert decide.takes(entry(0, at=10**12), "go", None)  # no deadline: any time
    assert decide.takes(entry(0, at=None), "go", 100)  # written before send times
    box = [entry(0, "other"), entry(1, at=150), entry(2, at=50), entry(3, at=60)]
    assert decide.first_taken(box, "go", 100) == box[2]
    assert decide.first_taken(box[:2], "go", 100) is None


def test_a_receipt_says_delivered_only_for_the_entry_the_open_wait_takes() -> None:
    timer = (100, "w")
    assert decide.receipt([], entry(0), "go", timer, CANCEL_SIGNAL)
    assert not decide.receipt([], entry(0), "other", timer, CANCEL_SIGNAL)
    assert not decide.receipt([], entry(0), None, None, CANCEL_SIGNAL)
    assert not decide.receipt([], entry(0, at=101), "go", timer, CANCEL_SIGNAL)
    assert not decide.receipt([entry(0)], entry(1), "go", timer, CANCEL_SIGNAL)
    assert decide.receipt([entry(0, at=200)], entry(1), "go", timer, CANCEL_SIGNAL)
    cancel = MailboxEntry(0, CANCEL_SIGNAL, {}, None)
    assert not decide.receipt([cancel], entry(1), "go", None, CANCEL_SIGNAL)


def test_an_outcome_takes_rejects_or_times_out_with_its_guard() -> None:
    received = decide.signal_outcome(WAITING, "e", entry(3), 50)
    assert received is not None and isinstance(received[0], SignalReceived)
    assert received[1][0] == TakeSignal("e", 3)
    rejected = decide.signal_outcome(WAITING, "e", entry(3), 50, ("Approval", "why"))
    assert rejected is not None
    event, ops = rejected
    assert isinstance(event, SignalRejected) and ops[0] == TakeSignal("e", 3)
    assert (event.expected, event.error["message"], event.mailbox_seq) == ("Approval", "why", 3)
    assert decide.signal_outcome(WAITING, "e", None, 99) is None
    timed_out = decide.signal_outcome(WAITING, "e", None, 100)
    assert timed_out is not None and isinstance(timed_out[0], SignalTimedOut)
    assert RequireNoSignal("e", "go", 100) in timed_out[1]
    # A rejection ends the wait in the record, as a receipt does.
    assert record_changes(event) == {"status": "running", "waiting_signal": None, "timer": None}


def test_a_recorded_rejection_answers_the_wait_until_a_retry_reopens_it() -> None:
    rejected = SignalRejected(
        at=5,
        step_id="w",
        signal="go",
        payload={"by": 1},
        mailbox_seq=0,
        expected="Approval",
        error={"type": "durably.SignalPayloadError", "message": "why"},
    )
    assert decide.signal([WAITING, rejected], "e", "w", "go") is rejected
    failed = ExecutionFailed(at=6, error=rejected.error)
    reopened = reopened_wait([WAITING, rejected, failed], now=7)
    assert reopened == SignalWaiting(at=7, step_id="w", signal="go", deadline=100)
    assert decide.signal([WAITING, rejected, reopened], "e", "w", "go") is reopened
    with pytest.raises(NonDeterminismError, match="waited for signal 'go'"):
        decide.signal([WAITING, rejected, reopened], "e", "w", "other")
    # Caught and gone on elsewhere: a retry replays the rejection, it reopens nothing.
    later = SignalWaiting(at=8, step_id="x", signal="go")
    assert reopened_wait([WAITING, rejected, later, failed], now=9) is None
