"""Queues from the other hosts: ``durably.aio.Engine`` and ``durably.aio.Client`` on a real
asyncio loop (trio in guest mode), and the blocking ``durably.sync.Client`` from a thread.

Enqueue, debounce and queue stats answer as on trio, ``DuplicateEnqueueError`` crosses
the guest boundary as itself (an ``except`` in asyncio code catches it), and a workflow
that enqueues (``ctx.enqueue``) runs on the aio engine. Real time: asyncio has no virtual
clock, so the debounce periods are short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import durably
import durably.aio
import durably.sync
from durably.stores import LmdbStore

#: Concurrency 1: the first gate holds the queue until it is signalled.
GATES = durably.Queue("aq-gates", concurrency=1)
JOBS = durably.Queue("aq-jobs", concurrency=2)
QUEUES = [GATES, JOBS]


async def _square(n: int) -> int:
    await asyncio.sleep(0.001)  # an asyncio body: it must run on the host loop
    return n * n


@durably.workflow("aq-job")
async def job(ctx: durably.Context, n: int) -> int:
    return await ctx.step("square", _square, n)


@durably.workflow("aq-gate")
async def gate(ctx: durably.Context, tag: str) -> str:
    word = await ctx.wait_for_signal("go", step_id="go")
    return f"{tag} {word}"


@durably.workflow("aq-fan")
async def fan(ctx: durably.Context, n: int) -> dict[str, Any]:
    ids = [await ctx.enqueue(JOBS, job, i, step_id=f"e{i}") for i in range(n)]
    first = await ctx.enqueue(GATES, gate, "held", dedup_id="fan", step_id="g1")
    try:
        await ctx.enqueue(GATES, gate, "again", dedup_id="fan", step_id="g2")
    except durably.DuplicateEnqueueError as error:
        return {"jobs": ids, "gate": first, "duplicate_of": error.existing}
    return {"jobs": ids, "gate": first, "duplicate_of": None}


WORKFLOWS = [job, gate, fan]


async def _until(face: Any, eid: str, status: durably.Status) -> None:
    """Read the execution as a user would, until it is in ``status`` (10 s at most)."""
    async with asyncio.timeout(10):
        while (await face.get_execution(eid)).status is not status:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _until_blocking(client: durably.sync.Client, eid: str, status: durably.Status) -> None:
    deadline = time.monotonic() + 10
    while client.get_execution(eid).status is not status:
        assert time.monotonic() < deadline, f"{eid} not {status} within 10 s"
        time.sleep(0.01)


def _counts(stats: durably.QueueStats) -> tuple[int, int, int]:
    return stats.queued, stats.delayed, stats.running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    """One LMDB environment for the process, shared by the engine and the client faces
    (a client on it still writes inbox entries and sends hints to the engine's socket)."""
    opened = LmdbStore(tmp_path / "store")
    yield opened
    opened.close()


def test_enqueue_debounce_and_stats_on_the_aio_engine(tmp_path: Path) -> None:
    async def main() -> None:
        async with durably.aio.Engine(tmp_path / "s", workflows=WORKFLOWS, queues=QUEUES) as engine:
            first = await engine.enqueue(GATES, gate, "a", dedup_id="g")
            with pytest.raises(durably.DuplicateEnqueueError) as dup:
                await engine.enqueue(GATES, gate, "b", dedup_id="g")
            assert type(dup.value) is durably.DuplicateEnqueueError  # not a wrapper
            assert (dup.value.queue, dup.value.existing) == ("aq-gates", first)
            with pytest.raises(durably.UnknownQueueError, match="no queue 'nowhere'"):
                await engine.enqueue("nowhere", job, 1)
            second = await engine.enqueue("aq-gates", "aq-gate", "c", delay=0.05)
            await _until(engine, first, durably.Status.WAITING)
            assert (await engine.get_execution(second)).status is durably.Status.QUEUED
            stats = await engine.queue_stats("aq-gates")
            assert (stats.queued, stats.running) == (1, 1), stats

            await engine.signal(first, "go", "one")
            assert await engine.wait(first) == "a one"
            await _until(engine, second, durably.Status.WAITING)  # admitted as it freed
            await engine.signal(second, "go", "two")
            assert await engine.wait(second) == "c two"
            assert _counts(await engine.queue_stats("aq-gates")) == (0, 0, 0)

            # Two calls within the period: one execution, with the last input.
            a = await engine.debounce(job, 2, key="k", period=0.2)
            b = await engine.debounce(job, 3, key="k", period=0.2)
            assert a == b
            assert await engine.wait(a) == 9
            assert await engine.debounce(job, 4, key="k", period=0.05) != a  # a new round

    asyncio.run(main())


def test_a_workflow_enqueuing_with_ctx_runs_on_the_aio_engine(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], list[int], str]:
        async with durably.aio.Engine(tmp_path / "s", workflows=WORKFLOWS, queues=QUEUES) as engine:
            out = await engine.wait(await engine.start(fan, 4), workflow=fan)
            squares = [await engine.wait(eid, workflow=job) for eid in out["jobs"]]
            await _until(engine, out["gate"], durably.Status.WAITING)
            await engine.signal(out["gate"], "go", "x")
            return out, squares, str(await engine.wait(out["gate"]))

    out, squares, gated = asyncio.run(main())
    assert squares == [0, 1, 4, 9]
    assert out["duplicate_of"] == out["gate"]  # raised in the workflow, as its own type
    assert gated == "held x"


def test_the_aio_client_enqueues_for_the_engine_on_its_loop(store: LmdbStore) -> None:
    async def main() -> None:
        async with (
            durably.aio.Engine(store, workflows=WORKFLOWS, queues=QUEUES) as engine,
            durably.aio.Client(store) as client,
        ):
            first = await client.enqueue("aq-gates", "aq-gate", "a", dedup_id="c")
            with pytest.raises(durably.DuplicateEnqueueError) as dup:
                await client.enqueue("aq-gates", "aq-gate", "b", dedup_id="c")
            assert dup.value.existing == first
            queued = [await client.enqueue("aq-gates", "aq-gate", f"q{n}") for n in range(2)]
            await _until(client, first, durably.Status.WAITING)
            want = (2, 0, 1)
            assert _counts(await client.queue_stats("aq-gates")) == want
            assert _counts(await engine.queue_stats("aq-gates")) == want

            a = await client.debounce("aq-job", 5, key="c", period=0.2)
            assert await client.debounce("aq-job", 6, key="c", period=0.2) == a
            assert await client.wait(a) == 36

            for eid in [first, *queued]:
                await _until(client, eid, durably.Status.WAITING)
                await client.signal(eid, "go", "ok")
                assert str(await client.wait(eid)).endswith(" ok")
            assert _counts(await client.queue_stats("aq-gates")) == (0, 0, 0)

    asyncio.run(main())


def test_the_blocking_client_enqueues_from_a_thread(store: LmdbStore) -> None:
    def drive() -> tuple[int, str]:
        with durably.sync.Client(store) as client:
            first = client.enqueue("aq-gates", "aq-gate", "s", dedup_id="s")
            with pytest.raises(durably.DuplicateEnqueueError) as dup:
                client.enqueue("aq-gates", "aq-gate", "t", dedup_id="s")
            assert type(dup.value) is durably.DuplicateEnqueueError
            assert dup.value.existing == first
            later = client.enqueue("aq-gates", "aq-gate", "u", delay=3600)
            _until_blocking(client, first, durably.Status.WAITING)
            stats = client.queue_stats("aq-gates")
            assert (stats.queued, stats.delayed) == (1, 1), stats  # `later`, not yet due
            assert client.get_execution(later).status is durably.Status.QUEUED
            a = client.debounce("aq-job", 7, key="s", period=0.2)
            assert client.debounce("aq-job", 8, key="s", period=0.2) == a
            squared = int(client.wait(a, timeout=10))
            client.cancel(later)  # not admitted yet: cancelled from the queue
            _until_blocking(client, later, durably.Status.CANCELLED)
            assert client.queue_stats("aq-gates").queued == 0
            return squared, first

    async def main() -> tuple[int, str]:
        async with durably.aio.Engine(store, workflows=WORKFLOWS, queues=QUEUES) as engine:
            # Blocking calls off the loop, as an asyncio app runs sync code.
            squared, first = await asyncio.to_thread(drive)
            await _until(engine, first, durably.Status.WAITING)
            await engine.signal(first, "go", "done")
            assert await engine.wait(first) == "s done"
            return squared, first

    assert asyncio.run(main())[0] == 64
