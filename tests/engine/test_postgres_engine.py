"""The engine and its clients on PostgreSQL, opened by DSN: a workflow's steps, a real
sleep and a client's signal end to end; one worker per database; an operator action
from a client, run by the worker through the store, or by the client itself when no
worker runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

import durably

Settle = Callable[..., Awaitable[durably.Execution]]

pytestmark = pytest.mark.slow

ran: list[str] = []


def charge(order: str) -> str:
    ran.append(order)
    return f"receipt-{order}"


@durably.workflow("pg-order")
async def order_flow(ctx: durably.Context, order: str) -> dict[str, str]:
    receipt = await ctx.step("charge", charge, order)
    await ctx.sleep(0.2, step_id="settle")
    approval = await ctx.wait_for_signal("approved", step_id="approval")
    shipped = await ctx.step("ship", lambda: f"shipped-{order}")
    return {"receipt": receipt, "by": approval["by"], "shipped": shipped}


@durably.workflow("pg-idle")
async def idle(ctx: durably.Context, _: None) -> None:
    await ctx.wait_for_signal("never", step_id="wait")


async def test_a_workflow_runs_end_to_end_on_postgres(postgres_dsn: str, settle: Settle) -> None:
    ran.clear()
    assert postgres_dsn.startswith("postgresql://")
    async with durably.Engine(postgres_dsn, workflows=[order_flow], poll_interval=0.05) as engine:
        assert type(engine.store).__name__ == "PostgresStore"
        async with durably.Client(postgres_dsn, poll_interval=0.05) as client:
            started = trio.current_time()
            eid = await client.start("pg-order", "o-1")
            with trio.fail_after(10):  # the worker finds the start in the inbox, and runs it
                await settle(engine, eid, "waiting")
            assert trio.current_time() - started >= 0.2  # the sleep, in real time
            await client.signal(eid, "approved", {"by": "ana"})
            with trio.fail_after(10):
                result = await client.wait(eid)
    assert result == {"receipt": "receipt-o-1", "by": "ana", "shipped": "shipped-o-1"}
    assert ran == ["o-1"]
    # A new worker on the database resumes from the log: nothing runs again.
    async with durably.Engine(postgres_dsn, workflows=[order_flow]) as engine:
        execution = await engine.get_execution(eid)
        assert (execution.status, execution.result) == ("completed", result)
    assert ran == ["o-1"]


async def test_one_worker_per_database_and_client_calls_through_it(
    postgres_dsn: str, settle: Settle
) -> None:
    async with durably.Engine(postgres_dsn, workflows=[idle], poll_interval=0.05) as engine:
        with pytest.raises(durably.StoreLockedError, match="one worker per store"):
            async with durably.Engine(postgres_dsn, workflows=[idle]):
                pass
        eid = await engine.start(idle, None)
        await settle(engine, eid, "waiting")
        async with durably.Client(postgres_dsn, poll_interval=0.05) as client:
            # Run by the worker: the request and its answer travel through the store.
            with trio.fail_after(10):
                await client.operate("force_fail", eid, reason="given up", by="test")
            assert (await client.get_execution(eid)).status == "failed"
    # No worker: the client runs the action itself, holding the worker lock meanwhile.
    async with durably.Client(postgres_dsn) as client:
        await client.operate("retry", eid, reason="try again", by="test")
        assert (await client.get_execution(eid)).status == "running"  # for its next worker


async def test_a_clients_write_wakes_the_worker_through_notify(
    postgres_dsn: str, settle: Settle
) -> None:
    """The worker's periodic look is 30 s away: the client's start is run at once all the
    same, because its transaction sent NOTIFY to the worker's LISTEN."""
    ran.clear()
    async with durably.Engine(postgres_dsn, workflows=[order_flow], poll_interval=30) as engine:
        async with durably.Client(postgres_dsn, poll_interval=0.05) as client:
            for n in range(3):
                await trio.sleep(0.1)  # the worker's first looks are long done
                eid = await client.start("pg-order", f"n-{n}")
                with trio.fail_after(5):
                    await settle(engine, eid, "waiting")
                await client.signal(eid, "approved", {"by": "bo"})
                with trio.fail_after(5):
                    await settle(engine, eid, "completed")
    assert ran == ["n-0", "n-1", "n-2"]


async def test_workers_of_many_on_postgres_spread_signal_and_take_over(
    postgres_dsn: str,
) -> None:
    """Two workers of many on one database (two stores, as two hosts would open it): a
    client's starts spread over both; a client's signal reaches the owner by NOTIFY; the
    one that leaves hands its shards over, and its waiting execution finishes at the
    other."""
    from durably.core._shards import SHARDS

    options = {"workflows": [order_flow], "many_workers": True, "lease_seconds": 1.0}
    async with durably.Engine(postgres_dsn, **options) as a:
        async with durably.Engine(postgres_dsn, **options) as b:
            own_a, own_b = a._ownership, b._ownership
            assert own_a is not None and own_b is not None
            with trio.fail_after(20):
                halves = [SHARDS // 2] * 2
                while [len(own_a.shards), len(own_b.shards)] != halves:  # noqa: ASYNC110
                    await trio.sleep(0.05)  # (two workers' beats: no event to wait on)
            async with durably.Client(postgres_dsn) as client:
                ids = [await client.start(order_flow, f"o{n}") for n in range(12)]
                assert {own_a.owns(e) for e in ids} == {True, False}  # both got some
                kept = next(e for e in ids if own_b.owns(e))
                with trio.fail_after(20):
                    while (await client.get_execution(kept)).status != "waiting":  # noqa: ASYNC110
                        await trio.sleep(0.05)  # (read as another process sees it)
        # b left: a holds every shard at its next beat and resumes b's executions.
        async with durably.Client(postgres_dsn) as client:
            for eid in ids:
                await client.signal(eid, "approved", {"by": "ana"})
            results = [await client.wait(eid, timeout=30) for eid in ids]
        assert len(own_a.shards) == SHARDS
        assert [r["shipped"] for r in results] == [f"shipped-o{n}" for n in range(12)]
