"""The asyncio host's columns: the concurrent and the signal round-trip workloads under
``durably.aio`` inside ``asyncio.run``, each beside the same workload under trio in the
same repeat (so the ratio is guest mode's cost, whatever the machine does meanwhile).

Both hosts wait for the signal's acknowledgement the same way (yielding to their loop
until the workflow has noted it), so the two figures differ only by the host.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import trio

import durably
import durably.aio

from . import _workflows
from ._scenarios import ALL, Bench, Measured, _open, _pct
from ._workflows import PROBE


def _concurrent_trio(path: str, n: int, steps: int) -> float:
    async def main() -> float:
        store = _open(path)
        try:
            async with durably.Engine(store, workflows=ALL) as engine:

                async def one() -> None:
                    await engine.wait(await engine.start(_workflows.steps, steps))

                started = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(n):
                        nursery.start_soon(one)
                return time.perf_counter() - started
        finally:
            store.close()

    return trio.run(main)


def _concurrent_aio(path: str, n: int, steps: int) -> float:
    async def main() -> float:
        store = _open(path)
        try:
            async with durably.aio.Engine(store, workflows=ALL) as engine:

                async def one() -> None:
                    await engine.wait(await engine.start(_workflows.steps, steps))

                started = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(n)))
                return time.perf_counter() - started
        finally:
            store.close()

    return asyncio.run(main())


def concurrent_aio(b: Bench) -> Measured:
    n, steps = b.sizes["concurrent"], 10
    samples, baseline = [], []
    for r in range(b.repeats):
        trio_rate = n * steps / _concurrent_trio(b.store_path("conc-trio"), n, steps)
        aio_rate = n * steps / _concurrent_aio(b.store_path("conc-aio"), n, steps)
        samples.append(aio_rate)
        baseline.append(trio_rate)
        b.say(
            f"repeat {r + 1}/{b.repeats}: asyncio {aio_rate:,.0f} steps/s, "
            f"trio {trio_rate:,.0f} steps/s"
        )
    return Measured(samples, baseline, {"executions": n, "steps_per_run": steps})


async def _signal_loop(engine: Any, store: Any, n: int, yield_: Any) -> list[float]:
    eid = await engine.start(_workflows.ping, n)
    latencies = []
    for i in range(n):
        while (r := store.get_execution(eid)) is None or r.status != "waiting":
            await yield_()
        started = time.perf_counter()
        await engine.signal(eid, "ping")
        while ("ack", i) not in PROBE.times:
            await yield_()
        latencies.append((PROBE.times[("ack", i)] - started) * 1000)
    await engine.wait(eid)
    return latencies


def _signal_trio(path: str, n: int) -> list[float]:
    async def main() -> list[float]:
        store = _open(path)
        PROBE.reset()
        try:
            async with durably.Engine(store, workflows=ALL) as engine:
                return await _signal_loop(engine, store, n, trio.lowlevel.checkpoint)
        finally:
            store.close()

    return trio.run(main)


def _signal_aio(path: str, n: int) -> list[float]:
    async def main() -> list[float]:
        store = _open(path)
        PROBE.reset()
        try:
            async with durably.aio.Engine(store, workflows=ALL) as engine:
                return await _signal_loop(engine, store, n, lambda: asyncio.sleep(0))
        finally:
            store.close()

    return asyncio.run(main())


def signal_aio(b: Bench) -> Measured:
    n = b.sizes["signals"]
    samples, baseline = [], []
    for r in range(b.repeats):
        trio_p50 = _pct(_signal_trio(b.store_path("sig-trio"), n), 50)
        aio_p50 = _pct(_signal_aio(b.store_path("sig-aio"), n), 50)
        samples.append(aio_p50)
        baseline.append(trio_p50)
        b.say(f"repeat {r + 1}/{b.repeats}: p50 asyncio {aio_p50:.3f} ms, trio {trio_p50:.3f} ms")
    return Measured(samples, baseline, {"round_trips": n})
