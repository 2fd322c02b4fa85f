"""Queues across process boundaries: client processes that enqueue (or debounce) and exit
at once, one real worker process declaring the queues, one LMDB store on disk.

An enqueue is acknowledged by the store, not by the worker: its id names a durable
``queued`` record the moment it is printed, and its inbox entry brings it to the worker
whether the datagram hint arrives, is lost (socket removed: the worker's periodic look
finds it) or waits behind a blocked loop. A queue no running worker declares keeps its
executions queued until one that declares it starts.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from durably.stores import ExecutionRecord

from ._helpers import PROCS, Worker, _env, client, served

#: How soon after a client has exited its enqueue must have been acted on (wall time).
BOUND_S = 5.0
#: How long the ``blocker`` workflow blocks the worker's loop (``procs.BLOCK_SECONDS``).
BLOCK_SECONDS = 3.0
JOBS = {"jobs": {"concurrency": 2}}


class QueueWorker(Worker):
    """A ``procs.py queue-worker``; ``stats`` asks it for its own ``engine.queue_stats``."""

    log = ""  # the worker's stderr, once it has exited

    def stats(self, name: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"stats {name}\n".encode())
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer


@contextmanager
def queue_worker(
    store: Path, queues: dict[str, Any] = JOBS, *, poll: float = 1.0
) -> Iterator[QueueWorker]:
    args = ["queue-worker", str(store), str(poll), json.dumps(queues)]
    with served(store, args, QueueWorker) as w:
        yield w
    assert w.proc.stderr is not None  # it has exited: its whole stderr can be read
    w.log = w.proc.stderr.read().decode()


def _popen(store: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(PROCS), args[0], str(store), *args[1:]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )


def _line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().decode().strip()
    assert line, proc.stderr.read().decode()[-3000:]
    return line


def _ended(proc: subprocess.Popen[bytes]) -> None:
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode() if proc.stderr else ""


def enqueue_and_read(w: Worker, *args: str) -> tuple[str, ExecutionRecord]:
    """Enqueue from a client process (``procs.py enqueue`` ARGS) and read the record from
    this process the moment the id is printed, while the client is still exiting."""
    proc = _popen(w.store, "enqueue", *args)
    eid = _line(proc)
    record = w.reader.get_execution(eid)
    _ended(proc)
    assert record is not None, f"{eid} was acknowledged but is not in the store"
    return eid, record


def _statuses(w: Worker, eids: list[str]) -> Counter[str]:
    return Counter(w.record(eid).status for eid in eids)


def _holders(w: Worker, dedup_id: str) -> list[str]:
    return [r.id for r in w.reader.list_executions() if r.dedup_id == dedup_id]


def test_an_enqueue_from_a_client_that_exits_at_once_is_durable_and_runs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with queue_worker(store) as w:
        # The hint arrives: the worker admits and runs it within milliseconds.
        eid, record = enqueue_and_read(w, "jobs", "quick", '"hinted"')
        assert (record.queue, record.workflow, record.input) == ("jobs", "quick", "hinted")
        assert w.status_within(eid, "completed", BOUND_S) < 0.9
        assert w.record(eid).result == "hinted" and w.record(eid).admitted_ms is not None

        # The worker's loop is blocked: the acknowledgement cannot have come from it.
        marker = tmp_path / "block"
        blocker = client(store, "start", "blocker", json.dumps(str(marker)))
        w.until("the blocking step began", lambda: Path(f"{marker}.start").exists())
        eid, record = enqueue_and_read(w, "jobs", "quick", '"behind a busy loop"')
        assert not Path(f"{marker}.end").exists(), "the loop unblocked too early for this test"
        assert record.status == "queued" and record.admitted_ms is None
        w.status_within(eid, "completed", BLOCK_SECONDS + BOUND_S)
        assert w.record(eid).result == "behind a busy loop"
        assert w.record(blocker).status == "completed"

        # Every hint from now on is lost (ENOENT): the worker's periodic look finds each.
        os.unlink(w.socket)
        took = []
        for n in range(3):
            eid, record = enqueue_and_read(w, "jobs", "quick", str(n))
            assert record.queue == "jobs" and record.input == n
            took.append(w.status_within(eid, "completed", BOUND_S))
            assert w.record(eid).result == n
    # Found by the poll (every 1 s), not by a hint (well under a millisecond): all three
    # under 50 ms would take odds of about 0.05 ** 3.
    assert max(took) > 0.05, took


def test_two_processes_enqueuing_one_dedup_id_at_once_create_one_execution(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with queue_worker(store, poll=0.5) as w:
        dedup = json.dumps({"dedup_id": "order-7"})
        procs = [_popen(store, "on-go", "enqueue", "jobs", "wait_go", "null", dedup) for _ in "ab"]
        assert [_line(p) for p in procs] == ["open", "open"]
        for p in procs:  # both clients are open: release them together
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        answers = [_line(p) for p in procs]
        for p in procs:
            _ended(p)
        created = [a for a in answers if not a.startswith("duplicate ")]
        assert len(created) == 1, answers
        (eid,) = created
        assert sorted(answers) == sorted([eid, f"duplicate {eid}"])
        assert _holders(w, "order-7") == [eid]

        # Admitted and waiting, it still holds the dedup id.
        w.status_within(eid, "waiting", BOUND_S)
        assert client(store, "enqueue", "jobs", "quick", "1", dedup) == f"duplicate {eid}"
        assert client(store, "signal", eid, "go", '"done"') == "delivered"
        w.status_within(eid, "completed", BOUND_S)

        # Ended, it frees the dedup id: the same id is accepted again.
        again = client(store, "enqueue", "jobs", "quick", '"again"', dedup)
        assert not again.startswith("duplicate ") and again != eid
        w.status_within(again, "completed", BOUND_S)
        assert sorted(_holders(w, "order-7")) == sorted([eid, again])


def test_debounce_from_several_processes_runs_once_with_the_last_input(tmp_path: Path) -> None:
    # A real period, long enough that three already-open clients call well within it on
    # a loaded machine (each call is one small commit), short enough to keep the test fast.
    period = 0.5
    store = tmp_path / "store"
    with queue_worker(store, poll=0.5) as w:
        procs = [
            _popen(store, "on-go", "debounce", "quick", f'"v{n}"', "refresh", str(period))
            for n in range(3)
        ]
        assert [_line(p) for p in procs] == ["open"] * 3
        ids, sent = [], []
        for p in procs:  # one after the other: the last input is the last call's
            assert p.stdin is not None
            sent.append(time.time())
            p.stdin.write(b"go\n")
            p.stdin.flush()
            ids.append(_line(p))
        last_call_ms = int(sent[-1] * 1000)
        record = w.record(ids[-1])
        for p in procs:
            _ended(p)
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert max(gaps) < period, f"the calls were too far apart for this test: {gaps}"
        assert len(set(ids)) == 1, ids
        (eid,) = set(ids)
        assert (record.status, record.input) == ("queued", "v2")
        # Due a period after the last call (a few ms of clock slack), not after the first.
        assert record.not_before is not None
        assert last_call_ms + period * 1000 - 5 <= record.not_before

        w.status_within(eid, "completed", BOUND_S)
        done = w.record(eid)
        assert done.result == "v2"
        assert done.admitted_ms is not None
        assert record.not_before <= done.admitted_ms
        assert done.admitted_ms < last_call_ms + (period + BOUND_S) * 1000
        assert [r.id for r in w.reader.list_executions(workflow="quick")] == [eid]


def test_a_queue_no_worker_declares_keeps_its_executions_until_one_does(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with queue_worker(store, poll=0.5) as w:  # declares "jobs" only
        late, record = enqueue_and_read(w, "later", "quick", '"late"')
        assert (record.status, record.queue) == ("queued", "later")
        # The worker takes its inbox in order: once a later enqueue has run, it has seen
        # (and left) the first.
        now = client(store, "enqueue", "jobs", "quick", '"now"')
        w.status_within(now, "completed", BOUND_S)
        assert w.record(late).status == "queued"
        stats = json.loads(client(store, "queue-stats", "later"))
        assert (stats["queued"], stats["delayed"], stats["running"]) == (1, 0, 0)
        assert stats["oldest_wait_s"] > 0
    assert f"execution {late} is on queue 'later', which this engine does not declare" in w.log

    with queue_worker(store, {**JOBS, "later": {"concurrency": 1}}, poll=0.5) as w:
        w.status_within(late, "completed", BOUND_S)
        assert w.record(late).result == "late"
        assert {name for name, _ in w.reader.list_queues()} == {"jobs", "later"}


def test_client_queue_stats_agree_with_the_workers_own(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with queue_worker(store, poll=0.5) as w:
        procs = [_popen(store, "enqueue", "jobs", "wait_go", "null") for _ in range(5)]
        procs.append(_popen(store, "enqueue", "jobs", "wait_go", "null", '{"delay": 3600}'))
        eids = [_line(p) for p in procs]
        for p in procs:
            _ended(p)

        def both_agree(queued: int, delayed: int, running: int) -> None:
            client_stats = json.loads(client(store, "queue-stats", "jobs"))
            for stats in (w.stats("jobs"), client_stats):
                assert (stats["queued"], stats["delayed"], stats["running"]) == (
                    queued,
                    delayed,
                    running,
                ), stats

        # concurrency 2: two admitted (waiting for "go"), three queued, one delayed.
        want = Counter({"waiting": 2, "queued": 4})
        w.until("two admitted", lambda: _statuses(w, eids) == want)
        both_agree(queued=4, delayed=1, running=2)

        first = next(eid for eid in eids if w.record(eid).status == "waiting")
        assert client(store, "signal", first, "go", "1") == "delivered"
        want = Counter({"completed": 1, "waiting": 2, "queued": 3})
        w.until("the next admitted", lambda: _statuses(w, eids) == want)
        both_agree(queued=3, delayed=1, running=2)
