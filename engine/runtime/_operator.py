"""``durably.Operator``: see executions, and repair them, without a silent edit.

Rules of this module:

- Every action appends events to the execution's log: an ``OperatorActed`` (action, who,
  why) and the events that carry its effect (``ExecutionResumed``, ``StepSkipped``,
  ``ExecutionCancelled``, ``ExecutionFailed``), together with the record's change, in one
  transaction. The audit trail shows it; nothing is ever rewritten in place.
- One writer per log. With a running engine, an action first *holds* the execution: no
  actor may start for it, and a live one is interrupted (its cancel scope) and awaited.
  Only then is the log read, the action checked against it and written, and the hold
  released; wake-ups that arrived meanwhile (timers, signals) are replayed afterwards.
- Without an engine (``Operator(store)``), actions write to the store directly; use that
  only while no engine runs on the store (a concurrent writer's append would collide on
  the sequence number and fail, never interleave).
- An action that does not fit the execution's state raises ``OperatorError`` saying what
  would; nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from durably.stores import (
    ACTIVE_STATUSES,
    NEVER_MS,
    AddTimer,
    Append,
    ExecutionRecord,
    Op,
    PutExecution,
    RemoveTimer,
    Store,
    Timer,
)

from ..core import _codec
from ..core._audit import AuditEntry, audit_trail
from ..core._errors import ConfigurationError, OperatorError, UnknownExecutionError
from ..core._events import (
    Event,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionResumed,
    OperatorActed,
    StepFailed,
    StepRetrying,
    StepSkipped,
    decode_all,
    encode,
)
from ..core._history import TIMEOUT_TIMER, due_after, history_facts, timeout_timer
from ..core._repair import Change, ended_record, reopened_wait, require, resumed_record
from ..core._status import TERMINAL
from ..core._steps import (
    ExecutionDetail,
    ExecutionPage,
    children_of,
    last_event,
    published_of,
    steps_of,
)
from ..core._types import Execution, Status

if TYPE_CHECKING:
    from ._ports import OperatorHost


class Operator:
    """Inspect and repair executions: ``engine.operator``, or ``durably.Operator(store)``.

    Every action takes ``by=`` (who) and ``reason=`` (why), recorded in the log with it.
    """

    def __init__(self, target: OperatorHost | Store) -> None:
        # ``target``: a store (no engine runs on it), or a running engine's supervisor.
        if isinstance(target, Store):
            self._engine: OperatorHost | None = None
            self._store = target
        else:
            self._engine = target
            self._store = target.parts.store
        self._lock = trio.Lock()

    # --- reading ---

    async def list_executions(
        self,
        *,
        status: Status | str | None = None,
        workflow: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> ExecutionPage:
        """A page of executions in creation order, optionally by status and workflow."""
        if limit < 1:
            raise ConfigurationError("list_executions(limit=) must be at least 1")
        try:
            st = None if status is None else Status(status).value
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise ConfigurationError(f"unknown status {status!r}; one of: {names}") from None
        records = self._store.list_executions(
            status=st, workflow=workflow, after=after, limit=limit + 1
        )
        more = len(records) > limit
        items = [Execution.from_record(r) for r in records[:limit]]
        return ExecutionPage(items, items[-1].id if more else None)

    async def get_execution(self, execution_id: str) -> Execution:
        return Execution.from_record(self._record(execution_id))

    async def get_execution_detail(self, execution_id: str) -> ExecutionDetail:
        """The execution, its recorded steps and its audit trail, read in one go."""
        record = self._record(execution_id)
        events = self._events(execution_id)
        return ExecutionDetail(
            Execution.from_record(record),
            steps_of(events),
            audit_trail(execution_id, events),
            children_of(events),
            published_of(events),
        )

    async def audit(self, execution_id: str) -> list[AuditEntry]:
        self._record(execution_id)
        return audit_trail(execution_id, self._events(execution_id))

    # --- actions ---

    async def retry(
        self, execution_id: str, *, by: str | None = None, reason: str | None = None
    ) -> Execution:
        """Run a ``FAILED`` execution again from its log.

        Completed steps replay; steps that had failed run again (with fresh attempts);
        a signal wait that failed it by rejecting a payload that did not fit waits again
        (for the next signal: the rejected one is not taken again); the workflow timeout
        starts over. Code that diverges from the log fails it again with a
        ``NonDeterminismError``.
        """

        def act(record: ExecutionRecord, events: list[Event], now: int) -> Change:
            require(record, ("failed",), "retry", "only a failed execution can be retried")
            attempt = record.attempt + 1
            effect: list[Event] = [
                OperatorActed(at=now, action="retry", by=by, reason=reason),
                ExecutionResumed(at=now, attempt=attempt, by=by, reason=reason),
            ]
            reopened = reopened_wait(events, now)  # it failed on a signal that did not fit
            if reopened is not None:
                effect.append(reopened)
            return Change(effect, *self._resumed(record, [*events, *effect], now, attempt=attempt))

        return await self._act(execution_id, act)

    async def retry_rollback(
        self, execution_id: str, *, by: str | None = None, reason: str | None = None
    ) -> Execution:
        """Run the rollback of a ``COMPENSATION_FAILED`` execution again.

        Compensations that completed are not run again; the one that failed (and those
        after it) run.
        """

        def act(record: ExecutionRecord, events: list[Event], now: int) -> Change:
            require(
                record,
                ("compensation_failed",),
                "retry_rollback",
                "only an execution whose compensation failed can retry its rollback",
            )
            return Change(
                [OperatorActed(at=now, action="retry_rollback", by=by, reason=reason)],
                *self._resumed(record, events, now, attempt=record.attempt),
            )

        return await self._act(execution_id, act)

    async def cancel(
        self, execution_id: str, *, by: str | None = None, reason: str | None = None
    ) -> Execution:
        """Cancel an unfinished execution: a running step is interrupted, nothing more runs.

        No compensation runs (use ``ctx.rollback`` in the workflow for that).
        """

        def act(record: ExecutionRecord, events: list[Event], now: int) -> Change:
            require(
                record, ACTIVE_STATUSES, "cancel", "only an unfinished execution can be cancelled"
            )
            why = reason or "cancelled by an operator"
            return Change(
                [
                    OperatorActed(at=now, action="cancel", by=by, reason=reason),
                    ExecutionCancelled(at=now, reason=why, by=by),
                ],
                ended_record(record, now, "cancelled", reason=why),
                self._timers(record, events),
            )

        return await self._act(execution_id, act)

    async def force_fail(
        self, execution_id: str, reason: str, *, by: str | None = None
    ) -> Execution:
        """Mark an unfinished (or ``COMPENSATION_FAILED``) execution ``FAILED`` with ``reason``.

        A running step is interrupted. ``retry`` can run it again later.
        """
        if not reason:
            raise ConfigurationError("force_fail needs a reason: it is recorded as the error")

        def act(record: ExecutionRecord, events: list[Event], now: int) -> Change:
            require(
                record,
                (*ACTIVE_STATUSES, "compensation_failed"),
                "force_fail",
                "only an unfinished or compensation_failed execution can be force-failed",
            )
            error = {"type": "durably.ForcedFailure", "message": reason, "traceback": ""}
            return Change(
                [
                    OperatorActed(at=now, action="force_fail", by=by, reason=reason),
                    ExecutionFailed(at=now, error=error),
                ],
                ended_record(
                    record, now, "failed", reason=f"failed by an operator: {reason}", error=error
                ),
                self._timers(record, events),
            )

        return await self._act(execution_id, act)

    async def skip_step(
        self,
        execution_id: str,
        step_id: str,
        result: Any = None,
        *,
        by: str | None = None,
        reason: str | None = None,
    ) -> Execution:
        """Give a failed or retrying step ``result`` instead of running it, and go on.

        The step must be in the log with a failure as its last event (an execution that
        ``FAILED`` there) or be waiting for a retry (``RETRYING``). A failed execution
        resumes (as ``retry`` does: other failed steps run again); the workflow then sees
        ``result`` as the step's return value, restored to the step's annotated type.
        """
        shaped = _codec.shape(result, f"skip_step result for {step_id!r}")

        def act(record: ExecutionRecord, events: list[Event], now: int) -> Change:
            require(
                record,
                ("failed", "retrying"),
                "skip_step",
                "a step can be skipped in a failed execution or one waiting for a retry",
            )
            last = last_event(events, step_id)
            if not isinstance(last, StepFailed | StepRetrying):
                got = "not in the log" if last is None else f"last recorded {last.tag!r}"
                raise OperatorError(
                    f"skip_step: step {step_id!r} of execution {execution_id} is {got}; only "
                    "a step whose last event is a failure or a pending retry can be skipped"
                )
            acted = OperatorActed(
                at=now,
                action="skip_step",
                by=by,
                reason=reason,
                data={"step_id": step_id, "result": shaped},
            )
            skipped = StepSkipped(at=now, step_id=step_id, result=shaped, by=by, reason=reason)
            if record.status == "failed":
                attempt = record.attempt + 1
                resumed = ExecutionResumed(at=now, attempt=attempt, by=by, reason=reason)
                after = [*events, skipped]
                return Change(
                    [acted, skipped, resumed], *self._resumed(record, after, now, attempt=attempt)
                )
            ops = self._timers(record, events, timeout=False)
            running, _ = resumed_record(
                record, [skipped], now, attempt=record.attempt, restore=False
            )
            return Change([acted, skipped], running, ops)

        return await self._act(execution_id, act)

    # --- machinery ---

    def _record(self, execution_id: str) -> ExecutionRecord:
        if not isinstance(execution_id, str) or not execution_id or "\x00" in execution_id:
            raise UnknownExecutionError(str(execution_id))
        record = self._store.get_execution(execution_id)
        if record is None:
            raise UnknownExecutionError(execution_id)
        return record

    def _events(self, execution_id: str) -> list[Event]:
        return decode_all(self._store.read_events(execution_id), execution_id)

    def _now(self) -> int:
        engine = self._engine
        if engine is not None:
            return engine.parts.clock.now_ms()
        return int(time.time() * 1000)

    def _timers(
        self, record: ExecutionRecord, events: list[Event], *, timeout: bool = True
    ) -> list[Op]:
        """Remove-ops for the execution's timers: its pending one and its workflow timeout."""
        timers: list[Timer] = []
        if record.timer is not None:
            timers.append(Timer(record.timer[0], record.id, record.timer[1]))
        if timeout:
            engine = self._engine
            definition = None if engine is None else engine.parts.registry.get(record.workflow)
            if definition is not None:
                timer = timeout_timer(
                    record.id, definition.timeout, history_facts(events), record.created_ms
                )
                if timer is not None:
                    timers.append(timer)
            else:
                # No definition at hand: find its timeout timer in the index (rare, slow).
                timers.extend(
                    t
                    for t in self._store.due_timers(NEVER_MS)
                    if t.owner == record.id and t.timer_id == TIMEOUT_TIMER
                )
        return [RemoveTimer(t) for t in timers]

    def _resumed(
        self, record: ExecutionRecord, events: list[Event], now: int, *, attempt: int
    ) -> tuple[ExecutionRecord, list[Op]]:
        """A resumed record; with an engine, its wait and its new workflow timeout armed."""
        engine = self._engine
        restore = engine is not None
        record, ops = resumed_record(record, events, now, attempt=attempt, restore=restore)
        definition = None if engine is None else engine.parts.registry.get(record.workflow)
        if definition is not None and definition.timeout is not None:
            # The attempt starts now: the same deadline the actor computes from the log.
            due = due_after(now, definition.timeout)
            ops.append(AddTimer(Timer(due, record.id, TIMEOUT_TIMER)))
        return record, ops

    async def _act(
        self,
        execution_id: str,
        act: Callable[[ExecutionRecord, list[Event], int], Change],
    ) -> Execution:
        self._record(execution_id)  # unknown ids fail before anything is held
        async with self._lock, self._hold(execution_id):
            record = self._record(execution_id)
            raws = self._store.read_events(execution_id)
            events = decode_all(raws, execution_id)
            now = self._now()
            change = act(record, events, now)
            ops: list[Op] = [
                Append(execution_id, len(raws), [encode(e) for e in change.events]),
                PutExecution(change.record),
                *change.ops,
            ]
            await self._commit(ops)
            self._after_commit(change, ops, len(raws))
        return Execution.from_record(change.record)

    async def _commit(self, ops: list[Op]) -> None:
        engine = self._engine
        if engine is not None:
            await engine.parts.committer.commit(ops)
            return
        store = self._store
        if store.inline:
            store.apply(ops)
        else:
            await trio.to_thread.run_sync(store.apply, ops)

    def _after_commit(self, change: Change, ops: list[Op], first_seq: int) -> None:
        engine = self._engine
        if engine is None:
            return
        eid = change.record.id
        for op in ops:
            if isinstance(op, RemoveTimer):
                engine.parts.scheduler.disarm(op.timer)
            elif isinstance(op, AddTimer):
                engine.parts.scheduler.arm(op.timer)
        engine.published(eid, change.events, first_seq)
        if change.record.status in TERMINAL:
            engine.finished(eid, change.record.status)
        else:
            # Resumed (retry, retry_rollback, skip_step): run it, even if it waits. Its
            # replay reaches the wait, which looks at the mailbox and the clock as a fresh
            # wait does: a signal buffered meanwhile is taken, a timer already due fires.
            # Queued as a request of the hold, so it starts once the hold is released.
            engine.spawn(eid)

    @asynccontextmanager
    async def _hold(self, execution_id: str) -> AsyncIterator[None]:
        """Make this task the only writer of the execution's log for the block."""
        engine = self._engine
        if engine is None:
            yield
            return
        engine.check_running()
        if execution_id in engine.held:
            raise OperatorError(
                f"another operator action on execution {execution_id} is in progress; "
                "try again once it has finished"
            )
        requests = engine.held[execution_id] = []
        actor = engine.live_actor(execution_id)
        try:
            if actor is not None:
                # Interrupt it wherever it is (a step body, a wait); its state is in the
                # log, and whatever it commits before it unwinds is read below.
                assert actor.scope is not None
                actor.scope.cancel()
                with trio.CancelScope(shield=True):
                    await actor.wait_exited()
            yield
        finally:
            del engine.held[execution_id]
            # Wake-ups that arrived while held, a live actor we interrupted, or an action
            # that resumed the execution: let it run (a finished one is not started).
            record = self._store.get_execution(execution_id)
            status = "completed" if record is None else record.status
            runs = status in ("pending", "running") or (
                actor is not None and status in ACTIVE_STATUSES
            )
            if requests or runs:
                cancel = next((c for c in requests if c is not None), None)
                engine.spawn(execution_id, cancel=cancel)
