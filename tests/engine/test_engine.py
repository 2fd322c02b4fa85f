"""Engine behaviour on every store: steps run once, typed results, failures, cancel,
idempotent start, clear errors, restarts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel

import durably
from durably.stores import Store


@attrs.frozen
class User:
    email: str
    id: int


def make_onboarding(calls: list[str]) -> durably.WorkflowDefinition[dict[str, str], dict[str, Any]]:
    def create_user(email: str) -> User:
        calls.append(f"create:{email}")
        return User(email, len(calls))

    async def send_welcome(user: User) -> tuple[str, int]:
        calls.append(f"send:{user.email}")
        await trio.lowlevel.checkpoint()
        return ("sent", user.id)

    @durably.workflow("onboarding", category="users", defaults={"email": "x@y"})
    async def onboarding(ctx: durably.Context, data: dict[str, str]) -> dict[str, Any]:
        user = await ctx.step("create-user", create_user, data["email"])
        assert isinstance(user, User)  # restructured to the annotated type, first run too
        sent = await ctx.step("send-welcome", send_welcome, user)
        return {"user": user.id, "sent": list(sent)}

    return onboarding


async def test_steps_run_once_and_results_are_typed(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    onboarding = make_onboarding(calls)
    async with durably.Engine(store_factory(), workflows=[onboarding]) as engine:
        result = await engine.start_and_wait(onboarding, {"email": "a@b.c"})
        assert result.data == {"user": 1, "sent": ["sent", 1]}
        execution = await engine.get_execution(result.execution_id)
        assert execution.status is durably.Status.COMPLETED
        assert execution.result == result.data
        assert execution.workflow == "onboarding"
        by_name = await engine.start_and_wait("onboarding", {"email": "d@e"})
        assert by_name.data["user"] == 3
    assert calls == ["create:a@b.c", "send:a@b.c", "create:d@e", "send:d@e"]


async def test_first_run_sees_what_replay_sees(autojump_clock: trio.testing.MockClock) -> None:
    # A tuple without a tuple annotation is stored as a list: the first run gets the list too.
    def pair() -> Any:
        return (1, 2)

    @durably.workflow("pair")
    async def wf(ctx: durably.Context, data: None) -> Any:
        value = await ctx.step("pair", pair)
        return type(value).__name__

    async with durably.Engine(durably.stores.MemoryStore(), workflows=[wf]) as engine:
        assert (await engine.start_and_wait(wf)).data == "list"


async def test_failed_step_fails_the_execution_with_its_error(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    def boom() -> None:
        raise ValueError("no such user")

    @durably.workflow("fails")
    async def fails(ctx: durably.Context, data: None) -> None:
        await ctx.step("boom", boom)

    async with durably.Engine(store_factory(), workflows=[fails]) as engine:
        eid = await engine.start(fails)
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
        assert info.value.error["type"] == "durably.StepError"
        assert "no such user" in info.value.error["message"]
        assert "ValueError" in info.value.error["traceback"]
        execution = await engine.get_execution(eid)
        assert execution.status is durably.Status.FAILED


async def test_caught_step_error_is_the_same_on_replay(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    runs: list[int] = []

    def boom() -> None:
        runs.append(1)
        raise KeyError("k")

    @durably.workflow("catches")
    async def catches(ctx: durably.Context, data: None) -> str:
        try:
            await ctx.step("boom", boom)
        except durably.StepError as exc:
            assert exc.is_a(KeyError)
            outcome = exc.error_type
        await ctx.sleep(60, step_id="nap")
        return outcome

    store = store_factory()
    async with durably.Engine(store, workflows=[catches], max_live_executions=1) as engine:
        eid = await engine.start(catches)
        blocker = await engine.start(catches)  # forces the first to park while it sleeps
        assert await engine.wait(eid) == "KeyError"
        assert await engine.wait(blocker) == "KeyError"
    assert len(runs) == 2  # one per execution, none on replay


async def test_idempotent_start_returns_the_first_execution(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    onboarding = make_onboarding(calls)
    async with durably.Engine(store_factory(), workflows=[onboarding]) as engine:
        first = await engine.start(onboarding, {"email": "1@x"}, idempotency_key="order-17")
        second = await engine.start(onboarding, {"email": "2@x"}, idempotency_key="order-17")
        assert first == second
        await engine.wait(first)
        again = await engine.start(onboarding, {"email": "3@x"}, idempotency_key="order-17")
        assert again == first
        long_key = "k" * 5000  # longer than an LMDB key: hashed by the store
        a = await engine.start(onboarding, {"email": "4@x"}, idempotency_key=long_key)
        b = await engine.start(onboarding, {"email": "5@x"}, idempotency_key=long_key)
        assert a == b and a != first
        await engine.wait(a)
    assert calls.count("create:1@x") == 1 and "create:2@x" not in calls


async def test_concurrent_idempotent_starts_create_one_execution(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    onboarding = make_onboarding(calls)
    ids: list[str] = []
    async with durably.Engine(store_factory(), workflows=[onboarding]) as engine:

        async def start(i: int) -> None:
            ids.append(await engine.start(onboarding, {"email": f"{i}@x"}, idempotency_key="same"))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(start, i)
        assert len(set(ids)) == 1
        await engine.wait(ids[0])
        assert len(await engine.list_executions()) == 1
    assert len([c for c in calls if c.startswith("create")]) == 1


async def test_unknown_workflow_and_execution_errors(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    onboarding = make_onboarding([])
    async with durably.Engine(store_factory(), workflows=[onboarding]) as engine:
        with pytest.raises(durably.UnknownWorkflowError, match="onboarding"):
            await engine.start("nope", {})
        with pytest.raises(durably.UnknownExecutionError):
            await engine.wait("0" * 32)
        with pytest.raises(durably.UnknownExecutionError):
            await engine.get_execution("missing")
        with pytest.raises(durably.UnknownExecutionError):
            await engine.signal("missing", "approved", 1)
        with pytest.raises(durably.PayloadError, match="object"):
            await engine.start(onboarding, {"email": object()})  # type: ignore[dict-item]
        assert [d.name for d in engine.workflows()] == ["onboarding"]


async def test_unserialisable_step_result_fails_at_that_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Opaque:
        pass

    @durably.workflow("opaque")
    async def wf(ctx: durably.Context, data: None) -> None:
        await ctx.step("make", Opaque)

    store = durably.stores.MemoryStore()
    async with durably.Engine(store, workflows=[wf]) as engine:
        eid = await engine.start(wf)
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
    assert info.value.error["type"] == "durably.PayloadError"
    assert "step 'make'" in info.value.error["message"]
    assert "Opaque" in info.value.error["message"]
    # the log holds no StepCompleted for it: the log is intact
    kinds = [raw for raw in store.read_events(eid)]
    assert not any(b'"step.completed"' in raw for raw in kinds)


async def test_duplicate_step_id_raises_at_the_call(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("dup")
    async def dup(ctx: durably.Context, data: None) -> None:
        await ctx.step("same", lambda: 1)
        await ctx.step("same", lambda: 2)

    async with durably.Engine(store_factory(), workflows=[dup]) as engine:
        eid = await engine.start(dup)
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
        assert info.value.error["type"] == "durably.DuplicateStepError"
        assert "'same'" in info.value.error["message"]


async def test_cancel_a_sleeping_and_a_running_execution(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    cancelled_body: list[str] = []

    async def slow() -> str:
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            cancelled_body.append("cancelled")
            raise
        return "done"

    @durably.workflow("long")
    async def long(ctx: durably.Context, data: str) -> str:
        if data == "sleep":
            await ctx.sleep(86400, step_id="nap")
        return await ctx.step("slow", slow)

    store = store_factory()
    async with durably.Engine(store, workflows=[long]) as engine:
        sleeper = await engine.start(long, "sleep")
        runner = await engine.start(long, "run")
        await trio.sleep(10)
        await engine.cancel(sleeper, reason="user asked")
        await engine.cancel(runner, reason="too slow", by="ops")
        for eid, reason in ((sleeper, "user asked"), (runner, "too slow")):
            with pytest.raises(durably.ExecutionCancelledError, match=reason):
                await engine.wait(eid)
            assert (await engine.get_execution(eid)).status is durably.Status.CANCELLED
        await engine.cancel(runner)  # cancelling a finished execution is a no-op
    assert cancelled_body == ["cancelled"]
    # the cancelled step was not recorded as completed, and no timer is left behind
    assert not any(b'"step.completed"' in raw for raw in store.read_events(runner))
    assert store.due_timers(2**62) == []


async def test_engine_restart_resumes_from_the_log(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    def effect(name: str) -> str:
        calls.append(name)
        return name.upper()

    @durably.workflow("resumable")
    async def resumable(ctx: durably.Context, data: None) -> list[str]:
        out = [await ctx.step("a", effect, "a")]
        await ctx.sleep(3600, step_id="wait")
        out.append(await ctx.step("b", effect, "b"))
        return out

    clock = durably.Clock()
    async with durably.Engine(store_factory(), workflows=[resumable], clock=clock) as engine:
        eid = await engine.start(resumable)
        await trio.sleep(60)
        assert (await engine.get_execution(eid)).status is durably.Status.SLEEPING
    assert calls == ["a"]
    async with durably.Engine(store_factory(), workflows=[resumable], clock=clock) as engine:
        report = await engine.recover()
        assert report.parked == 1
        assert await engine.wait(eid) == ["A", "B"]
    assert calls == ["a", "b"]


async def test_changed_code_is_a_nondeterminism_error_and_the_log_is_untouched(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("evolving")
    async def v1(ctx: durably.Context, data: None) -> str:
        await ctx.step("charge", lambda: "charged")
        await ctx.sleep(60, step_id="settle")
        return "v1"

    @durably.workflow("evolving")
    async def v2(ctx: durably.Context, data: None) -> str:
        await ctx.step("charge-card", lambda: "charged")  # renamed under a running execution
        await ctx.sleep(60, step_id="settle")
        return "v2"

    clock = durably.Clock()
    store = store_factory()
    async with durably.Engine(store, workflows=[v1], clock=clock) as engine:
        eid = await engine.start(v1)
        await trio.sleep(1)
    before = store.read_events(eid)
    async with durably.Engine(store_factory(), workflows=[v2], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
    error = info.value.error
    assert error["type"] == "durably.NonDeterminismError"
    assert "'charge'" in error["message"] and "'charge-card'" in error["message"]
    assert "#0" in error["message"]
    after = store_factory().read_events(eid)
    assert after[: len(before)] == before  # history kept; only the failure was appended


async def test_workflow_that_returns_early_is_a_nondeterminism_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = durably.stores.MemoryStore()
    clock = durably.Clock()

    @durably.workflow("shrinking")
    async def v1(ctx: durably.Context, data: None) -> None:
        await ctx.step("one", lambda: 1)
        await ctx.step("two", lambda: 2)
        await ctx.sleep(10, step_id="z")

    @durably.workflow("shrinking")
    async def v2(ctx: durably.Context, data: None) -> None:
        await ctx.step("one", lambda: 1)

    async with durably.Engine(store, workflows=[v1], clock=clock) as engine:
        eid = await engine.start(v1)
        await trio.sleep(1)
    async with durably.Engine(store, workflows=[v2], clock=clock) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="diverged") as info:
            await engine.wait(eid)
    assert "'two'" in info.value.error["message"]


async def test_engine_refuses_use_outside_its_block(autojump_clock: trio.testing.MockClock) -> None:
    engine = durably.Engine(durably.stores.MemoryStore())
    with pytest.raises(durably.DurablyError, match="async with"):
        await engine.start("x")


async def test_workflow_definitions_stay_callable_and_validate() -> None:
    with pytest.raises(durably.ConfigurationError, match="async def"):
        durably.workflow("sync")(lambda ctx, data: None)  # type: ignore[arg-type,return-value]
    onboarding = make_onboarding([])
    assert onboarding.name == "onboarding" and onboarding.category == "users"
    assert onboarding.defaults == {"email": "x@y"}
    with pytest.raises(durably.ConfigurationError):
        durably.Engine(durably.stores.MemoryStore(), workflows=[onboarding, make_onboarding([])])


async def test_wait_timeout_leaves_the_execution_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("slow")
    async def slow(ctx: durably.Context, data: None) -> str:
        await ctx.sleep(100, step_id="s")
        return "ok"

    async with durably.Engine(durably.stores.MemoryStore(), workflows=[slow]) as engine:
        eid = await engine.start(slow)
        with pytest.raises(durably.WaitTimeoutError):
            await engine.wait(eid, timeout=10)
        assert await engine.wait(eid) == "ok"


async def test_concurrent_durable_calls_are_refused_with_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @durably.workflow("parallel")
    async def parallel(ctx: durably.Context, data: None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(ctx.sleep, 1, step_id="a"))
            nursery.start_soon(functools.partial(ctx.sleep, 1, step_id="b"))

    async with durably.Engine(durably.stores.MemoryStore(), workflows=[parallel]) as engine:
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.start_and_wait(parallel)
    assert info.value.error["type"] == "durably.DurablyError"
    assert "must not run concurrently" in info.value.error["message"]
