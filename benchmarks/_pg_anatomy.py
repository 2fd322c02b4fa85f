"""Where durably's time goes on PostgreSQL: ``python -m benchmarks._pg_anatomy DSN [N]``.

Runs the PostgreSQL section's shapes once each on a fresh database over a
``PostgresStore`` that times its own calls (each write batch and its round trips, each
read and the thread it blocked) and counts the rows the server wrote; times one commit
in the store's own SQL shape, step by step from a bare INSERT, with no durably code;
runs the concurrent shape again under cProfile; and prints one JSON object. Not part of
the timed section: the timing wrapper and cProfile cost CPU of their own; the counts and
the shares are what it is for.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from durably.stores import PostgresStore

from ._baselines import _VALUE
from ._postgres import _TABLE, fresh_database, run_shape

#: The store's reads the engine may make while the shapes run.
_READS = ("get_execution", "read_events", "mailbox", "list_executions", "due_timers")


class TimedStore(PostgresStore):
    """A PostgresStore that notes the count and seconds of each call, by name and by
    thread (``loop``: trio's thread, whose every blocking call stalls every execution)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.round_trips: list[int] = []
        self.ops: list[int] = []
        for name in (*_READS, "apply"):
            setattr(self, name, self._timed(name, getattr(super(), name)))

    def _timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            where = "loop" if threading.current_thread() is threading.main_thread() else "thread"
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                noted = self.calls[f"{name} ({where})"]
                noted[0] += 1
                noted[1] += time.perf_counter() - started
                if name == "apply":
                    self.round_trips.append(self.last_round_trips)
                    self.ops.append(len(args[0]))

        return timed


def _shape(
    dsn: str, shape: str, n: int, profiler: cProfile.Profile | None = None
) -> dict[str, Any]:
    store = TimedStore(dsn)

    @contextmanager
    def window() -> Iterator[None]:
        # Only the timed runs: not the engine's start (its recovery reads) nor its close.
        store.calls.clear()
        store.round_trips.clear()
        store.ops.clear()
        if profiler is not None:
            profiler.enable()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.disable()

    elapsed, _ = trio.run(run_shape, store, shape, n, window)
    return {
        "shape": shape,
        "executions": n,
        "elapsed_s": elapsed,
        "steps_per_s": n * 10 / elapsed,
        "batches": len(store.round_trips),
        "round_trips_per_batch": sorted(set(store.round_trips)),
        "ops_per_batch_max": max(store.ops),
        "calls": {
            name: {"count": c, "ms": s * 1000, "ms_each": s * 1000 / c, "share": s / elapsed}
            for name, (c, s) in sorted(store.calls.items())
        },
    }


def _written(dsn: str) -> int:
    """Rows the server has inserted, updated or deleted in ``dsn``'s database so far."""
    import psycopg

    time.sleep(0.5)  # (a closing backend reports its counts; give it the moment)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


_PREFETCH = (
    "SELECT r.tbl, r.k, kv.v FROM unnest(%b::text[], %b::bytea[]) AS r(tbl, k) "
    "LEFT JOIN raw kv ON kv.tbl = r.tbl AND kv.k = r.k"
)
_UPSERT = (
    "INSERT INTO raw (tbl, k, v) SELECT * FROM unnest(%b::text[], %b::bytea[], "
    "%b::bytea[]) ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v"
)


def _insert(conn: Any, key: bytes) -> None:
    conn.execute("INSERT INTO raw (tbl, k, v) VALUES ('events', %b, %b)", (key, _VALUE))


def _upsert(conn: Any, key: bytes) -> None:
    conn.execute(_UPSERT, (["events"], [key], [_VALUE]))


def _locked(conn: Any, key: bytes, prefetch: bool = False) -> None:
    with conn.pipeline():
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        conn.execute("SELECT pg_advisory_xact_lock(1)")
        if prefetch:  # the answer is waited for: a round trip of its own
            conn.execute(_PREFETCH, (["meta"], [key]), binary=True).fetchall()
        conn.execute(_UPSERT, (["events"], [key], [_VALUE]))
        conn.execute("COMMIT")


def _read(conn: Any, key: bytes) -> None:
    conn.execute("SELECT v FROM raw WHERE tbl = 'events' AND k = %b", (key,)).fetchall()


def commit_shapes(dsn: str, n: int) -> dict[str, float]:
    """Microseconds per synced commit of one row, from a plain INSERT up to
    ``PostgresStore``'s own shape (BEGIN, the writer lock and the prefetch in one round
    trip, the upsert and COMMIT in a second), and of one point read; psycopg on a table
    like ``durably_kv``, no durably code."""
    import psycopg

    shapes: dict[str, Callable[[Any, bytes], None]] = {
        "insert, autocommit (1 round trip)": _insert,
        "unnest upsert, autocommit (1 round trip)": _upsert,
        "BEGIN, lock, upsert, COMMIT (1 round trip)": _locked,
        "the store's: + prefetch (2 round trips)": lambda c, k: _locked(c, k, prefetch=True),
        "a point read (1 round trip, no commit)": _read,
    }
    out = {}
    for name, body in shapes.items():
        with fresh_database(dsn, "raw") as db, psycopg.connect(db, autocommit=True) as conn:
            conn.execute(_TABLE)
            _insert(conn, b"e%016d" % 0)  # (the point read finds a row)
            started = time.perf_counter()
            for i in range(1, n + 1):
                body(conn, b"e%016d" % (0 if body is _read else i))
            out[name] = (time.perf_counter() - started) / n * 1e6
    return out


def _profile(dsn: str, n: int) -> list[dict[str, Any]]:
    """The concurrent shape under cProfile (trio's thread): the top functions by own time."""
    profiler = cProfile.Profile()
    with fresh_database(dsn, "anatomy") as db:
        _shape(db, "concurrent", n, profiler)
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    return [
        {
            "function": f"{path.rsplit('/', 2)[-1]}:{line} {name}",
            "calls": calls,
            "own_ms": own * 1000,
            "own_share": own / total,
            "cumulative_ms": cum * 1000,
        }
        for (path, line, name), (_, calls, own, cum, _) in rows[:25]
    ]


def main(dsn: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, size in (("sequential", max(1, n // 5)), ("concurrent", n)):
        with fresh_database(dsn, "anatomy") as db:
            out[shape] = _shape(db, shape, size)
            # (counted once the store's connections have closed, which reports them;
            # the store's creation of its tables adds a few dozen catalog rows)
            out[shape]["rows_written"] = _written(db)
    out["commit_us"] = commit_shapes(dsn, 1000)
    out["profile_concurrent"] = _profile(dsn, n)
    return out


if __name__ == "__main__":
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    print(json.dumps(main(sys.argv[1], size), indent=1))
