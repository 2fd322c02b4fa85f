"""The crash-loop guard's solo turns (``runtime/_solo.py``), in virtual time."""

from __future__ import annotations

import trio
import trio.testing

from durably.runtime._solo import SoloGate, Turn


async def _suspect(gate: SoloGate, name: str, count: int, log: list[str], hold: float) -> None:
    turn = await gate.turn(count)
    log.append(name)
    await trio.sleep(hold)
    turn.release()


async def test_suspects_recovered_together_take_turns_most_counted_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate, log = SoloGate(), []
    async with trio.open_nursery() as nursery:
        gate.nursery = nursery
        for name, count in [("once", 1), ("thrice", 3), ("twice", 2), ("once-again", 1)]:
            nursery.start_soon(_suspect, gate, name, count, log, 1.0)
    # Whichever task trio ran first: ties go in arrival order, which trio may shuffle.
    assert log[:2] == ["thrice", "twice"] and set(log[2:]) == {"once", "once-again"}
    assert trio.current_time() == 4.0  # one at a time


async def test_a_bounded_turn_ends_by_itself(autojump_clock: trio.testing.MockClock) -> None:
    gate, log = SoloGate(), []
    async with trio.open_nursery() as nursery:
        gate.nursery = nursery
        first = await gate.turn(2)
        first.bound(5.0)  # reached new work, then held on (a long step body)
        nursery.start_soon(_suspect, gate, "next", 1, log, 0.0)
        await trio.sleep(4.9)
        assert log == []
        await trio.sleep(0.2)
        assert log == ["next"]  # the first one runs on beside it
        first.release()  # its progress later: ends nothing more
        nursery.start_soon(_suspect, gate, "last", 1, log, 0.0)
    assert log == ["next", "last"]


async def test_release_is_once_and_cancelled_waiters_are_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate, log = SoloGate(), []
    async with trio.open_nursery() as nursery:
        gate.nursery = nursery
        holder: Turn = await gate.turn(1)
        with trio.move_on_after(1):
            await gate.turn(9)  # gives up while it waits
        nursery.start_soon(_suspect, gate, "a", 1, log, 1.0)
        nursery.start_soon(_suspect, gate, "b", 1, log, 1.0)
        await trio.sleep(0.5)
        holder.release()
        holder.release()  # a second release must not give a second turn at once
        await trio.sleep(0.5)
        assert len(log) == 1  # one of the two (trio may run either first)
    assert sorted(log) == ["a", "b"]
    # Everything released: the next suspect gets its turn at once.
    with trio.fail_after(1):
        (await gate.turn(1)).release()
