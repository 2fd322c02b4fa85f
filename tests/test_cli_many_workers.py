"""``durably worker --many-workers``: real worker processes of one LMDB store, a client's
starts spread over them, ``durably workers`` listing them, and the others taking over
when one is SIGKILLed (after the lease period) or stopped by SIGTERM (at once).

Waits are for conditions read from the store (and bounded), never fixed sleeps."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from test_worker import DURABLY, ROOT, Worker, until

import durably
from durably.core._shards import SHARDS, shard_of
from durably.stores import LmdbStore

pytestmark = pytest.mark.slow

LEASE = "1.0"


@pytest.fixture
def many(tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(
            tmp_path, tmp_path / "store", "many_options", "--many-workers", "--lease-seconds", LEASE
        )
        started.append(worker)
        worker.wait_for("worker ready")
        return worker

    yield start
    for worker in started:
        worker.kill()


def holders(store: Path) -> dict[str, int]:
    """Live shard counts per worker, read from the store as a client reads it."""
    db = LmdbStore(store, lock=False)
    try:
        wall = int(time.time() * 1000)
        counts: dict[str, int] = {}
        for lease in db.leases():
            if lease.expires_ms >= wall:
                counts[lease.worker] = counts.get(lease.worker, 0) + 1
        return counts
    finally:
        db.close()


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DURABLY, "--store", str(store), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _start_and_wait(store: Path, count: int) -> list[str]:
    async with durably.Client(store) as client:
        ids = [await client.start("quick", n) for n in range(count)]
        for n, eid in enumerate(ids):
            assert await client.wait(eid, timeout=60) == n
        return ids


def test_starts_spread_and_a_killed_worker_is_taken_over(
    tmp_path: Path, many: Callable[[], Worker]
) -> None:
    store = tmp_path / "store"
    a, b = many(), many()
    until(lambda: sorted(holders(store).values()) == [SHARDS // 2] * 2, 30, "a fair split")
    listed = json.loads(cli(store, "workers", "--json").stdout)
    assert [len(w["shards"]) for w in listed["workers"]] == [SHARDS // 2] * 2
    assert all(w["live"] for w in listed["workers"])
    ids = trio.run(_start_and_wait, store, 40)
    owners = {w["worker"]: set(w["shards"]) for w in listed["workers"]}
    ran_by = {name for name, shards in owners.items() for eid in ids if shard_of(eid) in shards}
    assert len(ran_by) == 2, "a client's starts reach both workers"

    b.kill()  # SIGKILL: its leases run out, then a takes them over
    until(lambda: list(holders(store).values()) == [SHARDS], 15, "a takes every shard")
    text = cli(store, "workers").stdout
    assert f"{SHARDS} shards" in text
    trio.run(_start_and_wait, store, 10)
    assert a.proc.poll() is None


def test_a_stopped_worker_hands_its_shards_over_at_once(
    tmp_path: Path, many: Callable[[], Worker]
) -> None:
    store = tmp_path / "store"
    a, b = many(), many()
    until(lambda: sorted(holders(store).values()) == [SHARDS // 2] * 2, 30, "a fair split")
    assert b.stop() == 0  # SIGTERM: drained, leases released on the way out
    until(lambda: list(holders(store).values()) == [SHARDS], 5, "a takes every shard")
    trio.run(_start_and_wait, store, 5)
    assert a.proc.poll() is None


def test_the_one_worker_refuses_a_store_served_by_many(
    tmp_path: Path, many: Callable[[], Worker]
) -> None:
    store = tmp_path / "store"
    many()
    one = Worker(tmp_path, store, "many_options")
    assert one.proc.wait(30) == 4  # the store refused: held by workers of many
    assert "many_workers=True" in one.log.read_text()


def test_lease_seconds_needs_many_workers(tmp_path: Path) -> None:
    done = cli(tmp_path, "worker", "tests.worker_app:options", "--lease-seconds", "2")
    assert done.returncode == 2
    assert "--many-workers" in done.stderr


def test_processes_runs_a_group_that_restarts_a_killed_worker(tmp_path: Path) -> None:
    import os
    import signal

    store = tmp_path / "store"
    log = tmp_path / "group.log"
    with log.open("w") as stderr:
        group = subprocess.Popen(
            [
                DURABLY,
                "worker",
                "tests.worker_app:many_options",
                "--store",
                str(store),
                "--processes",
                "2",
                "--lease-seconds",
                LEASE,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        until(lambda: sorted(holders(store).values()) == [SHARDS // 2] * 2, 60, "two workers")
        first = set(holders(store))
        victim = int(sorted(first)[0].split("-")[-2])  # host-pid-random
        os.kill(victim, signal.SIGKILL)
        # Its shards go to the other after the lease; the group starts a new worker,
        # which takes half of them back.
        until(
            lambda: len(holders(store)) == 2 and set(holders(store)) != first,
            60,
            "a new worker in the group",
        )
        trio.run(_start_and_wait, store, 10)
        group.send_signal(signal.SIGTERM)
        assert group.wait(60) == 0, log.read_text()
        assert holders(store) == {}, "every lease released on the way out"
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()
