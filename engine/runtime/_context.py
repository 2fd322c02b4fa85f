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

import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, cast, overload

import trio

from durably.stores import RemoveTimer, Timer

from ..core import _codec, _decide as decide
from ..core._errors import (
    ConfigurationError,
    SignalTimeoutError,
    StepError,
)
from ..core._events import (
    Emitted,
    Noted,
    SignalReceived,
    SignalRejected,
    SignalTimedOut,
    SignalWaiting,
    StepCompleted,
    StepRetrying,
    TimerFired,
    ValueRecorded,
)
from ..core._history import due_at, error_info
from ..core._records import SignalArrived
from ..core._retry import Retry
from ..core._status import Wait, wait_of
from ..core._types import Received, Signal, TimedOut, from_ms
from ._branching import Branching
from ._children import Children
from ._fanout import Fanout
from ._latch import park, parking
from ._lifecycle import Lifecycle
from ._primitive import (
    _awaitable,
    _call_with_timeout,
    _current_step,
    _where,
    host_await,
    unwinds,
)
from ._signals import payload_error, restore

T = TypeVar("T")

#: The record after a wait is over: running, waiting for nothing.
_WAIT_OVER: dict[str, Any] = {"status": "running", "waiting_signal": None, "timer": None}


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


class Context(Branching, Fanout, Children, Lifecycle):
    """The handle a workflow uses for everything durable. One per run of an execution."""

    # --- step ---

    # Two overloads, so that a type checker solves T from an ``async def`` step (its
    # awaited result) as from a plain one; a union parameter leaves it unsolved.
    @overload
    async def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        compensate: Callable[[T], Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T: ...

    @overload
    async def step(
        self,
        step_id: str,
        fn: Callable[..., T],
        *args: Any,
        compensate: Callable[[T], Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T: ...

    # long: the body runs in this frame, with its retry loop and telemetry hook around it
    async def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        compensate: Callable[[T], Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` once, durably: record its result before returning it.

        On replay the recorded result is returned (restored to ``fn``'s annotated return
        type) and ``fn`` is not called. A step runs *at least* once: a crash after its side
        effect and before its record re-runs it, so give the systems it calls
        ``durably.current_step().idempotency_key``. Other keywords go to ``fn``.
        """
        # ``_step_id`` and ``_enter`` inline for the common case (an explicit id, outside
        # a gather, no call running): a long replay makes thousands of these calls.
        if self._members is None and type(step_id) is str and step_id and "\x00" not in step_id:
            sid = step_id
        else:
            sid = self._step_id(step_id, "step", False)
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"step {sid!r}: timeout= must be positive seconds")
        if self._busy:
            self._enter()  # refused, unless a gather's member
        else:
            self._busy = True
        try:
            actor = self._actor
            rtype = _codec.return_type(fn)
            recorded = actor.replayer.issue_last(sid, "step")
            decision = decide.step(recorded, sid, actor.facts.rerun_failed)
            if type(decision) is dict:  # answered from the log: its fields
                restored: T = _codec.load(decision["result"], rtype, (_where, actor, sid))
                if compensate is not None:
                    self._compensate_later(sid, compensate, restored)
                return restored
            if type(decision) is decide.Reraise:
                raise StepError(sid, decision.error["type"], decision.error["message"])
            attempt = decision.attempt
            if decision.retry_at is not None:  # a recorded backoff: wait it out first
                await self._resume_wait(Wait("retrying", None, (decision.retry_at, sid)))
                await self._wait_until(decision.retry_at, sid, retrying=True)
            if actor.catching_up:  # user code runs next: the replay's bounds are lifted
                actor.caught_up()
            if actor.deferred:
                await actor.settle()  # woken with others: their resumption before this body
            # The body runs in this frame (not a helper coroutine): one frame fewer on
            # every suspend and resume of every step.
            telemetry = actor.parts.telemetry
            while True:
                token = _current_step.set((actor.execution_id, sid, attempt))
                span = None if telemetry is None else telemetry.step(actor, sid, attempt)
                started = trio.current_time()
                try:
                    if timeout is None:
                        value = cast(Any, fn(*args, **kwargs))
                        if _awaitable(value):
                            host = host_await.get()
                            value = await (value if host is None else host(value))
                    else:
                        value = await _call_with_timeout(fn, args, timeout, sid, kwargs)
                except BaseException as exc:  # SystemExit too: this step's failure
                    if span is not None:
                        span.failed(exc)  # before the retry's backoff, which is no body
                    if unwinds(exc):
                        raise
                    duration = (trio.current_time() - started) * 1000
                    await self._attempt_failed(sid, exc, attempt, duration, retry)
                    attempt += 1  # _attempt_failed raised unless the policy retries
                    continue
                finally:
                    _current_step.reset(token)
                if span is not None:
                    span.end()
                duration = (trio.current_time() - started) * 1000
                shaped, value = _codec.roundtrip(value, rtype, (_where, actor, sid))
                completed = StepCompleted(
                    at=actor.parts.clock.now_ms(),
                    step_id=sid,
                    result=shaped,
                    duration_ms=duration,
                    attempt=attempt,
                )
                try:
                    await actor.append(completed, sid)
                except trio.Cancelled:
                    # A gather's member cancelled by another's failure once its completion
                    # was handed over: it is written all the same, and replayed, so its
                    # compensation must count on this run too.
                    if compensate is not None:
                        self._compensate_if_written(sid, compensate, value)
                    raise
                if compensate is not None:
                    self._compensate_later(sid, compensate, value)
                return cast(T, value)
        finally:
            self._leave()

    async def _attempt_failed(
        self, sid: str, exc: BaseException, attempt: int, duration: float, retry: Retry | None
    ) -> None:
        """Record a failed attempt; wait out the retry's backoff, or raise ``StepError``.

        Any ``BaseException`` but those that ``unwinds`` passes on lands here: a body that
        raises ``SystemExit`` fails its step, instead of stopping the worker for everyone.
        """
        actor = self._actor
        info = error_info(exc)
        policy = retry if retry is not None else actor.definition.retry
        delay = policy.delay(attempt) if policy and policy.allows(exc, attempt) else None
        event, ops = decide.step_failed(
            actor.execution_id,
            sid,
            info,
            attempt=attempt,
            now=actor.parts.clock.now_ms(),
            duration_ms=duration,
            retry_delay=delay,
        )
        await actor.append(event, sid, ops, **self._changes(event))
        if not isinstance(event, StepRetrying):
            raise StepError(sid, info["type"], info["message"]) from exc
        await self._wait_until(event.retry_at, sid, retrying=True)

    # --- time ---

    def now(self) -> datetime:
        """The current time, recorded on first run: identical on every replay."""
        return from_ms(self._value("now", lambda: self._actor.parts.clock.now_ms()))

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
            ValueRecorded(at=actor.parts.clock.now_ms(), step_id=sid, kind=kind, value=value),
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
        It is rounded up to the engine clock's millisecond, so the sleep never ends
        early: any positive ``seconds`` lasts at least 1 ms, 0 (or a past ``until``) is
        a durable yield, and a wake-up past the year 9999 is capped there (forever).
        """
        if (seconds is None) == (until is None):
            raise ConfigurationError("ctx.sleep takes seconds or until=, exactly one")
        if until is not None and until.tzinfo is None:
            raise ConfigurationError(
                "ctx.sleep(until=...) needs an aware datetime (e.g. tzinfo=UTC)"
            )
        if seconds is not None and not seconds >= 0:  # NaN too
            raise ConfigurationError(f"ctx.sleep(seconds) needs seconds >= 0; got {seconds!r}")
        sid = self._step_id(step_id, "sleep", True)
        self._enter()
        try:
            actor = self._actor
            wake_at = decide.sleep(actor.replayer.issue(sid, "sleep"))
            if wake_at == decide.FIRED:
                return
            if wake_at is not None:
                await self._resume_wait(Wait("sleeping", None, (wake_at, sid)))
            else:
                until_ms = None if until is None else due_at(until)
                now = actor.parts.clock.now_ms()
                started, ops = decide.sleep_started(actor.execution_id, sid, now, seconds, until_ms)
                await actor.append(started, sid, ops, **self._changes(started))
                wake_at = started.wake_at
            if self._members is not None or actor.broadcast is not None:
                await self._wait_until(wake_at, sid, retrying=False)
                return
            # The plain sleep waits in this frame (``_wait_until``'s loop, inlined): every
            # sleeping execution resumes through each frame it holds, thousands at once
            # when their timers fall due together.
            timer = Timer(wake_at, actor.execution_id, sid)
            clock = actor.parts.clock
            now = clock.now_ms()
            while now < wake_at:
                if actor.wait_begin(timer):
                    try:
                        await park(parking(actor.wake.abort))
                    finally:
                        actor.unidle()
                    actor.woke()
                now = clock.now_ms()
            actor.timer_fired(timer, now)
        finally:
            self._leave()

    async def _wait_until(self, wake_at: int, sid: str, *, retrying: bool) -> None:
        """Wait (live or parked) until ``wake_at``, then record that the timer fired."""
        actor = self._actor
        timer = Timer(wake_at, actor.execution_id, sid)
        clock = actor.parts.clock
        now = clock.now_ms()
        while now < wake_at:
            if self._members is None:  # awaited in place: no frame more per waiting sleep
                await actor.wait_wake(timer)
            else:
                await self._wait_wake(timer)
            now = clock.now_ms()
        if retrying:
            # The retry's next attempt starts now; its outcome is the next recorded event.
            actor.stage_record(
                ops=[RemoveTimer(timer)], **(_WAIT_OVER if self._members is None else {})
            )
            return
        # Staged, not committed on its own: it rides with the workflow's next durable
        # call. A crash before then re-fires the timer (its index entry is removed in
        # that same transaction): the fire is recorded once, and nothing the workflow
        # did after waking was acknowledged, so a step re-runs at least once as ever.
        if self._members is None:
            actor.timer_fired(timer, now)
        else:
            fired = TimerFired(at=now, step_id=sid)
            await self._took(fired, sid, [RemoveTimer(timer)])

    # --- signals ---

    # A typed Signal gives its payload type; a plain name, whose payload is whatever JSON
    # came, gives Any (so ``payload = await ctx.wait_for_signal("go")`` needs no annotation).
    @overload
    async def wait_for_signal(
        self, signal: Signal[T], *, timeout: None = None, step_id: str | None = None
    ) -> T: ...

    @overload
    async def wait_for_signal(
        self, signal: str, *, timeout: None = None, step_id: str | None = None
    ) -> Any: ...

    @overload
    async def wait_for_signal(
        self, signal: Signal[T], *, timeout: float, step_id: str | None = None
    ) -> Received[T] | TimedOut: ...

    @overload
    async def wait_for_signal(
        self, signal: str, *, timeout: float, step_id: str | None = None
    ) -> Received[Any] | TimedOut: ...

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
            self._leave()

    async def _wait_for_signal(self, sig: Signal[Any], timeout: float | None, sid: str) -> Any:
        actor = self._actor
        eid = actor.execution_id
        where = f"signal {sig.name!r} at {sid!r} of execution {eid}"
        shape: Literal["plain", "result"] = "plain" if timeout is None else "result"
        recorded = decide.signal(actor.replayer.issue(sid, "signal"), eid, sid, sig.name)
        if isinstance(recorded, SignalReceived):
            return _signal_result(shape, _codec.load(recorded.payload, sig.payload_type, where))
        if isinstance(recorded, SignalRejected):
            raise payload_error(recorded, eid)
        if isinstance(recorded, SignalTimedOut):
            return _timed_out(shape, sig.name, sid)
        ops: list[Any] = []
        if isinstance(recorded, SignalWaiting):
            waiting = recorded
            await self._resume_wait(wait_of(waiting))
        else:
            now = actor.parts.clock.now_ms()
            waiting, ops = decide.signal_waiting(eid, sid, sig.name, now, timeout)
        # A gather's member opens its wait before its first yield, so that every member
        # begun at this instant is open before any of them looks (see Fanout.gather).
        waits = self._waits
        if waits is not None:
            waits[sid] = waiting
        try:
            if waiting is not recorded:
                await actor.append(waiting, sid, ops, **self._changes(waiting))
            deadline = waiting.deadline
            timer = None if deadline is None else Timer(deadline, eid, sid)
            store = actor.parts.store
            while True:
                mail = store.mailbox(eid)
                claimed = actor.claimed
                if claimed:  # taken by another member of the gather, not yet written
                    mail = [e for e in mail if e.seq not in claimed]
                if waits is None:
                    entry = decide.first_taken(mail, sig.name, deadline)
                else:  # members waiting for one name share its entries in a fixed order
                    entry = decide.taken_in_gather(mail, waits.values(), waiting)
                value, misfit = (None, None) if entry is None else restore(entry, sig, sid, where)
                now = actor.parts.clock.now_ms()
                outcome = decide.signal_outcome(waiting, eid, entry, now, misfit)
                if outcome is None:
                    if self._members is not None:
                        await self._wait_wake(timer)
                    elif actor.broadcast is not None:
                        await actor.wait_wake(timer)
                    elif actor.wait_begin(timer):
                        try:  # parked in this frame, as a plain sleep is
                            await park(parking(actor.wake.abort))
                        finally:
                            actor.unidle()
                        actor.woke()
                    continue
                event, ops = outcome
                if claimed is not None and entry is not None:
                    claimed.add(entry.seq)
                    if waits is not None:  # over: the others' next look passes it by
                        waits.pop(sid, None)
                if isinstance(event, SignalTimedOut):
                    # Committed now, not with the next call: once it is recorded, a signal
                    # is told BUFFERED; and one the wait takes that committed since it
                    # looked (told DELIVERED) refuses this commit (RequireNoSignal).
                    try:
                        await actor.append(event, sid, ops, **self._changes(event))
                    except SignalArrived:
                        continue  # look again: the wait takes that signal
                    return _timed_out(shape, sig.name, sid)
                # Consumption (TakeSignal) and record ride together with the next durable
                # call: one transaction, so a crash before it leaves the signal in the
                # mailbox for the replay to take again; never lost, never twice. The entry
                # stays visible until then, so a later signal is told BUFFERED.
                await self._took(event, sid, ops)
                if isinstance(event, SignalRejected):
                    raise payload_error(event, eid)
                return _signal_result(shape, value)
        finally:
            if waits is not None:
                waits.pop(sid, None)

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
                Emitted(at=actor.parts.clock.now_ms(), step_id=sid, event=event, payload=shaped),
                sid,
            )
        finally:
            self._leave()

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
                Noted(at=actor.parts.clock.now_ms(), step_id=sid, message=message, meta=shaped),
                sid,
            )
        finally:
            self._leave()


def _signal_result(shape: str, payload: Any) -> Any:
    return payload if shape == "plain" else Received(payload)


def _timed_out(shape: str, name: str, sid: str) -> Any:
    if shape == "plain":
        raise SignalTimeoutError(f"signal {name!r} at {sid!r} timed out")
    return TimedOut()


__all__ = ["Context"]
