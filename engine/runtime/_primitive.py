"""What every durable primitive shares: the step-id rules, the one-call-at-a-time rule,
calling user code, and what a running step body can learn about itself.

``Context`` is assembled from this base and the primitives' halves (``_branching``, and
``_context`` itself); each half sees its execution only through ``ExecutionPort``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import CoroutineType, MappingProxyType
from typing import Any

import attrs
import trio

from ..core._errors import ConfigurationError, DurablyError
from ..core._records import AddTimer, Timer
from ..core._status import Wait, record_changes
from ._ports import ExecutionPort


@attrs.frozen
class StepInfo:
    """What a running step body can learn about itself (``durably.current_step()``).

    ``idempotency_key`` is stable across re-runs of the same step of the same execution:
    pass it to the systems a step calls, so that a re-run after a crash (a step runs at
    least once) is recognised by them.
    """

    execution_id: str
    step_id: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """``"<execution id>:<step id>"``: the same on every run of this step."""
        return f"{self.execution_id}:{self.step_id}"


#: ``(execution id, step id, attempt)`` of the step body running in this task: a tuple,
#: not a ``StepInfo``, because every step sets it and few bodies ask.
_current_step: ContextVar[tuple[str, str, int] | None] = ContextVar(
    "durably_current_step", default=None
)


#: Set by ``durably.aio``: where a step body's awaitable is awaited (an asyncio task on
#: the host loop). ``None`` under trio, where it is awaited in place.
host_await: ContextVar[Callable[[Any], Awaitable[Any]] | None] = ContextVar(
    "durably_host_await", default=None
)


def current_step() -> StepInfo | None:
    """The step whose body is running in this task, or ``None`` outside a step body."""
    info = _current_step.get()
    return None if info is None else StepInfo(*info)


class _ControlFlow(BaseException):
    """Base of durably's own unwinding (parking, a failed store, a hung replay, a failed
    compensation): a ``BaseException`` so that workflow code's ``except Exception`` cannot
    swallow it, and never recorded as a step's or a workflow's failure."""


#: What passes through user code without being its failure: the host's interrupt, trio's
#: cancellation, durably's own unwinding.
_UNWINDING = (KeyboardInterrupt, trio.Cancelled, _ControlFlow)


def _unwinding(exc: BaseException) -> bool:
    return isinstance(exc, _UNWINDING)


def unwinds(exc: BaseException) -> bool:
    """Whether ``exc``, caught around user code, must propagate instead of being recorded
    as that code's failure (any other ``BaseException`` fails the step or the execution,
    so that one bad execution cannot stop the worker).

    ``GeneratorExit`` is also how a coroutine is closed: thrown in at the await of the
    frame that catches it, so its traceback starts and ends there. Raised by the code that
    frame called, the traceback goes deeper, and it is that code's own failure.
    """
    if isinstance(exc, _UNWINDING):
        return True
    if isinstance(exc, GeneratorExit):
        tb = exc.__traceback__
        return tb is None or tb.tb_next is None
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(_unwinding) is not None
    return False


class _EngineFailure(_ControlFlow):
    """Internal: the store failed under this execution; stop without writing more."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        super().__init__(str(error))


class _ContinueAsNew(_ControlFlow):
    """Internal: ``ctx.continue_as_new(input)``; the actor starts the next run."""

    def __init__(self, input: Any) -> None:
        self.input = input
        super().__init__("continue_as_new")


class _CompensationFailure(_ControlFlow):
    """Internal: a compensation failed; the execution ends COMPENSATION_FAILED."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        super().__init__(error.get("message", ""))


#: The message of the error a durable call made while another is running raises (the
#: actor recognises it inside a nursery's group, to record the rule that was broken).
CONCURRENT_CALLS = (
    "durable calls of one execution must not run concurrently (the log's order is the "
    "contract): await each ctx call before the next, or run them together with "
    "ctx.gather(...)"
)


class Members:
    """The tasks of the ``ctx.gather`` that is running: each may make durable calls, one
    at a time, as if it were the workflow; derived step ids follow argument positions."""

    __slots__ = ("abandoned", "counters", "free", "index", "step_id", "step_of")

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        #: Timers of members cancelled while they waited: the gather removes them.
        self.abandoned: list[Timer] = []
        self.index: dict[trio.lowlevel.Task, int] = {}
        self.free: set[trio.lowlevel.Task] = set()
        self.step_of: dict[trio.lowlevel.Task, str] = {}
        self.counters: dict[trio.lowlevel.Task, int] = {}

    def join(self, position: int) -> None:
        task = trio.lowlevel.current_task()
        self.index[task] = position
        self.free.add(task)

    def admit(self) -> bool:
        task = trio.lowlevel.current_task()
        if task in self.free:
            self.free.discard(task)
            return True
        return False

    def leave(self) -> None:
        task = trio.lowlevel.current_task()
        if task in self.index:
            self.free.add(task)

    def derive(self) -> str | None:
        """The derived step id of the current member's next call (``None``: not a member)."""
        task = trio.lowlevel.current_task()
        position = self.index.get(task)
        if position is None:
            return None
        count = self.counters.get(task, 0) + 1
        self.counters[task] = count
        suffix = "" if count == 1 else f".{count}"
        return f"{self.step_id}[{position}]{suffix}"

    def note(self, step_id: str) -> None:
        self.step_of[trio.lowlevel.current_task()] = step_id


def concurrent_calls(exc: BaseException) -> bool:
    """Whether ``exc`` is the refusal of a durable call made while another was running."""
    return type(exc) is DurablyError and exc.args == (CONCURRENT_CALLS,)


class ContextBase:
    """What every primitive shares: the execution it belongs to, derived step ids, and
    the rule that durable calls of one execution run one at a time."""

    def __init__(self, actor: ExecutionPort) -> None:
        self._actor = actor
        # Made on first use: most runs derive no step ids and register no compensations,
        # and every waiting live execution holds its Context.
        self._counters: dict[str, int] | None = None
        self._compensations: list[tuple[str, Callable[[Any], Any], Any]] | None = None
        self._busy = False
        #: While a ``ctx.gather`` runs: its member tasks (durable calls may overlap).
        self._members: Members | None = None
        #: What ``ctx.patched`` answered in this run, by patch id (made on first use).
        self._patches: dict[str, bool] | None = None

    # --- identity ---

    @property
    def execution_id(self) -> str:
        """The id of the execution this run belongs to."""
        return self._actor.execution_id

    @property
    def workflow(self) -> str:
        """The workflow's registered name."""
        return self._actor.record.workflow

    @property
    def attempt(self) -> int:
        """1 on the first run; incremented each time an operator retries the execution."""
        return self._actor.record.attempt

    @property
    def replaying(self) -> bool:
        """True while the run is answered from the log (useful to silence logging)."""
        return self._actor.replayer.replaying

    # --- helpers ---

    def _step_id(self, step_id: str | None, kind: str, explicit_required: bool) -> str:
        members = self._members
        if step_id is not None:
            if not isinstance(step_id, str) or not step_id or "\x00" in step_id:
                raise ConfigurationError("a step id must be a non-empty string without NUL")
            if members is not None:
                members.note(step_id)
            return step_id
        if members is not None:
            derived = members.derive()
            if derived is not None:  # by argument position: finishing order varies
                members.note(derived)
                return derived
        if self._counters is None:
            self._counters = {}
        count = self._counters.get(kind, 0) + 1
        self._counters[kind] = count
        if explicit_required:
            policy = self._actor.parts.settings.implicit_step_ids
            message = (
                f"{kind} without step_id= in workflow {self.workflow!r}: its id is derived "
                "from call order, so adding or moving such a call breaks running executions"
            )
            if policy == "error":
                raise ConfigurationError(message + "; pass step_id=")
            if policy == "warn":
                warnings.warn(message, stacklevel=3)
        return f"__{kind}:{count}"

    def _compensate_later(self, sid: str, undo: Callable[[Any], Any], value: Any) -> None:
        if self._compensations is None:
            self._compensations = []
        self._compensations.append((sid, undo, value))

    async def _resume_wait(self, wait: Wait) -> None:
        """A replay reached a recorded wait: make sure the record says so.

        It does after a crash or a park (the wait's first run wrote it). After an
        operator's retry it does not (the record says ``running``, the timer was
        removed): without this, a parked execution would miss its signal.
        """
        actor = self._actor
        record = actor.record
        if self._members is not None:
            return  # a gather's waits overlap: the record says running (see _changes)
        if (record.status, record.waiting_signal, record.timer) == (
            wait.status,
            wait.signal,
            wait.timer,
        ):
            return
        ops: list[Any] = []
        if wait.timer is not None:
            ops.append(AddTimer(Timer(wait.timer[0], actor.execution_id, wait.timer[1])))
        await actor.put_record(
            ops, status=wait.status, waiting_signal=wait.signal, timer=wait.timer
        )

    async def _wait_wake(self, timer: Timer | None) -> None:
        """The actor's wait; a gather's member cancelled in it (another failed) leaves its
        timer to the gather to remove, since no one else would."""
        members = self._members
        if members is None or timer is None:
            await self._actor.wait_wake(timer)
            return
        try:
            await self._actor.wait_wake(timer)
        except trio.Cancelled:
            members.abandoned.append(timer)
            raise

    async def _took(self, event: Any, sid: str, ops: list[Any]) -> None:
        """Record what a wait took (a signal, a timer's fire, a child's end): staged to
        ride with the next durable call, or inside a gather written at once (batched
        with the other members'), since the next call may be another member's, later."""
        if self._members is None:
            self._actor.stage(event, sid, ops, **record_changes(event))
        else:
            await self._actor.append(event, sid, ops)

    def _enter(self) -> None:
        if self._busy:
            members = self._members
            if members is None or not members.admit():
                raise DurablyError(CONCURRENT_CALLS)
            return
        self._busy = True

    def _leave(self) -> None:
        members = self._members
        if members is None:
            self._busy = False
        else:
            members.leave()

    def _changes(self, event: Any) -> Mapping[str, Any]:
        """What the record takes from ``event``: nothing inside a gather, whose members'
        waits overlap (the record says ``running``, and recovery resumes it)."""
        return record_changes(event) if self._members is None else _NO_CHANGES


_NO_CHANGES: Mapping[str, Any] = MappingProxyType({})


async def _call_with_timeout(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float | None,
    sid: str,
    kwargs: Mapping[str, Any] = _NO_CHANGES,
) -> Any:
    if timeout is None:
        return await _call(fn, args, kwargs)
    with trio.move_on_after(timeout) as scope:
        return await _call(fn, args, kwargs)
    # Only our own scope's expiry lands here; an outer cancellation propagates.
    assert scope.cancelled_caught
    raise TimeoutError(f"step {sid!r} timed out after {timeout} s (its body was cancelled)")


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] = _NO_CHANGES
) -> Any:
    value = fn(*args, **kwargs)
    if _awaitable(value):
        host = host_await.get()
        value = await (value if host is None else host(value))
    return value


#: Types that are never awaitable: ``inspect.isawaitable`` (an ABC check) is skipped for
#: them, on the path of every step.
_PLAIN = frozenset((int, str, float, bool, type(None), dict, list, tuple, bytes))


def _awaitable(value: Any) -> bool:
    kind = type(value)
    return kind is CoroutineType or (kind not in _PLAIN and inspect.isawaitable(value))


def _where(actor: ExecutionPort, sid: str) -> str:
    return f"step {sid!r} of execution {actor.execution_id}"
