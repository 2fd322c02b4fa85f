"""Composition calls from outside the worker: ``signal_with_start`` from client processes
that exit right after it, and ``read_published`` from the blocking client."""

from __future__ import annotations

from pathlib import Path

import durably
import durably.sync
from durably.core._events import Published, decode_all

from ._helpers import Worker, client, result_of, worker


def test_signal_with_start_from_exiting_processes_starts_once_and_signals_each(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with worker(store, poll=0.2) as w:
        ids = {client(store, "signal-with-start", "ann", f'"item-{n}"') for n in range(3)}
        assert len(ids) == 1
        (eid,) = ids
        w.until("three items published", lambda: _count(w, eid) == 3)
        client(store, "signal", eid, "add", "null")
        w.status_within(eid, "completed", 20)
        assert sorted(result_of(w, eid)[1:]) == ["item-0", "item-1", "item-2"]


def _count(w: Worker, eid: str) -> int:
    events = decode_all(w.reader.read_events(eid), eid)
    counts = [e.value for e in events if isinstance(e, Published) and e.key == "count"]
    return int(counts[-1]) if counts else 0


def test_the_blocking_client_waits_for_a_published_value(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with worker(store, poll=0.2) as w:
        w.reader.close()  # one LMDB environment per process: the client's, here
        with durably.sync.Client(store) as c:
            _drive(c)


def _drive(c: durably.sync.Client) -> None:
    receipt = c.signal_with_start("basket", "bob", "add", "tea", idempotency_key="bob")
    assert receipt.delivery is not durably.SignalDelivery.REJECTED
    eid = receipt.execution_id
    assert c.read_published(eid, "count", wait=True, timeout=20) == 1
    c.signal(eid, "add", None)
    assert c.wait(eid, timeout=20) == ["bob", "tea"]
