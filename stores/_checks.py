"""The store conformance suite: what every ``Store`` must do, as one callable.

``check_store(factory)`` runs each check against a fresh, empty store from ``factory``
and raises ``AssertionError`` naming the check that failed. A third-party store passes it
or is not a durably store: the engine relies on every rule checked here (atomic batches,
ops applied in order, the status index, timers due strictly before a time, a FIFO
mailbox with dedup, first-writer-wins idempotency keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from durably.stores import (
    TERMINAL_STATUSES,
    AddTimer,
    Append,
    CreateExecution,
    DeleteSchedule,
    ExecutionRecord,
    Op,
    PutExecution,
    PutMeta,
    PutSchedule,
    PutSignal,
    PutSignalResult,
    RemoveTimer,
    SignalOutcome,
    Store,
    TakeSignal,
    Timer,
)

from ..core._errors import StoreError
from ._inbox_checks import INBOX_CHECKS
from ._lease_checks import LEASE_CHECKS
from ._queue_checks import QUEUE_CHECKS
from ._signal_checks import SIGNAL_CHECKS

__all__ = ["check_store"]

_FAR_FUTURE = 1 << 62


class _Check:
    """Names the running check in every failure message."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"store check {self.name!r} failed: {what}")

    def equal(self, actual: object, expected: object, what: str) -> None:
        if actual != expected:
            raise self.fail(f"{what}: expected {expected!r}, got {actual!r}")

    def true(self, condition: bool, what: str) -> None:
        if not condition:
            raise self.fail(what)

    def raises(self, store: Store, ops: Sequence[Op], what: str) -> None:
        try:
            store.apply(ops)
        except Exception:
            return
        raise self.fail(f"{what}: apply() returned instead of raising")


def _record(eid: str, workflow: str = "wf", status: str = "running", **kw: Any) -> ExecutionRecord:
    fields: dict[str, Any] = {"input": {"n": 1}, "created_ms": 1, "updated_ms": 1}
    fields.update(kw)
    return ExecutionRecord(id=eid, workflow=workflow, status=status, **fields)


def _create(store: Store, eid: str, *events: bytes, **kw: Any) -> None:
    store.apply([CreateExecution(_record(eid, **kw), list(events))])


def _ids(records: Sequence[ExecutionRecord]) -> list[str]:
    return [r.id for r in records]


# --- the checks ---------------------------------------------------------------------------


def _check_empty(c: _Check, store: Store) -> None:
    c.equal(store.list_executions(), [], "a fresh store lists no executions")
    c.equal(store.due_timers(_FAR_FUTURE), [], "a fresh store has no timers")
    c.equal(store.list_schedules(), [], "a fresh store has no schedules")
    c.equal(store.get_execution("nope"), None, "get_execution of an unknown id")
    c.equal(store.read_events("nope"), [], "read_events of an unknown id")
    c.equal(store.mailbox("nope"), [], "mailbox of an unknown id")
    c.equal(store.find_idempotent("wf", "k"), None, "find_idempotent of an unknown key")


def _check_meta(c: _Check, store: Store) -> None:
    c.equal(store.get_meta("absent"), None, "get_meta of a name never put")
    store.apply([PutMeta("m", {"a": [1, 2]})])
    c.equal(store.get_meta("m"), {"a": [1, 2]}, "meta round trip")
    store.apply([PutMeta("m", 7)])
    c.equal(store.get_meta("m"), 7, "meta overwritten by a later PutMeta")


def _check_records(c: _Check, store: Store) -> None:
    full = _record(
        "rec1",
        input={"nested": [1, "two", None, 3.5, True]},
        result={"ok": [1]},
        error={"type": "E", "message": "m"},
        idempotency_key=None,
        attempt=3,
        recoveries=2,
        timer=(1234, "t1"),
        waiting_signal="go",
        schedule_id="s1",
        reason="because",
    )
    [winner] = store.apply([CreateExecution(full, [b"e0", b"e1"])])
    c.equal(winner, "rec1", "CreateExecution returns the new execution's id")
    c.equal(store.get_execution("rec1"), full, "an execution record round-trips every field")
    c.equal(store.read_events("rec1"), [b"e0", b"e1"], "CreateExecution stores its events")
    changed = _record("rec1", status="completed", result=[1, 2], updated_ms=9)
    store.apply([PutExecution(changed)])
    c.equal(store.get_execution("rec1"), changed, "PutExecution replaces the record")
    c.raises(
        store,
        [CreateExecution(_record("rec1"), [])],
        "CreateExecution of an id that exists must raise",
    )
    c.equal(store.get_execution("rec1"), changed, "a refused CreateExecution changes nothing")


def _check_events(c: _Check, store: Store) -> None:
    # "ab" is a prefix of "abc": one execution's events must never show in the other's log.
    _create(store, "ab", b"a0")
    _create(store, "abc", b"c0", b"c1")
    store.apply([Append("ab", 1, [b"a1", b"a2"])])
    store.apply([Append("ab", 3, [b"a3"]), Append("abc", 2, [b"c2"])])
    c.equal(store.read_events("ab"), [b"a0", b"a1", b"a2", b"a3"], "events in sequence order")
    c.equal(store.read_events("abc"), [b"c0", b"c1", b"c2"], "events of a prefix-named id")
    c.equal(store.read_events("ab", 2), [b"a2", b"a3"], "read_events(from_seq=2)")
    c.equal(store.read_events("ab", 4), [], "read_events from the end")
    c.equal(store.read_events("ab", 100), [], "read_events past the end")
    big = bytes(range(256)) * 64
    store.apply([Append("ab", 4, [big, b""])])
    c.equal(store.read_events("ab", 4), [big, b""], "binary and empty event bodies")
    c.raises(store, [Append("ab", 2, [b"x"])], "an Append at a taken seq must raise")
    c.equal(store.read_events("ab", 2)[0], b"a2", "a refused Append leaves the event alone")


def _check_atomic(c: _Check, store: Store) -> None:
    _create(store, "a1", b"a0", status="running")
    store.apply([PutSignal("a1", "sig", 1, "d1"), AddTimer(Timer(5, "a1", "t"))])
    before_mail = store.mailbox("a1")
    c.raises(
        store,
        [
            PutMeta("half", 1),
            CreateExecution(_record("b1", idempotency_key="k"), [b"b0"]),
            Append("a1", 1, [b"a1"]),
            PutExecution(_record("a1", status="waiting")),
            AddTimer(Timer(1, "a1", "t2")),
            RemoveTimer(Timer(5, "a1", "t")),
            PutSignal("a1", "sig", 2, "d2"),
            TakeSignal("a1", before_mail[0].seq),
            PutSchedule("s", {"x": 1}),
            Append("a1", 0, [b"clash"]),  # seq 0 is taken: the whole batch must vanish
        ],
        "a batch whose last op fails must raise",
    )
    c.equal(store.get_meta("half"), None, "meta of a failed batch")
    c.equal(store.get_execution("b1"), None, "execution created by a failed batch")
    c.equal(store.read_events("b1"), [], "events of an execution from a failed batch")
    c.equal(store.find_idempotent("wf", "k"), None, "idempotency key of a failed batch")
    c.equal(store.read_events("a1"), [b"a0"], "events appended by a failed batch")
    c.equal(store.get_execution("a1"), _record("a1"), "record changed by a failed batch")
    c.equal(_ids(store.list_executions(status="waiting")), [], "status index of a failed batch")
    c.equal(_ids(store.list_executions(status="running")), ["a1"], "status index kept")
    c.equal(store.due_timers(_FAR_FUTURE), [Timer(5, "a1", "t")], "timers of a failed batch")
    c.equal(store.mailbox("a1"), before_mail, "mailbox of a failed batch")
    c.equal(store.get_schedule("s"), None, "schedule of a failed batch")
    # A key reserved by the failed batch must not linger as a duplicate.
    [res] = store.apply([PutSignal("a1", "sig", 2, "d2")])
    c.equal(res.outcome, SignalOutcome.BUFFERED, "dedup key of a failed batch was kept")
    # Two appends at one seq inside one batch: the second must fail the batch.
    c.raises(
        store,
        [Append("a1", 1, [b"x"]), Append("a1", 1, [b"y"])],
        "two Appends at one seq in one batch must raise",
    )
    c.equal(store.read_events("a1"), [b"a0"], "events of a batch that clashed with itself")
    store.apply([Append("a1", 1, [b"a1"])])
    c.equal(store.read_events("a1"), [b"a0", b"a1"], "the store works after a failed batch")


def _check_op_order(c: _Check, store: Store) -> None:
    results = store.apply(
        [
            CreateExecution(_record("o1"), [b"0"]),
            Append("o1", 1, [b"1"]),
            PutSignal("o1", "s", "early", None),
            PutExecution(_record("o1", status="completed")),
            PutSignal("o1", "s", "late", None),
            PutSchedule("sch", 1),
            DeleteSchedule("sch"),
            PutMeta("m", 1),
            PutMeta("m", 2),
            AddTimer(Timer(3, "o1", "t")),
            RemoveTimer(Timer(3, "o1", "t")),
        ]
    )
    c.equal(len(results), 11, "apply returns one result per op")
    c.equal(results[0], "o1", "result of CreateExecution in a batch")
    c.equal(results[1], None, "result of Append")
    first, second = results[2], results[4]
    c.true(isinstance(first, PutSignalResult), "PutSignal returns a PutSignalResult")
    c.equal(first.outcome, SignalOutcome.BUFFERED, "PutSignal sees a CreateExecution before it")
    c.equal(first.status, "running", "PutSignal reports the status it saw")
    c.equal(second.outcome, SignalOutcome.FINISHED, "PutSignal sees a PutExecution before it")
    c.equal(store.read_events("o1"), [b"0", b"1"], "Append after CreateExecution in a batch")
    c.equal(store.get_schedule("sch"), None, "DeleteSchedule after PutSchedule in a batch")
    c.equal(store.get_meta("m"), 2, "the later PutMeta of a batch wins")
    c.equal(store.due_timers(_FAR_FUTURE), [], "RemoveTimer after AddTimer in a batch")
    c.equal([m.payload for m in store.mailbox("o1")], ["early"], "mailbox after the batch")
    c.equal(store.apply([]), [], "an empty batch")


def _check_listing(c: _Check, store: Store) -> None:
    rows = [
        ("x01", "alpha", "running"),
        ("x02", "beta", "completed"),
        ("x03", "alpha", "completed"),
        ("x04", "alpha", "running"),
        ("x05", "beta", "running"),
        ("x06", "alpha", "failed"),
    ]
    # Created out of id order: listing must follow id order, not insertion order.
    for eid, workflow, status in reversed(rows):
        _create(store, eid, workflow=workflow, status=status)
    every = [r[0] for r in rows]
    c.equal(_ids(store.list_executions()), every, "list_executions() in id order")
    c.equal(
        _ids(store.list_executions(status="running")),
        ["x01", "x04", "x05"],
        "list_executions(status=)",
    )
    c.equal(
        _ids(store.list_executions(workflow="alpha")),
        ["x01", "x03", "x04", "x06"],
        "list_executions(workflow=)",
    )
    c.equal(
        _ids(store.list_executions(status="running", workflow="alpha")),
        ["x01", "x04"],
        "list_executions(status=, workflow=)",
    )
    c.equal(_ids(store.list_executions(after="x03")), ["x04", "x05", "x06"], "after= (exclusive)")
    c.equal(_ids(store.list_executions(after="x035")), ["x04", "x05", "x06"], "after= an absent id")
    c.equal(_ids(store.list_executions(after="x0")), every, "after= a prefix of every id")
    c.equal(
        _ids(store.list_executions(status="running", after="x01")),
        ["x04", "x05"],
        "list_executions(status=, after=)",
    )
    c.equal(_ids(store.list_executions(limit=2)), ["x01", "x02"], "limit=")
    c.equal(_ids(store.list_executions(limit=0)), [], "limit=0")
    c.equal(
        _ids(store.list_executions(status="completed", limit=1)), ["x02"], "status= with limit="
    )
    c.equal(
        _ids(store.list_executions(workflow="beta", limit=1, after="x02")),
        ["x05"],
        "workflow= with after= and limit=",
    )
    c.equal(
        _ids(store.list_executions(status="running", workflow="beta", after="x04", limit=5)),
        ["x05"],
        "every filter at once",
    )
    c.equal(store.list_executions(status="cancelled"), [], "a status nobody has")
    c.equal(store.list_executions(workflow="gamma"), [], "a workflow nobody runs")
    # Paging with after= visits each execution once.
    seen: list[str] = []
    after: str | None = None
    while page := store.list_executions(after=after, limit=4):
        seen += _ids(page)
        after = page[-1].id
    c.equal(seen, every, "paging with after= and limit=")


def _check_status_index(c: _Check, store: Store) -> None:
    _create(store, "s1", status="pending")
    _create(store, "s2", status="pending")
    for status in ("running", "waiting", "running", "completed"):
        store.apply([PutExecution(_record("s1", status=status))])
        c.equal(_ids(store.list_executions(status=status)), ["s1"], f"s1 listed as {status}")
        others = [s for s in ("pending", "running", "waiting", "completed") if s != status]
        for other in others:
            listed = _ids(store.list_executions(status=other))
            c.true("s1" not in listed, f"s1 still listed as {other!r} after moving to {status!r}")
    # Rewriting a record without a status change must not duplicate its index entry.
    store.apply([PutExecution(_record("s2", status="pending", attempt=2))] * 2)
    c.equal(_ids(store.list_executions(status="pending")), ["s2"], "one index entry per record")
    c.equal(store.list_executions(status="pending")[0].attempt, 2, "status= lists the new record")
    # Two status changes of one execution in one batch.
    store.apply(
        [
            PutExecution(_record("s2", status="running")),
            PutExecution(_record("s2", status="failed")),
        ]
    )
    c.equal(store.list_executions(status="running"), [], "intermediate status of a batch")
    c.equal(_ids(store.list_executions(status="failed")), ["s2"], "final status of a batch")


def _check_timers(c: _Check, store: Store) -> None:
    timers = [
        Timer(100, "e2", "a"),
        Timer(100, "e1", "b"),
        Timer(50, "schedule:s", "tick"),
        Timer(1 << 40, "e3", "far"),
        Timer(100, "e1", "a"),
        Timer(0, "e4", "zero"),
    ]
    store.apply([AddTimer(t) for t in timers])
    ordered = sorted(timers)
    c.equal(store.due_timers(_FAR_FUTURE), ordered, "due_timers earliest first, then by owner")
    c.equal(
        store.due_timers(100),
        [Timer(0, "e4", "zero"), Timer(50, "schedule:s", "tick")],
        "before_ms is exclusive",
    )
    c.equal(store.due_timers(101), ordered[:5], "due_timers(before_ms=due + 1)")
    c.equal(store.due_timers(0), [], "nothing is due before 0")
    c.equal(store.due_timers(_FAR_FUTURE, limit=2), ordered[:2], "limit=")
    c.equal(store.due_timers(_FAR_FUTURE, limit=0), [], "limit=0")
    store.apply([AddTimer(Timer(100, "e1", "a"))])
    c.equal(store.due_timers(_FAR_FUTURE), ordered, "adding a timer twice keeps one")
    store.apply([RemoveTimer(Timer(100, "e1", "b")), RemoveTimer(Timer(7, "nobody", "x"))])
    ordered.remove(Timer(100, "e1", "b"))
    c.equal(store.due_timers(_FAR_FUTURE), ordered, "RemoveTimer (absent ones ignored)")


def _check_mailbox(c: _Check, store: Store) -> None:
    _create(store, "m1", status="waiting")
    _create(store, "m2", status="running")
    results = store.apply([PutSignal("m1", f"s{i}", {"i": i}) for i in range(5)])
    seqs = [r.seq for r in results]
    c.true(all(r.outcome is SignalOutcome.BUFFERED for r in results), "signals buffered")
    c.equal(seqs, sorted(seqs), "mailbox seqs follow commit order")
    c.equal(len(set(seqs)), 5, "mailbox seqs are distinct")
    box = store.mailbox("m1")
    c.equal(
        [(m.signal, m.payload) for m in box],
        [(f"s{i}", {"i": i}) for i in range(5)],
        "mailbox is FIFO",
    )
    c.equal([m.seq for m in box], seqs, "mailbox entries carry the seq PutSignal returned")
    c.equal(store.mailbox("m2"), [], "another execution's mailbox")
    store.apply([TakeSignal("m1", seqs[0]), TakeSignal("m1", seqs[2])])
    c.equal([m.signal for m in store.mailbox("m1")], ["s1", "s3", "s4"], "TakeSignal removes")
    [again] = store.apply([PutSignal("m1", "s5", None)])
    c.true(again.seq is not None and again.seq > seqs[-1], "a seq is never reused after a take")
    for m in store.mailbox("m1"):
        store.apply([TakeSignal("m1", m.seq)])
    c.equal(store.mailbox("m1"), [], "mailbox empty after taking everything")
    [after] = store.apply([PutSignal("m1", "s6", [1])])
    c.true(after.seq is not None and after.seq > (again.seq or 0), "seq grows on an empty box")
    c.equal(store.mailbox("m1")[0].payload, [1], "payload round trip")


def _check_dedup(c: _Check, store: Store) -> None:
    _create(store, "d1", status="waiting")
    _create(store, "d2", status="waiting")
    [first] = store.apply([PutSignal("d1", "s", 1, "key")])
    [dup] = store.apply([PutSignal("d1", "s", 2, "key")])
    c.equal(dup.outcome, SignalOutcome.DUPLICATE, "a dedup key used twice")
    c.equal(dup.seq, first.seq, "a duplicate names the seq of the signal it repeats")
    c.equal([m.payload for m in store.mailbox("d1")], [1], "a duplicate is not buffered")
    [other] = store.apply([PutSignal("d2", "s", 3, "key")])
    c.equal(other.outcome, SignalOutcome.BUFFERED, "dedup keys are per execution")
    assert first.seq is not None
    store.apply([TakeSignal("d1", first.seq)])
    [late] = store.apply([PutSignal("d1", "s", 4, "key")])
    c.equal(late.outcome, SignalOutcome.DUPLICATE, "a dedup key is remembered after TakeSignal")
    c.equal(store.mailbox("d1"), [], "a duplicate after TakeSignal is not buffered")
    in_batch = store.apply([PutSignal("d1", "s", 5, "k2"), PutSignal("d1", "s", 6, "k2")])
    c.equal(
        [r.outcome for r in in_batch],
        [SignalOutcome.BUFFERED, SignalOutcome.DUPLICATE],
        "a duplicate within one batch",
    )
    plain = store.apply([PutSignal("d1", "s", 7), PutSignal("d1", "s", 7)])
    c.equal([r.outcome for r in plain], [SignalOutcome.BUFFERED] * 2, "no key, no dedup")


def _check_refused_signals(c: _Check, store: Store) -> None:
    [unknown] = store.apply([PutSignal("ghost", "s", 1, "k")])
    c.equal(unknown.outcome, SignalOutcome.UNKNOWN, "PutSignal to an unknown execution")
    c.equal(store.mailbox("ghost"), [], "nothing buffered for an unknown execution")
    c.equal(store.get_execution("ghost"), None, "a signal never starts an execution")
    for i, status in enumerate(TERMINAL_STATUSES):
        eid = f"f{i}"
        _create(store, eid, status=status)
        [res] = store.apply([PutSignal(eid, "s", 1, "k")])
        c.equal(res.outcome, SignalOutcome.FINISHED, f"PutSignal to a {status} execution")
        c.equal(res.status, status, f"PutSignal to a {status} execution reports its status")
        c.equal(store.mailbox(eid), [], f"nothing buffered for a {status} execution")
    # The refused key was not remembered: had the execution been live, it would be new.
    _create(store, "ghost")
    [now] = store.apply([PutSignal("ghost", "s", 1, "k")])
    c.equal(now.outcome, SignalOutcome.BUFFERED, "a refused signal's dedup key is not kept")


def _check_idempotency(c: _Check, store: Store) -> None:
    [first] = store.apply([CreateExecution(_record("i1", idempotency_key="order-7"), [b"0"])])
    c.equal(first, "i1", "the first writer of a key creates its execution")
    [second] = store.apply([CreateExecution(_record("i2", idempotency_key="order-7"), [b"0"])])
    c.equal(second, "i1", "the second writer of a key gets the first's id")
    c.equal(store.get_execution("i2"), None, "the second writer creates nothing")
    c.equal(store.read_events("i2"), [], "the second writer appends nothing")
    c.equal(store.find_idempotent("wf", "order-7"), "i1", "find_idempotent")
    [other_wf] = store.apply(
        [CreateExecution(_record("i3", workflow="wf2", idempotency_key="order-7"), [])]
    )
    c.equal(other_wf, "i3", "keys are per workflow")
    both = store.apply(
        [
            CreateExecution(_record("i4", idempotency_key="pair"), []),
            CreateExecution(_record("i5", idempotency_key="pair"), []),
        ]
    )
    c.equal(both, ["i4", "i4"], "two writers of one key in one batch")
    c.equal(store.get_execution("i5"), None, "the loser within a batch creates nothing")
    store.apply([PutExecution(_record("i1", status="completed", idempotency_key="order-7"))])
    [after_done] = store.apply([CreateExecution(_record("i6", idempotency_key="order-7"), [])])
    c.equal(after_done, "i1", "a key stays owned after its execution finished")
    c.equal(store.find_idempotent("wf", "absent"), None, "find_idempotent of a free key")


def _check_schedules(c: _Check, store: Store) -> None:
    c.equal(store.get_schedule("nightly"), None, "get_schedule of an absent id")
    store.apply([PutSchedule("nightly", {"cron": "0 0 * * *"}), PutSchedule("hourly", [1])])
    c.equal(store.get_schedule("nightly"), {"cron": "0 0 * * *"}, "schedule round trip")
    c.equal(
        store.list_schedules(),
        [("hourly", [1]), ("nightly", {"cron": "0 0 * * *"})],
        "list_schedules in id order",
    )
    store.apply([PutSchedule("nightly", {"cron": "5 0 * * *"})])
    c.equal(store.get_schedule("nightly"), {"cron": "5 0 * * *"}, "PutSchedule overwrites")
    store.apply([DeleteSchedule("hourly"), DeleteSchedule("never-there")])
    c.equal(store.get_schedule("hourly"), None, "DeleteSchedule")
    c.equal(store.list_schedules(), [("nightly", {"cron": "5 0 * * *"})], "list after a delete")


def _check_long_keys(c: _Check, store: Store) -> None:
    base = "k" * 999
    key_a, key_b = base + "a", base + "b"  # equal far past any truncation point
    workflow = "w" * 1000
    [a] = store.apply(
        [CreateExecution(_record("l1", workflow=workflow, idempotency_key=key_a), [])]
    )
    [b] = store.apply(
        [CreateExecution(_record("l2", workflow=workflow, idempotency_key=key_b), [])]
    )
    [a2] = store.apply(
        [CreateExecution(_record("l3", workflow=workflow, idempotency_key=key_a), [])]
    )
    c.equal((a, b, a2), ("l1", "l2", "l1"), "1,000-character idempotency keys")
    c.equal(store.find_idempotent(workflow, key_b), "l2", "find_idempotent of a long key")
    c.equal(
        store.get_execution("l1"),
        _record("l1", workflow=workflow, idempotency_key=key_a),
        "a record holding long keys round-trips",
    )
    results = store.apply(
        [
            PutSignal("l1", "s", 1, key_a),
            PutSignal("l1", "s", 2, key_b),
            PutSignal("l1", "s", 3, key_a),
        ]
    )
    c.equal(
        [r.outcome for r in results],
        [SignalOutcome.BUFFERED, SignalOutcome.BUFFERED, SignalOutcome.DUPLICATE],
        "1,000-character dedup keys",
    )
    c.equal([m.dedup_key for m in store.mailbox("l1")], [key_a, key_b], "long dedup keys kept")


def _check_oversized_keys(c: _Check, store: Store) -> None:
    # A timer id is a step id, which may be long: the key holds its hash and the value the
    # id itself, so it round-trips. Ids that must stay readable in the key (schedule ids,
    # execution ids) are not hashed: past the key limit, an op is refused with an error
    # that is not a StoreError (the op is at fault, not the store), and nothing of its
    # batch is kept.
    long = "z" * 600
    _create(store, "k1")
    store.apply([AddTimer(Timer(1, "k1", long))])
    c.equal(store.due_timers(_FAR_FUTURE), [Timer(1, "k1", long)], "a long timer id round-trips")
    store.apply([RemoveTimer(Timer(1, "k1", long))])
    c.equal(store.due_timers(_FAR_FUTURE), [], "a long timer id is removed")
    oversized: list[tuple[str, Op]] = [
        ("schedule id", PutSchedule(long, 1)),
        ("execution id", CreateExecution(_record(long), [])),
        ("meta name", PutMeta(long, 1)),
    ]
    for what, op in oversized:
        try:
            store.apply([PutMeta("before", 1), op])
        except StoreError as exc:
            raise c.fail(f"an over-long {what} raised a StoreError: {exc!r}") from exc
        except Exception:
            pass
        else:
            raise c.fail(f"an over-long {what} ({len(long)} characters) was accepted")
        c.equal(store.get_meta("before"), None, f"batch with an over-long {what} left a trace")
    c.equal(store.get_execution(long), None, "get_execution of an over-long id")
    c.equal(store.read_events(long), [], "read_events of an over-long id")
    c.equal(store.get_schedule(long), None, "get_schedule of an over-long id")
    c.equal(store.due_timers(_FAR_FUTURE), [], "timers after refused over-long ids")
    [res] = store.apply([PutSignal(long, "s", 1)])
    c.equal(res.outcome, SignalOutcome.UNKNOWN, "PutSignal to an over-long id")


def _check_closed(c: _Check, store: Store) -> None:
    store.close()
    calls: list[tuple[str, Callable[[], object]]] = [
        ("apply", lambda: store.apply([PutMeta("x", 1)])),
        ("get_execution", lambda: store.get_execution("x")),
        ("read_events", lambda: store.read_events("x")),
        ("list_executions", lambda: store.list_executions()),
    ]
    for name, call in calls:
        try:
            call()
        except StoreError:
            continue
        except Exception as exc:
            raise c.fail(f"{name} on a closed store raised {exc!r}, not a StoreError") from exc
        raise c.fail(f"{name} on a closed store did not raise")
    store.close()  # closing twice is harmless


_CHECKS: list[tuple[str, Callable[[_Check, Store], None]]] = [
    ("fresh store is empty", _check_empty),
    ("meta", _check_meta),
    ("execution records", _check_records),
    ("event order and read_events(from_seq)", _check_events),
    ("batches are atomic", _check_atomic),
    ("ops apply in order within a batch", _check_op_order),
    ("list_executions by status, workflow, after, limit", _check_listing),
    ("status index follows status changes", _check_status_index),
    ("due_timers order, before_ms, limit", _check_timers),
    ("mailbox FIFO", _check_mailbox),
    ("mailbox dedup", _check_dedup),
    ("signals to unknown or finished executions", _check_refused_signals),
    *SIGNAL_CHECKS,
    ("idempotency keys, first writer wins", _check_idempotency),
    ("schedules CRUD", _check_schedules),
    ("long idempotency and dedup keys", _check_long_keys),
    ("over-long keys are refused", _check_oversized_keys),
    *INBOX_CHECKS,
    *QUEUE_CHECKS,
    *LEASE_CHECKS,
    ("a closed store refuses work", _check_closed),
]


def check_store(factory: Callable[[], Store]) -> None:
    """Run the conformance suite; ``factory`` must return a new, empty store on each call.

    Raises ``AssertionError`` naming the first check that failed. Each check gets its own
    store, which is closed afterwards.
    """
    for name, check in _CHECKS:
        store = factory()
        try:
            check(_Check(name), store)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"store check {name!r} failed: unexpected {exc!r}") from exc
        finally:
            store.close()
