"""The conformance checks of what a signal's receipt and a wait's timeout rely on (see
``_checks.py``).

``PutSignal`` says ``delivered`` only when the wait the record says is open takes that
very signal (the oldest it takes, sent by its deadline, no cancellation pending),
read in the signal's own transaction; the send time round-trips with the entry; and
``RequireNoSignal`` refuses its whole batch when a signal the wait takes is buffered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from durably.stores import (
    CreateExecution,
    ExecutionRecord,
    PutExecution,
    PutMeta,
    PutSignal,
    Store,
    TakeSignal,
)

from ..core._records import CANCEL_SIGNAL, RequireNoSignal, SignalArrived


class Check(Protocol):
    def equal(self, actual: object, expected: object, what: str) -> None: ...

    def true(self, condition: bool, what: str) -> None: ...


def _waiting(store: Store, eid: str, signal: str, deadline: int | None = None) -> None:
    record = ExecutionRecord(
        id=eid,
        workflow="wf",
        status="waiting",
        input=None,
        created_ms=1,
        updated_ms=1,
        waiting_signal=signal,
        timer=None if deadline is None else (deadline, "w"),
    )
    store.apply([CreateExecution(record, [])])


def _check_receipts(c: Check, store: Store) -> None:
    _waiting(store, "r1", "go")
    [other] = store.apply([PutSignal("r1", "other", 0, at=5)])
    c.equal(other.delivered, False, "a signal the execution does not wait for")
    [first, second] = store.apply([PutSignal("r1", "go", 1, at=5), PutSignal("r1", "go", 2)])
    c.equal(first.delivered, True, "the first signal the wait takes")
    c.equal(second.delivered, False, "a signal behind one the wait takes first")
    c.equal([m.at for m in store.mailbox("r1")], [5, 5, None], "the send time round-trips")
    assert first.seq is not None
    store.apply([TakeSignal("r1", first.seq)])
    [third] = store.apply([PutSignal("r1", "go", 3)])
    c.equal(third.delivered, False, "still behind an older entry the wait takes")
    _waiting(store, "r2", "go", deadline=100)
    [late] = store.apply([PutSignal("r2", "go", "late", at=101)])
    c.equal(late.delivered, False, "a signal sent after the deadline: the wait is over")
    [in_time] = store.apply([PutSignal("r2", "go", "in time", at=100)])
    c.equal(in_time.delivered, True, "a late entry is not taken: the one in time is")
    _waiting(store, "r3", "go")
    store.apply([PutSignal("r3", CANCEL_SIGNAL, {"reason": None, "by": None})])
    [cancelled] = store.apply([PutSignal("r3", "go", 1)])
    c.equal(cancelled.delivered, False, "a pending cancellation ends the wait first")
    record = store.get_execution("r1")
    assert record is not None
    store.apply([PutExecution(attrs.evolve(record, status="running", waiting_signal=None))])
    [after] = store.apply([PutSignal("r1", "go", 4)])
    c.equal(after.delivered, False, "a record that waits for nothing")


def _check_require_no_signal(c: Check, store: Store) -> None:
    _waiting(store, "q1", "go", deadline=100)
    store.apply([PutSignal("q1", "go", "late", at=101), PutSignal("q1", "other", 1, at=1)])
    store.apply([RequireNoSignal("q1", "go", 100), PutMeta("passed", 1)])
    c.equal(store.get_meta("passed"), 1, "no entry the wait takes: the batch commits")
    store.apply([PutSignal("q1", "go", "in time", at=100)])
    try:
        store.apply([PutMeta("refused", 1), RequireNoSignal("q1", "go", 100)])
    except SignalArrived:
        pass
    else:
        raise AssertionError("RequireNoSignal with a signal the wait takes did not raise")
    c.equal(store.get_meta("refused"), None, "a refused batch writes nothing")
    c.equal(len(store.mailbox("q1")), 3, "the mailbox is untouched")


SIGNAL_CHECKS: list[tuple[str, Callable[[Any, Store], None]]] = [
    ("signals: delivered only when the open wait takes it", _check_receipts),
    ("signals: RequireNoSignal refuses its batch", _check_require_no_signal),
]
