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

from ._helpers import lmdb_engine, run_worker

ATTEMPTS = 3


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


def test_26_replay_bound_must_be_positive() -> None:
    with pytest.raises(durably.ConfigurationError, match="max_replay_seconds"):
        durably.Engine(durably.stores.MemoryStore(), max_replay_seconds=0)
