"""The conformance checks of the shard leases of many workers (see ``_checks.py``).

What ownership relies on: a beat claims at most a fair share of free shards and renews
what it holds; an expired lease is claimed with a higher epoch; a fence passes only for
the lease's owner at its epoch, and a refused fence keeps nothing of its batch; a
released lease is free at once.
"""

from __future__ import annotations

from typing import Any, Protocol

from durably.stores import Append, CreateExecution, ExecutionRecord, Store

from ..core._errors import LeaseLostError
from ..core._records import Fence, Heartbeat, Leases, Notify
from ..core._shards import SHARDS, shard_of


class Check(Protocol):
    def equal(self, actual: object, expected: object, what: str) -> None: ...

    def true(self, condition: bool, what: str) -> None: ...


def _beat(store: Store, worker: str, now: int, **kw: Any) -> Leases:
    leases: Leases = store.apply([Heartbeat(worker, now, 1000, **kw)])[0]
    return leases


def _check_fair_claims(c: Check, store: Store) -> None:
    a = _beat(store, "a", 0)
    c.equal((len(a.held), a.workers), (SHARDS, 1), "a lone worker holds every shard")
    b = _beat(store, "b", 100)
    c.equal((len(b.held), b.workers), (0, 2), "nothing is free: the second waits")
    a = _beat(store, "a", 200, release=frozenset(range(SHARDS // 2)))
    c.equal(len(a.held), SHARDS // 2, "a release gives the shards up at once")
    b = _beat(store, "b", 300)
    c.equal(sorted(b.held), list(range(SHARDS // 2)), "the second takes what was released")
    c.equal(set(b.held.values()), {2}, "a claim raises the epoch")
    again = _beat(store, "b", 400)
    c.equal(again.held, b.held, "a beat renews what it holds, epochs kept")
    c.equal(len(store.leases()), SHARDS, "every lease is listed")


def _check_takeover_and_fence(c: Check, store: Store) -> None:
    a = _beat(store, "a", 0)
    store.apply([Fence("a", ((5, a.held[5]),))])  # passes: nothing raised
    c.equal(_beat(store, "b", 500).held, {}, "a live lease is not taken")
    b = _beat(store, "b", 1001)  # a's leases expired at 1000, a's entry is not live
    c.equal((len(b.held), b.held[5]), (SHARDS, a.held[5] + 1), "expired leases are taken over")
    record = ExecutionRecord(
        id="e", workflow="wf", status="running", input=1, created_ms=1, updated_ms=1
    )
    try:
        store.apply([CreateExecution(record, [b"x"]), Fence("a", ((5, a.held[5]),))])
    except LeaseLostError:
        pass
    else:
        c.true(False, "a fence of a lease taken over is refused")
    c.equal(store.get_execution("e"), None, "a refused fence keeps nothing of its batch")
    store.apply([Fence("b", ((5, b.held[5]),)), CreateExecution(record, [b"x"])])
    store.apply([Fence("b", ((5, b.held[5]),)), Append("e", 1, [b"y"])])
    c.equal(len(store.read_events("e")), 2, "the new owner's fenced writes are kept")
    back = _beat(store, "a", 1100)
    c.equal(back.held, {}, "the old owner renews nothing it lost")


def _check_leaving(c: Check, store: Store) -> None:
    _beat(store, "a", 0)
    gone = _beat(store, "a", 10, leaving=True)
    c.equal(gone.held, {}, "leaving releases every lease")
    b = _beat(store, "b", 20)
    c.equal((len(b.held), b.workers), (SHARDS, 1), "the one who left is not counted")


LEASE_CHECKS: list[tuple[str, Any]] = [
    ("leases: fair claims, renewal, release", _check_fair_claims),
    ("leases: takeover after expiry, fencing", _check_takeover_and_fence),
    ("leases: leaving releases at once", _check_leaving),
]


def _check_notify_unless(c: Check, store: Store) -> None:
    a = _beat(store, "a", 0)
    eid = "e1"
    shard = next(s for s in a.held if s == shard_of(eid))
    store.apply([Notify(eid, "start", ("a", a.held[shard]))])
    c.equal(store.inbox_waiting(), False, "no entry while the writer holds the shard")
    store.apply([Notify(eid, "start", ("a", a.held[shard] + 1))])
    c.equal(store.inbox_waiting(), True, "an entry once the lease is another epoch's")


LEASE_CHECKS.append(("leases: an inbox entry unless the writer owns it", _check_notify_unless))
