"""Damage to keys, which no checksum covers: a timer key, a workflow timeout's key, a
status-index key. Each is flipped in place in a real data file (a compacted copy holds
every live key once, so its bytes are found and changed as a disk would change them).
Nothing here can SIGBUS (no page changes size), so the engines run in this process."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

import durably
from durably.core._history import TIMEOUT_TIMER
from durably.stores import NEVER_MS, LmdbStore

from . import _damage
from ._helpers import lmdb_engine

child = _damage.child
#: Bit 42 of a due time in ms: 139 years later for any due time of this century.
_YEARS_LATE = (2, 2)  # (byte of the big-endian u64, bit in it)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _damage.made(tmp_path_factory.mktemp("made"))


@pytest.fixture
def effects(tmp_path: Path) -> Path:
    """Where this test's step bodies note each run (the child module's workflows)."""
    child.EFFECTS[0] = str(tmp_path / "effects")
    return tmp_path / "effects"


def _ids(made: tuple[Path, Path]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = json.loads(made[1].read_text())
    return ids


def _timer_key(store: Path, owner: str, timer_id: str) -> bytes:
    reader = LmdbStore(store, readonly=True)
    try:
        timers = reader.due_timers(NEVER_MS)
        [timer] = [t for t in timers if (t.owner, t.timer_id) == (owner, timer_id)]
    finally:
        reader.close()
    return timer.due_ms.to_bytes(8, "big") + owner.encode() + b"\x00" + timer_id.encode()


def _flip_late(store: Path, key: bytes) -> None:
    byte, bit = _YEARS_LATE
    _damage.flip(store, _damage.where_is(store, key) + byte, bit)


def _ran(effects: Path, eid: str) -> list[str]:
    lines = effects.read_text().splitlines() if effects.exists() else []
    return [line.split(" ")[1] for line in lines if line.startswith(eid)]


async def test_a_timer_key_flipped_years_late_quarantines_its_execution_only(
    made: tuple[Path, Path], tmp_path: Path, effects: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ids = _ids(made)
    victim, others = ids["nap"][0], ids["nap"][1:]
    store = _damage.compacted(made[0], tmp_path / "s")
    _flip_late(store, _timer_key(store, victim, "nap"))
    async with lmdb_engine(store, child.WORKFLOWS) as engine:
        report = engine.last_recovery
        assert report is not None and report.quarantined == [victim]
        await engine.wait_settled(victim)
        view = await engine.get_execution(victim)
        assert view.status is durably.Status.FAILED
        assert view.reason is not None and "timer key is damaged" in view.reason
        assert "its log is intact" in view.reason and "durably retry" in view.reason
        assert view.error is not None and view.error["type"] == "durably.CorruptRecordError"
        with trio.fail_after(3 * 3600):  # virtual
            # The rest sleep their hour and finish.
            results = [await engine.wait(eid) for eid in others]
            assert results == list(range(1, len(others) + 1))
            # Its log is intact: an operator's retry resumes it where it slept.
            await engine.operate("retry", victim)
            assert await engine.wait(victim) == 0
    assert _ran(effects, victim) == ["b"]  # "a" ran before the damage, and not again


async def test_a_workflow_timeout_key_flipped_years_late_still_times_out_in_its_window(
    made: tuple[Path, Path], tmp_path: Path, effects: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ids = _ids(made)
    victim = ids["limited"][0]
    store = _damage.compacted(made[0], tmp_path / "s")
    _flip_late(store, _timer_key(store, victim, TIMEOUT_TIMER))
    async with lmdb_engine(store, child.WORKFLOWS) as engine:
        report = engine.last_recovery
        assert report is not None and report.quarantined == []
        with trio.fail_after(4 * 3600):  # virtual: 139 years would not pass this
            for eid in ids["limited"]:
                await engine.wait_settled(eid)
        for eid in ids["limited"]:
            view = await engine.get_execution(eid)
            assert view.error is not None and view.error["type"] == "durably.WorkflowTimeoutError"
        late = await engine.get_execution(victim)
        # Late by the window recovery trusts (the record's times, plus an hour), not more.
        assert (late.updated_at - late.created_at).total_seconds() <= 7200 + 3600 + 60


def _running_store(made: tuple[Path, Path], tmp_path: Path) -> tuple[Path, str]:
    """A copy of ``made`` with one more execution, ``running``: its worker was killed in
    the middle of its first step (a real SIGKILL)."""
    store = _damage.copy(made[0], tmp_path / "killed")
    died = subprocess.run(
        [sys.executable, str(_damage.CHILD), "die", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    eid = json.loads(died.stdout.splitlines()[0])["execution_id"]
    return store, eid


async def test_a_status_index_key_with_a_bad_byte_neither_stops_the_worker_nor_hides_work(
    made: tuple[Path, Path],
    tmp_path: Path,
    effects: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    killed, running = _running_store(made, tmp_path)
    store = _damage.compacted(killed, tmp_path / "s")
    entry = b"running\x00" + running.encode()
    # Its id's first byte gets its high bit: no longer UTF-8 (it stopped every worker start).
    _damage.flip(store, _damage.where_is(store, entry) + len(b"running\x00"), 7)
    reader = LmdbStore(store, readonly=True)
    try:
        with pytest.raises(durably.StoreCorruptError, match="the status index is damaged"):
            reader.list_executions(status="running")
    finally:
        reader.close()
    caplog.set_level(logging.ERROR, logger="durably")
    async with lmdb_engine(store, child.WORKFLOWS) as engine:
        # Recovery met the damage, read every record instead, and found the running one.
        assert "recovery reads every record instead" in caplog.text
        with trio.fail_after(3 * 3600):  # virtual; a hidden execution would never end
            assert await engine.wait(running) == 7
            for n, eid in enumerate(_ids(made)["nap"]):
                assert await engine.wait(eid) == n
    assert _ran(effects, running) == ["a"]  # its step ran again: it had not finished
    check = await trio.run_process(
        [sys.executable, "-m", "durably", "check", "--store", str(store)],
        capture_stdout=True,
        check=False,
    )
    assert check.returncode == 1
    assert "damage: by_status: entry b'running" in check.stdout.decode()


async def test_a_schedule_timer_key_flipped_years_late_still_fires_on_time(
    tmp_path: Path, effects: Path, autojump_clock: trio.testing.MockClock
) -> None:
    made = tmp_path / "made"
    async with lmdb_engine(made, child.WORKFLOWS) as engine:
        await engine.ensure_schedule(child.done, 1, id="tick", interval=3600)
    store = _damage.compacted(made, tmp_path / "s")
    _flip_late(store, _timer_key(store, "schedule:tick", "next"))
    async with lmdb_engine(store, child.WORKFLOWS) as engine:
        due = (await engine.get_schedule("tick")).next_fire_at  # from its record
        assert due is not None
        # Virtual time: just past the fire its record names (the index says 139 years).
        await trio.sleep((due - datetime.now(UTC)).total_seconds() + 1)
        [fired] = (await engine.get_schedule("tick")).executions
        assert await engine.wait(fired) == 1
