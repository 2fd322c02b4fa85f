"""Soak: thousands of executions, a worker SIGKILLed at random for minutes, then checks.

Not part of CI (pytest does not collect this file). Run it with::

    .venv/bin/python tests/soak/soak.py --seconds 300 --executions 6000

It runs ``soak_worker.py`` over one LMDB store, SIGKILLs it after a random 0.3-4 s again
and again for ``--seconds``, then lets one worker finish. Beside it, client processes
(``soak_client.py``) start and signal ``--client-executions`` more, 20 each, and exit right
after their writes, whether a worker runs at that moment or not. Then it checks:

- every execution started exactly once (idempotent starts across restarts), the
  clients' ones included (each reached a worker: through the inbox, or recovery);
- every execution completed, with exactly one outcome event in its log;
- every recorded step ran at least once and at most (kills + 1) times, and its recorded
  result (the pid that ran it) is one of the runs its side effects show.

Prints the figures as JSON; exits 1 if there is any anomaly.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from durably.stores import LmdbStore

WORKER = Path(__file__).with_name("soak_worker.py")
CLIENT = Path(__file__).with_name("soak_client.py")
STEPS = 4
#: Executions each client process starts and signals before it exits.
PER_CLIENT = 20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--executions", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=30.0, help="starts per second")
    parser.add_argument(
        "--client-executions", type=int, default=600, help="started by client processes"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the store directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="durably-soak-"))
    store_dir, effects = root / "store", root / "effects.txt"
    command = [sys.executable, str(WORKER), str(store_dir), str(effects)]
    clients = -(-args.client_executions // PER_CLIENT) * PER_CLIENT
    command += [str(args.executions), str(args.rate), str(clients)]
    began = time.monotonic()
    kills = finished_early = 0
    batches = list(range(0, clients, PER_CLIENT))
    client_procs: list[subprocess.Popen[bytes]] = []
    while time.monotonic() - began < args.seconds:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if batches and (store_dir / "data.mdb").exists():
            client_procs.append(_client(store_dir, batches.pop(0)))
        try:
            proc.wait(timeout=rng.uniform(0.3, 4.0))
            finished_early += 1  # it finished (or died) before its kill: nothing to kill
            if b"all done" in (proc.stdout.read() if proc.stdout else b""):
                break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    # The rest of the clients write while no worker runs: found at the next start.
    client_procs += [_client(store_dir, first) for first in batches]
    clients_ok = all(p.wait(timeout=300) == 0 for p in client_procs)
    final = subprocess.run(command, capture_output=True, timeout=600, check=False)
    elapsed = time.monotonic() - began
    figures = check(store_dir, effects, args.executions + clients, kills)
    figures.update(
        client_processes=len(client_procs),
        clients_ok=clients_ok,
        seconds=round(elapsed, 1),
        kills=kills,
        worker_runs_not_killed=finished_early + 1,
        final_worker_ok=final.returncode == 0 and b"all done" in final.stdout,
    )
    if not clients_ok:
        figures["anomalies"].append("a client process failed")
    if not figures["final_worker_ok"]:
        figures["anomalies"].append("final worker: " + final.stderr.decode()[-2000:])
    figures["anomaly_count"] = len(figures["anomalies"])
    figures["anomalies"] = figures["anomalies"][:20]
    print(json.dumps(figures, indent=2))
    if args.keep:
        print(f"store kept at {root}", file=sys.stderr)
    else:
        shutil.rmtree(root)
    return 1 if figures["anomaly_count"] else 0


def _client(store_dir: Path, first: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CLIENT), str(store_dir), str(first), str(PER_CLIENT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def check(store_dir: Path, effects: Path, count: int, kills: int) -> dict[str, object]:
    anomalies: list[str] = []
    runs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for line in effects.read_text().splitlines():
        eid, step, pid = line.split()
        runs[(eid, step)].append(int(pid))
    store = LmdbStore(store_dir, readonly=True)
    try:
        executions = store.list_executions(limit=None)
        statuses = Counter(r.status for r in executions)
        if len(executions) != count:
            anomalies.append(f"{len(executions)} executions, expected {count}")
        keys = Counter(r.idempotency_key for r in executions)
        anomalies += [f"key {k} started {n} times" for k, n in keys.items() if n != 1]
        recorded_steps = 0
        most_runs = 0
        for record in executions:
            if record.status != "completed":
                anomalies.append(f"{record.id} is {record.status}: {record.reason}")
            events = [orjson.loads(raw) for raw in store.read_events(record.id)]
            outcomes = [e for e in events if e["t"] in ("completed", "failed", "cancelled")]
            if len(outcomes) != 1:
                anomalies.append(f"{record.id} has {len(outcomes)} outcome events")
            completed = [e for e in events if e["t"] == "step.completed"]
            ids = Counter(e["step_id"] for e in completed)
            if sorted(ids) != [f"s{i}" for i in range(STEPS)] or set(ids.values()) != {1}:
                anomalies.append(f"{record.id} recorded steps {dict(ids)}")
            for event in completed:
                recorded_steps += 1
                pids = runs[(record.id, event["step_id"])]
                most_runs = max(most_runs, len(pids))
                if not 1 <= len(pids) <= kills + 1:
                    anomalies.append(f"{record.id} {event['step_id']} ran {len(pids)} times")
                if event["result"] not in pids:
                    anomalies.append(f"{record.id} {event['step_id']}: result not among runs")
    finally:
        store.close()
    step_runs = sum(len(p) for p in runs.values())
    return {
        "executions": len(executions),
        "statuses": dict(statuses),
        "recorded_steps": recorded_steps,
        "step_runs": step_runs,
        "step_reruns": step_runs - recorded_steps,
        "most_runs_of_one_step": most_runs,
        "anomalies": anomalies,
    }


if __name__ == "__main__":
    sys.exit(main())
