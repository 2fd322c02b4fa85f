"""One bad execution never takes the worker down: a step body or a workflow that raises
``SystemExit``, ``GeneratorExit`` or another ``BaseException`` fails (recorded, through the
retry policy like any error) while the engine runs on; ``KeyboardInterrupt`` still reaches
the host. Also: a misused nursery names the rule it broke, and the record says ``running``
while the first step's body runs. In-process, virtual time, real LMDB files where the
store matters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trio

import durably
from durably.core._errors import type_name
from durably.runtime._primitive import unwinds
from durably.stores import MemoryStore, Op

from ._helpers import lmdb_engine


class Custom(BaseException):
    """A BaseException of the user's own (not an Exception)."""


KINDS = [SystemExit, GeneratorExit, Custom]


def _raiser(kind: type[BaseException], asynchronous: bool) -> Callable[[], Any]:
    def body() -> None:
        raise kind("from the body")

    async def async_body() -> None:
        await trio.sleep(1)
        raise kind("from the body")

    return async_body if asynchronous else body


@durably.workflow("healthy")
async def healthy(ctx: durably.Context, _: None) -> str:
    await ctx.step("a", trio.sleep, 5)
    await ctx.sleep(10, step_id="nap")
    return await ctx.step("b", lambda: "healthy")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
async def test_27_base_exception_in_a_step_body_fails_that_step(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    kind: type[BaseException],
    asynchronous: bool,
) -> None:
    seen: list[str] = []

    @durably.workflow("bad")
    async def bad(ctx: durably.Context, _: None) -> str:
        try:
            await ctx.step("boom", _raiser(kind, asynchronous))
        except durably.StepError as error:  # the workflow sees it like any step failure
            seen.append(error.error_type)
            raise
        return "unreachable"

    async with lmdb_engine(tmp_path / "s", [bad, healthy]) as engine:
        good = await engine.start(healthy)
        with pytest.raises(durably.ExecutionFailedError, match="from the body") as info:
            await engine.start_and_wait(bad)
        assert await engine.wait(good) == "healthy"
        # The engine runs on: a new execution after the failure completes too.
        assert (await engine.start_and_wait(healthy)).data == "healthy"
    name = type_name(kind)
    assert seen == [name]
    assert info.value.error["type"] == "durably.StepError"
    assert f"step 'boom' failed: {name}: from the body" in info.value.error["message"]
    # The step's failure is in the log, so a restart replays it instead of re-running it.
    async with lmdb_engine(tmp_path / "s", [bad, healthy]) as engine:
        view = await engine.get_execution(info.value.execution_id)
        assert view.status is durably.Status.FAILED


async def test_27_base_exception_goes_through_the_retry_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[int] = []

    def flaky() -> str:
        info = durably.current_step()
        assert info is not None
        attempts.append(info.attempt)
        if info.attempt < 3:
            raise SystemExit(f"attempt {info.attempt}")
        return "third time"

    @durably.workflow("retried")
    async def retried(ctx: durably.Context, _: None) -> str:
        policy = durably.Retry(max_attempts=3, initial=1, retry_on=(SystemExit,))
        return await ctx.step("flaky", flaky, retry=policy)

    async with durably.Engine(MemoryStore(), workflows=[retried]) as engine:
        assert (await engine.start_and_wait(retried)).data == "third time"
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
async def test_27_base_exception_in_a_workflow_fails_the_execution(
    autojump_clock: trio.testing.MockClock, kind: type[BaseException]
) -> None:
    @durably.workflow("bad-workflow")
    async def bad_workflow(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: 1)
        raise kind("from the workflow")

    async with durably.Engine(MemoryStore(), workflows=[bad_workflow, healthy]) as engine:
        good = await engine.start(healthy)
        with pytest.raises(durably.ExecutionFailedError, match="from the workflow") as info:
            await engine.start_and_wait(bad_workflow)
        assert await engine.wait(good) == "healthy"
    assert info.value.error["type"] == type_name(kind)


async def test_27_keyboard_interrupt_in_a_step_body_reaches_the_host(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    interrupt = [True]

    def body() -> str:
        if interrupt[0]:
            raise KeyboardInterrupt
        return "done"

    @durably.workflow("interrupted")
    async def interrupted(ctx: durably.Context, _: None) -> str:
        return await ctx.step("a", body)

    caught: BaseException | None = None
    try:
        async with lmdb_engine(tmp_path / "s", [interrupted]) as engine:
            eid = await engine.start(interrupted)
            await trio.sleep_forever()
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        caught = exc
    assert isinstance(caught, KeyboardInterrupt) or (
        isinstance(caught, BaseExceptionGroup) and caught.subgroup(KeyboardInterrupt)
    ), repr(caught)
    # Not recorded as the step's failure: the interrupted step runs again on restart.
    interrupt[0] = False
    async with lmdb_engine(tmp_path / "s", [interrupted]) as engine:
        assert await engine.wait(eid) == "done"


def test_27_generator_exit_thrown_in_by_close_is_not_a_failure() -> None:
    """A coroutine being closed gets GeneratorExit at its await: that is unwinding, not
    the body's failure; a body's own ``raise GeneratorExit`` is one."""
    verdicts: list[bool] = []

    async def body(own: bool) -> None:
        if own:
            raise GeneratorExit("own")
        await trio.lowlevel.checkpoint()  # suspended here when the caller is closed

    async def caller(own: bool) -> None:
        try:
            await body(own)
        except BaseException as exc:
            verdicts.append(unwinds(exc))
            raise

    closed: Coroutine[Any, Any, None] = caller(False)
    closed.send(None)  # now suspended inside body
    closed.close()
    with pytest.raises(GeneratorExit, match="own"):
        caller(True).send(None)
    assert verdicts == [True, False]
    assert unwinds(KeyboardInterrupt()) and not unwinds(SystemExit())
    assert unwinds(BaseExceptionGroup("g", [SystemExit(), KeyboardInterrupt()]))
    assert not unwinds(BaseExceptionGroup("g", [SystemExit(), ValueError()]))


async def test_27_every_kind_at_once_fails_alone_beside_healthy_executions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every kind at once beside healthy executions: each fails alone, the rest complete."""

    def make(kind: type[BaseException]) -> durably.WorkflowDefinition[None, None]:
        @durably.workflow(f"bad-{kind.__name__}")
        async def bad(ctx: durably.Context, _: None) -> None:
            await ctx.step("boom", _raiser(kind, True))

        return bad

    bads = [make(kind) for kind in KINDS]
    async with durably.Engine(MemoryStore(), workflows=[*bads, healthy]) as engine:
        goods = [await engine.start(healthy) for _ in range(3)]
        failing = [await engine.start(bad) for bad in bads]
        for eid in failing:
            with pytest.raises(durably.ExecutionFailedError, match="from the body"):
                await engine.wait(eid)
        assert [await engine.wait(eid) for eid in goods] == ["healthy"] * 3


async def test_27_misused_nursery_names_the_rule(autojump_clock: trio.testing.MockClock) -> None:
    @durably.workflow("three-at-once")
    async def three_at_once(ctx: durably.Context, _: None) -> None:
        async with trio.open_nursery() as nursery:
            for sid in "abc":  # two of three are refused: a group of two errors
                nursery.start_soon(functools.partial(ctx.step, sid, trio.sleep, 1))

    async with durably.Engine(MemoryStore(), workflows=[three_at_once]) as engine:
        with pytest.raises(durably.ExecutionFailedError, match="must not run concurrently") as info:
            await engine.start_and_wait(three_at_once)
    assert info.value.error["type"] == "durably.DurablyError"
    assert info.value.error["message"].startswith(
        "durable calls of one execution must not run concurrently"
    )
    # The traceback keeps the whole group, for whoever debugs it.
    assert "2 sub-exceptions" in info.value.error["traceback"]


class CountingStore(MemoryStore):
    """A MemoryStore that counts its transactions (every group commit is one)."""

    def __init__(self) -> None:
        self.transactions = self.ops = 0
        super().__init__()

    def apply(self, ops: list[Op]) -> list[Any]:
        self.transactions += 1
        self.ops += len(ops)
        return super().apply(ops)


async def test_27_record_says_running_while_the_first_step_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    statuses: list[durably.Status] = []
    holder: list[durably.Engine] = []

    async def look() -> int:
        info = durably.current_step()
        assert info is not None
        statuses.append((await holder[0].get_execution(info.execution_id)).status)
        return 1

    @durably.workflow("three")
    async def three(ctx: durably.Context, _: None) -> int:
        return sum([await ctx.step(f"s{i}", look) for i in range(3)])

    store = CountingStore()
    async with durably.Engine(store, workflows=[three]) as engine:
        holder.append(engine)
        before = store.transactions, store.ops
        assert (await engine.start_and_wait(three)).data == 3
        # The start, one per step, the outcome: no commit of its own for "running", and
        # the first step's commit carries no record change either.
        assert (store.transactions - before[0], store.ops - before[1]) == (5, 6)
    assert statuses == [durably.Status.RUNNING] * 3


async def test_27_a_clients_start_is_pending_until_a_worker_runs_it(tmp_path: Path) -> None:
    statuses: list[durably.Status] = []
    holder: list[durably.Engine] = []

    async def look() -> int:
        info = durably.current_step()
        assert info is not None
        statuses.append((await holder[0].get_execution(info.execution_id)).status)
        return 1

    @durably.workflow("looks")
    async def looks(ctx: durably.Context, _: None) -> int:
        return await ctx.step("s", look)

    async with durably.Engine(tmp_path / "s", workflows=[looks]):
        pass  # the worker creates the store; the client opens it while no worker runs
    async with durably.Client(tmp_path / "s", workflows=[looks]) as client:
        eid = await client.start(looks)
        assert (await client.get_execution(eid)).status is durably.Status.PENDING
        assert [e.id for e in await client.list_executions(status="pending")] == [eid]
    async with durably.Engine(tmp_path / "s", workflows=[looks]) as engine:
        holder.append(engine)
        with trio.fail_after(30):
            assert await engine.wait(eid) == 1
        assert await engine.list_executions(status="pending") == []
    assert statuses == [durably.Status.RUNNING]
