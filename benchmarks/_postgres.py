"""``python -m benchmarks --postgres DSN``: durably and DBOS on one PostgreSQL server.

durably on a ``PostgresStore`` and DBOS Transact with its system database on the same
server (its production configuration), on the peer comparison's two shapes (one 10-step
workflow at a time; many executions x 10 steps at once), beside raw PostgreSQL limits
measured in the same run with psycopg and no durably code: single-row synced commits/s,
and rows/s in 1,000-row transactions. Every repeat, durably's, DBOS's and each
baseline's, gets a database of its own (``CREATE DATABASE``), dropped after it; DBOS runs
in a process of its own per repeat (``_dbos_peer``). ``--postgres auto`` starts a
throw-away server with ``.ci/postgres`` and stops it at the end.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import trio

import durably

from . import _baselines, _peers, _workflows
from ._workflows import ALL

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_ROOT, ".ci", "postgres")
_names = itertools.count()
#: A durably-pg / DBOS-pg ratio each shape is held to (None: reported only).
TARGETS = {"sequential": None, "concurrent": 30.0}
WHAT = {
    "sequential": "one 10-step workflow at a time",
    "concurrent": "executions x 10 steps started at once",
}
BASELINES = {
    "sequential": ("raw PostgreSQL single-row synced commits (autocommit INSERT)", "commits/s"),
    "concurrent": ("raw PostgreSQL rows in 1,000-row synced COPY transactions", "rows/s"),
}


# --- the server and its databases -------------------------------------------------------


@contextmanager
def server(given: str, say: Callable[[str], None]) -> Iterator[str]:
    """The DSN to measure on: ``given``, or for ``auto`` a throw-away cluster started by
    ``.ci/postgres`` and stopped (and removed) when the block ends."""
    if given != "auto":
        yield given
        return
    started = subprocess.run([_SCRIPT, "start"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        raise SystemExit(f".ci/postgres start failed: {started.stderr.strip()}")
    env = dict(
        line.removeprefix("export ").replace("'", "").split("=", 1)
        for line in started.stdout.splitlines()
    )
    say(f"started a throw-away PostgreSQL in {env['DURABLY_TEST_POSTGRES_DIR']}")
    try:
        yield env["DURABLY_TEST_POSTGRES"]
    finally:
        subprocess.run([_SCRIPT, "stop", env["DURABLY_TEST_POSTGRES_DIR"]], timeout=120)


def with_database(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name``, a URI still if it was one (``Engine`` tells a DSN
    from a path by its ``postgresql://``)."""
    from urllib.parse import urlsplit

    from psycopg.conninfo import make_conninfo

    if not dsn.startswith(("postgresql://", "postgres://")):
        return make_conninfo(dsn, dbname=name)
    parts = urlsplit(dsn)
    return f"{parts.scheme}://{parts.netloc}/{name}" + (f"?{parts.query}" if parts.query else "")


def url_for(dsn: str) -> str:
    """``dsn`` as the ``postgresql://`` URL DBOS (SQLAlchemy) reads; a unix-socket host
    travels as ``?host=``, which psycopg takes as it is."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    host, port = parts.pop("host", None), parts.pop("port", None)
    url = URL.create(
        "postgresql",
        username=parts.pop("user", None),
        password=parts.pop("password", None),
        host=None if host is None or host.startswith("/") else host,
        port=None if port is None else int(port),
        database=parts.pop("dbname", None),
        query={**parts, **({"host": host} if host and host.startswith("/") else {})},
    )
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_database(dsn: str, what: str) -> Iterator[str]:
    """A new, empty database on ``dsn``'s server for one repeat, dropped after it."""
    import psycopg

    name = f"durably_bench_{what}_{os.getpid()}_{next(_names)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe_server(dsn: str) -> dict[str, Any]:
    """The server's version and the settings that decide a commit's cost."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        show = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
        }
        show["unix_socket"] = str(conn.info.host).startswith("/")
    return show


# --- raw baselines: psycopg 3, no durably code ------------------------------------------

#: The shape of durably's one table (``durably_kv``), so the rows cost what its rows cost.
_TABLE = (
    'CREATE TABLE raw (tbl text COLLATE "C" NOT NULL, k bytea NOT NULL, v bytea NOT NULL, '
    "PRIMARY KEY (tbl, k))"
)


def raw_single_commits(dsn: str, n: int) -> float:
    """Synced commits/s, one row per transaction: each INSERT is its own transaction
    (autocommit), so one round trip and one WAL flush each, the least a commit costs."""
    import psycopg

    with fresh_database(dsn, "raw") as db, psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(_TABLE)
        insert = "INSERT INTO raw (tbl, k, v) VALUES ('events', %b, %b)"
        started = time.perf_counter()
        for i in range(n):
            conn.execute(insert, (b"e%016d" % i, _baselines._VALUE))
        return n / (time.perf_counter() - started)


def raw_batched_rows(dsn: str, txns: int, per_txn: int = 1000) -> float:
    """Rows/s in synced transactions of ``per_txn`` rows, each loaded by ``COPY`` (the
    fastest way in; about as fast as one ``INSERT`` of ``unnest``ed arrays, and three
    times ``executemany``'s pipelined inserts, measured here)."""
    import psycopg

    with fresh_database(dsn, "raw") as db, psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(_TABLE)
        key = 0
        started = time.perf_counter()
        for _ in range(txns):
            with conn.transaction(), conn.cursor().copy("COPY raw (tbl, k, v) FROM STDIN") as cp:
                for _ in range(per_txn):
                    cp.write_row(("events", b"e%016d" % key, _baselines._VALUE))
                    key += 1
        return txns * per_txn / (time.perf_counter() - started)


# --- durably on PostgresStore ------------------------------------------------------------


async def run_shape(
    store: Any, shape: str, n: int, window: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> tuple[float, Any]:
    """``n`` runs of the 10-step workflow on an engine over ``store``, one at a time
    (``sequential``) or all at once: the seconds they took (inside ``window()``) and the
    engine's commit statistics. The store is closed after."""
    try:
        async with durably.Engine(store, workflows=ALL) as engine:

            async def one() -> None:
                await engine.wait(await engine.start(_workflows.steps, 10))

            with window():
                started = time.perf_counter()
                if shape == "sequential":
                    for _ in range(n):
                        await one()
                else:
                    async with trio.open_nursery() as nursery:
                        for _ in range(n):
                            nursery.start_soon(one)
                elapsed = time.perf_counter() - started
            return elapsed, engine.statistics().commit
    finally:
        store.close()


def _durably(b: Any, dsn: str, shape: str) -> dict[str, Any]:
    """durably's repeats of ``shape``, each on a fresh database between two measurements
    of its baseline (their mean is the limit that repeat is compared with)."""
    from durably.stores import PostgresStore

    sequential = shape == "sequential"
    n: int = b.sizes["sequential_runs" if sequential else "concurrent"]

    def limit() -> float:
        if sequential:
            return raw_single_commits(dsn, b.sizes["raw_commits"])
        return raw_batched_rows(dsn, b.sizes["raw_batches"])

    samples, base, commits = [], [], []
    for r in range(b.repeats):
        before = limit()
        with fresh_database(dsn, "durably") as db:
            elapsed, stats = trio.run(run_shape, PostgresStore(db), shape, n)
        base.append((before + limit()) / 2)
        samples.append(n * 10 / elapsed)
        commits.append(stats.batches)
        b.say(
            f"durably-pg {shape} repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} steps/s in "
            f"{stats.batches:,} commits (raw {base[-1]:,.0f}/s)"
        )
    what, unit = BASELINES[shape]
    return {
        "what": WHAT[shape],
        **_figures(samples, "steps/s"),
        "runs" if sequential else "executions": n,
        "steps_per_run": 10,
        "commits": commits,
        "baseline": {"what": what, **_figures(base, unit)},
        "ratio": statistics.median(s / x for s, x in zip(samples, base, strict=True)),
        "ratio_is": "figure / raw (median over repeats)",
    }


# --- DBOS on PostgreSQL -------------------------------------------------------------------


def _dbos(b: Any, dsn: str, shape: str) -> dict[str, Any]:
    """DBOS's repeats of ``shape``, each in a process of its own on a fresh database."""
    n = b.sizes["sequential_runs" if shape == "sequential" else "concurrent"]
    samples = []
    for r in range(b.repeats):
        with fresh_database(dsn, "dbos") as db:
            got = _peers.dbos_once(shape, n, url_for(db))
        if isinstance(got, str):
            b.say(f"DBOS-pg {shape} failed: {got.replace(chr(10), ' | ')}")
            return {"error": got}
        samples.append(got)
        b.say(f"DBOS-pg {shape} repeat {r + 1}/{b.repeats}: {samples[-1]:,.0f} steps/s")
    size = "runs" if shape == "sequential" else "executions"
    return {"what": WHAT[shape], **_figures(samples, "steps/s"), size: n}


def _figures(samples: list[float], unit: str) -> dict[str, Any]:
    return {
        "unit": unit,
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


# --- the section ----------------------------------------------------------------------------


def run(b: Any, given: str, peers: bool = True) -> dict[str, Any]:
    """The PostgreSQL section of the report: durably-pg and (with ``peers``) DBOS-pg on
    each shape, their baselines, and the ratio of the two."""
    out: dict[str, Any] = {"shapes": {}}
    with server(given, b.say) as dsn:
        out["server"] = describe_server(dsn)
        out["server"]["started_by_harness"] = given == "auto"
        dbos = "not installed; pip install -e '.[bench]'"
        if not peers:
            dbos = "--no-peers"
        elif importlib.util.find_spec("dbos") is not None:
            dbos = ""
        for shape in ("sequential", "concurrent"):
            figures: dict[str, Any] = {"durably": _durably(b, dsn, shape)}
            figures["dbos"] = _dbos(b, dsn, shape) if not dbos else {"skipped": dbos}
            if "median" in figures["dbos"]:
                ratio = figures["durably"]["median"] / figures["dbos"]["median"]
                target = TARGETS[shape]
                figures["durably_over_dbos"] = {
                    "ratio": ratio,
                    "target": None if target is None else f">= {target:g} x DBOS-pg",
                    "met": None if target is None else ratio >= target,
                }
            out["shapes"][shape] = figures
    return out


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def lines(section: dict[str, Any]) -> list[str]:
    """The section's rows for the printed table."""
    out = []
    for shape, f in section.get("shapes", {}).items():
        ours = f["durably"]
        out.append(
            f"postgres durably {shape}: {_fmt(ours['median'])} steps/s "
            f"({ours['ratio']:.2f} x raw {_fmt(ours['baseline']['median'])} "
            f"{ours['baseline']['unit']})"
        )
        peer = f["dbos"]
        if "median" in peer:
            versus = f["durably_over_dbos"]
            met = {True: ", met", False: ", NOT met", None: ""}[versus["met"]]
            target = f"; target {versus['target']}{met}" if versus["target"] else ""
            out.append(
                f"postgres dbos {shape}: {_fmt(peer['median'])} steps/s "
                f"(durably {versus['ratio']:.1f}x{target})"
            )
        else:
            out.append(f"postgres dbos {shape}: {peer.get('skipped') or peer.get('error')}")
    return out


def markdown_rows(section: dict[str, Any]) -> list[str]:
    """The section's rows for ``--markdown``'s table (its seven columns)."""
    out = []
    for shape, f in section.get("shapes", {}).items():
        ours, base = f["durably"], f["durably"]["baseline"]
        out.append(
            f"| postgres durably {shape} | {_fmt(ours['median'])} steps/s | {_fmt(ours['min'])} "
            f"- {_fmt(ours['max'])} | {_fmt(base['median'])} {base['unit']} ({base['what']}) "
            f"| {ours['ratio']:.2f} ({ours['ratio_is']}) | | - |"
        )
        peer, versus = f["dbos"], f.get("durably_over_dbos")
        if "median" in peer and versus is not None:
            met = {True: "yes", False: "**no**", None: "-"}[versus["met"]]
            out.append(
                f"| postgres dbos {shape} | {_fmt(peer['median'])} steps/s | {_fmt(peer['min'])} "
                f"- {_fmt(peer['max'])} | | durably {versus['ratio']:.1f}x "
                f"| {versus['target'] or ''} | {met} |"
            )
    return out
