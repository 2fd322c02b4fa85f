"""The engine's two wait primitives, in one place: ``Done`` and ``Wake``.

- ``Done``: a one-shot latch whose wait cannot be cancelled. Shared by the commit actor (a
  producer waits for its batch to be durable) and the scheduler (woken executions wait
  until every due timer has fired): both are waits that must end with the thing waited
  for, never half-way.
- ``Wake``: an execution actor's reusable wake-up flag (one waiter, set many times).

Both park the current task with trio's own trap (``park``: ``wait_task_rescheduled``
without its frame), because every waiting execution holds such a wait: no
``trio.Event``, cancel scope or extra coroutine frame per wait.
``tests/unit/test_latch.py`` pins what they rely on of trio.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import Any

import trio


def refuse_abort(raise_cancel: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _trap_type() -> Callable[[Callable[[Any], trio.lowlevel.Abort]], Any] | None:
    """trio's own message for ``wait_task_rescheduled``, if this trio has it as known."""
    try:
        from trio._core._traps import WaitTaskRescheduled
    except ImportError:  # pragma: no cover - another trio: the public function is used
        return None
    return WaitTaskRescheduled


_TRAP = _trap_type()


@types.coroutine
def _yield_trap(message: Any) -> Generator[Any, Any, Any]:
    return (yield message).unwrap()


def parking(abort: Callable[[Any], trio.lowlevel.Abort]) -> Any:
    """What ``park`` takes for ``abort``: made once per abort function, not per wait."""
    return abort if _TRAP is None else _TRAP(abort)


#: ``await park(parking(abort))`` is ``await trio.lowlevel.wait_task_rescheduled(abort)``
#: in one generator frame instead of two: trio's own trap message, yielded directly.
#: Every wait of a woken execution resumes through each frame of its coroutine chain
#: (about 0.4 us per frame per resume, measured), and this is the bottom of all of them.
#: Where trio's internals are not as known, it is the public function.
park: Callable[[Any], Any] = trio.lowlevel.wait_task_rescheduled if _TRAP is None else _yield_trap

REFUSE = parking(refuse_abort)


class Done:
    """A one-shot event whose ``wait`` cannot be cancelled: a shielded wait, made cheap.

    Same meaning as ``trio.Event`` waited on inside ``CancelScope(shield=True)``, at a
    fraction of the cost (a cancel scope per commit was the largest single cost of a step
    under load): the waiting task refuses aborts and is rescheduled by ``set``; a pending
    cancellation is delivered at its next checkpoint, as after leaving a shield.
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[trio.lowlevel.Task] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            waiters, self._waiters = self._waiters, []
            for task in waiters:
                trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        if self._flag:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._waiters.append(trio.lowlevel.current_task())
        await park(REFUSE)

    def join(self) -> bool:
        """``wait`` in two halves, for a caller that must not add a coroutine frame per
        waiter: register the current task (False if already set, nothing to wait for);
        the caller then awaits ``park(REFUSE)`` itself."""
        if self._flag:
            return False
        self._waiters.append(trio.lowlevel.current_task())
        return True


class Wake:
    """The actor's wake-up flag: a reusable ``trio.Event`` for one waiter.

    Set far more often than anything else an actor waits on (every timer fire and
    signal), and held by every waiting live actor: no task set, no closure per wait, no
    new event per wake.
    """

    __slots__ = ("flag", "task")

    def __init__(self) -> None:
        self.flag = False
        self.task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        self.flag = True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)

    def abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        # Forget the task at once: trio reschedules it with the cancellation, and a
        # ``set`` before it runs must not reschedule it a second time.
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED
