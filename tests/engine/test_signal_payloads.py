"""A typed signal's payload can never put an execution beyond repair: a sender that knows
the type refuses it; one that does not (the CLI, a client by name) gets it consumed as a
rejection, which the wait raises as ``SignalPayloadError`` now and on every replay."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import durably
from durably.core._events import decode_all
from durably.stores import LmdbStore, Store
from durably.testing import check_replay_async


@attrs.frozen
class Approval:
    by: str
    amount: int


Approved = durably.Signal("approved", Approval)
BAD = {"by": 1}  # no amount, and by is not a str

recorded: list[str] = []


@pytest.fixture
def settle(settle: Any) -> Any:
    """The shared ``settle``, bounded: a bug shows as ``TooSlowError``, not a hang."""

    async def bounded(engine: Any, execution_id: str, *wanted: str) -> durably.Execution:
        with trio.fail_after(30 * 86400):  # virtual seconds in most tests
            return await settle(engine, execution_id, *wanted)  # type: ignore[no-any-return]

    return bounded


def note(message: str) -> str:
    recorded.append(message)
    return message


@durably.workflow("strict")
async def strict(ctx: durably.Context, _: None) -> str:
    approval = await ctx.wait_for_signal(Approved, step_id="approval")
    return f"{approval.by} approved {approval.amount}"


@durably.workflow("forgiving")
async def forgiving(ctx: durably.Context, _: None) -> str:
    for n in range(3):
        try:
            approval = await ctx.wait_for_signal(Approved, step_id=f"approval-{n}")
        except durably.SignalPayloadError as error:
            await ctx.step(f"complain-{n}", note, f"{error.signal}: {error.expected}")
            await ctx.sleep(60, step_id=f"pause-{n}")  # a restart lands here
            continue
        return f"{approval.by} approved {approval.amount}"
    return "gave up"


def tags(store: Store, eid: str) -> list[str]:
    return [event.tag for event in decode_all(store.read_events(eid))]


async def test_a_sender_that_knows_the_type_refuses_the_payload(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    store = store_factory()
    async with (
        durably.Engine(store, workflows=[strict]) as engine,
        durably.Client(store) as client,
    ):
        eid = await engine.start(strict)
        await settle(engine, eid, "waiting")
        for sender in (engine, client):
            with pytest.raises(durably.PayloadError, match="does not fit Approval"):
                await sender.signal(eid, Approved, BAD)
        assert store.mailbox(eid) == []
        await engine.cancel(eid)


async def test_a_payload_that_does_not_fit_raises_a_catchable_error_replayed_alike(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    recorded.clear()
    async with durably.Engine(store_factory(), workflows=[forgiving], clock=clock) as engine:
        eid = await engine.start(forgiving)
        await settle(engine, eid, "waiting")
        outcome = await engine.signal(eid, "approved", BAD)  # by name: no type known
        assert outcome.delivery is durably.SignalDelivery.DELIVERED  # taken, as rejected
        await settle(engine, eid, "sleeping")
    store = store_factory()
    async with durably.Engine(store, workflows=[forgiving], clock=clock) as engine:
        # The replay raises the recorded rejection the same way: the same path is taken.
        await settle(engine, eid, "waiting")
        await engine.signal(eid, Approved, Approval("ana", 5))
        assert await engine.wait(eid, timeout=86400) == "ana approved 5"
    assert recorded == ["approved: Approval"]  # complained once, not again on replay
    assert tags(store, eid).count("signal.rejected") == 1
    assert store.mailbox(eid) == []
    detail = await durably.Operator(store).get_execution_detail(eid)
    first = next(step for step in detail.steps if step.step_id == "approval-0")
    assert first.status == "rejected" and first.error is not None
    assert "does not fit Approval" in first.error["message"]
    rejected = next(entry for entry in detail.audit if entry.kind == "signal_rejected")
    assert rejected.data["signal"] == "approved"


async def test_an_uncaught_bad_payload_fails_the_execution_and_retry_waits_again(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[strict], clock=clock) as engine:
        eid = await engine.start(strict)
        await settle(engine, eid, "waiting")
        await engine.signal(eid, "approved", BAD)
        with pytest.raises(durably.ExecutionFailedError, match="SignalPayloadError") as failed:
            await engine.wait(eid, timeout=86400)
        message = failed.value.error["message"]
        assert "'approved'" in message and "Approval" in message and "'by': 1" in message
        # The retry reopens the wait: the rejected signal is not taken again.
        retried = await engine.operator.retry(eid, by="ops", reason="sender fixed")
        assert (retried.status, retried.waiting_for) == (durably.Status.WAITING, "approved")
        good = await engine.signal(eid, Approved, Approval("bo", 7))
        assert good.delivery is durably.SignalDelivery.DELIVERED
        assert await engine.wait(eid, timeout=86400) == "bo approved 7"
    assert tags(store, eid).count("signal.rejected") == 1
    assert store.mailbox(eid) == []


async def test_an_uncaught_bad_payload_retried_on_a_bare_store_waits_again(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    clock: durably.Clock,
    settle: Any,
) -> None:
    async with durably.Engine(store_factory(), workflows=[strict], clock=clock) as engine:
        eid = await engine.start(strict)
        await settle(engine, eid, "waiting")
        await engine.signal(eid, "approved", BAD)
        await settle(engine, eid, "failed")
    store = store_factory()
    await durably.Operator(store).retry(eid, by="cli")
    async with durably.Engine(store, workflows=[strict], clock=clock) as engine:
        # Left running (no engine to restore its wait): the replay records the wait
        # again, with no event (nothing new happened), so no status is published.
        await trio.testing.wait_all_tasks_blocked()
        execution = await engine.get_execution(eid)
        assert (execution.status, execution.waiting_for) == ("waiting", "approved")
        await engine.signal(eid, Approved, Approval("cy", 1))
        assert await engine.wait(eid, timeout=86400) == "cy approved 1"


async def test_a_rejected_signal_replays_identically_at_every_boundary(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorded.clear()
    report = await check_replay_async(
        forgiving,
        signals=[("waiting", "approved", BAD), ("waiting", Approved, Approval("di", 2))],
        before_run=recorded.clear,
    )
    assert report.boundaries > 0 and report.result == "di approved 2"
    assert [event["t"] for event in report.history].count("signal.rejected") == 1


@pytest.mark.slow
async def test_the_command_line_cannot_put_an_execution_beyond_repair(
    tmp_path: Path, settle: Any
) -> None:
    # Real processes: the worker here (real time), each `durably` command a client.
    path = tmp_path / "store"

    async def cli(*args: str) -> tuple[int, str]:
        done = await trio.run_process(
            [sys.executable, "-m", "durably", "--store", str(path), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        return done.returncode, (done.stdout + done.stderr).decode()

    store = LmdbStore(path)
    try:
        async with durably.Engine(store, workflows=[strict]) as engine:
            eid = await engine.start(strict)
            with trio.fail_after(120):
                await settle(engine, eid, "waiting")
                assert await cli("signal", eid, "approved", '{"by": 1}') == (0, "delivered\n")
                await settle(engine, eid, "failed")
                code, said = await cli("retry", eid, "--reason", "bad payload")
                assert code == 0, said
                await settle(engine, eid, "waiting")
                good = '{"by": "ed", "amount": 4}'
                assert await cli("signal", eid, "approved", good) == (0, "delivered\n")
                assert await engine.wait(eid, timeout=86400) == "ed approved 4"
    finally:
        store.close()
