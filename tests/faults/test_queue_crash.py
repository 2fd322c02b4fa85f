"""A durable queue under SIGKILL: a worker is killed 20 times while 2,000 executions flow
through a queue with ``concurrency=5`` and a rate limit. An independent ledger, written
by the steps, shows the limit was never exceeded and every execution ran to completion
once.

The executions are enqueued by a client in this process: some before the first worker
starts (found by recovery), the rest while workers run and die (found by the client's
hint, the inbox poll, or the next recovery).
"""

from __future__ import annotations

import bisect
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import attrs
import pytest

import durably.sync
from durably.stores import LmdbStore

from .queue_worker import QUEUE, result_of

WORKER = Path(__file__).with_name("queue_worker.py")
TOTAL = 2000
KILLS = 20
BEFORE = 800  # enqueued before the first worker starts; the rest while workers run
CONCURRENCY = 5
COUNT, SECONDS = 50, 0.5
PERIOD_MS = math.ceil(SECONDS * 1000)
#: How far a worker's engine clock may read ahead of ``time.time_ns()`` in the ledger:
#: it is the wall clock floored to the millisecond at the worker's start, advanced by
#: trio's monotonic clock, so it reads behind the wall clock, unless the wall clock is
#: slewed during the worker's few seconds (NTP slews at most 0.5 ms per second).
SLACK_MS = 2

assert (QUEUE.concurrency, QUEUE.rate_limit) == (CONCURRENCY, (COUNT, SECONDS))


@attrs.define
class Worker:
    proc: subprocess.Popen[bytes]
    launched_ns: int  # wall clock before the process existed


def _launch(store: Path, ledger: Path) -> Worker:
    launched = time.time_ns()
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(store), str(ledger), str(TOTAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Worker(proc, launched)


def _ready(worker: Worker) -> None:
    assert worker.proc.stdout is not None
    line = worker.proc.stdout.readline()
    if line != b"ready\n":
        worker.proc.kill()
        _, err = worker.proc.communicate()
        pytest.fail(f"the worker did not start: {line!r} {err.decode()[-3000:]}")


def _enqueue(client: durably.sync.Client, ns: range, ids: dict[int, str]) -> None:
    for n in ns:
        ids[n] = client.enqueue(QUEUE.name, "queue-crash-job", n)


def _max_in_window(times: list[float], width: float) -> int:
    """The most ``times`` in any half-open window ``[t, t + width)``."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def _max_overlap(spans: list[tuple[int, int]]) -> int:
    """The most spans open at one instant (a start at an end's instant counts both)."""
    edges = sorted([(a, 0) for a, _ in spans] + [(b, 1) for _, b in spans])
    most = now = 0
    for _, kind in edges:
        now += 1 if kind == 0 else -1
        most = max(most, now)
    return most


@pytest.mark.slow
def test_queue_limits_hold_and_every_execution_completes_once_under_sigkill(
    tmp_path: Path,
) -> None:
    store_dir, ledger = tmp_path / "store", tmp_path / "ledger.txt"
    rng = random.Random(2024)
    ids: dict[int, str] = {}
    workers: dict[int, Worker] = {}
    began = time.monotonic()
    with durably.sync.Client(store_dir, create=True) as client:
        _enqueue(client, range(BEFORE), ids)
        failures: list[BaseException] = []

        def feed() -> None:  # the rest arrive while workers run and die
            try:
                for start in range(BEFORE, TOTAL, 20):
                    _enqueue(client, range(start, min(start + 20, TOTAL)), ids)
                    time.sleep(0.15)  # pacing, so arrivals spread over the kills
            except BaseException as exc:
                failures.append(exc)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            for _ in range(KILLS):
                worker = _launch(store_dir, ledger)
                workers[worker.proc.pid] = worker
                _ready(worker)
                time.sleep(rng.uniform(0.0, 0.6))  # the kill's random moment
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                assert worker.proc.returncode == -signal.SIGKILL
        finally:
            feeder.join()
        assert not failures, failures
        final = time.monotonic()
        worker = _launch(store_dir, ledger)
        workers[worker.proc.pid] = worker
        out, err = worker.proc.communicate(timeout=120)
        assert worker.proc.returncode == 0, err.decode()[-3000:]
        assert out == b"ready\nall done\n"
        views = {e.id: e for e in client.list_executions(limit=None)}
    elapsed = time.monotonic() - began
    # The public view has no queue fields: the records, with their admission times, are
    # read from the store itself.
    store = LmdbStore(store_dir, readonly=True)
    try:
        records = {r.id: r for r in store.list_executions(limit=None)}
        queued = store.list_executions(status="queued", limit=None)
    finally:
        store.close()

    # (c) every execution completed once, with its own result; none lost or added.
    assert len(ids) == TOTAL and len(set(ids.values())) == TOTAL
    assert set(records) == set(views) == set(ids.values()), "an execution was lost or added"
    for n, eid in ids.items():
        record, view = records[eid], views[eid]
        assert (view.status, view.input, view.result) == ("completed", n, result_of(n)), view
        assert (record.status, record.queue, record.result) == (
            "completed",
            QUEUE.name,
            view.result,
        )
        assert record.admitted_ms is not None, record

    # (d) nothing is left queued.
    assert queued == []

    # The ledger: per execution, its starts and ends (monotonic ns, wall ns, pid).
    starts: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    ends: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for line in ledger.read_text().splitlines():
        kind, eid, mono, wall, pid = line.split()
        (starts if kind == "start" else ends)[eid].append((int(mono), int(wall), int(pid)))
    assert set(starts) == set(ends) == set(records), "a step never ran, or never finished"
    reruns = 0
    for eid in records:
        pids = [pid for _, _, pid in starts[eid]]
        # At least once, never twice in one process: a step runs again only after a kill.
        assert len(pids) == len(set(pids)), (eid, starts[eid])
        assert set(pids) <= set(workers)
        assert max(ends[eid]) > max(starts[eid]), "the last run of a step did not finish"
        reruns += len(pids) - 1
    # Each kill interrupts at most the CONCURRENCY steps that may be in flight.
    assert reruns <= CONCURRENCY * KILLS, reruns

    # (a) concurrency, from the ledger alone: an execution holds its place from its first
    # start to its last end (a killed step still holds it, across the restart), and that
    # span lies inside its admission-to-completion span, which the queue bounds.
    spans = [(min(starts[eid])[0], max(ends[eid])[0]) for eid in records]
    most_running = _max_overlap(spans)
    assert most_running <= CONCURRENCY, most_running

    # (b) rate limit, from the durable admission times: at most COUNT in any half-open
    # window of PERIOD_MS.
    admitted = {eid: r.admitted_ms for eid, r in records.items()}
    most_admitted = _max_in_window(list(admitted.values()), PERIOD_MS)
    assert most_admitted <= COUNT, most_admitted

    # (b) and from the ledger. No step starts before its execution's admission (first
    # starts in wall ns against the admitting worker's clock, with its 1 ms slack)...
    first = {eid: min(starts[eid], key=lambda s: s[1]) for eid in records}
    for eid, (_, wall, _) in first.items():
        assert wall >= (admitted[eid] - SLACK_MS) * 1_000_000, (eid, wall, admitted[eid])
    # ... and first starts keep the limit up to the admission-to-start jitter J. If every
    # start s of an execution admitted at a (the admitting clock's integer ms) lies in
    # [a - SLACK_MS, a + J], the starts in any window [t, t + PERIOD_MS - J - SLACK_MS)
    # were admitted in [t - J, t + PERIOD_MS - J), one window of PERIOD_MS, so there are
    # at most COUNT of them. J is measured, over the executions first started by the
    # worker that admitted them (admitted after that worker was launched): one admitted
    # by a worker that was then killed starts only after a restart, unboundedly later, so
    # those (at most CONCURRENCY per kill) rest on the checks above instead.
    same = [
        eid
        for eid, (_, _, pid) in first.items()
        if admitted[eid] * 1_000_000 >= workers[pid].launched_ns
    ]
    crossed = len(records) - len(same)
    assert crossed <= CONCURRENCY * KILLS, crossed
    first_ms = {eid: first[eid][1] / 1e6 for eid in same}
    jitter_ms = max(first_ms[eid] - admitted[eid] for eid in same)
    # A jitter near the window would leave nothing to check: fail rather than pass idly.
    assert jitter_ms < PERIOD_MS / 2, f"admission-to-start jitter {jitter_ms:.1f} ms"
    width = PERIOD_MS - jitter_ms - SLACK_MS
    most_started = _max_in_window(list(first_ms.values()), width)
    assert most_started <= COUNT, (most_started, width)

    print(
        f"\nqueue crash: {elapsed:.1f} s ({final - began:.1f} s of kills), {KILLS} kills, "
        f"{reruns} steps re-run, "
        f"{crossed} executions across a kill; max running {most_running}/{CONCURRENCY}, "
        f"max admitted per {PERIOD_MS} ms {most_admitted}/{COUNT}, max first starts per "
        f"{width:.0f} ms {most_started}/{COUNT} (jitter {jitter_ms:.1f} ms)"
    )
