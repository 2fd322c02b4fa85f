"""The commit actor: group commit under many producers, failures, isolation, shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from durably import CorruptRecordError, StoreError
from durably.runtime._commit import Committer
from durably.stores import (
    Append,
    CreateExecution,
    ExecutionRecord,
    LmdbStore,
    MemoryStore,
    Op,
    PutExecution,
    PutMeta,
    PutSignal,
    Store,
)

PRODUCERS = 300


def _record(eid: str, status: str = "running") -> ExecutionRecord:
    return ExecutionRecord(
        id=eid, workflow="wf", status=status, input=None, created_ms=1, updated_ms=1
    )


async def _run_producers(
    committer: Committer, producer: Callable[[int], Any], count: int = PRODUCERS
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with trio.open_nursery() as producers:
            for p in range(count):
                producers.start_soon(producer, p)
        committer.close()


async def test_many_producers_all_acknowledged_in_order(
    store_factory: Callable[[], Store],
) -> None:
    store = store_factory()
    store.apply([CreateExecution(_record("shared", "waiting"), [])])
    committer = Committer(store)
    rounds = 5
    acked: dict[int, list[int]] = {p: [] for p in range(PRODUCERS)}
    signal_seqs: dict[int, list[int]] = {p: [] for p in range(PRODUCERS)}

    async def producer(p: int) -> None:
        eid = f"p{p:04d}"
        [winner] = await committer.commit([CreateExecution(_record(eid), [b"0"])])
        assert winner == eid
        for r in range(1, rounds):
            # Several ops per commit: their order inside the group commit must hold too.
            results = await committer.commit(
                [
                    Append(eid, 2 * r - 1, [f"{r}a".encode()]),
                    PutSignal("shared", f"from-{p}", r),
                    Append(eid, 2 * r, [f"{r}b".encode()]),
                ]
            )
            assert results[0] is None and results[2] is None
            signal_seqs[p].append(results[1].seq)
            acked[p].append(r)

    await _run_producers(committer, producer)

    for p in range(PRODUCERS):
        assert acked[p] == list(range(1, rounds))
        expected = [b"0"] + [f"{r}{x}".encode() for r in range(1, rounds) for x in "ab"]
        assert store.read_events(f"p{p:04d}") == expected
        # One producer's signals were committed in the order it sent them.
        assert signal_seqs[p] == sorted(signal_seqs[p])
    mailbox = store.mailbox("shared")
    assert len(mailbox) == PRODUCERS * (rounds - 1)
    for p in range(PRODUCERS):
        mine = [m.payload for m in mailbox if m.signal == f"from-{p}"]
        assert mine == list(range(1, rounds))
    stats = committer.statistics()
    commits = PRODUCERS * rounds
    assert stats.ops == PRODUCERS * (1 + 3 * (rounds - 1))
    # Group commit: far fewer transactions than commits.
    assert stats.batches < commits // 10, stats
    assert stats.largest_batch > 3 * 10, stats


class FailingStore(MemoryStore):
    """A real MemoryStore with fault injection: the next ``fail_next`` batches fail.

    A failed batch writes nothing (as a store error must guarantee) and is remembered.
    """

    def __init__(self) -> None:
        self.fail_next = 0
        self.failed_batches: list[list[Op]] = []
        self.applied_batches = 0
        super().__init__()

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed_batches.append(list(ops))
            raise StoreError("injected: the disk went away")
        self.applied_batches += 1
        return super().apply(ops)


async def test_store_failure_reaches_every_waiter_of_the_batch() -> None:
    store = FailingStore()
    committer = Committer(store)
    errors: dict[int, BaseException] = {}
    acked: set[int] = set()
    store.fail_next = 1

    async def producer(p: int) -> None:
        try:
            await committer.commit([CreateExecution(_record(f"e{p:04d}"), [b"0"])])
        except StoreError as exc:
            errors[p] = exc
        else:
            acked.add(p)

    await _run_producers(committer, producer, count=50)
    assert len(store.failed_batches) == 1
    failed_ids = {op.record.id for op in store.failed_batches[0] if isinstance(op, CreateExecution)}
    # Every producer spawned on the same tick joined the failed batch: all 50 get the error.
    assert len(failed_ids) == 50
    assert {f"e{p:04d}" for p in errors} == failed_ids
    assert not acked
    assert all("injected" in str(exc) for exc in errors.values())
    # Nothing was acknowledged, and nothing of it is in the store.
    assert store.list_executions() == []


async def test_store_failure_fails_only_its_batch() -> None:
    """Producers of later batches are untouched by an earlier batch's failure."""
    store = FailingStore()
    committer = Committer(store)
    outcome: dict[tuple[int, int], str] = {}

    async def producer(p: int) -> None:
        for r in range(3):
            if p == 0 and r == 1:
                store.fail_next = 1  # the batch being formed now will fail
            try:
                await committer.commit([PutMeta(f"{p}-{r}", r)])
                outcome[p, r] = "ok"
            except StoreError:
                outcome[p, r] = "failed"

    await _run_producers(committer, producer, count=40)
    failed_names = {op.name for batch in store.failed_batches for op in batch}  # type: ignore[union-attr]
    assert failed_names, "the injected failure hit no batch"
    for (p, r), result in outcome.items():
        present = store.get_meta(f"{p}-{r}") is not None
        assert result == ("failed" if f"{p}-{r}" in failed_names else "ok")
        assert present == (result == "ok")


async def test_bad_op_fails_only_its_producer(store_factory: Callable[[], Store]) -> None:
    store = store_factory()
    committer = Committer(store)
    count = 60
    store.apply([CreateExecution(_record(f"e{p:03d}"), [b"0"]) for p in range(count)])
    bad = 17
    results: dict[int, BaseException | None] = {}

    async def producer(p: int) -> None:
        eid = f"e{p:03d}"
        # The bad producer appends at seq 0, already taken: an engine bug, its own.
        seq = 0 if p == bad else 1
        try:
            await committer.commit([PutMeta(f"m{p}", p), Append(eid, seq, [b"1"])])
            results[p] = None
        except Exception as exc:
            results[p] = exc

    batches_before = committer.statistics().batches
    await _run_producers(committer, producer, count=count)
    assert committer.statistics().batches - batches_before == 1, "the producers did not group"
    assert isinstance(results[bad], Exception)
    assert not isinstance(results[bad], StoreError)
    assert "already exists" in str(results[bad])
    assert store.read_events(f"e{bad:03d}") == [b"0"]
    assert store.get_meta(f"m{bad}") is None, "the bad producer's earlier op was kept"
    for p in range(count):
        if p != bad:
            assert results[p] is None
            assert store.read_events(f"e{p:03d}") == [b"0", b"1"]
            assert store.get_meta(f"m{p}") == p


async def test_corrupt_record_fails_only_its_producer() -> None:
    store = MemoryStore()
    committer = Committer(store)
    store.apply([CreateExecution(_record(f"e{p}"), []) for p in range(10)])
    # Flip a byte of one stored record: PutExecution reads it to move its status index.
    table = store._tables["executions"]
    raw = bytearray(table.data[b"e3"])
    raw[-2] ^= 0xFF
    table.data[b"e3"] = bytes(raw)
    results: dict[int, BaseException | None] = {}

    async def producer(p: int) -> None:
        try:
            await committer.commit([PutExecution(_record(f"e{p}", "completed"))])
            results[p] = None
        except StoreError as exc:
            results[p] = exc

    await _run_producers(committer, producer, count=10)
    assert isinstance(results[3], CorruptRecordError)
    assert sorted(p for p, exc in results.items() if exc is None) == [
        p for p in range(10) if p != 3
    ]
    assert len(store.list_executions(status="completed")) == 9


async def test_worker_thread_path_with_lmdb(tmp_path: Path) -> None:
    """``inline="never"`` commits every batch in a worker thread (real clock: no autojump)."""
    store = LmdbStore(tmp_path / "store", inline=False, map_size=1 << 20)
    try:
        committer = Committer(store, inline="never")

        async def producer(p: int) -> None:
            eid = f"t{p:03d}"
            await committer.commit([CreateExecution(_record(eid), [b"0"])])
            for seq in range(1, 4):
                await committer.commit([Append(eid, seq, [str(seq).encode()])])

        await _run_producers(committer, producer, count=200)
        stats = committer.statistics()
        assert stats.inline_batches == 0
        assert stats.batches < 200 * 4 // 4, stats
        for p in range(200):
            assert store.read_events(f"t{p:03d}") == [b"0", b"1", b"2", b"3"]
    finally:
        store.close()


async def test_worker_thread_failure_reaches_waiters(tmp_path: Path) -> None:
    """A real LMDB store error raised in the worker thread reaches the producers."""
    store = LmdbStore(tmp_path / "store", map_size=64 << 10, max_map_size=128 << 10)
    try:
        committer = Committer(store, inline="never")
        errors: list[BaseException] = []

        async def producer(p: int) -> None:
            try:
                # 20 producers x 16 KiB: more than the 128 KiB ceiling in one batch.
                await committer.commit([PutMeta(f"big{p}", "x" * (16 << 10))])
            except StoreError as exc:
                errors.append(exc)

        await _run_producers(committer, producer, count=20)
        assert len(errors) == 20
        assert "max_map_size" in str(errors[0])
        assert store.get_meta("big0") is None
    finally:
        store.close()


async def test_close_writes_what_was_handed_over(store_factory: Callable[[], Store]) -> None:
    store = store_factory()
    committer = Committer(store)
    acked: list[int] = []

    async def producer(p: int) -> None:
        await committer.commit([PutMeta(f"c{p}", p)])
        acked.append(p)

    returned = False

    async def run() -> None:
        nonlocal returned
        await committer.run()
        returned = True

    async with trio.open_nursery() as nursery:
        for p in range(30):
            nursery.start_soon(producer, p)
        await trio.testing.wait_all_tasks_blocked()  # every op handed over
        committer.close()  # before run() even picked the batch up
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        hung = not returned
        if hung:
            committer._work.set()  # unstick the shielded loop so the test fails, not hangs
    assert not hung, "run() did not return after close()"
    assert sorted(acked) == list(range(30))
    assert [store.get_meta(f"c{p}") for p in range(30)] == list(range(30))
    with pytest.raises(StoreError, match="shutting down"):
        await committer.commit([PutMeta("late", 1)])


class GatedStore(MemoryStore):
    """A real MemoryStore whose first apply, in the worker thread, waits for a gate."""

    def __init__(self) -> None:
        self.gate: threading.Event | None = None
        super().__init__()
        self.inline = False

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.wait(10)
        return super().apply(ops)


async def test_close_while_writing_writes_the_next_batch() -> None:
    """Ops queued behind the batch in the worker thread when close() comes are written."""
    store = GatedStore()
    store.gate = gate = threading.Event()
    committer = Committer(store, inline="never")
    acked: list[int] = []
    returned = False

    async def run() -> None:
        nonlocal returned
        await committer.run()
        returned = True

    async def producer(p: int) -> None:
        await committer.commit([PutMeta(f"c{p}", p)])
        acked.append(p)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(producer, 0)
        await trio.testing.wait_all_tasks_blocked()  # batch 1 held in the worker thread
        for p in range(1, 20):
            nursery.start_soon(producer, p)
        await trio.testing.wait_all_tasks_blocked()  # batch 2 queued behind it
        committer.close()
        gate.set()
        for _ in range(1000):  # bounded: only a hung shutdown reaches the end
            if returned:
                break
            await trio.sleep(0.005)
        hung = not returned
        if hung:
            committer._work.set()
    assert not hung, "run() did not return after close()"
    assert sorted(acked) == list(range(20))
    assert [store.get_meta(f"c{p}") for p in range(20)] == list(range(20))
    assert committer.statistics().batches == 2


async def test_cancelled_producer_still_commits(store_factory: Callable[[], Store]) -> None:
    store = store_factory()
    committer = Committer(store)
    done: list[int] = []

    async def producer(p: int) -> None:
        await committer.commit([PutMeta(f"x{p}", p)])
        done.append(p)

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for p in range(10):
                    nursery.start_soon(producer, p)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()  # the producers wait shielded: their ops are handed over
                outer.start_soon(committer.run)  # only now does anything get written
        assert scope.cancelled_caught or done
        committer.close()
    assert sorted(done) == list(range(10))
    assert [store.get_meta(f"x{p}") for p in range(10)] == list(range(10))


async def test_backpressure_bounds_the_batch() -> None:
    store = MemoryStore()
    committer = Committer(store, max_batch_ops=10)

    async def producer(p: int) -> None:
        await committer.commit([PutMeta(f"b{p}-{i}", i) for i in range(4)])

    await _run_producers(committer, producer, count=100)
    stats = committer.statistics()
    assert stats.ops == 400
    # A producer waits while the batch holds max_batch_ops or more: it can overshoot by
    # at most one producer's ops.
    assert stats.largest_batch < 10 + 4, stats
    assert all(store.get_meta(f"b{p}-3") == 3 for p in range(100))
