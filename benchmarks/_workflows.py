"""The workflows the scenarios run, and a probe that tells the harness when one got there.

The probe is an in-memory side channel (not durable, not replayed): the harness uses it
to timestamp the moment a live workflow passed a point, as a user's code would observe.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import trio

import durably


class Probe:
    """Timestamps and trio events keyed by a mark, set by workflow code."""

    def __init__(self) -> None:
        self.events: dict[object, trio.Event] = {}
        self.times: dict[object, float] = {}

    def expect(self, mark: object) -> trio.Event:
        event = self.events[mark] = trio.Event()
        return event

    def hit(self, mark: object) -> None:
        self.times[mark] = time.perf_counter()
        event = self.events.pop(mark, None)
        if event is not None:
            event.set()

    def reset(self) -> None:
        self.events.clear()
        self.times.clear()


PROBE = Probe()
#: Wall-clock seconds at which each timer workflow returned from its sleep, by input.
WOKE: dict[int, float] = {}


def add_one(i: int) -> int:
    return i + 1


@durably.workflow("bench.steps")
async def steps(ctx: durably.Context, n: int) -> int:
    """``n`` trivial durable steps in a row."""
    total = 0
    for i in range(n):
        total += await ctx.step(f"s{i}", add_one, i)
    return total


@durably.workflow("bench.wait")
async def wait_signal(ctx: durably.Context, n: int) -> None:
    """Wait for one ``go`` signal (the shape of an execution parked for days)."""
    await ctx.wait_for_signal("go", step_id="go")


@durably.workflow("bench.ping")
async def ping(ctx: durably.Context, n: int) -> int:
    """``n`` round trips: wait for ``ping``, run a step, report the step durable."""
    for i in range(n):
        await ctx.wait_for_signal("ping", step_id=f"w{i}")
        await ctx.step(f"ack{i}", add_one, i)
        PROBE.hit(("ack", i))
    return n


@durably.workflow("bench.timer")
async def timer(ctx: durably.Context, spec: list[int]) -> None:
    """Sleep until ``spec[1]`` (epoch ms); note when the sleep ended."""
    index, due_ms = spec
    await ctx.sleep(until=datetime.fromtimestamp(due_ms / 1000, UTC), step_id="t")
    WOKE[index] = time.time()


@durably.workflow("bench.long")
async def long_history(ctx: durably.Context, n: int) -> None:
    """``n`` steps, then wait for ``go`` signals forever: every wake after a restart
    replays the whole history first."""
    for i in range(n):
        await ctx.step(f"s{i}", add_one, i)
    PROBE.hit("rebuilt")
    k = 0
    while True:
        await ctx.wait_for_signal("go", step_id=f"go{k}")
        PROBE.hit(("go", k))
        k += 1


@durably.workflow("bench.fanout")
async def fanout(ctx: durably.Context, spec: list[int]) -> int:
    """``spec[0]`` trivial steps of one execution through ``ctx.gather``, ``spec[1]`` at once."""
    n, limit = spec
    got = await ctx.gather(*[ctx.step(f"s{i}", add_one, i) for i in range(n)], limit=limit)
    return sum(got)


ALL = [steps, wait_signal, ping, timer, long_history, fanout]
