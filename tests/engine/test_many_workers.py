"""Many workers on one store (``Engine(many_workers=True)``), in one process and virtual
time: shards spread, fencing refuses a worker whose lease was taken over, a departed or
silent worker's executions are taken over (timers and signals keep working), schedules
fire once, and the modes do not mix. Real processes and real kills are in
``tests/faults/test_cluster_crash.py`` and the benchmark's ``multi_process`` scenario."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.core._errors import LeaseLostError
from durably.core._events import decode_all
from durably.core._shards import SHARDS, shard_of
from durably.stores import Fence, Heartbeat, LmdbStore, MemoryStore, Store

LEASE = 3.0
RUNS: list[tuple[str, str]] = []  # (execution id, worker id) of every step body run


@durably.workflow("many.steps")
async def steps(ctx: durably.Context, n: int) -> int:
    total = 0
    for i in range(3):
        total += await ctx.step(f"s{i}", _body, ctx.execution_id, i)
        await ctx.sleep(1.0 if n < 100 else 10.0, step_id=f"z{i}")  # n >= 100: slow
    return total + n


def _body(eid: str, i: int) -> int:
    RUNS.append((eid, WHO.get("worker", "?")))
    return i


WHO: dict[str, str] = {}


@durably.workflow("many.signalled")
async def signalled(ctx: durably.Context, _: None) -> str:
    value: str = await ctx.wait_for_signal("go", step_id="go")
    return value


WORKFLOWS: list[Any] = [steps, signalled]


def _engine(store: Store, clock: durably.Clock, **kw: Any) -> durably.Engine:
    return durably.Engine(
        store,
        workflows=WORKFLOWS,
        clock=clock,
        many_workers=True,
        lease_seconds=LEASE,
        poll_interval=0.02,
        **kw,
    )


async def _until(condition: Any, seconds: float = 60.0) -> None:
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (a condition of several engines' state)
            await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def _pair(store: Store) -> AsyncIterator[tuple[durably.Engine, durably.Engine]]:
    clock = durably.Clock()
    async with _engine(store, clock) as a, _engine(store, clock) as b:
        assert a._ownership is not None and b._ownership is not None
        await _until(lambda: len(a._ownership.shards) == len(b._ownership.shards) == SHARDS // 2)
        yield a, b


def _own(engine: durably.Engine) -> Any:
    assert engine._ownership is not None
    return engine._ownership


async def test_two_workers_split_the_shards_and_each_runs_its_own(autojump_clock: Any) -> None:
    store = MemoryStore()
    async with _pair(store) as (a, b):
        assert not _own(a).shards & _own(b).shards
        ids = [await a.start(steps, n) for n in range(10)] + [
            await b.start(steps, n) for n in range(10)
        ]
        assert all(_own(a).owns(e) for e in ids[:10]) and all(_own(b).owns(e) for e in ids[10:])
        results = [await a.wait(e, timeout=60) for e in ids]  # b's too: read from the store
        assert results == [3 + n for n in range(10)] * 2


async def test_a_departed_worker_hands_over_at_once(autojump_clock: Any) -> None:
    store = MemoryStore()
    clock = durably.Clock()
    async with _engine(store, clock) as a:
        async with _engine(store, clock) as b:
            await _until(lambda: len(_own(b).shards) == SHARDS // 2)
            eid = await b.start(steps, 1)  # sleeps in b
            await trio.sleep(0.5)
        left = trio.current_time()
        await _until(lambda: len(_own(a).shards) == SHARDS)
        # Released on leaving: taken at a's next beat, not after a lease period.
        assert trio.current_time() - left <= LEASE / 3 + 0.2
        assert await a.wait(eid, timeout=60) == 4  # its timers fire at the new owner


async def test_a_silent_worker_stops_its_own_actors(autojump_clock: Any) -> None:
    """b's beats stop reaching the store (stuck behind a frozen writer, the database
    unreachable): its watchdog stops b's actors once a lease period has passed without
    a beat, before or as a takes the shards over, and the execution finishes at a."""
    store = MemoryStore()
    async with _pair(store) as (a, b):
        eid = await b.start(steps, 200)  # sleeps 10 s after each step: it outlasts b

        async def silent(*_: Any) -> None:
            await trio.sleep_forever()

        _own(b).beat = silent
        stopped_at = trio.current_time()
        await _until(lambda: not _own(b).shards)
        assert LEASE < trio.current_time() - stopped_at <= LEASE + LEASE / 3 + 0.1
        await _until(lambda: eid not in b._supervisor.live)  # type: ignore[union-attr]
        assert await a.wait(eid, timeout=60) == 203


async def test_a_silent_worker_is_taken_over_and_fenced_out(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """b is frozen (SIGSTOP) while its actors stay in memory: after the lease period a
    takes b's shards over, b's sleeping execution resumes at a. Then b resumes and its
    actor, woken by its own timer before any watchdog or beat of b has run, writes with
    b's old epoch: the store's fence refuses it and the actor stops, nothing of it kept."""
    caplog.set_level(logging.INFO, "durably")
    store = MemoryStore()
    async with _pair(store) as (a, b):
        WHO["worker"] = "b"
        eid = await b.start(steps, 200)  # sleeps 10 s after each step: it outlasts b
        await _until(lambda: len(store.read_events(eid)) >= 3)  # s0 recorded, z0 sleeping

        async def silent(*_: Any) -> None:
            await trio.sleep_forever()

        _own(b).beat = silent  # its heartbeat pauses; nothing else of b does,
        _own(b).silent_for = lambda: 0.0  # and b does not notice (as a frozen b cannot)
        taken_at = trio.current_time()
        await _until(lambda: len(_own(a).shards) == SHARDS)
        assert trio.current_time() - taken_at <= LEASE + LEASE / 3 + 0.2
        WHO["worker"] = "a"
        assert await a.wait(eid, timeout=60) == 203
        # b still believes it holds the shard (it has not beaten since): its actor, woken
        # by its own timer, wrote with b's epoch, and the store's fence refused it.
        assert shard_of(eid) in _own(b).shards
        await _until(lambda: eid not in b._supervisor.live)  # type: ignore[union-attr]
        assert f"execution {eid} stopped: its shard was taken over" in caplog.text
        tags = [e.tag for e in decode_all(store.read_events(eid), eid)]
        assert tags.count("step.completed") == 3 and tags[-1] == "completed"
        assert [w for e, w in RUNS if e == eid].count("a") >= 2  # s1, s2 ran at a
        with pytest.raises(LeaseLostError, match="held by worker"):
            epoch = _own(b).held[shard_of(eid)]
            store.apply([Fence(_own(b).worker, ((shard_of(eid), epoch),))])


async def test_a_fenced_out_write_is_refused_and_the_actor_stops(autojump_clock: Any) -> None:
    store = MemoryStore()
    async with _pair(store) as (_a, b):
        eid = await b.start(signalled, None)
        await _until(lambda: eid in b._supervisor.live)  # type: ignore[union-attr]
        # Another worker takes b's shard over behind b's back (b has not beaten yet).
        now = b.clock.now_ms() + int(LEASE * 1000) + 1
        [taken] = store.apply([Heartbeat("usurper", now, 60_000)])
        assert shard_of(eid) in taken.held
        log = store.read_events(eid)
        await b.signal(eid, "go", "hello")  # the signal is a message: it is kept
        await _until(lambda: eid not in b._supervisor.live)  # type: ignore[union-attr]
        assert store.read_events(eid) == log, "the taking of the signal was refused"
        assert [e.payload for e in store.mailbox(eid)] == ["hello"]


async def test_a_signal_from_one_worker_reaches_the_owner(autojump_clock: Any) -> None:
    store = MemoryStore()
    async with _pair(store) as (a, b):
        eid = await b.start(signalled, None)
        await _until(lambda: eid in b._supervisor.live)  # type: ignore[union-attr]
        await a.signal(eid, "go", "from a")  # a writes it with an inbox entry for b
        assert await a.wait(eid, timeout=30) == "from a"


async def test_schedules_fire_once_across_workers(autojump_clock: Any) -> None:
    store = MemoryStore()
    async with _pair(store) as (a, b):
        for engine in (a, b):  # every worker declares it at start, as apps do
            await engine.ensure_schedule(steps, 0, id="tick", interval=60.0)
        await trio.sleep(60 * 5 + 30)
        started = [r for r in store.list_executions() if r.schedule_id == "tick"]
        assert len(started) == 5
        keys = {r.idempotency_key for r in started}
        assert len(keys) == 5


async def test_children_live_in_their_parents_shard(autojump_clock: Any) -> None:
    @durably.workflow("many.parent")
    async def parent(ctx: durably.Context, n: int) -> int:
        handles = [await ctx.start_child(steps, i, step_id=f"c{i}") for i in range(n)]
        return sum([await h.result() for h in handles])

    store = MemoryStore()
    WORKFLOWS.append(parent)
    try:
        async with _pair(store) as (a, b):
            eid = await b.start(parent, 4)
            assert await a.wait(eid, timeout=60) == sum(3 + i for i in range(4))
            children = [r for r in store.list_executions() if r.parent_id == eid]
            assert len(children) == 4 and {shard_of(r.id) for r in children} == {shard_of(eid)}
    finally:
        WORKFLOWS.remove(parent)


def test_queues_with_limits_are_refused_for_many_workers() -> None:
    with pytest.raises(durably.ConfigurationError, match="have limits"):
        durably.Engine(MemoryStore(), many_workers=True, queues=[durably.Queue("q", concurrency=2)])
    durably.Engine(MemoryStore(), many_workers=True, queues=[durably.Queue("free")])


@pytest.mark.parametrize("lease", [0, -1, 0.05, float("nan"), True, "5"])
def test_a_lease_period_out_of_range_is_refused(lease: Any) -> None:
    with pytest.raises(durably.ConfigurationError, match="lease_seconds"):
        durably.Engine(MemoryStore(), many_workers=True, lease_seconds=lease)


async def test_the_one_worker_and_workers_of_many_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with durably.Engine(path, workflows=WORKFLOWS):
        with pytest.raises(durably.StoreLockedError, match="many_workers=True"):
            async with durably.Engine(path, many_workers=True):
                pass
    async with durably.Engine(path, many_workers=True):
        with pytest.raises(durably.StoreLockedError):
            async with durably.Engine(path):
                pass
    store = LmdbStore(path, lock=False)
    try:
        assert store.leases() and {lease.expires_ms for lease in store.leases()} == {0}
    finally:
        store.close()


async def test_delayed_and_free_queue_starts_run_at_their_owner(autojump_clock: Any) -> None:
    store = MemoryStore()
    clock = durably.Clock()
    free = [durably.Queue("free")]
    async with _engine(store, clock, queues=free) as a, _engine(store, clock, queues=free) as b:
        await _until(lambda: len(_own(a).shards) == len(_own(b).shards) == SHARDS // 2)
        queued = [await b.enqueue("free", steps, n, delay=5.0) for n in range(4)]
        assert all(_own(b).owns(e) for e in queued)
        began = trio.current_time()
        assert [await a.wait(e, timeout=60) for e in queued] == [3, 4, 5, 6]
        assert trio.current_time() - began >= 5.0


async def test_postgres_workers_of_many_share_the_store(postgres_dsn: str) -> None:
    from durably.stores import PostgresStore

    one = PostgresStore(postgres_dsn, lock="shared")
    two = PostgresStore(postgres_dsn, lock="shared")  # beside another of many: fine
    try:
        with pytest.raises(durably.StoreLockedError, match="many_workers=True"):
            PostgresStore(postgres_dsn)  # the one worker: refused, told why
    finally:
        one.close()
        two.close()
    alone = PostgresStore(postgres_dsn)
    try:
        with pytest.raises(durably.StoreLockedError, match="started without many_workers"):
            PostgresStore(postgres_dsn, lock="shared")
    finally:
        alone.close()


async def test_one_fenced_out_producer_fails_alone_in_a_shared_batch() -> None:
    """Producers of one batch share one merged fence; when it fails, each is tried alone
    with its own, so only the producer whose lease was lost is refused."""
    store = MemoryStore()
    clock = durably.Clock()
    async with _engine(store, clock) as a:
        own = _own(a)
        mine = a._new_id()
        gone = next(s for s in range(SHARDS) if s != shard_of(mine))
        now = a.clock.now_ms()
        store.apply([Heartbeat(own.worker, now, 3000, release=frozenset({gone}))])
        [usurped] = store.apply([Heartbeat("usurper", now, 3000)])
        assert list(usurped.held) == [gone]  # (the worker has not beaten since)
        stale = next(
            f"{n:032x}" for n in range(10_000) if shard_of(f"{n:032x}") == gone
        )  # an id in the shard just lost, which the worker still believes it holds
        from durably.stores import Append, CreateExecution, ExecutionRecord

        def record(eid: str) -> ExecutionRecord:
            return ExecutionRecord(
                id=eid, workflow="w", status="running", input=1, created_ms=1, updated_ms=1
            )

        store.apply(
            [CreateExecution(record(mine), [b"{}"]), CreateExecution(record(stale), [b"{}"])]
        )
        a._committer._inline_mode = "never"  # one batch for both producers
        results: dict[str, BaseException | None] = {}

        async def produce(eid: str) -> None:
            try:
                await a._committer.commit([Append(eid, 1, [b"{}"])])
                results[eid] = None
            except BaseException as exc:
                results[eid] = exc

        batches = a._committer.statistics().batches
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, mine)
            nursery.start_soon(produce, stale)
        assert a._committer.statistics().batches == batches + 1  # one batch, one fence
        assert results[mine] is None
        assert isinstance(results[stale], LeaseLostError)
        assert len(store.read_events(mine)) == 2 and len(store.read_events(stale)) == 1


@durably.workflow("many.long")
async def long_step(ctx: durably.Context, _: None) -> str:
    await ctx.step("long", trio.sleep, 100.0)
    return "done"


async def test_a_handed_over_execution_keeps_its_crash_loop_count_clear(
    autojump_clock: Any,
) -> None:
    """A rebalance stops a step body on purpose: like a graceful stop, it must not count
    as a crash (else a long step that moves often would be dead-lettered)."""
    from durably.runtime._ports import new_execution_id

    store = MemoryStore()
    clock = durably.Clock()
    WORKFLOWS.append(long_step)
    try:
        async with _engine(store, clock) as first:
            first._new_id = lambda: new_execution_id(frozenset({SHARDS - 1}))  # type: ignore[method-assign]
            eid = await first.start(long_step, None)
            await trio.sleep(1.0)  # its body runs; the stop parks it
        async with _engine(store, clock) as a:  # recovers it: counted once, body runs
            await _until(lambda: (store.get_execution(eid) or _never).recoveries == 1)
            async with _engine(store, clock) as b:
                await _until(lambda: eid not in a._supervisor.live)  # type: ignore[union-attr]
                record = store.get_execution(eid)
                assert record is not None and record.recoveries == 0  # cleared on leaving a
                await _until(lambda: _own(b).owns(eid) and eid in b._supervisor.live)  # type: ignore[union-attr]
                assert (store.get_execution(eid) or _never).recoveries == 1  # b's count
    finally:
        WORKFLOWS.remove(long_step)


_never: Any = None
