"""Done and Wake (engine/runtime/_latch.py), and the trio internals the engine relies on.

Both primitives park tasks with ``trio.lowlevel.wait_task_rescheduled`` directly, so these
tests drive them the way their callers do (the commit actor and the scheduler wait on
``Done``; an execution actor parks on ``Wake``) and pin the trio behaviour they depend on.
"""

from __future__ import annotations

import trio
import trio.testing
from trio.lowlevel import Abort

from durably.runtime._latch import Done, Wake, refuse_abort

# --- Done ---


async def test_done_starts_unset_and_set_is_sticky() -> None:
    done = Done()
    assert not done.is_set()
    done.set()
    assert done.is_set()
    done.set()  # a second set is a no-op, not an error
    assert done.is_set()


async def test_done_wait_returns_after_set_for_every_waiter() -> None:
    done = Done()
    woke: list[int] = []

    async def waiter(i: int) -> None:
        await done.wait()
        woke.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        done.set()
        done.set()  # must not reschedule the waiters a second time
    assert sorted(woke) == [0, 1, 2]


class _Yields(trio.abc.Instrument):
    """Counts how often one task yields to the scheduler."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.count = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


async def test_done_wait_when_already_set_is_a_shielded_checkpoint() -> None:
    done = Done()
    done.set()
    yields = _Yields(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(yields)
    steps: list[str] = []
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await done.wait()  # yields once, but does not deliver the cancellation
            steps.append("after wait")
            assert yields.count == 1
            await trio.lowlevel.checkpoint()
            steps.append("unreachable")
    finally:
        trio.lowlevel.remove_instrument(yields)
    assert steps == ["after wait"]
    assert scope.cancelled_caught


async def test_done_wait_cannot_be_cancelled_and_cancel_arrives_at_next_checkpoint() -> None:
    done = Done()
    steps: list[object] = []

    async def waiter(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await done.wait()
            steps.append("woke")
            await trio.lowlevel.checkpoint()
            steps.append("unreachable")
        steps.append(("cancelled_caught", scope.cancelled_caught))

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(waiter)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert steps == []  # still waiting: the cancel was refused
        done.set()
    assert steps == ["woke", ("cancelled_caught", True)]


async def test_done_wait_outlasts_a_deadline(autojump_clock: trio.testing.MockClock) -> None:
    done = Done()

    async def set_later() -> None:
        await trio.sleep(5)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_later)
        with trio.move_on_after(1) as scope:
            await done.wait()
            woke_at = trio.current_time()
    assert woke_at == 5
    assert not scope.cancelled_caught  # no checkpoint after the wait inside the scope


async def test_done_join_when_set_registers_nothing() -> None:
    done = Done()
    done.set()
    assert done.join() is False


async def test_done_join_then_wait_task_rescheduled() -> None:
    done = Done()
    woke: list[str] = []

    async def waiter(name: str) -> None:
        assert done.join() is True
        await trio.lowlevel.wait_task_rescheduled(refuse_abort)
        woke.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a")
        nursery.start_soon(waiter, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        done.set()
    assert sorted(woke) == ["a", "b"]


async def test_done_join_waiter_refuses_cancellation() -> None:
    done = Done()
    steps: list[object] = []

    async def waiter(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            assert done.join()
            await trio.lowlevel.wait_task_rescheduled(refuse_abort)
            steps.append("woke")
            await trio.lowlevel.checkpoint()
            steps.append("unreachable")
        steps.append(("cancelled_caught", scope.cancelled_caught))

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(waiter)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert steps == []
        done.set()
    assert steps == ["woke", ("cancelled_caught", True)]


def test_refuse_abort_fails_every_abort() -> None:
    assert refuse_abort(None) is Abort.FAILED
    assert refuse_abort(lambda: None) is Abort.FAILED


# --- Wake ---
#
# An actor waits on its Wake like this (engine/runtime/_actor.py, wait_wake):


async def _wait(wake: Wake) -> None:
    try:
        if not wake.flag:
            wake.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(wake.abort)
    finally:
        wake.task = None
    wake.flag = False


async def test_wake_starts_clear() -> None:
    wake = Wake()
    assert wake.flag is False
    assert wake.task is None


async def test_wake_set_before_wait_does_not_park() -> None:
    wake = Wake()
    wake.set()
    assert wake.flag is True
    assert wake.task is None
    with trio.testing.assert_no_checkpoints():
        await _wait(wake)
    assert wake.flag is False


async def test_wake_set_during_wait_reschedules_once() -> None:
    wake = Wake()
    woke: list[bool] = []

    async def waiter() -> None:
        await _wait(wake)
        woke.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert wake.task is not None
        wake.set()
        assert wake.task is None  # forgotten at once
        wake.set()  # before the waiter ran: must not reschedule it again
        assert woke == []
    assert woke == [True]
    assert wake.flag is False  # the waiter consumed the flag ...
    assert wake.task is None


async def test_wake_is_reusable() -> None:
    wake = Wake()
    rounds: list[int] = []

    async def waiter() -> None:
        for i in range(3):
            await _wait(wake)
            rounds.append(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        for i in range(3):
            await trio.testing.wait_all_tasks_blocked()
            assert rounds == list(range(i))
            wake.set()
    assert rounds == [0, 1, 2]


async def test_wake_abort_then_set_does_not_reschedule_twice() -> None:
    # The real bug this pins: a cancelled waiter is rescheduled by trio with the
    # cancellation; a set() before it runs must not reschedule it a second time.
    wake = Wake()
    steps: list[str] = []

    async def waiter(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await _wait(wake)
            steps.append("unreachable")
        steps.append("cancelled" if scope.cancelled_caught else "not cancelled")

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert wake.task is not None
        scope.cancel()  # trio calls wake.abort right here
        assert wake.task is None
        wake.set()  # must be a no-op for the (already rescheduled) task
        assert wake.flag is True
    assert steps == ["cancelled"]


async def test_wake_abort_forgets_the_task_and_succeeds() -> None:
    wake = Wake()
    wake.task = trio.lowlevel.current_task()
    assert wake.abort(None) is Abort.SUCCEEDED
    assert wake.task is None
    assert wake.flag is False


# --- trio internals the engine relies on ---


def _private_runq_length() -> int:
    # What engine/runtime/_commit.py reads (its _runnable_counter): the run queue itself.
    runq = trio._core._run.GLOBAL_RUN_CONTEXT.runner.runq
    return runq.__len__()


def _public_runnable() -> int:
    return trio.lowlevel.current_statistics().tasks_runnable


async def test_private_run_queue_length_agrees_with_public_statistics() -> None:
    # If a trio upgrade moves or renames the run queue, this fails loudly (the commit
    # actor would silently fall back to the slower public figure).
    await trio.testing.wait_all_tasks_blocked()
    assert _private_runq_length() == _public_runnable() == 0

    done = Done()
    seen: list[tuple[int, int]] = []

    async def waiter() -> None:
        await done.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(waiter)
        # Five new tasks queued to run, this one running (not in the queue).
        seen.append((_private_runq_length(), _public_runnable()))
        await trio.testing.wait_all_tasks_blocked()
        seen.append((_private_runq_length(), _public_runnable()))
        done.set()  # reschedules the five waiters
        seen.append((_private_runq_length(), _public_runnable()))
    await trio.testing.wait_all_tasks_blocked()
    seen.append((_private_runq_length(), _public_runnable()))
    assert seen == [(5, 5), (0, 0), (5, 5), (0, 0)]


async def test_reschedule_of_a_rescheduled_task_is_an_error() -> None:
    # What makes a double reschedule (the Wake abort bug) visible at all.
    task = None

    async def sleeper() -> None:
        nonlocal task
        task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(refuse_abort)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        assert task is not None
        trio.lowlevel.reschedule(task)
        try:
            trio.lowlevel.reschedule(task)
        except (AssertionError, RuntimeError, trio.TrioInternalError):
            pass
        else:
            raise AssertionError("trio accepted a second reschedule of one wait")
