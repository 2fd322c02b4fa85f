"""Entries 6, 7 and 8 at the engine's level: a full map grows, a full disk (a real tmpfs)
stops acknowledgements and recovers, and a corrupt record quarantines its execution."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
import trio

import durably
from durably.stores import LmdbStore

from ._helpers import events, lmdb_engine

# --- 6: map full ---------------------------------------------------------------------


async def test_06_map_full_grows_and_retries_transparently(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("bulky")
    async def bulky(ctx: durably.Context, n: int) -> int:
        for i in range(4):
            await ctx.step(f"s{i}", lambda: "x" * 20_000)
        return n

    small = 256 * 1024
    async with lmdb_engine(tmp_path / "s", [bulky], store_options={"map_size": small}) as engine:
        ids = [await engine.start(bulky, n) for n in range(40)]  # ~3.2 MB of results
        assert [await engine.wait(eid) for eid in ids] == list(range(40))
        store = engine.store
        assert isinstance(store, LmdbStore)
        assert store.map_size() > small


async def test_06_map_ceiling_is_a_clear_error_and_the_engine_carries_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("tiny")
    async def tiny(ctx: durably.Context, data: str) -> int:
        return len(data)

    options = {"map_size": 128 * 1024, "max_map_size": 256 * 1024}
    async with lmdb_engine(tmp_path / "s", [tiny], store_options=options) as engine:
        with pytest.raises(durably.StoreFullError, match="max_map_size"):
            for _ in range(100):
                await engine.start(tiny, "y" * 50_000)
        # Nothing half-written: a small start still goes through and completes.
        result = await engine.start_and_wait(tiny, "ok")
        assert result.data == 2


# --- 7: disk full --------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, mounted for the test and removed after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount(8) here: cannot create a small filesystem")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused ({proc.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the filesystem with a ballast file until it refuses; return the file."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


async def test_07_disk_full_stops_acknowledging_and_recovers(
    small_disk: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    ran: dict[str, int] = {}

    async def work(key: str) -> str:
        ran[key] = ran.get(key, 0) + 1
        await gate.wait()
        return "y" * 2000

    @durably.workflow("filler")
    async def filler(ctx: durably.Context, n: int) -> int:
        for i in range(5):
            await ctx.step(f"s{i}", work, f"{n}.{i}")
        return n

    store_dir = small_disk / "store"
    options = {"store_options": {"map_size": 8 << 20}, "store_retry_seconds": 0.05}
    acked: list[str] = []
    async with lmdb_engine(store_dir, [filler], **options) as engine:
        for n in range(10):
            acked.append(await engine.start(filler, n))
        await trio.sleep(0.05)  # every execution is inside its first step
        ballast = _fill(small_disk)
        gate.set()
        # New starts are refused with a clear error: nothing acknowledged.
        with pytest.raises(durably.StoreFullError, match="full"):
            for n in range(10, 200):
                acked.append(await engine.start(filler, n))
        refused = len(acked)
        # Running executions stall (their records were refused), the engine stays up.
        await trio.sleep(0.3)
        views = [await engine.get_execution(eid) for eid in acked]
        assert not any(v.status is durably.Status.COMPLETED for v in views)
        # Space returns: the stalled executions are retried and complete.
        ballast.unlink()
        with trio.fail_after(30):
            results = [await engine.wait(eid) for eid in acked]
        assert results == list(range(refused))
        assert (await engine.start_and_wait(filler, 999)).data == 999
    # Reopened, nothing acknowledged is missing; each step is recorded exactly once.
    for eid in acked:
        log = events(store_dir, eid)
        steps = [e["step_id"] for e in log if e["t"] == "step.completed"]
        assert steps == [f"s{i}" for i in range(5)]
        assert [e["t"] for e in log].count("completed") == 1


# --- 8: corruption -------------------------------------------------------------------


def _rewrite(store_dir: Path, table: str, key: bytes, change: object) -> None:
    """Change one stored value in place through the lmdb module (the engine is closed)."""
    env = lmdb.open(str(store_dir), max_dbs=16)
    try:
        db = env.open_db(table.encode(), create=False)
        with env.begin(write=True, db=db) as txn:
            raw = txn.get(key)
            assert raw is not None
            txn.put(key, change(bytearray(raw)))  # type: ignore[operator]
    finally:
        env.close()


def _flip(raw: bytearray) -> bytes:
    raw[-2] ^= 0x40  # one bit of the body: the CRC no longer matches
    return bytes(raw)


def _version(raw: bytearray) -> bytes:
    raw[0] = 99  # a format version this durably does not know
    return bytes(raw)


def _truncate(raw: bytearray) -> bytes:
    return bytes(raw[:3])


def _event_key(eid: str, seq: int) -> bytes:
    return eid.encode() + b"\x00" + seq.to_bytes(4, "big")


@pytest.mark.parametrize("damage", [_flip, _version, _truncate], ids=["crc", "version", "cut"])
async def test_08_corrupt_event_quarantines_that_execution_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, damage: object
) -> None:
    runs: list[str] = []

    async def step(name: str) -> str:
        runs.append(name)
        return name

    @durably.workflow("two")
    async def two(ctx: durably.Context, tag: str) -> str:
        await ctx.step("a", step, f"{tag}.a")
        await ctx.sleep(10, step_id="nap")
        await ctx.step("b", step, f"{tag}.b")
        return tag

    store_dir = tmp_path / "s"
    async with lmdb_engine(store_dir, [two]) as engine:
        victim = await engine.start(two, "victim")
        other = await engine.start(two, "other")
        await trio.sleep(1)  # both recorded step a and sleep
    _rewrite(store_dir, "events", _event_key(victim, 1), damage)  # a's record
    async with lmdb_engine(store_dir, [two]) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="CorruptRecordError"):
            await engine.wait(victim)
        view = await engine.get_execution(victim)
        assert view.status is durably.Status.FAILED
        assert view.reason is not None and "quarantined" in view.reason
        assert view.error is not None and victim in view.error["message"]
        assert await engine.wait(other) == "other"  # the others carry on
        assert (await engine.start_and_wait(two, "new")).data == "new"
    assert runs.count("victim.a") == 1 and "victim.b" not in runs  # nothing re-run


async def test_08_corrupt_execution_record_is_shown_quarantined(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("slow")
    async def slow(ctx: durably.Context, tag: str) -> str:
        await ctx.sleep(10, step_id="nap")
        return tag

    store_dir = tmp_path / "s"
    async with lmdb_engine(store_dir, [slow]) as engine:
        victim = await engine.start(slow, "victim")
        other = await engine.start(slow, "other")
        await trio.sleep(1)
    _rewrite(store_dir, "executions", victim.encode(), _flip)
    async with lmdb_engine(store_dir, [slow]) as engine:  # starts despite it
        view = await engine.get_execution(victim)
        assert view.status is durably.Status.FAILED
        assert view.reason is not None and "record is corrupt" in view.reason
        listed = {v.id: v.status for v in await engine.list_executions()}
        assert listed[victim] is durably.Status.FAILED
        with pytest.raises(durably.ExecutionFailedError, match="checksum"):
            await engine.wait(victim)
        # A signal to it is refused clearly and fails nobody else's commit.
        with pytest.raises(durably.CorruptRecordError):
            await engine.signal(victim, "poke")
        assert await engine.wait(other) == "other"
    # The corrupt bytes were left as they were (nothing "repaired").
    with pytest.raises(durably.CorruptRecordError):
        LmdbStore(store_dir, readonly=True).get_execution(victim)


def test_08_helpers_really_damage(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    store = LmdbStore(store_dir)
    store.close()
    key = uuid.uuid4().hex.encode()
    env = lmdb.open(str(store_dir), max_dbs=16)
    db = env.open_db(b"meta")
    with env.begin(write=True, db=db) as txn:
        txn.put(key, b"\x01abcdefgh")
    env.close()
    _rewrite(store_dir, "meta", key, _flip)
    env = lmdb.open(str(store_dir), max_dbs=16, readonly=True)
    with env.begin(db=env.open_db(b"meta", create=False)) as txn:
        assert txn.get(key) != b"\x01abcdefgh"
    env.close()
    assert os.path.exists(store_dir / "data.mdb")
