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

from durably.runtime._clock import _SLACK_S, Clock

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


# --- the millisecond boundaries ---

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def test_a_start_before_1970_is_refused() -> None:
    # The timers index keys due times as unsigned integers: a negative one cannot be kept.
    with pytest.raises(ValueError, match="1970 or later"):
        Clock(datetime(1969, 12, 31, 23, 59, tzinfo=UTC))


@pytest.mark.parametrize(
    "iso",
    [
        "2039-03-08T19:46:13.411+00:00",
        "2038-08-15T15:00:50.430+00:00",
        "2004-03-07T02:08:51.860+00:00",
    ],
)
async def test_a_start_on_a_millisecond_reads_that_millisecond(
    autojump_clock: trio.testing.MockClock, iso: str
) -> None:
    # ``timestamp() * 1000`` reads these a hair below their millisecond: truncated, the
    # clock would start one millisecond before the start it was given.
    start = datetime.fromisoformat(iso)
    clock = Clock(start)
    clock.bind()
    assert clock.now_ms() == (start - EPOCH) // MS


@pytest.mark.parametrize("wall", ["start", "time_ns"])
async def test_a_sub_millisecond_start_is_floored_and_counted_from_the_bind(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, wall: str
) -> None:
    # 0.7 ms past a millisecond: the clock reads that millisecond (never ahead of the
    # wall clock), and its next one is a whole millisecond of trio time away, so a wait
    # started at the bind lasts its full length in trio time too.
    if wall == "start":
        clock = Clock(START + timedelta(microseconds=700))
        clock.bind()
    else:
        monkeypatch.setattr(time, "time_ns", lambda: START_MS * 1_000_000 + 700_000)
        clock = Clock()
        clock.bind()
        monkeypatch.undo()
    bound = trio.current_time()
    assert clock.now_ms() == START_MS
    await trio.sleep(0.00099)
    assert clock.now_ms() == START_MS
    await trio.sleep(0.00002)
    assert clock.now_ms() == START_MS + 1
    # The deadline of a due time is the instant the clock reaches it, plus the slack.
    assert clock.deadline(START_MS + 2) == pytest.approx(bound + 0.002 + _SLACK_S, abs=1e-9)


@pytest.mark.parametrize("offset", [0.0, 0.3337, 12_345.678_901_2, 10_000_000.999_99])
@pytest.mark.parametrize("start_us", [0, 1, 400, 999_999])
async def test_at_its_deadline_the_clock_reads_the_due_ms_and_not_a_microsecond_before(
    autojump_clock: trio.testing.MockClock, offset: float, start_us: int
) -> None:
    autojump_clock.jump(offset)  # trio time with a fractional part when the clock binds
    clock = Clock(START + timedelta(microseconds=start_us))
    clock.bind()
    base = clock.now_ms()
    for due in (base + 1, base + 2, base + 999, base + 86_400_000 + 1):
        await trio.sleep_until(clock.deadline(due) - _SLACK_S - 1e-6)
        assert clock.now_ms() == due - 1
        await trio.sleep_until(clock.deadline(due))
        assert clock.now_ms() == due
