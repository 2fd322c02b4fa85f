"""Workflows the dashboard tests put in a store, and a worker process that runs them.

``python flows.py STORE``: the store's worker, until standard input closes (the test
holds the pipe) or SIGTERM. Importable too: ``seed`` fills a store in-process.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lmdb
import trio
import trio.testing

import durably
from durably.stores import LmdbStore


def _reserve(sku: str) -> str:
    return f"hold-{sku}"


def _charge(flag: str, amount: int) -> str:
    if not Path(flag).exists():
        raise ConnectionError("payment provider unreachable")
    return f"charged {amount}"


@durably.workflow("charge")
async def charge(ctx: durably.Context, order: dict[str, Any]) -> str:
    """Fails at its charge step until the flag file exists; a retry then completes."""
    await ctx.step("reserve", _reserve, order["sku"])
    return await ctx.step("charge", _charge, order["flag"], order["amount"])


@durably.workflow("kid")
async def kid(ctx: durably.Context, n: int) -> int:
    return await ctx.step("double", lambda: n * 2)


@durably.workflow("fine")
async def fine(ctx: durably.Context, n: int) -> dict[str, int]:
    """Completes: steps, a sleep, a note, a published value and a child."""
    first = await ctx.step("first", lambda: n + 1)
    await ctx.sleep(0.01, step_id="nap")
    await ctx.note("halfway", at=first)
    await ctx.publish("progress", {"done": 1})
    doubled = await ctx.child(kid, first, step_id="kid")
    return {"first": first, "doubled": doubled}


@durably.workflow("waiter")
async def waiter(ctx: durably.Context, tag: str) -> Any:
    """Waits for signal ``approve``, then finishes with its payload."""
    await ctx.step("prepare", lambda: tag)
    payload = await ctx.wait_for_signal("approve", step_id="approve")
    return await ctx.step("finish", lambda: payload)


def _book(name: str) -> str:
    return f"booking-{name}"


def _undo(booking: str) -> None:
    return None


def _refuse() -> None:
    raise ValueError("card declined")


@durably.workflow("trip")
async def trip(ctx: durably.Context, _: None) -> str:
    """Rolls back: its compensation runs and is shown."""
    await ctx.step("hotel", _book, "hotel", compensate=_undo)
    try:
        await ctx.step("pay", _refuse)
    except durably.StepError:
        await ctx.rollback()
        return "rolled back"
    return "booked"


WORKFLOWS = [charge, kid, fine, waiter, trip]
EMAILS = durably.Queue("emails", concurrency=2, rate_limit=(10, 1.0))


def seed(path: Path, flag: Path) -> dict[str, str]:
    """A store with one execution in each state the pages show; their ids by name.

    Virtual time (``MockClock``) on an inline store, with the engine clock set 12 hours
    back, so the waiting executions have been waiting for hours.
    """
    hanging = trio.Event()

    @durably.workflow("hangs")
    async def hangs(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", lambda: "a")
        if ctx.replaying:  # b is recorded ahead: a replay, which hangs here
            await hanging.wait()  # never reaching new work: dead-lettered
        await ctx.step("b", lambda: "b")
        await ctx.step("c", trio.sleep_forever)  # the first run stops in here
        return "never"

    ids: dict[str, str] = {}
    clock = durably.Clock(datetime.now(UTC) - timedelta(hours=12))
    options: dict[str, Any] = {
        "max_recovery_attempts": 2,
        "max_replay_seconds": 1.0,
        "queues": [EMAILS],
    }

    async def main() -> None:
        store = LmdbStore(path, inline=True)
        try:
            async with durably.Engine(
                store, workflows=[*WORKFLOWS, hangs], clock=clock, **options
            ) as engine:
                ids["fine"] = (await engine.start_and_wait(fine, 1)).execution_id
                ids["failed"] = await engine.start(
                    charge,
                    {"sku": "lamp", "flag": str(flag), "amount": 120},
                    idempotency_key="order-17",
                )
                ids["waiter"] = await engine.start(waiter, "w-1")
                ids["victim"] = await engine.start(waiter, "victim")
                ids["trip"] = (await engine.start_and_wait(trip, None)).execution_id
                ids["hangs"] = await engine.start(hangs, None)
                ids["queued"] = await engine.enqueue(EMAILS, kid, 3, delay=86400)
                ids["schedule"] = await engine.ensure_schedule(kid, 7, id="nightly", interval=86400)
                await trio.sleep(1)
            async with durably.Engine(
                store, workflows=[*WORKFLOWS, hangs], clock=clock, **options
            ) as engine:
                await engine.wait_settled(ids["hangs"])
                await engine.wait_settled(ids["failed"])
        finally:
            store.close()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    _damage(path, ids["victim"])
    return ids


def _damage(path: Path, execution_id: str) -> None:
    """Flip one bit of a stored record (the engine is closed): it reads as quarantined."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        table = env.open_db(b"executions", create=False)
        with env.begin(write=True, db=table) as txn:
            raw = bytearray(txn.get(execution_id.encode()))
            raw[-2] ^= 0x40  # the CRC no longer matches
            txn.put(execution_id.encode(), bytes(raw))
    finally:
        env.close()


async def _serve(path: str) -> None:
    async with durably.Engine(path, workflows=WORKFLOWS):
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stdin_closed() -> None:
                    await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
                    nursery.cancel_scope.cancel()

                async def terminated() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(stdin_closed)
                nursery.start_soon(terminated)
                print("worker ready", flush=True)


if __name__ == "__main__":
    trio.run(_serve, sys.argv[1])
