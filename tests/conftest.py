"""Shared fixtures: every store kind, a PostgreSQL server, and Hypothesis profiles.

``HYPOTHESIS_PROFILE=thorough`` runs the property tests with many more examples (nightly);
the default ``ci`` profile keeps the whole suite within the CI budget.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import durably
from durably.stores import LmdbStore, MemoryStore, Store

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["memory", "lmdb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes stores of one kind; an LMDB factory reopens the same path each call.

    LMDB stores are ``inline`` so that tests can run under trio's MockClock (autojump
    would otherwise run ahead of the commit thread).
    """
    opened: list[Store] = []
    memory = MemoryStore() if request.param == "memory" else None

    def make() -> Store:
        if memory is not None:
            return memory
        for old in opened:
            old.close()
        store = LmdbStore(tmp_path / "store", inline=True, map_size=1 << 20)
        opened.append(store)
        return store

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


Settle = Callable[..., Awaitable[durably.Execution]]


@pytest.fixture
def clock() -> durably.Clock:
    """One engine clock for every engine of a test, so virtual time stays consistent."""
    return durably.Clock(datetime(2030, 1, 1, tzinfo=UTC))


async def _settle(engine: durably.Engine, execution_id: str, *wanted: str) -> durably.Execution:
    # Subscribed before reading the record, so a change in between is not missed.
    async with engine.subscribe(emits=False, audit=True, execution_id=execution_id) as sub:
        execution = await engine.get_execution(execution_id)
        if execution.status in wanted:
            return execution
        async for entry in sub:
            if entry.kind == "status_changed" and entry.data["status"] in wanted:
                return await engine.get_execution(execution_id)
    raise AssertionError(f"the engine stopped before {execution_id} became {wanted}")


@pytest.fixture
def settle() -> Settle:
    """``await settle(engine, eid, "waiting", ...)``: wait (on the bus) for a status."""
    return _settle


# --- PostgreSQL, for PostgresStore ------------------------------------------------------

POSTGRES_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "postgres"
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of a PostgreSQL server for the tests: ``DURABLY_TEST_POSTGRES`` if set
    (CI's), else a throw-away cluster started here by ``.ci/postgres`` and stopped after
    the run; without PostgreSQL's binaries, the tests that need it are skipped."""
    pytest.importorskip("psycopg", reason="PostgresStore needs durably[postgres]")
    given = os.environ.get("DURABLY_TEST_POSTGRES")
    if given:
        yield given
        return
    started = subprocess.run(
        [str(POSTGRES_SCRIPT), "start"], capture_output=True, text=True, timeout=120
    )
    if started.returncode == 3:  # no binaries
        pytest.skip(
            f"PostgreSQL is not installed ({started.stderr.strip()}); install it, or run "
            '`eval "$(.ci/postgres start)"` to give the tests a server'
        )
    assert started.returncode == 0, f".ci/postgres start failed: {started.stderr}"
    env = dict(
        line.removeprefix("export ").replace("'", "").split("=", 1)
        for line in started.stdout.splitlines()
    )
    try:
        yield env["DURABLY_TEST_POSTGRES"]
    finally:
        subprocess.run(
            [str(POSTGRES_SCRIPT), "stop", env["DURABLY_TEST_POSTGRES_DIR"]], timeout=120
        )


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the test server for this test, dropped after it."""
    import psycopg

    name = f"durably_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name``, a URI still if it was one (``Engine`` and the
    command line tell a DSN from a path by its ``postgresql://``)."""
    from urllib.parse import urlsplit

    from psycopg.conninfo import make_conninfo

    if not dsn.startswith(("postgresql://", "postgres://")):
        return make_conninfo(dsn, dbname=name)
    parts = urlsplit(dsn)
    return f"{parts.scheme}://{parts.netloc}/{name}" + (f"?{parts.query}" if parts.query else "")
