"""Entries 14 to 17: duplicate delivery, a signal before its waiter, a signal for an unknown
or finished execution, and signals at the same instant, on LMDB and across restarts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trio

import durably
from durably.stores import LmdbStore

from ._helpers import events, lmdb_engine


def _collector(count: int) -> durably.WorkflowDefinition[None, list[int]]:
    @durably.workflow("collect")
    async def collect(ctx: durably.Context, _: None) -> list[int]:
        got = []
        for i in range(count):
            got.append(await ctx.wait_for_signal("item", step_id=f"item{i}"))
            if i == count // 2:
                await ctx.sleep(60, step_id="halfway")  # a restart lands here
        return got

    return collect


async def test_14_duplicate_signal_with_the_same_dedup_key_is_delivered_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    collect = _collector(2)
    store = tmp_path / "s"
    async with lmdb_engine(store, [collect]) as engine:
        eid = await engine.start(collect)
        assert (await engine.signal(eid, "item", 1, dedup_key="msg-1")).accepted
        await trio.sleep(1)  # consumed
        again = await engine.signal(eid, "item", 1, dedup_key="msg-1")
        assert again.delivery is durably.SignalDelivery.REJECTED
        assert again.reason is not None and "msg-1" in again.reason
    async with lmdb_engine(store, [collect]) as engine:  # redelivered after a restart
        again = await engine.signal(eid, "item", 1, dedup_key="msg-1")
        assert again.delivery is durably.SignalDelivery.REJECTED
        await engine.signal(eid, "item", 2, dedup_key="msg-2")
        assert await engine.wait(eid) == [1, 2]
    received = [e for e in events(store, eid) if e["t"] == "signal.received"]
    assert [e["payload"] for e in received] == [1, 2]


async def test_15_signal_before_its_waiter_is_kept_durably_and_consumed_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("late-waiter")
    async def late(ctx: durably.Context, _: None) -> str:
        await ctx.sleep(3600, step_id="busy")  # the signal arrives during this
        return str(await ctx.wait_for_signal("go", step_id="go"))

    store = tmp_path / "s"
    async with lmdb_engine(store, [late]) as engine:
        eid = await engine.start(late)
        outcome = await engine.signal(eid, "go", "early")
        assert outcome.delivery is durably.SignalDelivery.BUFFERED
    reader = LmdbStore(store, readonly=True)
    assert [m.payload for m in reader.mailbox(eid)] == ["early"]  # durable before a waiter
    reader.close()
    async with lmdb_engine(store, [late]) as engine:
        await trio.sleep(3600)
        assert await engine.wait(eid) == "early"
    reader = LmdbStore(store, readonly=True)
    assert reader.mailbox(eid) == []  # taken in the transaction that recorded it
    reader.close()
    received = [e for e in events(store, eid) if e["t"] == "signal.received"]
    assert len(received) == 1 and received[0]["mailbox_seq"] == 0


async def test_16_signal_for_unknown_or_finished_execution_is_a_clear_answer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("quick")
    async def quick(ctx: durably.Context, _: None) -> str:
        return "done"

    async with lmdb_engine(tmp_path / "s", [quick]) as engine:
        with pytest.raises(durably.UnknownExecutionError, match="no execution"):
            await engine.signal("0" * 32, "go")
        eid = await engine.start(quick)
        await engine.wait(eid)
        outcome = await engine.signal(eid, "go", 1)
        assert outcome.delivery is durably.SignalDelivery.REJECTED
        assert outcome.reason is not None and "finished (completed)" in outcome.reason
        assert [e.id for e in await engine.list_executions()] == [eid]  # nothing started


async def test_17_signals_at_the_same_instant_replay_in_commit_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    count = 12
    collect = _collector(count)
    store = tmp_path / "s"
    async with lmdb_engine(store, [collect]) as engine:
        eid = await engine.start(collect)
        await trio.sleep(1)
        # Many senders at one instant: trio picks their order; the commit numbers it.
        async with trio.open_nursery() as nursery:
            for n in range(count):
                nursery.start_soon(engine.signal, eid, "item", n)
        await trio.sleep(1)  # half consumed, then the execution sleeps
        first_half = [
            e["payload"]
            for e in map(orjson.loads, engine.store.read_events(eid))
            if e["t"] == "signal.received"
        ]
        assert 0 < len(first_half) < count
    async with lmdb_engine(store, [collect]) as engine:
        await trio.sleep(120)
        got = await engine.wait(eid)
    received = [e for e in events(store, eid) if e["t"] == "signal.received"]
    seqs = [e["mailbox_seq"] for e in received]
    assert seqs == sorted(seqs) == list(range(count))  # consumed in commit order
    assert got == [e["payload"] for e in received]  # the replay saw the recorded order
    assert got[: len(first_half)] == first_half
    assert sorted(got) == list(range(count))
