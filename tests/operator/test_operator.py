"""The operator: listing, detail, and every action recorded in the log and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.core._events import decode_all
from durably.stores import Store

ran: list[str] = []
broken: set[str] = set()
hanging: list[trio.Event] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()
    broken.clear()
    hanging.clear()


async def work(name: str) -> str:
    ran.append(name)
    if name in broken:
        raise RuntimeError(f"{name} is broken")
    return f"{name}-done"


async def forever(name: str) -> str:
    ran.append(name)
    for event in hanging:
        event.set()
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        ran.append(f"{name}-cancelled")
        raise


@durably.workflow("job")
async def job(ctx: durably.Context, mode: str) -> dict[str, str]:
    first = await ctx.step("first", work, "first")
    if mode == "hang":
        await ctx.step("hang", forever, "hang")
    if mode == "sleep":
        await ctx.sleep(3600, step_id="nap")
    if mode == "signal":
        await ctx.wait_for_signal("go", step_id="go")
    second = await ctx.step(
        "second", work, "second", retry=durably.Retry(max_attempts=3, initial=100)
    )
    return {"first": first, "second": second}


def actions(trail: list[durably.AuditEntry]) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.data["action"], e.data["by"], e.data["reason"])
        for e in trail
        if e.kind == "operator_action"
    ]


def statuses(trail: list[durably.AuditEntry]) -> list[str]:
    return [e.data["status"] for e in trail if e.kind == "status_changed"]


async def test_list_executions_pages_and_filters(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("other")
    async def other(ctx: durably.Context, _: Any) -> None:
        await ctx.wait_for_signal("never", step_id="w")

    async with durably.Engine(store_factory(), workflows=[job, other], clock=clock) as engine:
        done = [(await engine.start_and_wait(job, "plain")).execution_id for _ in range(5)]
        waiting = [await engine.start(other) for _ in range(2)]
        await trio.sleep(1)
        op = engine.operator

        async def pages(limit: int, **filters: Any) -> list[list[str]]:
            found: list[list[str]] = []
            page = await op.list_executions(limit=limit, **filters)
            while True:
                found.append([e.id for e in page.items])
                if page.next_after is None:
                    return found
                page = await op.list_executions(limit=limit, after=page.next_after, **filters)

        everything = sorted(done + waiting)
        # 7 executions by 2: three full pages and a last one, no empty page after it.
        assert await pages(2) == [everything[i : i + 2] for i in range(0, 7, 2)]
        # A last page that is exactly full is the last one too.
        assert await pages(7) == [everything]
        assert await pages(2, status="waiting") == [sorted(waiting)]
        by_workflow = await op.list_executions(workflow="job", status=durably.Status.COMPLETED)
        assert [e.id for e in by_workflow.items] == sorted(done)
        with pytest.raises(durably.ConfigurationError, match="unknown status 'nope'"):
            await op.list_executions(status="nope")


async def test_detail_shows_execution_steps_and_audit(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    broken.add("second")
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "sleep")
        await settle(engine, eid, "sleeping")
        detail = await engine.operator.get_execution_detail(eid)
        assert detail.execution.status is durably.Status.SLEEPING
        assert [(s.step_id, s.kind, s.status) for s in detail.steps] == [
            ("first", "step", "completed"),
            ("nap", "sleep", "waiting"),
        ]
        assert detail.steps[0].result == "first-done"
        await settle(engine, eid, "retrying")
        detail = await engine.operator.get_execution_detail(eid)
        second = detail.steps[-1]
        assert (second.step_id, second.status, second.attempts) == ("second", "retrying", 1)
        assert second.error is not None and second.error["message"] == "second is broken"
        kinds = [e.kind for e in detail.audit]
        assert kinds == [
            "status_changed",  # pending
            "step_completed",
            "status_changed",  # running
            "sleep_scheduled",
            "status_changed",  # sleeping
            "sleep_completed",
            "status_changed",  # running
            "step_retrying",
            "status_changed",  # retrying
        ]
        assert statuses(detail.audit) == ["pending", "running", "sleeping", "running", "retrying"]
        assert [e.seq for e in detail.audit][:2] == [0, 1]
        assert detail.audit == await engine.audit(eid)
        json_ready = [e.to_dict() for e in detail.audit]
        assert json_ready[1]["kind"] == "step_completed" and "duration_ms" in json_ready[1]["data"]


async def test_retry_runs_a_failed_execution_again_from_its_log(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    broken.add("second")
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "plain")
        with pytest.raises(durably.ExecutionFailedError, match="second is broken"):
            await engine.wait(eid)
        assert ran == ["first", "second", "second", "second"]
        broken.clear()
        ran.clear()
        execution = await engine.operator.retry(eid, by="alice", reason="fixed the API")
        assert execution.attempt == 2
        assert await engine.wait(eid) == {"first": "first-done", "second": "second-done"}
        trail = await engine.audit(eid)
    assert ran == ["second"]  # the completed step replayed, the failed one ran again
    assert actions(trail) == [("retry", "alice", "fixed the API")]
    assert statuses(trail)[-3:] == ["failed", "running", "completed"]
    resumed = [e for e in trail if e.kind == "status_changed" and e.data.get("attempt")]
    assert resumed[0].data["attempt"] == 2


async def test_retry_on_a_bare_store_then_an_engine_resumes_it(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    broken.add("first")
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "plain")
        with pytest.raises(durably.ExecutionFailedError):
            await engine.wait(eid)
    broken.clear()
    store: Store = store_factory()
    op = durably.Operator(store)
    await op.retry(eid, by="cli", reason="redeployed")
    assert (await op.get_execution(eid)).status is durably.Status.RUNNING
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        assert (await engine.wait(eid))["first"] == "first-done"
        trail = await engine.audit(eid)
    assert actions(trail) == [("retry", "cli", "redeployed")]


async def test_cancel_interrupts_a_running_step(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        hanging.append(in_step := trio.Event())
        eid = await engine.start(job, "hang")
        await in_step.wait()
        execution = await engine.operator.cancel(eid, by="bob", reason="stuck")
        assert execution.status is durably.Status.CANCELLED
        with pytest.raises(durably.ExecutionCancelledError, match="stuck"):
            await engine.wait(eid)
        trail = await engine.audit(eid)
        with pytest.raises(durably.OperatorError, match="is cancelled"):
            await engine.operator.cancel(eid)
    assert ran == ["first", "hang", "hang-cancelled"]
    assert actions(trail) == [("cancel", "bob", "stuck")]
    assert statuses(trail)[-1] == "cancelled"


async def test_cancel_of_a_parked_execution_removes_its_timer(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "sleep")
        await settle(engine, eid, "sleeping")
    store: Store = store_factory()
    assert len(store.due_timers(2**63 - 1)) == 1
    await durably.Operator(store).cancel(eid, by="cli")
    assert store.due_timers(2**63 - 1) == []
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        with pytest.raises(durably.ExecutionCancelledError, match="cancelled by an operator"):
            await engine.wait(eid)


async def test_force_fail_then_retry(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "signal")
        await settle(engine, eid, "waiting")
        failed = await engine.operator.force_fail(eid, "customer gave up", by="carol")
        assert failed.status is durably.Status.FAILED
        assert failed.error is not None and failed.error["type"] == "durably.ForcedFailure"
        with pytest.raises(durably.ExecutionFailedError, match="customer gave up"):
            await engine.wait(eid)
        outcome = await engine.signal(eid, "go")
        assert outcome.delivery is durably.SignalDelivery.REJECTED
        with pytest.raises(durably.ConfigurationError, match="needs a reason"):
            await engine.operator.force_fail(eid, "")
        # A retry runs it from the log: it waits for the signal again.
        await engine.operator.retry(eid, by="carol")
        await settle(engine, eid, "waiting")
        await engine.signal(eid, "go")
        assert (await engine.wait(eid))["second"] == "second-done"
        trail = await engine.audit(eid)
    assert actions(trail) == [("force_fail", "carol", "customer gave up"), ("retry", "carol", None)]
    assert ran == ["first", "second"]


async def test_skip_step_of_a_failed_execution(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    broken.add("second")
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "plain")
        with pytest.raises(durably.ExecutionFailedError):
            await engine.wait(eid)
        with pytest.raises(
            durably.OperatorError, match=r"'first' .* last recorded 'step.completed'"
        ):
            await engine.operator.skip_step(eid, "first", "x")
        with pytest.raises(durably.OperatorError, match=r"'nope' .* not in the log"):
            await engine.operator.skip_step(eid, "nope", "x")
        ran.clear()
        await engine.operator.skip_step(eid, "second", "by hand", by="dave", reason="done it")
        assert await engine.wait(eid) == {"first": "first-done", "second": "by hand"}
        trail = await engine.audit(eid)
    assert ran == []
    assert actions(trail) == [("skip_step", "dave", "done it")]
    skipped = [e for e in trail if e.kind == "step_skipped"]
    assert skipped[0].step_id == "second" and skipped[0].data["result"] == "by hand"


async def test_skip_step_of_a_step_waiting_for_its_retry(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    broken.add("second")
    store: Store = store_factory()
    async with durably.Engine(store, workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, "plain")
        await settle(engine, eid, "retrying")
        assert engine.statistics().live == 1  # live, waiting on its retry timer
        before = trio.current_time()
        await engine.operator.skip_step(eid, "second", "skipped", by="erin")
        assert (await engine.wait(eid))["second"] == "skipped"
        assert trio.current_time() - before < 1  # did not wait for the 100 s backoff
        trail = await engine.audit(eid)
    assert ran == ["first", "second"]
    assert actions(trail) == [("skip_step", "erin", None)]
    assert store.due_timers(2**63 - 1) == []


async def test_actions_that_do_not_fit_write_nothing(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        result = await engine.start_and_wait(job, "plain")
        eid = result.execution_id
        before = engine.store.read_events(eid)
        op = engine.operator
        for call in (
            op.retry(eid),
            op.retry_rollback(eid),
            op.cancel(eid),
            op.force_fail(eid, "why"),
            op.skip_step(eid, "second", 1),
        ):
            with pytest.raises(durably.OperatorError, match=r"is completed.*Nothing was changed"):
                await call
        assert engine.store.read_events(eid) == before
        with pytest.raises(durably.UnknownExecutionError):
            await op.retry("0" * 32)


async def test_every_action_is_in_the_log_the_audit_and_on_the_bus(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any
) -> None:
    broken.add("second")
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        async with engine.subscribe(emits=False, audit=True) as sub:
            op = engine.operator
            a = await engine.start(job, "signal")
            await settle(engine, a, "waiting")
            await op.cancel(a, by="u1", reason="r1")
            b = await engine.start(job, "signal")
            await settle(engine, b, "waiting")
            await op.force_fail(b, "r2", by="u2")
            await op.retry(b, by="u3", reason="r3")
            await settle(engine, b, "waiting")
            await engine.signal(b, "go")
            await settle(engine, b, "retrying")
            await op.skip_step(b, "second", "s", by="u4", reason="r4")
            await engine.wait(b)
            live = []
            while True:
                try:
                    live.append(sub.receive_nowait())
                except trio.WouldBlock:
                    break
        trails = {eid: await engine.audit(eid) for eid in (a, b)}
        raw_b = decode_all(engine.store.read_events(b))
    assert actions(trails[a]) == [("cancel", "u1", "r1")]
    assert actions(trails[b]) == [
        ("force_fail", "u2", "r2"),
        ("retry", "u3", "r3"),
        ("skip_step", "u4", "r4"),
    ]
    operator_events = [e for e in raw_b if e.tag == "operator"]
    assert [e.action for e in operator_events] == ["force_fail", "retry", "skip_step"]  # type: ignore[attr-defined]
    # Published live as appended: the bus saw the same entries as the trails.
    for eid in (a, b):
        assert [e for e in live if e.execution_id == eid] == trails[eid]


async def test_operator_needs_a_running_engine_for_actions(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    store = store_factory()
    engine = durably.Engine(store, workflows=[job], clock=clock)
    async with engine:
        eid = (await engine.start_and_wait(job, "plain")).execution_id
    # Reading works on the engine's store; acting needs the engine that owns the actors.
    assert (await engine.operator.get_execution(eid)).status is durably.Status.COMPLETED
    with pytest.raises(durably.DurablyError, match="engine is not running"):
        await engine.operator.cancel(eid)


@pytest.mark.parametrize("mode", ["signal", "sleep"])
async def test_bare_store_repair_of_a_waiting_execution(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock, settle: Any, mode: str
) -> None:
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        eid = await engine.start(job, mode)
        await settle(engine, eid, "waiting", "sleeping")
    store: Store = store_factory()
    op = durably.Operator(store)
    await op.force_fail(eid, "stuck", by="cli")
    assert store.due_timers(2**63 - 1) == []
    await op.retry(eid, by="cli")
    assert (await op.get_execution(eid)).status is durably.Status.RUNNING
    scheduled = [e for e in await op.audit(eid) if e.kind == "sleep_scheduled"]
    async with durably.Engine(store_factory(), workflows=[job], clock=clock) as engine:
        if mode == "signal":
            # Its replay reaches the wait and records it again (no event: nothing new
            # happened), so a signal finds it waiting even if it gets parked.
            await trio.testing.wait_all_tasks_blocked()
            execution = await engine.get_execution(eid)
            assert (execution.status, execution.waiting_for) == ("waiting", "go")
            await engine.signal(eid, "go")
        assert (await engine.wait(eid))["second"] == "second-done"
        trail = await engine.audit(eid)
    assert actions(trail) == [("force_fail", "cli", "stuck"), ("retry", "cli", None)]
    assert ran == ["first", "second"]
    if mode == "sleep":  # the sleep kept its recorded wake-up time
        fired = next(e for e in trail if e.kind == "sleep_completed")
        assert fired.at.isoformat() == scheduled[0].data["wake_at"]
