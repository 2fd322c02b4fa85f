"""Retries with durable backoff, step timeouts, and the workflow-level options."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio

import durably
from durably.stores import Store

#: trio times of each attempt of the flaky step.
attempts: list[float] = []
state: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    attempts.clear()
    state.clear()


class Flaky(Exception):
    pass


async def flaky(succeed_on: int) -> int:
    attempts.append(trio.current_time())
    if len(attempts) < succeed_on:
        raise Flaky(f"attempt {len(attempts)} failed")
    return len(attempts)


@durably.workflow("retrying")
async def retrying(ctx: durably.Context, succeed_on: int) -> int:
    policy = durably.Retry(max_attempts=5, initial=10, backoff=3, max_delay=60, retry_on=(Flaky,))
    result: int = await ctx.step("flaky", flaky, succeed_on, retry=policy)
    return result


def gaps() -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(attempts)]


async def test_backoff_runs_in_virtual_time(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[retrying], clock=clock) as engine:
        result = await engine.start_and_wait(retrying, 5)
        trail = await engine.audit(result.execution_id)
    assert result.data == 5
    # 10, 30, then 90 capped at 60, 60: a trio deadline per wait (plus the clock's slack).
    assert gaps() == pytest.approx([10, 30, 60, 60], abs=0.01)
    retries = [e.data["attempt"] for e in trail if e.kind == "step_retrying"]
    assert retries == [1, 2, 3, 4]
    assert [e.data["attempt"] for e in trail if e.kind == "step_completed"] == [5]


async def test_exhausted_retries_fail_the_step(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[retrying], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="attempt 5 failed"):
            await engine.start_and_wait(retrying, 99)
    assert len(attempts) == 5


async def test_a_retry_waiting_for_its_delay_survives_a_restart(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[retrying], clock=clock) as engine:
        eid = await engine.start(retrying, 2)
        execution = await settle(engine, eid, "retrying")
        assert execution.wake_at is not None
    stopped_at = trio.current_time()
    store: Store = store_factory()
    assert len(store.due_timers(2**63 - 1)) == 1  # the retry's timer is durable
    async with durably.Engine(store, workflows=[retrying], clock=clock) as engine:
        assert await engine.wait(eid) == 2
    assert len(attempts) == 2
    assert gaps() == pytest.approx([10], abs=0.01)
    assert trio.current_time() - stopped_at < 10.01  # not waited for twice
    assert store.due_timers(2**63 - 1) == []


async def test_retry_on_limits_what_is_retried(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async def wrong() -> None:
        attempts.append(trio.current_time())
        raise KeyError("not retryable")

    @durably.workflow("no-retry")
    async def no_retry(ctx: durably.Context, _: None) -> None:
        await ctx.step("s", wrong, retry=durably.Retry(max_attempts=5, retry_on=(Flaky,)))

    async with durably.Engine(store_factory(), workflows=[no_retry], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="KeyError"):
            await engine.start_and_wait(no_retry)
    assert len(attempts) == 1


async def test_workflow_retry_is_the_default_policy(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("defaulted", retry=durably.Retry(max_attempts=3, initial=2, backoff=1))
    async def defaulted(ctx: durably.Context, succeed_on: int) -> int:
        result: int = await ctx.step("flaky", flaky, succeed_on)
        return result

    async with durably.Engine(store_factory(), workflows=[defaulted], clock=clock) as engine:
        assert (await engine.start_and_wait(defaulted, 3)).data == 3
    assert gaps() == pytest.approx([2, 2], abs=0.01)


async def slow(seconds: float) -> str:
    attempts.append(trio.current_time())
    try:
        await trio.sleep(seconds)
    except trio.Cancelled:
        state["cancelled"] = state.get("cancelled", 0) + 1
        raise
    return "done"


@durably.workflow("timed")
async def timed(ctx: durably.Context, seconds: float) -> str:
    try:
        result: str = await ctx.step(
            "slow", slow, seconds, timeout=5, retry=durably.Retry(max_attempts=2, initial=1)
        )
    except durably.StepError as exc:
        assert exc.is_a(TimeoutError)
        return f"gave up: {exc.error_message}"
    return result


async def test_step_timeout_cancels_the_body_and_counts_as_an_attempt(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[timed], clock=clock) as engine:
        result = await engine.start_and_wait(timed, 100)
        assert (await engine.start_and_wait(timed, 1)).data == "done"
    assert result.data == "gave up: step 'slow' timed out after 5 s (its body was cancelled)"
    assert state["cancelled"] == 2  # both attempts' bodies were cancelled
    assert gaps()[0] == pytest.approx(6, abs=0.01)  # 5 s timeout + 1 s backoff


async def test_step_timeout_must_be_positive(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("bad-timeout")
    async def bad(ctx: durably.Context, _: None) -> None:
        await ctx.step("s", slow, 1, timeout=0)

    async with durably.Engine(store_factory(), workflows=[bad], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="timeout= must be positive"):
            await engine.start_and_wait(bad)


@durably.workflow("deadline", timeout=60)
async def deadline(ctx: durably.Context, mode: str) -> str:
    if mode == "signal":
        await ctx.wait_for_signal("never", step_id="wait")
    elif mode == "sleep":
        await ctx.sleep(3600, step_id="nap")
    elif mode == "step":
        await ctx.step("slow", slow, 3600)
    return "finished"


@pytest.mark.parametrize("mode", ["signal", "sleep", "step"])
async def test_workflow_timeout_fails_a_live_execution(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, mode: str
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[deadline], clock=clock) as engine:
        started = trio.current_time()
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.start_and_wait(deadline, mode)
        assert trio.current_time() - started == pytest.approx(60, abs=0.01)
        assert info.value.error["type"] == "durably.WorkflowTimeoutError"
        assert "allows 60 s" in info.value.error["message"]
        assert (await engine.start_and_wait(deadline, "fast")).data == "finished"
    assert store.due_timers(2**63 - 1) == []  # no timeout timer left behind


async def test_workflow_timeout_fails_a_parked_execution_after_a_restart(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[deadline], clock=clock) as engine:
        eid = await engine.start(deadline, "sleep")
        started = (await settle(engine, eid, "sleeping")).created_at
    await trio.sleep(30)  # no engine runs: the deadline passes while parked
    async with durably.Engine(store_factory(), workflows=[deadline], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="timed out"):
            await engine.wait(eid)
        execution = await engine.get_execution(eid)
    assert (execution.updated_at - started).total_seconds() == pytest.approx(60, abs=0.01)
    assert store_factory().due_timers(2**63 - 1) == []


async def test_workflow_timeout_fails_an_execution_parked_for_room(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(
        store_factory(), workflows=[deadline], clock=clock, max_live_executions=1
    ) as engine:
        first = await engine.start(deadline, "signal")
        second = await engine.start(deadline, "signal")
        for eid in (first, second):
            with pytest.raises(durably.ExecutionFailedError, match="timed out"):
                await engine.wait(eid)


async def test_a_retry_starts_the_workflow_timeout_over(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[deadline], clock=clock) as engine:
        eid = await engine.start(deadline, "signal")
        with pytest.raises(durably.ExecutionFailedError, match="timed out"):
            await engine.wait(eid)
        await trio.sleep(500)
        retried_at = trio.current_time()
        await engine.operator.retry(eid, by="ops")
        with pytest.raises(durably.ExecutionFailedError, match="timed out"):
            await engine.wait(eid)
        assert trio.current_time() - retried_at == pytest.approx(60, abs=0.01)
        await engine.operator.retry(eid, by="ops")
        await engine.signal(eid, "never")
        assert await engine.wait(eid) == "finished"
