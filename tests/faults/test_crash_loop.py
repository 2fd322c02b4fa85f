"""Entry 26: a workflow that kills the process on every recovery is dead-lettered after
``max_recovery_attempts``, while a healthy execution in the same store completes. Also the
replay hang bound: a replay that awaits forever outside a step counts as a failed attempt."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

import durably
from durably.stores import ExecutionRecord, LmdbStore, MemoryStore

from ._helpers import lmdb_engine, run_worker

ATTEMPTS = 3


def _record(path: Path, execution_id: str) -> ExecutionRecord:
    store = LmdbStore(path, readonly=True)
    try:
        record = store.get_execution(execution_id)
    finally:
        store.close()
    assert record is not None
    return record


@pytest.mark.slow
@pytest.mark.parametrize("attempts", [2, ATTEMPTS])
def test_26_process_killed_on_every_replay_is_dead_lettered(tmp_path: Path, attempts: int) -> None:
    store, effects = tmp_path / "store", tmp_path / "effects.txt"
    results = []
    for _ in range(attempts + 4):
        proc = run_worker("crash-loop", str(store), str(effects), str(attempts))
        results.append(proc.returncode)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The first run dies in a step; each of `attempts` recoveries dies replaying; the next
    # dead-letters instead of replaying again, and the process lives.
    assert results == [-signal.SIGKILL] * (attempts + 1) + [0]
    seen = json.loads(proc.stdout)
    doomed = seen.pop("doomed")
    assert doomed["status"] == "failed"
    assert "dead-lettered" in doomed["reason"]
    assert f"{attempts} times" in doomed["reason"]
    # The healthy executions replayed beside it each time, and were not blamed for it.
    assert seen == {f"healthy-{i}": {"status": "completed", "reason": None} for i in range(3)}
    runs = [line.split() for line in effects.read_text().splitlines()]
    assert sum(name == "doomed.a" for name, _, _ in runs) == 1  # nothing re-run
    recorded = {(eid, name) for name, eid, _ in runs if name.startswith("healthy")}
    assert len(recorded) == 9
    for key in recorded:
        assert sum((eid, name) == key for name, eid, _ in runs) <= attempts + 2


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_26_process_killed_in_the_same_step_body_is_dead_lettered(tmp_path: Path, how: str) -> None:
    store, effects = tmp_path / "store", tmp_path / "effects.txt"
    died = -signal.SIGKILL if how == "sigkill" else 17
    results = []
    for _ in range(ATTEMPTS + 4):
        proc = run_worker("step-death", str(store), str(effects), str(ATTEMPTS), how)
        results.append(proc.returncode)
        if proc.returncode == 0:
            break
        assert proc.returncode == died, proc.stderr
    # The first run and each of ATTEMPTS recoveries die in step b's body; the next run
    # dead-letters it instead of running that body again, and the process lives.
    assert results == [died] * (ATTEMPTS + 1) + [0]
    seen = json.loads(proc.stdout)
    doomed = seen.pop("doomed")
    assert doomed["status"] == "failed"
    assert f"dead-lettered: recovery was attempted {ATTEMPTS} times" in doomed["reason"]
    # Each healthy execution was inside a step body when the process died beside it (at
    # least healthy-0 was, the first time), and none was blamed for it.
    assert seen == {f"healthy-{i}": {"status": "completed", "reason": None} for i in range(3)}
    runs = [line.split() for line in effects.read_text().splitlines()]
    assert sum(name == "doomed.a" for name, _, _ in runs) == 1  # recorded once, replayed
    assert sum(name == "doomed.b" for name, _, _ in runs) == ATTEMPTS + 1
    healthy = [(eid, name) for name, eid, _ in runs if name.startswith("healthy")]
    done = [run for run in healthy if not run[1].endswith(".begin")]
    assert len(set(done)) == 9
    # Bodies begun and never finished: healthy executions were killed inside them.
    assert len(healthy) - len(done) > len(done)


async def test_26_replay_hanging_past_the_bound_is_dead_lettered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hang_on_replay = trio.Event()
    release_first_run = trio.Event()  # never set: the first run stops inside step c

    @durably.workflow("hangs")
    async def hangs(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: "a")
        if ctx.replaying:  # b is recorded ahead: this is a replay
            await hang_on_replay.wait()  # awaits forever outside a step, on replay only
        await ctx.step("b", lambda: "b")
        await ctx.step("c", release_first_run.wait)
        return "done"

    @durably.workflow("fine")
    async def fine(ctx: durably.Context, _: None) -> str:
        await ctx.step("x", lambda: "x")
        await ctx.sleep(1, step_id="nap")
        return "fine"

    store = tmp_path / "store"
    options = {"max_recovery_attempts": ATTEMPTS, "max_replay_seconds": 5.0}
    async with lmdb_engine(store, [hangs, fine], **options) as engine:
        bad = await engine.start(hangs)
        good = await engine.start(fine)
        await trio.sleep(0.5)  # bad is inside step c; good sleeps
    began = trio.current_time()
    async with lmdb_engine(store, [hangs, fine], **options) as engine:
        with trio.fail_after(3600):
            assert await engine.wait(good) == "fine"
            with pytest.raises(durably.ExecutionFailedError, match="dead-lettered"):
                await engine.wait(bad)
        view = await engine.get_execution(bad)
        assert view.status is durably.Status.FAILED
        assert view.reason is not None and "max_replay_seconds" in view.reason
    # ATTEMPTS replays, each cancelled at the 5 s bound, then the dead letter.
    assert trio.current_time() - began == pytest.approx(ATTEMPTS * 5.0, abs=0.5)
    assert not hang_on_replay.is_set()


async def test_26_worker_restarts_during_a_long_step_body_are_not_crashes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A graceful stop is no death: an execution counted at a restart whose step body is
    still running when the worker stops has its count cleared, so deploys during a long
    body never dead-letter it."""
    entered: list[trio.Event] = []
    finish = [False]

    async def long_body() -> str:
        entered[-1].set()
        if not finish[0]:
            await trio.sleep_forever()  # hours of work, cut by each restart
        return "done"

    @durably.workflow("long-body")
    async def long_job(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: "a")
        return await ctx.step("b", long_body)

    store = tmp_path / "store"
    options = {"max_recovery_attempts": 2}
    counts = []
    eid = ""
    for run in range(2 * ATTEMPTS):
        entered.append(trio.Event())
        async with lmdb_engine(store, [long_job], **options) as engine:
            if run == 0:
                eid = await engine.start(long_job)
            with trio.fail_after(60):
                await entered[-1].wait()
        counts.append(_record(store, eid).recoveries)
    assert counts == [0] * (2 * ATTEMPTS)
    finish[0] = True
    entered.append(trio.Event())
    async with lmdb_engine(store, [long_job], **options) as engine:
        assert await engine.wait(eid) == "done"


async def test_26_replay_bound_ends_where_the_step_body_begins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A parked execution replays when woken (in the same process, so uncounted) under the
    hang bound; the bound is lifted where its next step body begins, however long that
    body takes."""
    bodies: list[float] = []

    async def ten_seconds() -> str:
        bodies.append(trio.current_time())
        await trio.sleep(10)
        return "b"

    @durably.workflow("long")
    async def long(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: "a")
        await ctx.sleep(1, step_id="nap")
        return await ctx.step("b", ten_seconds)

    @durably.workflow("other")
    async def other(ctx: durably.Context, _: None) -> str:
        await ctx.sleep(0.5, step_id="nap")
        return "other"

    options = {"max_live_executions": 1, "max_replay_seconds": 5.0}
    async with durably.Engine(MemoryStore(), workflows=[long, other], **options) as engine:
        began = trio.current_time()
        first = await engine.start(long)
        await trio.sleep(0.1)
        await engine.start(other)  # one live place: the sleeping `long` parks for it
        with trio.fail_after(600):
            assert await engine.wait(first) == "b"
        assert trio.current_time() - began == pytest.approx(11, abs=0.1)
    assert len(bodies) == 1  # not cut at 5 s as a hung replay and run again


def test_26_replay_bound_must_be_positive() -> None:
    with pytest.raises(durably.ConfigurationError, match="max_replay_seconds"):
        durably.Engine(durably.stores.MemoryStore(), max_replay_seconds=0)
