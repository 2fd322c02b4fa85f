"""Many worker processes on one store: the concurrent workload (executions x 10 steps)
served by worker processes of many (``Engine(many_workers=True)``), N = 1 and N = the
cores, beside the store's one worker (``many_workers=False``, today's default), every
mode in processes of its own over a fresh synced LMDB store, in the same repeat, and
beside the machine's own parallelism: the same number of processes running pure Python
work of a fixed size (``spin``, no engine, no store).

The clock starts only when every worker holds its fair share of the shards (its own
check of the store's leases), at the harness's go on every worker's stdin; then each
worker starts its share of the executions with ``engine.start`` (inside its own shards:
no inbox, no hints), all at once in a nursery, and waits for them. The window ends at
the last completion in any worker (each reports its own on the shared monotonic clock).
The workers stay up until every one has finished, so no lease moves mid-run.

The subject is the use of the cores, which the machine shares: the CPU the rest of it
used during each window is read from ``/proc/stat`` (its busy time less the workers'
own), and a measurement during which it used more than ``QUIET_CORES`` is taken again
(up to 3 tries, 1 with ``--quick``; the quietest is kept, every try is reported).

Where the time goes, per worker and over the window: CPU (``getrusage``: user, system,
context switches), commits (``engine.statistics().commit``), the time trio's loop sat
idle, and LMDB's write lock: the store's environment is wrapped so that every write
transaction's wait for the lock (``begin(write=True)``), its hold (begin to the end of
the commit) and its commit (page writes and fsync) are timed.

``python -m benchmarks._multi PATH MODE EXECUTIONS WORKERS LEASE_S`` is one worker
(``MODE``: ``single``, ``many`` or ``spin``): it prints a JSON line when ready, reads
``go`` on stdin, prints a JSON line of its figures when its executions have completed,
and exits at the next line on stdin.
"""

from __future__ import annotations

import json
import os
import resource
import select
import statistics
import subprocess
import sys
import time
from typing import IO, Any

import trio

import durably
from durably.stores import LmdbStore

from . import _workflows
from ._scenarios import ALL, MAP_SIZE, Bench, Measured, poll_until

STEPS = 10
#: Loop turns of the ``spin`` mode per execution (about 0.3 ms of CPU here, as one is).
SPIN_PER_EXECUTION = 10_000
SHARDS = 64
#: Lease period of the workers of many (the engine's default).
LEASE_SECONDS = 5.0
#: Seconds a worker may take to be ready (balancing takes a few beats), and to finish.
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 300.0
#: A measurement is taken again (up to ``sizes["multi_process_attempts"]`` tries) when the
#: rest of the machine used more than this many cores during its window: the subject is
#: the use of the cores.
QUIET_CORES = 0.25
_WORKER = (sys.executable, "-m", "benchmarks._multi")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the worker process -------------------------------------------------------------------


class _TimedTxn:
    """A write transaction that adds its hold time (begin to the end of its commit) and
    its commit's (the fsync's) to its env's."""

    def __init__(self, txn: Any, env: _TimedEnv, began: float) -> None:
        self._txn, self._env, self._began = txn, env, began

    def __enter__(self) -> Any:
        return self._txn.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        ending = time.perf_counter()
        try:
            return self._txn.__exit__(*exc)
        finally:
            ended = time.perf_counter()
            self._env.hold_s += ended - self._began
            self._env.commit_s += ended - ending


class _TimedEnv:
    """An LMDB environment whose write transactions time their wait for the writer lock
    (shared by every process of the store) and how long they hold it."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.writes, self.wait_s, self.hold_s, self.commit_s = 0, 0.0, 0.0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("write"):
            return self._env.begin(*args, **kwargs)
        asked = time.perf_counter()
        txn = self._env.begin(*args, **kwargs)
        began = time.perf_counter()
        self.writes += 1
        self.wait_s += began - asked
        return _TimedTxn(txn, self, began)

    def figures(self) -> dict[str, float]:
        return {
            "writes": self.writes,
            "lock_wait_s": self.wait_s,
            "lock_hold_s": self.hold_s,
            "commit_s": self.commit_s,
        }


def _fair_share(workers: int) -> int:
    return -(-SHARDS // workers)


def _balanced(store: LmdbStore, me: str, mine: frozenset[int], workers: int) -> bool:
    """Every shard leased by one of ``workers`` live workers, none over its fair share,
    and this worker's leases the shards it runs."""
    now_ms = time.time() * 1000
    live = [lease for lease in store.leases() if lease.expires_ms > now_ms]
    held: dict[str, set[int]] = {}
    for lease in live:
        held.setdefault(lease.worker, set()).add(lease.shard)
    return (
        len(live) == SHARDS
        and len(held) == workers
        and all(len(s) <= _fair_share(workers) for s in held.values())
        and held.get(me) == set(mine)
    )


def _usage() -> dict[str, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": time.process_time(),
        "user_s": u.ru_utime,
        "system_s": u.ru_stime,
        "voluntary_switches": u.ru_nvcsw,
        "involuntary_switches": u.ru_nivcsw,
    }


class _Idle(trio.abc.Instrument):
    """The time trio's loop waited with no task runnable (every execution waiting for a
    commit: the lock, the fsync, or the commit thread's Python)."""

    def __init__(self) -> None:
        self.idle_s, self._since = 0.0, 0.0

    def before_io_wait(self, timeout: float) -> None:
        self._since = time.perf_counter() if timeout > 0 else 0.0

    def after_io_wait(self, timeout: float) -> None:
        if self._since:
            self.idle_s += time.perf_counter() - self._since
            self._since = 0.0


async def _run_share(engine: durably.Engine, env: _TimedEnv, n: int) -> dict[str, Any]:
    """Start ``n`` executions at once and wait for them all; what it took."""

    async def one() -> None:
        await engine.wait(await engine.start(_workflows.steps, STEPS))

    idle = _Idle()
    commit0, usage0, lock0 = engine.statistics().commit, _usage(), env.figures()
    trio.lowlevel.add_instrument(idle)
    go = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    done = time.monotonic()
    trio.lowlevel.remove_instrument(idle)
    commit, usage, lock = engine.statistics().commit, _usage(), env.figures()
    own = engine._ownership
    return {
        "go_seen": go,
        "done": done,
        "elapsed_s": done - go,
        "executions": n,
        "shards_at_end": None if own is None else len(own.shards),
        "commits": commit.batches - commit0.batches,
        "ops": commit.ops - commit0.ops,
        "largest_batch_ops": commit.largest_batch,
        "loop_idle_s": idle.idle_s,
        **{k: usage[k] - usage0[k] for k in usage},
        **{k: lock[k] - lock0[k] for k in lock},
    }


def _say(figures: dict[str, Any]) -> None:
    print(json.dumps(figures), flush=True)


def _spin(n: int) -> None:
    """The machine's own parallelism, no engine, no store: ``n`` units of pure Python
    work (each about the CPU of one execution of the workload) after the go."""
    _say({"worker": "spin", "pid": os.getpid(), "shards": None, "balanced_after_s": 0.0})
    sys.stdin.readline()
    usage0 = _usage()
    go = time.monotonic()
    x = 0
    for i in range(n * SPIN_PER_EXECUTION):
        x += i
    done = time.monotonic()
    usage = _usage()
    zero = dict.fromkeys(("commits", "ops", "writes", "lock_wait_s", "lock_hold_s"), 0)
    _say(
        {
            "go_seen": go,
            "done": done,
            "elapsed_s": done - go,
            "executions": n,
            **zero,
            "commit_s": 0,
            **{k: usage[k] - usage0[k] for k in usage},
        }
    )
    sys.stdin.readline()


async def _serve(path: str, mode: str, n: int, workers: int, lease_s: float) -> None:
    many = mode == "many"
    store = LmdbStore(path, map_size=MAP_SIZE, lock="shared" if many else True)
    env = store._env = _TimedEnv(store._env)  # type: ignore[assignment]
    options: dict[str, Any] = {"many_workers": True, "lease_seconds": lease_s} if many else {}
    try:
        async with durably.Engine(store, workflows=ALL, **options) as engine:
            own = engine._ownership
            waited = time.monotonic()
            if own is not None:
                await poll_until(lambda: _balanced(store, own.worker, own.shards, workers), 0.02)
            _say(
                {
                    "worker": "single" if own is None else own.worker,
                    "pid": os.getpid(),
                    "shards": None if own is None else len(own.shards),
                    "balanced_after_s": time.monotonic() - waited,
                }
            )
            await trio.to_thread.run_sync(sys.stdin.readline)  # go
            _say(await _run_share(engine, env, n))
            await trio.to_thread.run_sync(sys.stdin.readline)  # every worker is done
    finally:
        store.close()


# --- the harness ----------------------------------------------------------------------------


class _Lines:
    """JSON lines from a worker's stdout, read with a deadline (a hung worker fails the
    run with what it wrote on stderr instead of hanging it)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: str) -> None:
        self.proc, self.log, self._buf = proc, log, b""

    def next(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._fail(f"no answer within {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self._fail(f"exited with {self.proc.wait()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def _fail(self, what: str) -> None:
        with open(self.log, errors="replace") as fh:
            tail = fh.read()[-2000:]
        raise RuntimeError(f"multi_process worker {self.proc.pid} {what}; stderr:\n{tail}")


def _tell(procs: list[subprocess.Popen[bytes]], line: bytes) -> None:
    for proc in procs:
        stdin: IO[bytes] | None = proc.stdin
        assert stdin is not None
        stdin.write(line)
        stdin.flush()


def _shares(n: int, workers: int) -> list[int]:
    return [n // workers + (1 if i < n % workers else 0) for i in range(workers)]


def run_mode(b: Bench, mode: str, workers: int, n: int, lease_s: float) -> dict[str, Any]:
    """One measurement: ``workers`` processes of ``mode`` over a fresh store, ``n``
    executions in all; the window, the steps/s and every worker's figures."""
    path, started_at = b.store_path(f"multi-{mode}-{workers}"), time.time()
    procs: list[subprocess.Popen[bytes]] = []
    lines: list[_Lines] = []
    try:
        for i, share in enumerate(_shares(n, workers)):
            log = f"{path}-worker-{i}.err"
            with open(log, "wb") as err:
                procs.append(
                    subprocess.Popen(
                        [*_WORKER, path, mode, str(share), str(workers), str(lease_s)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        cwd=_ROOT,
                    )
                )
            lines.append(_Lines(procs[-1], log))
        ready = [w.next(READY_TIMEOUT) for w in lines]
        machine0, go = machine_cpu(), time.monotonic()
        _tell(procs, b"go\n")
        done = [w.next(RUN_TIMEOUT) for w in lines]
        machine1, read = machine_cpu(), time.monotonic()
        _tell(procs, b"exit\n")
        for proc in procs:
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    figures = _figures(mode, workers, n, max(d["done"] for d in done) - go, ready, done)
    figures["at"] = started_at
    # What else ran meanwhile: the machine's CPU time less the workers' own, and the time
    # the hypervisor gave to other guests, each in cores over the window.
    busy, steal = (after - before for before, after in zip(machine0, machine1, strict=True))
    figures["others_cores"] = max(0.0, busy - figures["cpu_s"]) / (read - go)
    figures["steal_cores"] = steal / (read - go)
    return figures


def machine_cpu() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy, and stolen by the hypervisor, since
    boot (``/proc/stat``; zeros where there is none)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _figures(
    mode: str,
    workers: int,
    n: int,
    elapsed: float,
    ready: list[dict[str, Any]],
    done: list[dict[str, Any]],
) -> dict[str, Any]:
    cpu = sum(d["cpu_s"] for d in done)
    return {
        "mode": mode,
        "workers": workers,
        "executions": n,
        "elapsed_s": elapsed,
        "steps_per_s": n * STEPS / elapsed,
        "cpu_s": cpu,
        "cpu_us_per_step": cpu / (n * STEPS) * 1e6,
        "cores_busy": cpu / elapsed,
        "commits": sum(d["commits"] for d in done),
        "lock_wait_s": sum(d["lock_wait_s"] for d in done),
        "lock_hold_s": sum(d["lock_hold_s"] for d in done),
        "commit_s": sum(d["commit_s"] for d in done),
        "loop_idle_s": sum(d.get("loop_idle_s", 0.0) for d in done),
        "go_spread_s": max(d["go_seen"] for d in done) - min(d["go_seen"] for d in done),
        "shards": [r["shards"] for r in ready],
        "balanced_after_s": max(r["balanced_after_s"] for r in ready),
        "per_worker": done,
    }


def _line(f: dict[str, Any]) -> str:
    busy = f"{f['cores_busy']:.2f} cores busy (others {f['others_cores']:.2f})"
    if f["mode"] == "spin":
        return f"{f['steps_per_s'] / STEPS:,.0f} units/s, {busy}"
    return (
        f"{f['steps_per_s']:,.0f} steps/s, {f['cpu_us_per_step']:.0f} us CPU/step, {busy}, "
        f"{f['commits']} commits, lock wait {f['lock_wait_s'] * 1000:.0f} ms, held "
        f"{f['lock_hold_s'] * 1000:.0f} ms ({f['commit_s'] * 1000:.0f} ms committing), "
        f"loop idle {f['loop_idle_s'] * 1000:.0f} ms"
    )


def workers_for(cores: int | None) -> int:
    """N = the cores (at least 2: on one core the comparison would be N=1 with itself)."""
    return max(2, cores or 1)


#: The modes of a repeat, by the key their runs are reported under.
_MODES = {
    "single": ("single", False),
    "one": ("many", False),
    "n": ("many", True),
    "spin_one": ("spin", False),
    "spin_n": ("spin", True),
}


def _quiet(f: dict[str, Any]) -> bool:
    """Whether the rest of the machine used at most ``QUIET_CORES`` during the window
    (one busy core beside even a single worker slowed it: shared caches, the host)."""
    return bool(f["others_cores"] <= QUIET_CORES)


def _quietest(b: Bench, label: str, mode: str, workers: int, n: int) -> dict[str, Any]:
    """A measurement taken while the rest of the machine was quiet (``_quiet``): up to
    ``multi_process_attempts`` tries, the quietest kept; every try's steps/s and the
    others' cores are kept beside it."""
    tries: list[dict[str, Any]] = []
    while len(tries) < b.sizes.get("multi_process_attempts", 1):
        tries.append(run_mode(b, mode, workers, n, LEASE_SECONDS))
        b.say(f"{label}: {mode} x {workers}: {_line(tries[-1])}")
        if _quiet(tries[-1]):
            break
    kept = min(tries, key=lambda f: f["others_cores"])
    kept["tries"] = [{k: f[k] for k in ("steps_per_s", "others_cores")} for f in tries]
    return kept


def multi_process(b: Bench) -> dict[str, Measured]:
    """Per repeat, in a rotating order: the one worker, 1 worker of many, N of many, and
    the machine's own parallelism (pure-Python work in 1 and in N processes)."""
    n, workers = b.sizes["multi_process"], workers_for(os.cpu_count())
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in _MODES}
    keys = list(_MODES)
    for r in range(b.repeats):
        for k in range(len(keys)):
            key = keys[(k + r) % len(keys)]
            mode, all_cores = _MODES[key]
            count = workers if all_cores else 1
            runs[key].append(_quietest(b, f"repeat {r + 1}/{b.repeats}", mode, count, n))
    rate = {key: [f["steps_per_s"] for f in fs] for key, fs in runs.items()}
    machine = [t / o for t, o in zip(rate["spin_n"], rate["spin_one"], strict=True)]
    # A repeat is quiet when the rest of the machine was quiet for both its figures.
    quiet = [_quiet(a) and _quiet(o) for a, o in zip(runs["n"], runs["one"], strict=True)]
    quiet_ratios = [t / o for t, o, q in zip(rate["n"], rate["one"], quiet, strict=True) if q]
    b.say(
        f"{workers} of many / 1 of many {_median_ratio(rate['n'], rate['one']):.2f}, "
        f"1 of many / single {_median_ratio(rate['one'], rate['single']):.2f}, "
        f"{workers} of many / single {_median_ratio(rate['n'], rate['single']):.2f}, "
        f"the machine's own {workers} / 1 {statistics.median(machine):.2f} (medians); "
        f"{len(quiet_ratios)} of {b.repeats} repeats quiet"
    )
    extra = {
        "executions": n,
        "steps_per_run": STEPS,
        "workers": workers,
        "cores": os.cpu_count(),
        "lease_seconds": LEASE_SECONDS,
        "quiet_cores": QUIET_CORES,
        "attempts": b.sizes.get("multi_process_attempts", 1),
        "single_steps_per_s": rate["single"],
        "n_over_single": [t / o for t, o in zip(rate["n"], rate["single"], strict=True)],
        "machine_parallel": machine,
        "machine_parallel_median": statistics.median(machine),
        "quiet_repeats": quiet,
        "ratio_quiet_median": statistics.median(quiet_ratios) if quiet_ratios else None,
        "runs": runs,
    }
    return {
        "multi_process": Measured(rate["n"], rate["one"], extra),
        "multi_process_one": Measured(rate["one"], rate["single"], {"executions": n}),
    }


def _median_ratio(top: list[float], bottom: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(top, bottom, strict=True))


if __name__ == "__main__":
    path_, mode_, n_, workers_, lease_ = sys.argv[1:6]
    if mode_ == "spin":
        _spin(int(n_))
    else:
        trio.run(_serve, path_, mode_, int(n_), int(workers_), float(lease_))
