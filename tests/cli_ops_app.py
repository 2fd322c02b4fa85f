"""Workflows for the command-line tests (``tests/test_cli_ops.py`` and its siblings),
their worker, and the helpers the tests share.

``python tests/cli_ops_app.py STORE`` runs a worker on STORE, prints ``ready`` once it
serves the store, and runs until it is killed.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing
from click.testing import CliRunner, Result

import durably
from durably._cli import main
from durably.core._events import Event, decode_all
from durably.stores import ExecutionRecord, LmdbStore

GO = durably.Signal("go")


@durably.workflow("echo")
async def echo(ctx: durably.Context, data: Any) -> dict[str, Any]:
    return {"echo": data}


def fetch_feed(flag: str) -> str:
    if not os.path.exists(flag):
        raise RuntimeError("the feed is down")
    return "fetched"


@durably.workflow("fetch")
async def fetch(ctx: durably.Context, flag: str) -> dict[str, Any]:
    """Fails at step ``feed`` while ``flag`` is missing (no retries)."""
    return {"got": await ctx.step("feed", fetch_feed, flag)}


@durably.workflow("hold")
async def hold(ctx: durably.Context, data: Any) -> str:
    await ctx.wait_for_signal(GO, step_id="go")
    return "released"


def unbook(flag: str, booking: str) -> None:
    if not os.path.exists(flag):
        raise RuntimeError(f"cannot undo {booking}")


def decline() -> None:
    raise ValueError("card declined")


@durably.workflow("trip")
async def trip(ctx: durably.Context, flag: str) -> str:
    """Rolls back after its charge fails; the rollback fails while ``flag`` is missing."""
    await ctx.step("book", lambda: "booking-1", compensate=functools.partial(unbook, flag))
    try:
        await ctx.step("charge", decline)
    except durably.StepError:
        await ctx.rollback()
        return "rolled back"
    return "charged"


@durably.workflow("nap")
async def nap(ctx: durably.Context, seconds: float) -> str:
    await ctx.sleep(seconds, step_id="nap")
    return "rested"


@durably.workflow("tick")
async def tick(ctx: durably.Context, data: Any) -> dict[str, Any]:
    at = ctx.scheduled_at
    return {"data": data, "scheduled_at": None if at is None else at.isoformat()}


WORKFLOWS = [echo, fetch, hold, trip, nap, tick]


# --- the helpers -------------------------------------------------------------------------

#: The real console script of this environment.
SCRIPT = Path(sys.executable).parent / "durably"


def cli(
    *args: str,
    store: Path | None = None,
    stdin: str | None = None,
    tz: str = "UTC",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``durably ARGS`` in a subprocess, with ``TZ`` and ``USER`` set."""
    environ = {**os.environ, "TZ": tz, "USER": "ana", **(env or {})}
    environ.pop("DURABLY_STORE", None)
    if store is not None:
        environ["DURABLY_STORE"] = str(store)
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=90,
        check=False,
    )


def invoke(store: Path, *args: str, stdin: str | None = None) -> Result:
    """``durably --store STORE ARGS`` in this process: for the many quick refusals (each
    command opens and closes its own client, as the console script does)."""
    argv = ["--store", str(store), *args]
    return CliRunner().invoke(main, argv, input=stdin, env={"USER": "ana"})


def new_store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    LmdbStore(path).close()
    return path


def engine_run(store: Path, body: Callable[[durably.Engine], Awaitable[Any]]) -> Any:
    """``body(engine)`` in a worker of ``store`` in this process, in virtual time."""

    async def main() -> Any:
        lmdb = LmdbStore(store, inline=True)
        try:
            async with durably.Engine(lmdb, workflows=WORKFLOWS) as engine:
                with trio.fail_after(600):  # virtual seconds
                    return await body(engine)
        finally:
            lmdb.close()

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def read(store: Path, eid: str) -> tuple[ExecutionRecord, list[Event]]:
    """The record and the log, read as they are now (beside a worker, too)."""
    reader = LmdbStore(store, readonly=True)
    try:
        record = reader.get_execution(eid)
        events = decode_all(reader.read_events(eid), eid)
    finally:
        reader.close()
    assert record is not None, eid
    return record, events


def until(store: Path, eid: str, *statuses: str, within: float = 30.0) -> ExecutionRecord:
    """The record once its status is one of ``statuses`` (a worker in another process)."""
    deadline = time.monotonic() + within
    while True:
        record, _ = read(store, eid)
        if record.status in statuses:
            return record
        assert time.monotonic() < deadline, f"{eid} is {record.status}, not {statuses}"
        time.sleep(0.02)


@contextmanager
def worker(store: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker of ``store`` in its own process, serving it once this yields."""
    log = store.parent / "worker.log"  # a file, not a pipe nobody drains
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, str(store)], stdout=subprocess.PIPE, stderr=err
        )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", log.read_text()
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def _worker(store: str) -> None:
    async with durably.Engine(store, workflows=WORKFLOWS, poll_interval=0.2):
        print("ready", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(_worker, sys.argv[1])
