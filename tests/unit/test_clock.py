"""The engine clock (engine/runtime/_clock.py): epoch milliseconds that move with trio time.

Every test runs under pytest-trio's ``autojump_clock`` (a ``trio.testing.MockClock``), so
sleeps take no real time and the expected millisecond readings are exact.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import trio
import trio.testing

from durably.runtime._clock import Clock

START = datetime(2030, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Clock(datetime(2030, 1, 1))


async def test_now_before_bind_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before the engine started"):
        Clock(START).now_ms()


async def test_now_starts_at_the_given_datetime(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    await trio.sleep(7)  # trio time before bind does not count
    clock.bind()
    assert clock.now_ms() == START_MS


async def test_start_in_another_timezone_is_the_same_instant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = datetime(2030, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    clock = Clock(start)
    clock.bind()
    assert clock.now_ms() == START_MS


async def test_now_advances_with_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    clock.bind()
    await trio.sleep(1.5)
    assert clock.now_ms() == START_MS + 1500
    await trio.sleep(3600)
    assert clock.now_ms() == START_MS + 1500 + 3_600_000


async def test_now_counts_whole_milliseconds(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    clock.bind()
    await trio.sleep(0.0004)
    assert clock.now_ms() == START_MS  # floored, not rounded
    await trio.sleep(0.0007)
    assert clock.now_ms() == START_MS + 1


async def test_now_does_not_move_without_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    clock.bind()
    time.sleep(0.002)  # noqa: ASYNC251  (real time passes; the mock clock's does not)
    assert clock.now_ms() == START_MS


async def test_bind_anchors_once(autojump_clock: trio.testing.MockClock) -> None:
    # One clock shared by engines started one after another: the second bind is a no-op.
    clock = Clock(START)
    clock.bind()
    await trio.sleep(5)
    clock.bind()
    assert clock.now_ms() == START_MS + 5000
    await trio.sleep(1)
    assert clock.now_ms() == START_MS + 6000


async def test_without_start_the_wall_clock_anchors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    before = int(time.time() * 1000)
    clock = Clock()
    clock.bind()
    after = int(time.time() * 1000)
    assert before <= clock.now_ms() <= after
    await trio.sleep(60)
    assert before + 60_000 <= clock.now_ms() <= after + 60_000


@pytest.mark.parametrize("offset_ms", [0, 1, 7, 999, 1000, 123_456, 86_400_000 * 3 + 1])
async def test_deadline_is_when_due_ms_is_reached(
    autojump_clock: trio.testing.MockClock, offset_ms: int
) -> None:
    clock = Clock(START)
    clock.bind()
    due = START_MS + offset_ms
    await trio.sleep_until(clock.deadline(due))
    assert clock.now_ms() == due  # reached, and not a millisecond late


async def test_deadline_is_not_early(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    clock.bind()
    due = START_MS + 2500
    await trio.sleep_until(clock.deadline(due) - 0.0002)
    assert clock.now_ms() == due - 1


async def test_deadline_conversion_is_linear(autojump_clock: trio.testing.MockClock) -> None:
    clock = Clock(START)
    await trio.sleep(10)  # bind at a trio time other than zero
    clock.bind()
    assert clock.deadline(START_MS + 3000) - clock.deadline(START_MS) == pytest.approx(3.0)
    assert clock.deadline(START_MS) == pytest.approx(trio.current_time(), abs=0.001)
    assert clock.deadline(START_MS) > trio.current_time()
    # A due time in the past is a deadline in the past: a sleep until it returns at once.
    past = clock.deadline(START_MS - 60_000)
    assert past < trio.current_time()
    await trio.sleep_until(past)
    assert clock.now_ms() == START_MS
