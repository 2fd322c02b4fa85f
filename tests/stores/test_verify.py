"""``durably check`` (``stores/_verify.py``) and the key decoders it shares with the
layout: a busy healthy store checks clean, and each kind of damage, written into a real
LMDB file with the lmdb module, is reported (exit 1) by the command."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb
import pytest
import trio

import durably
from durably.core._history import TIMEOUT_TIMER
from durably.stores import LmdbStore, Timer
from durably.stores._keys import BadKey, hashed, seq_entry, status_entry, timer_from_item
from durably.stores._verify import verify_store

# --- the key decoders --------------------------------------------------------------------


def _timer_key(due: int, owner: bytes, tid: bytes) -> bytes:
    return due.to_bytes(8, "big") + owner + b"\x00" + tid


def test_timer_keys_decode_and_what_no_write_makes_is_refused() -> None:
    assert timer_from_item(_timer_key(5, b"e1", b"nap"), b"") == Timer(5, "e1", "nap")
    long_id = "s" * 300
    key = _timer_key(5, b"e1", hashed(long_id))
    assert timer_from_item(key, long_id.encode()) == Timer(5, "e1", long_id)
    refused = {
        "is 6 bytes long": (b"\x00" * 6, b""),
        "past any time": (_timer_key(2**63, b"e1", b"t"), b""),
        "no NUL": ((5).to_bytes(8, "big") + b"e1t", b""),
        "owner b'\\xb0": (_timer_key(5, b"\xb0", b"t"), b""),
        "owner is empty": (_timer_key(5, b"", b"tt"), b""),
        "does not match": (key, ("t" * 300).encode()),
    }
    for phrase, (raw, value) in refused.items():
        with pytest.raises(BadKey, match=re.escape(phrase)):
            timer_from_item(raw, value)


def test_index_and_log_keys_decode_and_damaged_ones_are_refused() -> None:
    assert status_entry(b"waiting\x00e1") == ("waiting", "e1")
    with pytest.raises(BadKey, match="is not one of"):
        status_entry(b"wbiting\x00e1")
    with pytest.raises(BadKey, match="is not UTF-8"):
        status_entry(b"waiting\x00\xff1")
    assert seq_entry(b"e1\x00\x00\x00\x01\x00", "event") == ("e1", 256)
    with pytest.raises(BadKey, match="4-byte event number"):
        seq_entry(b"e1\x00\x00\x01", "event")


# --- a healthy store -------------------------------------------------------------------


def _clean(path: Path) -> None:
    report = verify_store(path)
    assert report.findings == [], "\n".join(report.lines())
    assert report.counts["executions"] > 0 and report.lines()[-1] == "result: no damage found"


async def _busy(path: Path) -> dict[str, str]:
    """Every kind of entry the engine writes, left as a worker leaves them."""
    flaky = {"runs": 0}

    def wobble() -> str:
        flaky["runs"] += 1
        if flaky["runs"] < 2:
            raise RuntimeError("first try fails")
        return "ok"

    @durably.workflow("busy", timeout=3600)
    async def busy(ctx: durably.Context, n: int) -> str:
        await ctx.step("x" * 300, lambda: n)  # a step id long enough to be hashed in keys
        await ctx.step("wobble", wobble, retry=durably.Retry(initial=1))
        await ctx.wait_for_signal("go", timeout=60, step_id="go")
        await ctx.sleep(600, step_id="s" * 250)  # a long timer id: hashed in its key
        return "done"

    @durably.workflow("boom")
    async def boom(ctx: durably.Context, n: int) -> None:
        raise RuntimeError("no")

    store = LmdbStore(path, inline=True)
    try:
        async with durably.Engine(store, workflows=[busy, boom]) as engine:
            ids = {
                f"busy{n}": await engine.start(busy, n, idempotency_key=f"k{n}") for n in range(3)
            }
            await trio.sleep(5)
            await engine.signal(ids["busy0"], "go", 1, dedup_key="d1")
            await engine.signal(ids["busy0"], "go", 1, dedup_key="d1")  # a duplicate
            await engine.signal(ids["busy1"], "other", 2)  # buffered, never taken
            await engine.request_cancel(ids["busy2"], reason="test")
            ids["boom"] = await engine.start(boom, 0)
            await engine.wait_settled(ids["boom"])
            await engine.operate("retry", ids["boom"])
            await engine.wait_settled(ids["boom"])
            await engine.ensure_schedule(busy, 9, id="every", interval=900)
            await engine.ensure_schedule(busy, 9, id="nightly", cron="0 3 * * *")
            await engine.ensure_schedule(busy, 9, id="paused", interval=60)
            await engine.pause_schedule("paused")
            await engine.schedule(busy, 9, delay=30, id="once")
            await trio.sleep(120)  # "once" fires; busy0 sleeps, busy1 waits
    finally:
        store.close()
    return ids


async def test_a_busy_healthy_store_checks_clean(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await _busy(tmp_path / "s")
    _clean(tmp_path / "s")


async def test_a_store_left_mid_gather_with_children_and_new_runs_checks_clean(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("kid")
    async def kid(ctx: durably.Context, n: int) -> int:
        await ctx.wait_for_signal("go", step_id="go")
        return n

    @durably.workflow("fan")
    async def fan(ctx: durably.Context, n: int) -> None:
        if n < 3:
            ctx.continue_as_new(n + 1)
        await ctx.gather(
            ctx.sleep(600, step_id="a"),
            ctx.wait_for_signal("x", timeout=900, step_id="b"),
            ctx.child(kid, 1, step_id="c"),
        )

    store = LmdbStore(tmp_path / "s", inline=True)
    try:
        async with durably.Engine(store, workflows=[fan, kid]) as engine:
            await engine.start(fan, 0)
            await trio.sleep(5)  # the gather's timers are in the index, the record running
    finally:
        store.close()
    _clean(tmp_path / "s")


# --- damage, written with the lmdb module, found by the command --------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A store of two sleeping executions, a finished one and a schedule."""

    @durably.workflow("nap")
    async def nap(ctx: durably.Context, n: int) -> int:
        await ctx.step("a", lambda: n)
        await ctx.sleep(3600, step_id="nap")
        return n

    async def make() -> dict[str, str]:
        store = LmdbStore(tmp_path / "s", inline=True)
        try:
            async with durably.Engine(store, workflows=[nap]) as engine:
                ids = {f"nap{n}": await engine.start(nap, n) for n in range(2)}
                await engine.ensure_schedule(nap, 5, id="tick", interval=7200)
                ids["done"] = await engine.start(nap, 9)
                await trio.sleep(1)
                await engine.operate("force_fail", ids["done"], reason="finished for the test")
        finally:
            store.close()
        return ids

    ids = trio.run(make, clock=trio.testing.MockClock(autojump_threshold=0))
    _clean(tmp_path / "s")
    yield tmp_path / "s", ids


@contextmanager
def _raw(path: Path, table: str) -> Iterator[Any]:
    env = lmdb.open(str(path), max_dbs=32)
    try:
        with env.begin(write=True, db=env.open_db(table.encode(), create=False)) as txn:
            yield txn
    finally:
        env.close()


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durably", "check", "--store", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _timer_of(path: Path, owner: str) -> Timer:
    reader = LmdbStore(path, readonly=True)
    try:
        [timer] = [t for t in reader.due_timers(2**62) if t.owner == owner]
        return timer
    finally:
        reader.close()


def _key(timer: Timer) -> bytes:
    return _timer_key(timer.due_ms, timer.owner.encode(), timer.timer_id.encode())


def _move_timer(path: Path, ids: dict[str, str]) -> list[str]:
    timer = _timer_of(path, ids["nap0"])
    with _raw(path, "timers") as txn:
        txn.delete(_key(timer))
        txn.put(_key(Timer(timer.due_ms + 2**40, timer.owner, timer.timer_id)), b"")
    return [f"the record's pending timer is ({timer.due_ms}, 'nap')", "it would never wake"]


def _wrong_status(path: Path, ids: dict[str, str]) -> list[str]:
    with _raw(path, "by_status") as txn:
        txn.put(b"completed\x00" + ids["nap1"].encode(), b"")
    return [f"entry b'completed\\x00{ids['nap1']}': the record says sleeping"]


def _hidden(path: Path, ids: dict[str, str]) -> list[str]:
    with _raw(path, "by_status") as txn:
        txn.delete(b"sleeping\x00" + ids["nap1"].encode())
        txn.put(b"sleepinf\x00" + ids["nap1"].encode(), b"")  # one bit, in the status
    return ["is not one of", f"execution {ids['nap1']} (sleeping) has no entry"]


def _lost_event(path: Path, ids: dict[str, str]) -> list[str]:
    with _raw(path, "events") as txn:
        txn.delete(ids["nap0"].encode() + b"\x00" + (1).to_bytes(4, "big"))
    return [f"event 1 of {ids['nap0']} is missing (found 2)"]


def _orphan_log(path: Path, ids: dict[str, str]) -> list[str]:
    with _raw(path, "events") as txn:
        raw = txn.get(ids["nap0"].encode() + b"\x00" + bytes(4))
        txn.put(b"f" * 32 + b"\x00" + bytes(4), raw)
    return [f"a log of {'f' * 32}, which has no execution record"]


def _flipped_record(path: Path, ids: dict[str, str]) -> list[str]:
    with _raw(path, "executions") as txn:
        raw = bytearray(txn.get(ids["nap1"].encode()))
        raw[-3] ^= 0x01
        txn.put(ids["nap1"].encode(), bytes(raw))
    return [f"record of execution {ids['nap1']} failed its checksum"]


def _lost_schedule_timer(path: Path, ids: dict[str, str]) -> list[str]:
    timer = _timer_of(path, "schedule:tick")
    with _raw(path, "timers") as txn:
        txn.delete(_key(timer))
    return ["schedule 'tick' fires next at"]


@pytest.mark.parametrize(
    "damage",
    [
        _move_timer,
        _wrong_status,
        _hidden,
        _lost_event,
        _orphan_log,
        _flipped_record,
        _lost_schedule_timer,
    ],
)
def test_check_reports_each_damage_and_exits_1(
    store: tuple[Path, dict[str, str]], damage: Callable[[Path, dict[str, str]], list[str]]
) -> None:
    path, ids = store
    phrases = damage(path, ids)
    done = _check(path)
    assert done.returncode == 1, done.stdout + done.stderr
    for phrase in phrases:
        assert phrase in done.stdout, done.stdout
    assert "the store is damaged; restore it from a backup" in done.stdout


def test_check_notes_a_finished_executions_leftover_timer_and_exits_0(
    store: tuple[Path, dict[str, str]],
) -> None:
    path, ids = store
    with _raw(path, "timers") as txn:
        txn.put(_key(Timer(123, ids["done"], TIMEOUT_TIMER)), b"")
    done = _check(path)
    assert done.returncode == 0, done.stdout
    assert f"note: timers: timer '{TIMEOUT_TIMER}' of {ids['done']} due at 123" in done.stdout


def test_check_says_what_is_wrong_with_its_arguments(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "durably", "check", "--store", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 3 and "no durably store at" in missing.stderr
    bare = subprocess.run(
        [sys.executable, "-m", "durably", "check"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": ""},
    )
    assert bare.returncode == 2 and "no store given" in bare.stderr


def test_backup_copies_a_store_that_checks_clean_and_refuses_a_used_destination(
    store: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, ids = store
    copied = subprocess.run(
        [sys.executable, "-m", "durably", "backup", "--store", str(path), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "result: no damage found" in copied.stdout
    reader = LmdbStore(tmp_path / "b", readonly=True)
    try:
        assert {r.id for r in reader.list_executions()} == set(ids.values())
    finally:
        reader.close()
    again = subprocess.run(
        [sys.executable, "-m", "durably", "backup", "--store", str(path), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2 and "is not empty" in again.stderr
