"""The command line on a PostgreSQL store, named by its DSN: list and show what a worker
ran, start and signal through the store, and the commands that read LMDB files only
(check, backup) say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trio

import durably

pytestmark = pytest.mark.slow


@durably.workflow("cli-pg")
async def greet(ctx: durably.Context, name: str) -> str:
    await ctx.step("hello", lambda: f"hello {name}")
    return f"bye {name}"


def durably_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DURABLY_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "durably", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_list_show_and_start_on_a_postgres_store(postgres_dsn: str) -> None:
    async def work() -> str:
        async with durably.Engine(postgres_dsn, workflows=[greet]) as engine:
            eid = await engine.start(greet, "ana")
            assert await engine.wait(eid) == "bye ana"
            return eid

    eid = trio.run(work)
    listing = durably_cli("--store", postgres_dsn, "list")
    assert listing.returncode == 0, listing.stderr
    [line] = listing.stdout.splitlines()
    assert line.split()[0] == eid and "completed" in line and "cli-pg" in line
    show = durably_cli("--store", postgres_dsn, "show", eid, "--json")
    assert show.returncode == 0, show.stderr
    detail = json.loads(show.stdout)
    assert detail["execution"]["status"] == "completed"
    assert detail["execution"]["result"] == "bye ana"
    # A start by name with no worker running: it waits in the store for the next one.
    start = durably_cli("--store", postgres_dsn, "start", "cli-pg", '"bo"')
    assert start.returncode == 0, start.stderr
    queued = json.loads(durably_cli("--store", postgres_dsn, "list", "--json").stdout)
    assert [e["status"] for e in queued] == ["completed", "pending"]
    check = durably_cli("check", "--store", postgres_dsn)
    assert check.returncode == 2 and "pg_dump" in check.stderr


def test_a_database_without_a_store_is_not_found(postgres_dsn: str) -> None:
    listing = durably_cli("--store", postgres_dsn, "list")
    assert listing.returncode == 3, listing.stderr
    assert "no durably store" in listing.stderr and "typo" in listing.stderr
