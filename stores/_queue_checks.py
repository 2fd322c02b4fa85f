"""The conformance checks of the queue ops (see ``_checks.py``).

What admission relies on: an enqueue creates a ``queued`` record (or refuses a dedup id
a live execution holds, creating nothing); an admission happens once, only for a record
still queued and due, and is kept in the queue's log of admissions until forgotten; a
debounce replaces a queued execution's input and log, or starts anew once it was
admitted; declarations read back as written.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from durably.stores import CreateExecution, ExecutionRecord, PutExecution, Store

from ..core._records import (
    Admit,
    AdmitResult,
    Debounce,
    DebounceResult,
    Enqueue,
    EnqueueResult,
    ForgetAdmissions,
    PutQueue,
)


class Check(Protocol):
    def equal(self, actual: object, expected: object, what: str) -> None: ...

    def true(self, condition: bool, what: str) -> None: ...


def _queued(eid: str, **kw: Any) -> ExecutionRecord:
    fields: dict[str, Any] = {"input": 1, "created_ms": 10, "updated_ms": 10, "queue": "q"}
    fields.update(kw)
    return ExecutionRecord(id=eid, workflow="wf", status="queued", **fields)


def _enqueue(store: Store, record: ExecutionRecord) -> EnqueueResult:
    result: EnqueueResult = store.apply([Enqueue(CreateExecution(record, [b"e0"]))])[0]
    return result


def _check_enqueue_and_dedup(c: Check, store: Store) -> None:
    c.equal(_enqueue(store, _queued("a", dedup_id="d")), EnqueueResult("a"), "an enqueue")
    c.equal([r.id for r in store.list_executions(status="queued")], ["a"], "queued by status index")
    refused = _enqueue(store, _queued("b", dedup_id="d"))
    c.equal(refused, EnqueueResult("a", duplicate_of="a"), "a held dedup id is refused")
    c.equal(store.get_execution("b"), None, "a refused enqueue creates nothing")
    other = _enqueue(store, _queued("c", dedup_id="d", queue="other"))
    c.equal(other, EnqueueResult("c"), "dedup ids are per queue")
    record = store.get_execution("a")
    assert record is not None
    store.apply([PutExecution(attrs.evolve(record, status="completed"))])
    c.equal(_enqueue(store, _queued("e", dedup_id="d")), EnqueueResult("e"), "freed once ended")
    keyed = _queued("f", idempotency_key="k")
    _enqueue(store, keyed)
    c.equal(
        _enqueue(store, _queued("g", idempotency_key="k")),
        EnqueueResult("f"),
        "an idempotency key returns its owner",
    )


def _check_admit(c: Check, store: Store) -> None:
    _enqueue(store, _queued("a"))
    _enqueue(store, _queued("b", not_before=500))
    first: AdmitResult = store.apply([Admit("a", 100)])[0]
    admitted = first.admitted
    c.true(admitted is not None, "a queued, due record is admitted")
    assert admitted is not None
    c.equal((admitted.status, admitted.admitted_ms), ("running", 100), "the admitted record")
    c.equal(store.get_execution("a"), admitted, "the admission is stored")
    c.equal(first.events, store.read_events("a"), "the admission reads the log")
    c.equal(store.apply([Admit("a", 101)])[0], AdmitResult(), "admitted once only")
    later: AdmitResult = store.apply([Admit("b", 100)])[0]
    c.true(later.later is not None and later.admitted is None, "not due yet: later")
    b = store.get_execution("b")
    c.equal(b.status if b else None, "queued", "a record not due stays queued")
    c.equal(store.apply([Admit("nope", 100)])[0], AdmitResult(), "an unknown id is no admission")
    c.equal(store.admissions("q"), [(100, "a")], "the admission is logged")
    store.apply([ForgetAdmissions("q", [(100, "a")])])
    c.equal(store.admissions("q"), [], "a forgotten admission is gone")


def _check_debounce(c: Check, store: Store) -> None:
    def debounce(eid: str, value: int, due: int, cap: int | None = None) -> DebounceResult:
        record = _queued(eid, input=value, queue=None, not_before=due, created_ms=due - 50)
        op = Debounce(CreateExecution(record, [f"e{value}".encode()]), "key", cap)
        result: DebounceResult = store.apply([op])[0]
        return result

    first = debounce("a", 1, 100)
    c.equal((first.execution_id, first.created), ("a", True), "a first debounce creates")
    again = debounce("b", 2, 200)
    c.equal((again.execution_id, again.created), ("a", False), "a second one reuses it")
    record = store.get_execution("a")
    c.equal((record.input, record.not_before) if record else None, (2, 200), "the last input wins")
    c.equal(store.read_events("a"), [b"e2"], "its log is the latest start")
    c.equal(store.get_execution("b"), None, "nothing else created")
    capped = debounce("c", 3, 900, cap=120)
    c.equal(capped.record.not_before, 170, "max_wait caps the due time at creation + cap")
    store.apply([Admit("a", 1000)])
    fresh = debounce("d", 4, 1100)
    c.equal((fresh.execution_id, fresh.created), ("d", True), "after admission: a new one")


def _check_declarations(c: Check, store: Store) -> None:
    c.equal(store.list_queues(), [], "no queue declared yet")
    store.apply([PutQueue("b", {"concurrency": 2}), PutQueue("a", {"priority": True})])
    c.equal(
        store.list_queues(),
        [("a", {"priority": True}), ("b", {"concurrency": 2})],
        "declarations by name",
    )


QUEUE_CHECKS: list[tuple[str, Any]] = [
    ("enqueue and dedup ids", _check_enqueue_and_dedup),
    ("admission once, when due, logged", _check_admit),
    ("debounce replaces a queued start", _check_debounce),
    ("queue declarations", _check_declarations),
]
