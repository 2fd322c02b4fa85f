"""The instant the engine clock turns to a due time (``Clock.instant``), to the float.

Found by ``tests/property/test_time_properties.py`` (thorough profile) with trio's clock
at 1.192092896e-07 s when the engine clock binds and a signal wait of 0 s: the wait ends
at once, at the very instant its due millisecond begins, and the check "it woke at or
after ``clock.deadline(due) - _SLACK_S``" failed, because that float subtraction reads
about 4e-21 s past the instant. The deadline itself was after the instant; what the
check needed, and the clock now says exactly, is the instant.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import trio
import trio.testing

import durably
from durably.core._events import decode_all
from durably.core._history import LAST_MS
from durably.runtime._clock import _SLACK_S, Clock
from durably.stores import MemoryStore

START = datetime(2030, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
#: The trio time of the failing example when the clock bound (the engine clock at START).
FAILING_OFFSET = 1.192092896e-07


def reading(clock: Clock, at: float) -> int:
    """What the engine clock reads at trio time ``at``."""
    with mock.patch.object(trio, "current_time", return_value=at):
        return clock.now_ms()


async def test_at_the_failing_offset_the_instant_of_now_is_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.jump(FAILING_OFFSET)
    clock = Clock(START)
    clock.bind()
    bound = trio.current_time()
    assert clock.instant(START_MS) == bound  # the clock reads START_MS from the bind on
    assert clock.deadline(START_MS) > clock.instant(START_MS)
    # The old check's arithmetic: a hair past the instant, so "woke before it" was wrong.
    assert clock.deadline(START_MS) - _SLACK_S > bound


@durably.workflow("zero-waits")
async def zero_waits(ctx: durably.Context, _: None) -> list[Any]:
    seen: list[Any] = []
    for index in range(2):
        before = ctx.now()
        if index == 0:
            await ctx.wait_for_signal("never", timeout=0.0)
        else:
            await ctx.sleep(0.0)
        woke = await ctx.step(f"trio-time-{index}", trio.current_time)
        seen.append([before.isoformat(), ctx.now().isoformat(), woke])
    return seen


async def test_a_wait_of_no_time_ends_at_the_instant_of_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.jump(FAILING_OFFSET)
    clock = Clock(START)
    clock.bind()
    store = MemoryStore()
    async with durably.Engine(store, workflows=[zero_waits], clock=clock) as engine:
        result = await engine.start_and_wait(zero_waits, None)
    events = decode_all(store.read_events(result.execution_id), result.execution_id)
    due = [getattr(e, "deadline", None) or getattr(e, "wake_at", None) for e in events]
    deadlines = [d for d in due if d is not None]
    assert deadlines == [START_MS, START_MS]  # a wait of 0 s is due at once
    for (before, after, woke), deadline in zip(result.data, deadlines, strict=True):
        assert before == after == START.isoformat()
        assert woke == FAILING_OFFSET  # no trio time passed: woken at the instant itself
        assert woke >= clock.instant(deadline)


@pytest.mark.parametrize("offset", [FAILING_OFFSET, 0.0, 0.3337, 12_345.678_901_2, 1e7])
@pytest.mark.parametrize("start_us", [0, 1, 400, 999_999])
async def test_the_instant_is_the_first_float_that_reads_the_due_ms(
    autojump_clock: trio.testing.MockClock, offset: float, start_us: int
) -> None:
    autojump_clock.jump(offset)
    clock = Clock(START + timedelta(microseconds=start_us))
    clock.bind()
    base = clock.now_ms()
    dues = [base + ahead for ahead in (-60_000, 0, 1, 2, 999, 1000, 86_400_000 * 30 + 1)]
    for due in [*dues, LAST_MS]:  # the cap too: a wait "forever" is due in 9999
        at = clock.instant(due)
        assert reading(clock, at) == due
        assert reading(clock, math.nextafter(at, -math.inf)) == due - 1
        assert clock.deadline(due) >= at + _SLACK_S / 2  # the margin, after the instant
        assert reading(clock, clock.deadline(due)) == due
