"""Cluster soak: 3 workers of one store, one SIGKILLed or SIGSTOPped at random, again and
again, while clients start and signal; then checks an fsynced ledger against the store.

Not collected by pytest (``tests/faults/test_cluster_crash.py`` runs it short). Run::

    .venv/bin/python tests/soak/cluster_soak.py --store lmdb --seconds 300 --executions 6000
    .venv/bin/python tests/soak/cluster_soak.py --store postgres --seconds 300  # DSN below

It runs ``--workers`` processes of ``cluster_worker.py`` with ``many_workers=True`` over
one store (an LMDB directory, or a PostgreSQL database: ``--dsn``, else a new database
made on the server ``DURABLY_TEST_POSTGRES`` names, dropped at the end). For
``--seconds`` it picks a worker at random, again and again, and either SIGKILLs it (and
starts a new one at once) or SIGSTOPs it for 1.5 to 3 lease periods, so that the others
take its shards over, and then SIGCONTs it: its writes must then be refused (fencing).
Meanwhile client processes (``cluster_client.py``) start ``--executions`` executions, 20
each, signal the previous client's ones, and exit right after their writes. Then it
waits for every execution to complete, stops the workers (SIGTERM: a graceful stop) and
checks, from the store's logs and the ledger the steps wrote (``cluster_worker.py``):

- (a) every execution started once and completed, with one outcome, each step recorded
  once, and its result the recorded nonces;
- (b) no acknowledged result lost: every ``ack`` line's nonce is the recorded one;
- (c) no recorded step ran again: no ``run`` of a step after an ``ack`` of it, unless
  the run is stale (see (d)): by a worker the shard was already taken from, whose
  result can never be recorded;
- (d) fencing: one worker per (shard, epoch); a ``run`` line whose epoch is below one
  already in the ledger for that shard is stale, and its result is never recorded; the
  recorded runs of an execution come from non-decreasing epochs (its owners never
  interleave);
- every worker stopped gracefully, and left no lease held.

Prints the figures as JSON (faults, takeover times: from the signal until every shard
the victim held is held by another worker at a higher epoch); exits 1 on any anomaly,
keeping the directory (ledger, worker logs) for the evidence.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from durably.core._shards import shard_of
from durably.stores import LmdbStore, Store

WORKER = Path(__file__).with_name("cluster_worker.py")
CLIENT = Path(__file__).with_name("cluster_client.py")
STEPS = [f"s{i}" for i in range(4)]
#: Executions each client process starts (and, later, signals).
PER_CLIENT = 20
#: Client processes running at once, at most.
CLIENTS_AT_ONCE = 4
PY_SPY = Path(sys.executable).with_name("py-spy")


def main() -> int:
    args = _arguments()
    rng = random.Random(args.seed)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="durably-cluster-"))
    root.mkdir(parents=True, exist_ok=True)
    target, drop = _store_target(args, root)
    try:
        figures = Soak(args, rng, root, target).run()
    finally:
        if drop is not None and not args.keep:
            drop()
    anomalies = figures["anomalies"]
    figures["anomaly_count"] = len(anomalies)
    figures["anomalies"] = anomalies[:30]
    print(json.dumps(figures, indent=2))
    if args.keep or anomalies:
        print(f"ledger, logs and store kept in {root}", file=sys.stderr)
    elif not args.root:
        shutil.rmtree(root)
    return 1 if anomalies else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("lmdb", "postgres"), default="lmdb")
    parser.add_argument("--dsn", help="a new PostgreSQL database to use as the store")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=300.0, help="of faults")
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument("--lease", type=float, default=2.0, help="lease_seconds")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--root", help="directory for the store, ledger and logs")
    parser.add_argument("--keep", action="store_true", help="keep the store and ledger")
    parser.add_argument(
        "--settle", type=float, default=180.0, help="seconds allowed to finish after the faults"
    )
    return parser.parse_args()


def _store_target(args: argparse.Namespace, root: Path) -> tuple[str, Callable[[], None] | None]:
    """The store the workers open (a path or a DSN), and how to drop a database made here."""
    if args.store == "lmdb":
        return str(root / "store"), None
    if args.dsn:
        return args.dsn, None
    server = os.environ.get("DURABLY_TEST_POSTGRES")
    if not server:
        sys.exit("--store postgres needs --dsn or DURABLY_TEST_POSTGRES (see .ci/postgres)")
    import psycopg

    name = f"durably_cluster_soak_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return _with_database(server, name), drop


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name`` (as ``tests/conftest.py`` does)."""
    from urllib.parse import urlsplit

    from psycopg.conninfo import make_conninfo

    if not dsn.startswith(("postgresql://", "postgres://")):
        return make_conninfo(dsn, dbname=name)
    parts = urlsplit(dsn)
    return f"{parts.scheme}://{parts.netloc}/{name}" + (f"?{parts.query}" if parts.query else "")


def _open(kind: str, target: str) -> Store:
    """The store as a client opens it (no worker lock), created if new."""
    if kind == "postgres":
        from durably.stores import PostgresStore

        return PostgresStore(target, lock=False)
    return LmdbStore(target, lock=False)


def _pid_of(worker: str) -> int:
    """The pid in a worker id (``host-pid-hex``, ``_ownership.new_worker_id``)."""
    return int(worker.rsplit("-", 2)[1])


class Soak:
    """The processes, the faults, and the figures of one run."""

    def __init__(self, args: argparse.Namespace, rng: random.Random, root: Path, target: str):
        self.args, self.rng, self.root, self.target = args, rng, root, target
        self.ledger = root / "ledger.txt"
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.store = _open(args.store, target)
        if self.store.list_executions(limit=1):
            sys.exit(f"the store {target} is not empty: the soak needs a new one")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_starts = 0
        self.clients: list[subprocess.Popen[bytes]] = []
        self.client_failures: list[str] = []
        self.batches = _batches(args.executions)
        self.anomalies: list[str] = []
        self.faults: Counter[str] = Counter()
        self.takeovers: dict[str, list[float]] = defaultdict(list)
        #: (pid, wall time of SIGSTOP, of SIGCONT) of every stop not taken over in time.
        self.stuck: list[tuple[int, float, float]] = []

    # --- processes ---

    def _spawn(self, slot: int) -> subprocess.Popen[bytes]:
        self.worker_starts += 1
        log = open(self.logs / f"worker-{slot}-{self.worker_starts}.log", "wb")
        command = [sys.executable, str(WORKER), self.target, str(self.ledger), str(self.args.lease)]
        proc = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        if slot < len(self.workers):
            self.workers[slot] = proc
        else:
            self.workers.append(proc)
        return proc

    def _tick(self) -> None:
        """Launch the clients due, reap those done, restart a worker that died unbidden."""
        for proc in [p for p in self.clients if p.poll() is not None]:
            self.clients.remove(proc)
            if proc.returncode != 0:
                err = proc.stderr.read().decode()[-1500:] if proc.stderr else ""
                self.client_failures.append(f"client {proc.args[3:]} exit {proc.returncode}: {err}")
        elapsed = time.monotonic() - self.began
        while self.batches and len(self.clients) < CLIENTS_AT_ONCE:
            due, client_args = self.batches[0]
            if due * self.args.seconds > elapsed:
                break
            self.batches.pop(0)
            command = [sys.executable, str(CLIENT), self.target, *map(str, client_args)]
            self.clients.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
        for slot, proc in enumerate(self.workers):
            if proc.poll() is not None:
                self.anomalies.append(
                    f"worker {proc.pid} exited by itself ({proc.returncode}): see {self.logs}"
                )
                self._spawn(slot)

    def _tick_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._tick()
            time.sleep(0.02)

    def _until(self, done: Callable[[], bool], seconds: float) -> bool:
        """Tick until ``done()`` (True) or ``seconds`` have passed (False)."""
        end = time.monotonic() + seconds
        while not done():
            if time.monotonic() > end:
                return False
            self._tick()
            time.sleep(0.02)
        return True

    # --- the run ---

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:  # nothing outlives the soak, stopped or not (a no-op after a clean end)
            for proc in self.workers + self.clients:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                    proc.wait()
            self.store.close()

    def _run(self) -> dict[str, Any]:
        args = self.args
        self.began = time.monotonic()
        for slot in range(args.workers):
            self._spawn(slot)
        if not self._until(self._all_hold, 60):
            self.anomalies.append("the workers did not all take leases within 60 s")
        while time.monotonic() - self.began < args.seconds:
            self._tick_for(self.rng.uniform(0.5, 1.5) * args.lease)
            self._fault()
        faults_over = time.monotonic()
        self.batches = [(0.0, b) for _, b in self.batches]  # the rest now
        if not self._until(lambda: not self.batches and not self.clients, 300):
            self.anomalies.append("the clients did not finish within 300 s")
        done = self._until(self._all_completed, args.settle)
        settled = time.monotonic() - faults_over
        if not done:
            self._evidence("not every execution completed")
        self._stop_workers()
        figures = self._check()
        figures.update(
            seconds=round(time.monotonic() - self.began, 1),
            settle_seconds=round(settled, 1),
            workers=args.workers,
            worker_starts=self.worker_starts,
            lease_seconds=args.lease,
            faults=dict(self.faults),
            takeover_seconds={k: _spread(v) for k, v in self.takeovers.items()},
        )
        figures["anomalies"] = self.anomalies + self.client_failures + figures["anomalies"]
        return figures

    def _all_hold(self) -> bool:
        now = time.time() * 1000
        pids = {_pid_of(lease.worker) for lease in self.store.leases() if lease.expires_ms > now}
        return pids == {p.pid for p in self.workers}

    def _all_completed(self) -> bool:
        done = self.store.list_executions(status="completed", limit=None)
        return len(done) >= self.args.executions

    def _fault(self) -> None:
        slot = self.rng.randrange(len(self.workers))
        victim = self.workers[slot]
        held = self._held_by(victim.pid)
        began = time.monotonic()
        if self.rng.random() < 0.5:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self._note(f"kill of {victim.pid}")
            self.faults["kills"] += 1
            self._spawn(slot)  # at once: it starts while the dead one's leases still run
            took = self._takeover(held, victim.pid, began + 10 * self.args.lease)
            self._timed("kill", took, held)
            return
        pause = self.rng.uniform(1.5, 3.0) * self.args.lease
        victim.send_signal(signal.SIGSTOP)
        stopped = time.time()
        self.faults["stops"] += 1
        took = self._takeover(held, victim.pid, began + pause)
        self._timed("stop", took, held)
        self._tick_for(began + pause - time.monotonic())
        victim.send_signal(signal.SIGCONT)
        if held and took is None:
            self.stuck.append((victim.pid, stopped, time.time()))
        self._note(f"stop of {victim.pid}: {pause:.2f} s, taken over after {took} s")

    def _timed(self, kind: str, took: float | None, held: dict[int, int]) -> None:
        if not held:
            self.faults[f"{kind}s_of_a_worker_holding_nothing"] += 1
        elif took is None:
            self.faults[f"{kind}s_not_taken_over_in_time"] += 1
        else:
            self.takeovers[kind].append(took)

    def _sessions(self) -> str:
        """What PostgreSQL's sessions do now (who holds the write lock, who waits)."""
        if self.args.store != "postgres":
            return f"leases now {self.store.leases()}"
        import psycopg

        query = (
            "SELECT pid, state, wait_event_type, wait_event, left(query, 40) FROM "
            "pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.target, autocommit=True) as conn:
            return f"sessions now {conn.execute(query).fetchall()}"

    def _note(self, text: str) -> None:
        with open(self.root / "notes.txt", "a") as notes:
            notes.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def _held_by(self, pid: int) -> dict[int, int]:
        now = time.time() * 1000
        return {
            lease.shard: lease.epoch
            for lease in self.store.leases()
            if _pid_of(lease.worker) == pid and lease.expires_ms > now
        }

    def _takeover(self, held: dict[int, int], pid: int, deadline: float) -> float | None:
        """Seconds until every shard in ``held`` is another worker's at a higher epoch."""
        began = time.monotonic()

        def taken() -> bool:
            leases = {lease.shard: lease for lease in self.store.leases()}
            return all(
                _pid_of(leases[s].worker) != pid and leases[s].epoch > e for s, e in held.items()
            )

        if not held or not self._until(taken, deadline - began):
            if held:
                self._note(f"not taken over from {pid} in time: {held}, {self._sessions()}")
            return None
        return round(time.monotonic() - began, 3)

    def _stop_workers(self) -> None:
        for proc in self.workers:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._evidence(f"worker {proc.pid} did not stop within 60 s of SIGTERM")
                proc.kill()
                proc.wait()
                continue
            if code != 0:
                self.anomalies.append(f"worker {proc.pid} stopped with {code}: see {self.logs}")
        now = time.time() * 1000
        held = [f"{s.shard}:{s.worker}" for s in self.store.leases() if s.expires_ms > now]
        if held:
            self.anomalies.append(f"leases still held after every worker stopped: {held}")

    def _evidence(self, what: str) -> None:
        """Record an anomaly, with a py-spy dump of every worker beside its log."""
        self.anomalies.append(f"{what}; py-spy dumps and logs in {self.logs}")
        if not PY_SPY.exists():
            return
        for proc in self.workers:
            if proc.poll() is None:
                with open(self.logs / f"py-spy-{proc.pid}.txt", "wb") as out:
                    command = [str(PY_SPY), "dump", "--pid", str(proc.pid)]
                    subprocess.run(command, stdout=out, stderr=out, timeout=60, check=False)

    # --- the checks ---

    def _check(self) -> dict[str, Any]:
        anomalies, recorded, figures = read_store(self.store, self.args.executions)
        lines = read_ledger(self.ledger)
        more, ledger_figures = check_ledger(lines, recorded)
        figures.update(ledger_figures)
        figures["anomalies"] = anomalies + more
        times = [line.at for line in lines]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        figures["longest_ledger_gap_seconds"] = round(max(gaps, default=0.0), 3)
        # A stop not taken over, during which no other worker wrote a line: it held the
        # store's one writer lock (LMDB's, PostgreSQL's advisory lock); every worker waited.
        figures["stops_that_stalled_every_worker"] = sum(
            not any(a + self.args.lease / 2 < line.at < b and line.pid != pid for line in lines)
            for pid, a, b in self.stuck
        )
        return figures


def _batches(executions: int) -> list[tuple[float, tuple[int, int, int, int]]]:
    """(when, as a fraction of the fault period; the client's arguments): client ``b``
    starts batch ``b`` and signals batch ``b - 1``; one more client signals the last."""
    firsts = list(range(0, executions, PER_CLIENT))
    out = []
    for b in range(len(firsts) + 1):
        start = (firsts[b], min(PER_CLIENT, executions - firsts[b])) if b < len(firsts) else (0, 0)
        signal_ = (firsts[b - 1], min(PER_CLIENT, executions - firsts[b - 1])) if b else (0, 0)
        out.append((0.75 * b / len(firsts), (*start, *signal_)))
    return out


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "count": len(values),
        "min": min(values),
        "median": round(statistics.median(values), 3),
        "max": max(values),
    }


class Line(NamedTuple):
    kind: str
    eid: str
    step: str
    nonce: str
    worker: str
    epoch: int | None
    pid: int
    at: float
    tail: str


def read_ledger(path: Path) -> list[Line]:
    lines = []
    for text in path.read_text().splitlines():
        kind, eid, step, nonce, worker, epoch, pid, at, *tail = text.split()
        number = None if epoch == "-" else int(epoch)
        last = tail[0] if tail else ""
        lines.append(Line(kind, eid, step, nonce, worker, number, int(pid), float(at), last))
    return lines


def read_store(store: Store, count: int) -> tuple[list[str], dict[tuple[str, str], str], dict]:
    """Check (a) on the final logs; return the recorded nonce of every (execution, step)."""
    anomalies: list[str] = []
    recorded: dict[tuple[str, str], str] = {}
    executions = store.list_executions(limit=None)
    if len(executions) != count:
        anomalies.append(f"{len(executions)} executions, expected {count}")
    keys = Counter(r.idempotency_key for r in executions)
    anomalies += [f"key {k} started {n} times" for k, n in keys.items() if n != 1]
    for record in executions:
        if record.status != "completed":
            anomalies.append(f"{record.id} is {record.status}: {record.reason}")
        events = [orjson.loads(raw) for raw in store.read_events(record.id)]
        outcomes = [e for e in events if e["t"] in ("completed", "failed", "cancelled")]
        if len(outcomes) != 1:
            anomalies.append(f"{record.id} has {len(outcomes)} outcome events")
        completed = [e for e in events if e["t"] == "step.completed"]
        ids = Counter(e["step_id"] for e in completed)
        if sorted(ids) != STEPS or set(ids.values()) != {1}:
            anomalies.append(f"{record.id} recorded steps {dict(ids)}")
        for event in completed:
            recorded[(record.id, event["step_id"])] = event["result"]
        nonces = [recorded.get((record.id, step)) for step in STEPS]
        if outcomes and outcomes[-1].get("result") != nonces:
            anomalies.append(f"{record.id} returned {outcomes[-1].get('result')}, not {nonces}")
    figures = {
        "executions": len(executions),
        "statuses": dict(Counter(r.status for r in executions)),
        "recorded_steps": len(recorded),
    }
    return anomalies, recorded, figures


def check_ledger(
    lines: list[Line], recorded: dict[tuple[str, str], str]
) -> tuple[list[str], dict[str, Any]]:
    """Checks (b), (c) and (d) along the ledger, in the order its lines were written."""
    anomalies: list[str] = []
    owner: dict[tuple[int, int], str] = {}  # (shard, epoch) -> the one worker using it
    top: dict[int, int] = defaultdict(int)  # shard -> highest epoch in the ledger so far
    acked: set[tuple[str, str]] = set()
    run_of: dict[str, Line] = {}
    counts: Counter[str] = Counter()
    for line in lines:
        shard, key = shard_of(line.eid), (line.eid, line.step)
        if line.epoch is None:
            anomalies.append(f"{line.kind} {key} by {line.worker}, holding no lease on {shard}")
            continue
        first = owner.setdefault((shard, line.epoch), line.worker)
        if first != line.worker:
            anomalies.append(f"shard {shard} epoch {line.epoch}: {first} and {line.worker}")
        stale = line.epoch < top[shard]
        top[shard] = max(top[shard], line.epoch)
        if line.kind == "run":
            counts["step_runs"] += 1
            run_of[line.nonce] = line
            if stale:
                counts["stale_runs"] += 1
                if recorded.get(key) == line.nonce:
                    anomalies.append(f"fencing: stale run {key} by {line.worker} was recorded")
            elif key in acked:
                anomalies.append(f"recorded step {key} ran again, by {line.worker}")
        else:
            counts[f"acks_{line.tail}"] += 1
            acked.add(key)
            if recorded.get(key) != line.nonce:
                got = recorded.get(key)
                anomalies.append(f"ack lost: {key} acked {line.nonce}, recorded {got}")
    moved = 0
    for eid in sorted({eid for eid, _ in recorded}):
        runs = [run_of.get(recorded.get((eid, step), "")) for step in STEPS]
        if None in runs:
            anomalies.append(f"{eid}: a recorded result no run wrote ({recorded.get((eid, 's0'))})")
            continue
        epochs = [run.epoch for run in runs if run is not None]
        if epochs != sorted(epochs):  # type: ignore[type-var]
            anomalies.append(f"{eid}: owners interleave, recorded runs at epochs {epochs}")
        moved += len({run.worker for run in runs if run is not None}) > 1
    figures = {
        **counts,
        "step_reruns": counts["step_runs"] - len(recorded),
        "executions_moved_between_workers": moved,
        "epochs_used": len(owner),
    }
    return anomalies, figures


if __name__ == "__main__":
    sys.exit(main())
