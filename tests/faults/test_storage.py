"""Entries 6, 7 and 8 at the engine's level: a full map grows, a full disk (a real tmpfs)
stops acknowledgements and recovers, a corrupt record quarantines its execution, and
damage outside the checksummed values (a truncated file, LMDB's pages, random bit flips)
is refused or quarantined without taking the process down."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import orjson
import pytest
import trio
from hypothesis import example, given, seed, settings, strategies as st

import durably
from durably.stores import LmdbStore
from durably.stores._codec import frame

from . import _damage
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


# --- 8: damage outside the checksummed values ------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store of sleeping, waiting, timed and finished executions, and its ids' file."""
    return _damage.made(tmp_path_factory.mktemp("made"))


def _check(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durably", "check", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


#: Every table read whole with the lmdb module alone, as durably reads it minus its checks.
_RAW_READ = """
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=32)
with env.begin() as txn:
    names = [key for key, _ in txn.cursor()]
for name in names:
    with env.begin() as txn:
        sum(len(v) for _, v in txn.cursor(db=env.open_db(name, txn=txn, create=False)))
"""


@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_08_truncated_data_file_is_refused_before_any_page_is_read(
    made: tuple[Path, Path], tmp_path: Path, fraction: float
) -> None:
    # Compacted: no free pages, so the cut takes pages in use (as a cut-short copy would).
    store = _damage.compacted(made[0], tmp_path / "s")
    data = store / "data.mdb"
    os.truncate(data, int(data.stat().st_size * fraction))
    # The damage is real: LMDB itself reads past the end, and the kernel kills it.
    raw = subprocess.run([sys.executable, "-c", _RAW_READ, str(store)], check=False, timeout=60)
    assert raw.returncode == -signal.SIGBUS
    # durably refuses the file at open, as a worker and as a whole engine.
    for mode in ("open", "run"):
        code, out = _damage.run_child(mode, str(store), str(tmp_path / "fx"), str(made[1]))
        assert code == 4, out
        assert out["type"] == "StoreCorruptError"
        assert f"{data} is truncated" in out["message"]
        assert "restore the store from a backup" in out["message"]
    report = _check(store)
    assert report.returncode == 1, report.stdout + report.stderr
    assert "is truncated" in report.stdout and "result: 1 problem(s)" in report.stdout


def _healthy_or_told(result: dict[str, Any], effects: Path) -> None:
    """Each execution ended as a healthy one does, or is quarantined, or the engine said
    what it could not do for it (logged at ERROR, or a durably error of a call about it);
    no step ran again; a fresh start ran, or was refused for the damage."""
    for eid, o in result["outcomes"].items():
        status, value = _damage.child.expected(o["workflow"], o["n"])
        healthy = o["status"] == status and (
            o["result"] == value if status == "completed" else o["error"] == _TIMEOUT
        )
        quarantined = o["status"] == "failed" and "quarantined" in (o["reason"] or "")
        told = eid in result["refused"] or any(eid in line for line in result["errors"])
        assert healthy or quarantined or told, (eid, o, result["errors"])
    ran = effects.read_text().split("\n") if effects.exists() else []
    # Step "a" of each execution ran before the damage: running it again means a log
    # lost events silently (step "b" runs now, after the sleep).
    again = [x for x in ran if x.endswith(" a") and x.split(" ")[0] in result["outcomes"]]
    assert not again, f"steps ran again after the damage: {again}"
    assert result["fresh"] == 99 or "met damage" in result["fresh"], result["fresh"]


_TIMEOUT = "durably.WorkflowTimeoutError"
#: What LMDB's C library prints when an assertion of its own fails (then it aborts).
LMDB_ASSERTION = ("mdb.c:", "Assertion")


@seed(20251201)
@settings(max_examples=max(8, settings().max_examples // 3))
@given(where=st.integers(0, 1 << 24), bit=st.integers(0, 7))
# LMDB's header (both meta pages alike): its map size, the free list's root, the root of
# the table of tables. Each flip in it met a different failure when first tried.
@example(where=38, bit=0).via("the map size: an impossible mmap")
@example(where=86, bit=5).via("the free list's root: every write fails")
@example(where=4096 + 130, bit=3).via("the root of the table of tables")
def test_08_random_bit_flips_are_refused_or_quarantined_never_a_crash(
    made: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, where: int, bit: int
) -> None:
    work = tmp_path_factory.mktemp("flip")
    store = _damage.copy(made[0], work / "s")
    _damage.flip(store, where % (store / "data.mdb").stat().st_size, bit)
    report = _check(store)  # first, as an operator would: it never crashes either
    assert report.returncode in (0, 1), report.stderr
    effects = work / "effects"
    code, out = _damage.run_child("run", str(store), str(effects), str(made[1]))
    if code == -signal.SIGABRT and all(m in out["stderr"] for m in LMDB_ASSERTION):
        # LMDB checks no page checksums: a flip in a B-tree page's header can trip its
        # own assertion when a write touches the page, which aborts the process before
        # the transaction commits (reliability.md, "Limits worth knowing"). Nothing was
        # written, and the verifier, which only reads, did not crash either (above).
        return
    assert code in (0, 4), out  # a crash is neither
    if code == 4:
        assert out["type"] in ("StoreCorruptError", "CorruptRecordError"), out
        assert "restore the store from a backup" in out["message"], out
        return
    _healthy_or_told(out, effects)
    # What the engine found reading, the verifier reports too. (A write may meet damage
    # no read shows: LMDB's free list, which only writes read.)
    read_damage = [
        o
        for o in out["outcomes"].values()
        if o["error"] == "durably.CorruptRecordError" and "a write of it" not in o["reason"]
    ]
    if out["quarantined"] or read_damage:
        assert report.returncode == 1, (report.stdout, read_damage)


def test_08_a_page_lmdb_cannot_read_quarantines_the_executions_on_it(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    store = _damage.compacted(made[0], tmp_path / "s")
    ids = json.loads(made[1].read_text())
    data = (store / "data.mdb").read_bytes()
    page_size = LmdbStore(store, readonly=True).file_facts()["page_bytes"]

    def pages_of(eid: str) -> set[int]:
        key = eid.encode() + b"\x00"
        return {i // page_size for i in _offsets(data, key)}

    victim = ids["nap"][0]
    # A leaf of the events table that holds some logs, not all: flag it a branch page.
    page = min(pages_of(victim))
    on_page = {e for group in ids.values() for e in group if page in pages_of(e)}
    assert victim in on_page and len(on_page) < sum(len(g) for g in ids.values())
    _damage.flip(store, page * page_size + 10, 0)  # the page's flags: P_LEAF | P_BRANCH
    code, out = _damage.run_child("run", str(store), str(tmp_path / "fx"), str(made[1]))
    assert code == 0, out
    _healthy_or_told(out, tmp_path / "fx")
    victim_now = out["outcomes"][victim]
    assert victim_now["status"] == "failed" and victim_now["error"] == "durably.CorruptRecordError"
    spared = [o for e, o in out["outcomes"].items() if e not in on_page]
    expected = [_damage.child.expected(o["workflow"], o["n"])[0] for o in spared]
    assert spared and [o["status"] for o in spared] == expected
    assert _check(store).returncode == 1


def _offsets(data: bytes, needle: bytes) -> Iterator[int]:
    at = data.find(needle)
    while at >= 0:
        yield at
        at = data.find(needle, at + 1)


def test_08_a_backup_taken_while_a_worker_writes_checks_clean_and_resumes(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    worker = subprocess.Popen(
        [sys.executable, str(_damage.CHILD), "write", str(live)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        acked = _acks(worker, 30)
        # Beside the worker, reading one snapshot: the live store checks clean...
        check = _check(live)
        assert check.returncode == 0, check.stdout
        # ...and a backup of it is taken (and checked) while the worker goes on writing.
        backup = subprocess.run(
            [sys.executable, "-m", "durably", "backup", "--store", str(live), str(tmp_path / "b")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert "result: no damage found" in backup.stdout
        assert len(_acks(worker, 10)) == 10  # it was not stopped
    finally:
        worker.kill()
        worker.wait()
    # The restore of docs/operations.md: the backup's data.mdb in a store directory.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(tmp_path / "b" / "data.mdb", restored / "data.mdb")

    async def resume() -> list[Any]:
        store = LmdbStore(restored, inline=True)
        try:
            async with durably.Engine(store, workflows=_damage.child.WORKFLOWS) as engine:
                return [await engine.wait(eid) for eid in acked]
        finally:
            store.close()

    # Every start acknowledged before the backup began is in it, and runs to its end.
    results = trio.run(resume, clock=trio.testing.MockClock(autojump_threshold=0))
    assert results == list(range(len(acked)))


def _acks(worker: subprocess.Popen[str], count: int) -> list[str]:
    """The next ``count`` execution ids the worker reported durable."""
    assert worker.stdout is not None
    out: list[str] = []
    while len(out) < count:
        line = worker.stdout.readline()
        assert line, worker.stderr.read() if worker.stderr else "the worker died"
        out.append(line.split()[1])
    return out


def _reframed(change: Any) -> Any:
    """Rewrite a value's JSON body and frame it again: the checksum holds, the fields
    are not what this durably writes (another version's, or a buggy writer's)."""

    def rewrite(raw: bytearray) -> bytes:
        body = orjson.loads(bytes(raw[5:]))
        change(body)
        return frame(orjson.dumps(body))

    return rewrite


async def test_08_records_and_mail_that_pass_their_checksum_but_do_not_decode(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Recovery reads records as fields and mailboxes in one pass: a bad field must cost
    # only its own execution there too, as it does for a read of the record.
    @durably.workflow("napper")
    async def napper(ctx: durably.Context, tag: str) -> str:
        await ctx.sleep(10, step_id="nap")
        return tag

    @durably.workflow("asker")
    async def asker(ctx: durably.Context, tag: str) -> Any:
        return await ctx.wait_for_signal("answer", step_id="ask")

    store_dir = tmp_path / "s"
    async with lmdb_engine(store_dir, [napper, asker]) as engine:
        bad_timer = await engine.start(napper, "bad timer")
        bad_field = await engine.start(napper, "unknown field")
        bad_mail = await engine.start(asker, "bad mail")
        fine = [await engine.start(napper, "fine"), await engine.start(asker, "fine")]
        await trio.sleep(1)
        await engine.signal(bad_mail, "unrelated", 1)  # buffered: it waits for "answer"
    _rewrite(store_dir, "executions", bad_timer.encode(), _reframed(lambda d: d.update(timer=7)))
    _rewrite(store_dir, "executions", bad_field.encode(), _reframed(lambda d: d.update(x=1)))
    mail_key = bad_mail.encode() + b"\x00" + (0).to_bytes(4, "big")
    _rewrite(store_dir, "mailbox", mail_key, _reframed(lambda d: d.update(by=12)))
    async with lmdb_engine(store_dir, [napper, asker]) as engine:
        assert (await engine.signal(fine[1], "answer", "yes")).accepted
        assert [await engine.wait(e, timeout=60) for e in fine] == ["fine", "yes"]
        with pytest.raises(durably.ExecutionFailedError, match="its sender is 12, not text"):
            await engine.wait(bad_mail, timeout=60)
        for eid in (bad_timer, bad_field):
            view = await engine.get_execution(eid)
            assert view.status is durably.Status.FAILED and "record is corrupt" in str(view.reason)
