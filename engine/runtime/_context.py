"""``durably.Context``: the durable primitives a workflow calls.

Every primitive follows one pattern: take a step id, ask the replay core whether the log
already answers it, and either return the recorded answer (restored to the caller's type)
or do the work and record it through the execution actor before returning. Waits (sleep,
signals, retry backoff) record their deadline first, so a replay never recomputes it.

Rules: durable calls of one execution run one at a time (the recorded order is the
contract); a step body's exceptions become ``StepError`` on the first run as on replay;
nothing here reads the wall clock or randomness except through recorded values.

Operator actions change how some records replay (``HistoryFacts``): a failure recorded
before an operator's retry runs again, a compensation that failed before a
``retry_rollback`` runs again, and a wait reached on replay after a retry records its
status again (the operator's resume left the record ``running``).
"""

from __future__ import annotations

import inspect
import math
import random as _random
import uuid as _uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import datetime
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast, overload

import attrs
import trio

from durably.stores import AddTimer, RemoveTimer, TakeSignal, Timer

from ..core import _codec
from ..core._errors import (
    ConfigurationError,
    DurablyError,
    NonDeterminismError,
    SignalTimeoutError,
    StepError,
)
from ..core._events import (
    CompensationCompleted,
    CompensationFailed,
    Emitted,
    Event,
    Noted,
    SignalReceived,
    SignalTimedOut,
    SignalWaiting,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    SwitchEvaluated,
    TimerFired,
    TimerStarted,
    ValueRecorded,
)
from ..core._history import due_after, error_info
from ..core._retry import Retry
from ..core._types import Received, Signal, TimedOut, from_ms

if TYPE_CHECKING:
    from ._actor import ExecutionActor

T = TypeVar("T")


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


class EntropySource(Protocol):
    def random(self) -> float: ...

    def uuid4(self) -> _uuid.UUID: ...


class _SystemEntropy:
    def random(self) -> float:
        return _random.random()

    def uuid4(self) -> _uuid.UUID:
        return _uuid.uuid4()


#: Where ``ctx.random()`` and ``ctx.uuid()`` draw new values; ``durably.testing`` swaps in
#: a seeded source while it checks replay. Recorded values never come from here again.
entropy: EntropySource = _SystemEntropy()

#: ``(execution id, step id, attempt)`` of the step body running in this task: a tuple,
#: not a ``StepInfo``, because every step sets it and few bodies ask.
_current_step: ContextVar[tuple[str, str, int] | None] = ContextVar(
    "durably_current_step", default=None
)


def current_step() -> StepInfo | None:
    """The step whose body is running in this task, or ``None`` outside a step body."""
    info = _current_step.get()
    return None if info is None else StepInfo(*info)


@attrs.frozen
class Branch:
    """One arm of ``ctx.switch``: ``match(value)`` chooses it, ``run(value)`` is its work."""

    id: str
    run: Callable[[Any], Any]
    match: Callable[[Any], bool] | None = None


class _CompensationFailure(BaseException):
    """Internal: a compensation failed; the execution ends COMPENSATION_FAILED.

    A ``BaseException`` so that workflow code's ``except Exception`` cannot swallow it.
    """

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        super().__init__(error.get("message", ""))


class Context:
    """The handle a workflow uses for everything durable. One per run of an execution."""

    def __init__(self, actor: ExecutionActor) -> None:
        self._actor = actor
        # Made on first use: most runs derive no step ids and register no compensations,
        # and every waiting live execution holds its Context.
        self._counters: dict[str, int] | None = None
        self._compensations: list[tuple[str, Callable[[Any], Any], Any]] | None = None
        self._busy = False

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
        if step_id is not None:
            if not isinstance(step_id, str) or not step_id or "\x00" in step_id:
                raise ConfigurationError("a step id must be a non-empty string without NUL")
            return step_id
        if self._counters is None:
            self._counters = {}
        count = self._counters.get(kind, 0) + 1
        self._counters[kind] = count
        if explicit_required:
            policy = self._actor.engine.implicit_step_ids
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

    def _enter(self) -> None:
        if self._busy:
            raise DurablyError(
                "durable calls of one execution must not run concurrently (the log's order "
                "is the contract): await each ctx call before the next"
            )
        self._busy = True

    # --- step ---

    async def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        compensate: Callable[[T], Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run ``fn(*args)`` once, durably: record its result before returning it.

        On replay the recorded result is returned (restored to ``fn``'s annotated return
        type) and ``fn`` is not called. A step runs *at least* once: a crash after its side
        effect and before its record re-runs it, so give the systems it calls
        ``durably.current_step().idempotency_key``.
        """
        sid = self._step_id(step_id, "step", False)
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"step {sid!r}: timeout= must be positive seconds")
        self._enter()
        try:
            actor = self._actor
            rtype = _codec.return_type(fn)

            def where() -> str:
                return f"step {sid!r} of execution {actor.execution_id}"

            recorded = actor.replayer.issue(sid, "step")
            attempt = 1
            if recorded is not None:
                last = recorded[-1]
                if isinstance(last, StepCompleted | StepSkipped):
                    value = _codec.load(last.result, rtype, where)
                    if compensate is not None:
                        self._compensate_later(sid, compensate, value)
                    return cast(T, value)
                if isinstance(last, StepFailed):
                    if sid not in actor.facts.rerun_failed:
                        raise StepError(sid, last.error["type"], last.error["message"])
                    # An operator retried the execution after this failure: run it again,
                    # with a fresh set of attempts.
                else:
                    assert isinstance(last, StepRetrying)
                    attempt = last.attempt + 1
                    await self._resume_wait("retrying", None, (last.retry_at, sid))
                    await self._wait_until(last.retry_at, sid, retrying=True)
            if actor.record_.recoveries:
                await actor.caught_up()
            if actor.deferred:
                await actor.settle()  # woken with others: their resumption before this body
            policy = retry if retry is not None else actor.definition.retry
            clock = actor.engine.clock
            while True:
                token = _current_step.set((actor.execution_id, sid, attempt))
                started = trio.current_time()
                try:
                    if timeout is None:
                        value = cast(Any, fn(*args))
                        if _awaitable(value):
                            value = await value
                    else:
                        value = await _call_with_timeout(fn, args, timeout, sid)
                except Exception as exc:
                    duration = (trio.current_time() - started) * 1000
                    info = error_info(exc)
                    if policy is not None and policy.allows(exc, attempt):
                        retry_at = due_after(clock.now_ms(), policy.delay(attempt))
                        timer = Timer(retry_at, actor.execution_id, sid)
                        await actor.append(
                            StepRetrying(
                                at=clock.now_ms(),
                                step_id=sid,
                                error=info,
                                attempt=attempt,
                                retry_at=retry_at,
                                duration_ms=duration,
                            ),
                            sid,
                            [AddTimer(timer)],
                            status="retrying",
                            timer=(retry_at, sid),
                        )
                        attempt += 1
                        await self._wait_until(retry_at, sid, retrying=True)
                        continue
                    await actor.append(
                        StepFailed(
                            at=clock.now_ms(),
                            step_id=sid,
                            error=info,
                            duration_ms=duration,
                            attempt=attempt,
                        ),
                        sid,
                    )
                    raise StepError(sid, info["type"], info["message"]) from exc
                finally:
                    _current_step.reset(token)
                duration = (trio.current_time() - started) * 1000
                shaped, value = _codec.roundtrip(value, rtype, where)
                await actor.append(
                    StepCompleted(
                        at=clock.now_ms(),
                        step_id=sid,
                        result=shaped,
                        duration_ms=duration,
                        attempt=attempt,
                    ),
                    sid,
                )
                if compensate is not None:
                    self._compensate_later(sid, compensate, value)
                return cast(T, value)
        finally:
            self._busy = False

    # --- time ---

    def now(self) -> datetime:
        """The current time, recorded on first run: identical on every replay."""
        return from_ms(self._value("now", lambda: self._actor.engine.clock.now_ms()))

    def random(self) -> float:
        """A random float in [0, 1), recorded on first run."""
        return float(self._value("random", entropy.random))

    def uuid(self) -> _uuid.UUID:
        """A random UUID (version 4), recorded on first run."""
        return _uuid.UUID(self._value("uuid", lambda: str(entropy.uuid4())))

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        # Synchronous on purpose (ctx.now() reads like time.time()): the value is recorded
        # in the same group commit as the next awaited durable call, and an execution that
        # ends before any is recorded with its final event. Until then a crash loses it,
        # and that is safe: nothing durable observed it.
        actor = self._actor
        sid = self._step_id(None, kind, False)
        recorded = actor.replayer.issue(sid, "value")
        if recorded is not None:
            event = recorded[0]
            assert isinstance(event, ValueRecorded)
            return event.value
        value = make()
        actor.record_later(
            ValueRecorded(at=actor.engine.clock.now_ms(), step_id=sid, kind=kind, value=value),
            sid,
        )
        return value

    async def sleep(
        self,
        seconds: float | None = None,
        *,
        until: datetime | None = None,
        step_id: str | None = None,
    ) -> None:
        """Sleep durably for ``seconds`` (or until an aware datetime ``until``).

        The wake-up time is recorded when the sleep starts; a restart does not move it.
        """
        if (seconds is None) == (until is None):
            raise ConfigurationError("ctx.sleep takes seconds or until=, exactly one")
        if until is not None and until.tzinfo is None:
            raise ConfigurationError(
                "ctx.sleep(until=...) needs an aware datetime (e.g. tzinfo=UTC)"
            )
        if seconds is not None and seconds < 0:
            raise ConfigurationError("ctx.sleep(seconds) needs seconds >= 0")
        sid = self._step_id(step_id, "sleep", True)
        self._enter()
        try:
            actor = self._actor
            recorded = actor.replayer.issue(sid, "sleep")
            if recorded is not None:
                if isinstance(recorded[-1], TimerFired):
                    return
                started = recorded[0]
                assert isinstance(started, TimerStarted)
                wake_at = started.wake_at
                await self._resume_wait("sleeping", None, (wake_at, sid))
            else:
                now = actor.engine.clock.now_ms()
                if until is not None:
                    wake_at = math.ceil(until.timestamp() * 1000)
                else:
                    assert seconds is not None
                    wake_at = due_after(now, seconds)
                await actor.append(
                    TimerStarted(at=now, step_id=sid, wake_at=wake_at),
                    sid,
                    [AddTimer(Timer(wake_at, actor.execution_id, sid))],
                    status="sleeping",
                    timer=(wake_at, sid),
                )
            await self._wait_until(wake_at, sid, retrying=False)
        finally:
            self._busy = False

    async def _resume_wait(
        self, status: str, waiting_signal: str | None, timer: tuple[int, str] | None
    ) -> None:
        """A replay reached a recorded wait: make sure the record says so.

        It does after a crash or a park (the wait's first run wrote it). After an
        operator's retry it does not (the record says ``running``, the timer was
        removed): without this, a parked execution would miss its signal.
        """
        actor = self._actor
        record = actor.record
        if (record.status, record.waiting_signal, record.timer) == (
            status,
            waiting_signal,
            timer,
        ):
            return
        ops: list[Any] = []
        if timer is not None:
            ops.append(AddTimer(Timer(timer[0], actor.execution_id, timer[1])))
        await actor.put_record(ops, status=status, waiting_signal=waiting_signal, timer=timer)

    async def _wait_until(self, wake_at: int, sid: str, *, retrying: bool) -> None:
        """Wait (live or parked) until ``wake_at``, then record that the timer fired."""
        actor = self._actor
        timer = Timer(wake_at, actor.execution_id, sid)
        clock = actor.engine.clock
        now = clock.now_ms()
        while now < wake_at:
            await actor.wait_wake(timer)
            now = clock.now_ms()
        if retrying:
            # The retry's next attempt starts now; its outcome is the next recorded event.
            actor.stage_record(status="running", timer=None, ops=[RemoveTimer(timer)])
            return
        # Staged, not committed on its own: it rides with the workflow's next durable
        # call. A crash before then re-fires the timer (its index entry is removed in
        # that same transaction): the fire is recorded once, and nothing the workflow
        # did after waking was acknowledged, so a step re-runs at least once as ever.
        actor.timer_fired(timer, now)

    # --- signals ---

    @overload
    async def wait_for_signal(
        self, signal: Signal[T] | str, *, timeout: None = None, step_id: str | None = None
    ) -> T: ...

    @overload
    async def wait_for_signal(
        self, signal: Signal[T] | str, *, timeout: float, step_id: str | None = None
    ) -> Received[T] | TimedOut: ...

    async def wait_for_signal(
        self,
        signal: Signal[T] | str,
        *,
        timeout: float | None = None,
        step_id: str | None = None,
    ) -> T | Received[T] | TimedOut:
        """Wait durably for ``signal``; consume the oldest buffered one if any.

        Without ``timeout`` returns the payload; with it returns ``Received(payload)`` or
        ``TimedOut()``. The payload is restored to the signal's payload type.
        """
        sig = signal if isinstance(signal, Signal) else Signal(signal)
        if timeout is not None and timeout < 0:
            raise ConfigurationError("wait_for_signal(timeout=) needs seconds >= 0")
        sid = self._step_id(step_id, "signal", True)
        self._enter()
        try:
            return cast(
                "T | Received[T] | TimedOut", await self._wait_for_signal(sig, timeout, sid)
            )
        finally:
            self._busy = False

    async def _wait_for_signal(self, sig: Signal[Any], timeout: float | None, sid: str) -> Any:
        actor = self._actor
        where = f"signal {sig.name!r} at {sid!r} of execution {actor.execution_id}"
        shape: Literal["plain", "result"] = "plain" if timeout is None else "result"
        recorded = actor.replayer.issue(sid, "signal")
        if recorded is not None:
            last = recorded[-1]
            if isinstance(last, SignalReceived):
                return _signal_result(shape, _codec.load(last.payload, sig.payload_type, where))
            if isinstance(last, SignalTimedOut):
                return _timed_out(shape, sig.name, sid)
            waiting = recorded[0]
            assert isinstance(waiting, SignalWaiting)
            if waiting.signal != sig.name:
                raise NonDeterminismError(
                    f"execution {actor.execution_id}: {sid!r} waited for signal "
                    f"{waiting.signal!r}, the code now waits for {sig.name!r}",
                    execution_id=actor.execution_id,
                    step_id=sid,
                    recorded=waiting.signal,
                    attempted=sig.name,
                )
            deadline = waiting.deadline
            await self._resume_wait(
                "waiting", sig.name, None if deadline is None else (deadline, sid)
            )
        else:
            now = actor.engine.clock.now_ms()
            deadline = None if timeout is None else due_after(now, timeout)
            ops: list[Any] = []
            if deadline is not None:
                ops.append(AddTimer(Timer(deadline, actor.execution_id, sid)))
            await actor.append(
                SignalWaiting(at=now, step_id=sid, signal=sig.name, deadline=deadline),
                sid,
                ops,
                status="waiting",
                waiting_signal=sig.name,
                timer=None if deadline is None else (deadline, sid),
            )
        timer = None if deadline is None else Timer(deadline, actor.execution_id, sid)
        while True:
            entry = actor.engine.first_signal(actor.execution_id, sig.name)
            if entry is not None:
                ops = [TakeSignal(actor.execution_id, entry.seq)]
                if timer is not None:
                    ops.append(RemoveTimer(timer))
                # Consumption (TakeSignal) and record ride together with the next durable
                # call: one transaction, so a crash before it leaves the signal in the
                # mailbox for the replay to consume again; never lost, never twice.
                actor.stage(
                    SignalReceived(
                        at=actor.engine.clock.now_ms(),
                        step_id=sid,
                        signal=sig.name,
                        payload=entry.payload,
                        mailbox_seq=entry.seq,
                    ),
                    sid,
                    ops,
                    status="running",
                    waiting_signal=None,
                    timer=None,
                )
                return _signal_result(shape, _codec.load(entry.payload, sig.payload_type, where))
            if deadline is not None and actor.engine.clock.now_ms() >= deadline:
                assert timer is not None
                actor.stage(
                    SignalTimedOut(at=actor.engine.clock.now_ms(), step_id=sid, signal=sig.name),
                    sid,
                    [RemoveTimer(timer)],
                    status="running",
                    waiting_signal=None,
                    timer=None,
                )
                return _timed_out(shape, sig.name, sid)
            await actor.wait_wake(timer)

    # --- events, notes, branching ---

    async def emit(self, event: str, payload: Any = None, *, step_id: str | None = None) -> None:
        """Publish ``event`` on the engine's event bus, once (a replay does not republish).

        Delivery is best-effort: subscribers that are not listening miss it.
        """
        sid = self._step_id(step_id, "emit", True)
        self._enter()
        try:
            actor = self._actor
            if actor.replayer.issue(sid, "emit") is not None:
                return
            shaped = _codec.shape(payload, f"emit {event!r} at {sid!r}")
            await actor.append(
                Emitted(at=actor.engine.clock.now_ms(), step_id=sid, event=event, payload=shaped),
                sid,
            )
        finally:
            self._busy = False

    async def note(self, message: str, *, step_id: str | None = None, **meta: Any) -> None:
        """Add a note to the execution's audit trail, once (replay-safe)."""
        sid = self._step_id(step_id, "note", False)
        self._enter()
        try:
            actor = self._actor
            if actor.replayer.issue(sid, "note") is not None:
                return
            shaped = _codec.shape(meta, f"note at {sid!r}")
            await actor.append(
                Noted(at=actor.engine.clock.now_ms(), step_id=sid, message=message, meta=shaped),
                sid,
            )
        finally:
            self._busy = False

    async def switch(
        self,
        step_id: str,
        value: Any,
        branches: Sequence[Branch],
        *,
        default: Branch | None = None,
    ) -> Any:
        """Choose the first branch whose ``match(value)`` is true and run it, durably.

        The chosen branch id and its result are recorded; a replay returns the recorded
        result without evaluating matchers. No match and no default raises.
        """
        sid = self._step_id(step_id, "switch", False)
        ids = [b.id for b in branches] + ([default.id] if default else [])
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"switch {sid!r}: branch ids must be unique, got {ids}")
        unmatched = [b.id for b in branches if b.match is None]
        if unmatched:
            raise ConfigurationError(
                f"switch {sid!r}: branches {unmatched} have no match=; only the default "
                "branch may go without one"
            )
        self._enter()
        try:
            actor = self._actor
            by_id = {b.id: b for b in branches}
            if default is not None:
                by_id[default.id] = default
            recorded = actor.replayer.issue(sid, "switch")
            if recorded is not None:
                event = recorded[0]
                assert isinstance(event, SwitchEvaluated)
                branch = by_id.get(event.branch_id)
                if branch is None:
                    raise NonDeterminismError(
                        f"execution {actor.execution_id}: switch {sid!r} recorded branch "
                        f"{event.branch_id!r}, which the code no longer has ({sorted(by_id)})",
                        execution_id=actor.execution_id,
                        step_id=sid,
                        recorded=event.branch_id,
                        attempted=",".join(sorted(by_id)),
                    )
                return _codec.load(event.result, _codec.return_type(branch.run), sid)
            chosen = next((b for b in branches if b.match is not None and b.match(value)), None)
            if chosen is None:
                chosen = default
            if chosen is None:
                raise DurablyError(
                    f"switch {sid!r}: no branch matched {value!r} and there is no default; "
                    "add default=durably.Branch(...)"
                )
            await actor.caught_up()
            started = trio.current_time()
            result = await _call(chosen.run, (value,))
            shaped, result = _codec.roundtrip(
                result, _codec.return_type(chosen.run), f"switch {sid!r}"
            )
            await actor.append(
                SwitchEvaluated(
                    at=actor.engine.clock.now_ms(),
                    step_id=sid,
                    branch_id=chosen.id,
                    result=shaped,
                    duration_ms=(trio.current_time() - started) * 1000,
                ),
                sid,
            )
            return result
        finally:
            self._busy = False

    # --- compensation ---

    async def rollback(self) -> None:
        """Run the registered compensations in reverse order, each recorded once.

        A compensation that raises ends the execution ``COMPENSATION_FAILED`` with the error
        recorded; ``operator.retry_rollback`` runs the failed ones again.
        """
        self._enter()
        try:
            actor = self._actor
            while self._compensations:
                step, undo, value = self._compensations.pop()
                sid = f"rollback:{step}"
                recorded = actor.replayer.issue(sid, "compensate")
                if recorded is not None:
                    last = recorded[-1]
                    if isinstance(last, CompensationCompleted):
                        continue
                    assert isinstance(last, CompensationFailed)
                    if last.round >= actor.rollback_round:
                        raise _CompensationFailure(last.error)
                    # An operator asked for the rollback again: this one runs again.
                await actor.caught_up()
                started = trio.current_time()
                try:
                    await _call(undo, (value,))
                except Exception as exc:
                    info = error_info(exc)
                    await actor.append(
                        CompensationFailed(
                            at=actor.engine.clock.now_ms(),
                            step_id=sid,
                            error=info,
                            round=actor.rollback_round,
                        ),
                        sid,
                    )
                    raise _CompensationFailure(info) from exc
                await actor.append(
                    CompensationCompleted(
                        at=actor.engine.clock.now_ms(),
                        step_id=sid,
                        duration_ms=(trio.current_time() - started) * 1000,
                    ),
                    sid,
                )
        finally:
            self._busy = False


async def _call_with_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None, sid: str
) -> Any:
    if timeout is None:
        return await _call(fn, args)
    with trio.move_on_after(timeout) as scope:
        return await _call(fn, args)
    # Only our own scope's expiry lands here; an outer cancellation propagates.
    assert scope.cancelled_caught
    raise TimeoutError(f"step {sid!r} timed out after {timeout} s (its body was cancelled)")


async def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    value = fn(*args)
    if _awaitable(value):
        value = await value
    return value


#: Types that are never awaitable: ``inspect.isawaitable`` (an ABC check) is skipped for
#: them, on the path of every step.
_PLAIN = frozenset((int, str, float, bool, type(None), dict, list, tuple, bytes))


def _awaitable(value: Any) -> bool:
    kind = type(value)
    return kind is CoroutineType or (kind not in _PLAIN and inspect.isawaitable(value))


def _signal_result(shape: str, payload: Any) -> Any:
    return payload if shape == "plain" else Received(payload)


def _timed_out(shape: str, name: str, sid: str) -> Any:
    if shape == "plain":
        raise SignalTimeoutError(f"signal {name!r} at {sid!r} timed out")
    return TimedOut()


__all__ = ["Branch", "Context", "Event", "StepInfo", "current_step"]
