"""The execution actor: one trio task per live execution.

Rules of this module:

- The actor is the only writer of its execution's log while it lives (the engine never
  runs two actors for one execution), so sequence numbers are simply counted.
- ``record`` hands events to the commit actor and returns only once they are durable;
  what a workflow is told has always been written first.
- Values recorded without an await (``ctx.now()``) and record changes that need no event
  of their own (a retry's next attempt starting) are staged and ride with the next commit.
- Waking: timers and signals set ``wake``; the waiting primitive re-checks its condition,
  so a spurious wake costs a loop, never a wrong answer.
- Parking: a waiting actor that must give up its place (too many live executions, engine
  stopping) unwinds the workflow with ``_Suspend``. Its state is all in the log; a later
  wake replays it.
- Supervision: user errors fail the execution (recorded); store errors stop the actor
  without writing (the engine retries it once the store accepts writes again); anything
  else is an engine bug, recorded as the execution's failure rather than taking the
  engine down.
- Replay hang bound: while the run is still answered from the log (``replayer.replaying``)
  it must reach new work within ``engine.max_replay_seconds`` of trio time. Replay only
  reads the log, so a replay that takes longer is awaiting something outside a step; it is
  cancelled (``_ReplayHung``) and counts as a failed recovery attempt (crash-loop guard).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import trio

from durably.stores import (
    AddTimer,
    Append,
    ExecutionRecord,
    Op,
    PutExecution,
    RemoveTimer,
    TakeSignal,
    Timer,
)

from ..core import _codec
from ..core._errors import (
    CorruptRecordError,
    DurablyError,
    NonDeterminismError,
    PayloadError,
    WorkflowTimeoutError,
)
from ..core._events import (
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    TimerFired,
    decode_all,
    encode,
)
from ..core._history import HistoryFacts, error_info, history_facts, timeout_timer
from ..core._records import CANCEL_SIGNAL
from ..core._replay import Replayer
from ..core._status import record_changes
from ._context import Context, _CompensationFailure
from ._latch import Wake, refuse_abort

if TYPE_CHECKING:
    from ..core._workflow import WorkflowDefinition
    from ._ports import ActorHost, Parts

log = logging.getLogger("durably")


_NO_CHANGES: Mapping[str, Any] = MappingProxyType({})


class _Suspend(BaseException):
    """Internal: unwind the workflow so that the actor can park.

    A ``BaseException`` so that workflow code's ``except Exception`` cannot swallow it.
    """


class _ReplayHung(BaseException):
    """Internal: replay did not reach new work within ``engine.max_replay_seconds``."""


class _EngineFailure(BaseException):
    """Internal: the store failed under this execution; stop without writing more."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        super().__init__(str(error))


def _unwrap(exc: Exception) -> Exception:
    """The one error inside a workflow's own nursery, so the record names it (a group of
    one says only "Exceptions from Trio nursery")."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class ExecutionActor:
    __slots__ = (
        "_exited_event",
        "_fired",
        "_staged_changes",
        "_staged_events",
        "_staged_ops",
        "cancel_by",
        "cancel_reason",
        "deferred",
        "definition",
        "execution_id",
        "exited",
        "facts",
        "fresh_events",
        "host",
        "hung",
        "park_requested",
        "parked",
        "parts",
        "record_",
        "replay_guard",
        "replay_slot",
        "replayer",
        "rollback_round",
        "scope",
        "seq",
        "timeout_timer",
        "wake",
        "woken",
    )

    def __init__(
        self,
        host: ActorHost,
        record: ExecutionRecord,
        definition: WorkflowDefinition[Any, Any],
    ) -> None:
        self.host = host
        self.parts: Parts = host.parts
        self.record_ = record
        self.definition = definition
        self.execution_id = record.id
        self.seq = 0
        self.replayer = Replayer([], record.id)
        self.wake = Wake()
        self.woken = False
        self.deferred = False
        self.park_requested = False
        self.parked = False
        self.cancel_reason: str | None = None
        self.cancel_by: str | None = None
        # Made up front so that the engine can interrupt an actor that has not entered it.
        self.scope: trio.CancelScope | None = trio.CancelScope()
        self.exited = False
        self._exited_event: trio.Event | None = None
        self._fired: tuple[Timer, int] | None = None
        self.rollback_round = 0
        self.facts = HistoryFacts()
        self.timeout_timer: Timer | None = None
        self.replay_guard: trio.CancelScope | None = None
        self.replay_slot: trio.Semaphore | None = None
        self.hung = False
        self._staged_events: Sequence[Event] = ()
        # Empty until something is staged (most appends stage nothing): shared empties,
        # replaced rather than mutated, so that a waiting actor holds no containers.
        self._staged_ops: Sequence[Op] = ()
        self._staged_changes: Mapping[str, Any] = _NO_CHANGES
        #: The log of an execution just created here (not read back from the store).
        self.fresh_events: list[Event] | None = None

    async def wait_exited(self) -> None:
        """Until the actor's task has ended (the event is made only when someone waits)."""
        if self.exited:
            return
        if self._exited_event is None:
            self._exited_event = trio.Event()
        await self._exited_event.wait()

    def mark_exited(self) -> None:
        self.exited = True
        if self._exited_event is not None:
            self._exited_event.set()

    @property
    def record(self) -> ExecutionRecord:
        return self.record_

    # --- recording ---

    def timer_fired(self, timer: Timer, at: int) -> None:
        """Note that ``timer`` (of a ``ctx.sleep``) fired now; its ``TimerFired`` is built
        and staged by the next recording call (``_stage_fired``).

        The note is one tuple: thousands of executions woken together each make it while
        they resume, before any of them does durable work, and objects made then are what
        pushes CPython's collector into a full pass in the middle of the burst.
        """
        self._fired = (timer, at)

    def _stage_fired(self) -> None:
        fired = self._fired
        if fired is not None:
            self._fired = None
            timer, at = fired
            self.stage(
                TimerFired(at=at, step_id=timer.timer_id),
                timer.timer_id,
                [RemoveTimer(timer)],
                status="running",
                timer=None,
            )

    def record_later(self, event: Event, step_id: str) -> None:
        if self._fired is not None:
            self._stage_fired()
        self._staged_events = [*self._staged_events, event]
        self.replayer.record(step_id, event)

    def stage(self, event: Event, step_id: str, ops: list[Op], **changes: Any) -> None:
        """Record ``event`` with the next commit (see ``record_later``), with its ops."""
        self.record_later(event, step_id)
        self.stage_record(ops=ops, **changes)

    def stage_record(self, *, ops: list[Op], **changes: Any) -> None:
        if self._fired is not None:
            self._stage_fired()
        if ops:
            self._staged_ops = [*self._staged_ops, *ops]
        if changes:
            self._staged_changes = {**self._staged_changes, **changes}

    async def append(
        self,
        event: Event,
        step_id: str | None,
        ops: list[Op] | None = None,
        **changes: Any,
    ) -> None:
        """Append ``event`` (and what is staged) durably; apply ``changes`` to the record."""
        if self.deferred:
            await self.settle()
        if self._fired is not None:
            self._stage_fired()
        staged = self._staged_events
        events = [*staged, event] if staged else [event]
        try:
            raws = [encode(e) for e in events] if staged else [encode(event)]
        except TypeError as exc:
            raise PayloadError(f"event {event.tag} cannot be stored: {exc}") from None
        limit = self.parts.settings.max_payload_bytes
        if len(raws[-1]) > limit:
            what = f"step {step_id!r}" if step_id is not None else "the workflow's outcome"
            raise PayloadError(
                f"{what} of execution {self.execution_id}: the {event.tag} event is "
                f"{len(raws[-1])} bytes encoded, over max_payload_bytes ({limit}); nothing "
                "was written. Keep large data outside the log (a file, an object store) and "
                "record a reference to it, or raise Engine(max_payload_bytes=...)."
            )
        batch: list[Op] = [Append(self.execution_id, self.seq, raws)]
        if self._staged_changes:
            changes = {**self._staged_changes, **changes}
        if self.record_.recoveries:
            changes["recoveries"] = 0  # progress: the crash-loop counter starts over
        record = self.record_
        if changes:
            record = attrs.evolve(record, updated_ms=event.at, **changes)
            batch.append(PutExecution(record))
        if self._staged_ops:
            batch.extend(self._staged_ops)
        if ops:
            batch.extend(ops)
        try:
            await self.parts.committer.commit(batch)
        except DurablyError as exc:
            raise _EngineFailure(exc) from exc
        self.seq += len(raws)
        self.record_ = record
        if staged:
            self._staged_events = ()
        if self._staged_ops:
            self._staged_ops = ()
        if self._staged_changes:
            self._staged_changes = _NO_CHANGES
        if self.replay_guard is not None or self.replay_slot is not None:
            self.replay_done()
        if step_id is not None:
            self.replayer.record(step_id, event)
        self.host.published(self.execution_id, events, self.seq - len(events))
        # A cancel that arrived during the (shielded) commit takes effect now that the
        # actor knows what its log holds; without this, a workflow whose next calls do
        # not checkpoint would run to its end past the cancel.
        await trio.lowlevel.checkpoint_if_cancelled()

    async def caught_up(self) -> None:
        """Replay has reached new work: durably clear the crash-loop counter *before*
        running user code, so that only deaths during replay count against it (a process
        killed from outside while a step body runs is not this execution's fault)."""
        if self.record_.recoveries:
            record = attrs.evolve(self.record_, recoveries=0)
            try:
                await self.parts.committer.commit([PutExecution(record)])
            except DurablyError as exc:
                raise _EngineFailure(exc) from exc
            self.record_ = record
        self.replay_done()

    def replay_done(self) -> None:
        """Replay reached new work (or a wait): lift the hang bound, free the replay slot."""
        if self.replayer.replaying:
            return
        if self.replay_guard is not None:
            self.replay_guard.deadline = float("inf")
            self.replay_guard = None
        self.release_replay_slot()

    def release_replay_slot(self) -> None:
        if self.replay_slot is not None:
            self.replay_slot.release()
            self.replay_slot = None

    async def put_record(self, ops: list[Op], **changes: Any) -> None:
        """Durably change the record (with what is staged) where no event is due.

        Used when a replay reaches a wait that an operator's resume left the record
        unaware of: the record must say what the execution waits for, and its timers
        must be in the index, before it waits.
        """
        if self.deferred:
            await self.settle()
        if self._fired is not None:
            self._stage_fired()
        changes = {**self._staged_changes, **changes}
        record = attrs.evolve(self.record_, updated_ms=self.parts.clock.now_ms(), **changes)
        try:
            await self.parts.committer.commit([PutExecution(record), *self._staged_ops, *ops])
        except DurablyError as exc:
            raise _EngineFailure(exc) from exc
        self.record_ = record
        self._staged_ops = ()
        self._staged_changes = _NO_CHANGES

    async def settle(self) -> None:
        """Woken with others: let them all resume before doing this one's durable work.

        Executions woken together (timers due at one instant, a burst of signals) would
        otherwise each run to their next commit before the next one resumes, and the
        last one's lateness would be the sum of all their work. Called before the first
        durable write after a wake: while the scheduler is still firing due timers, until
        it has fired them all; otherwise one yield (behind every task woken so far).
        """
        self.deferred = False
        behind = self.parts.scheduler.behind
        if behind is not None and behind.join():
            # Awaited here rather than through a helper coroutine: every woken execution
            # holds this wait's frames until the release.
            await trio.lowlevel.wait_task_rescheduled(refuse_abort)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    # --- waiting ---

    def wake_up(self) -> None:
        """Something this execution may wait for happened (a timer, a signal)."""
        self.woken = True
        self.wake.set()

    def request_park(self) -> None:
        self.park_requested = True
        self.wake.set()

    async def wait_wake(self, timer: Timer | None) -> None:
        """Wait for a wake-up while live, or park (raise ``_Suspend``) if asked to.

        A wake that arrives while the actor is busy is remembered (``woken``) and consumed
        by the next wait; one that arrives as it parks makes the engine run it again.
        """
        host = self.host
        self.replay_done()
        if timer is not None:
            self.parts.scheduler.arm(timer)
        if self.woken:
            self.woken = False
            return
        if self.park_requested or host.should_park():
            raise _Suspend
        host.idle[self.execution_id] = self
        wake = self.wake
        try:
            if not wake.flag:
                # Waited on here rather than in a method of Wake: one coroutine fewer
                # held by every waiting execution.
                wake.task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(wake.abort)
        finally:
            wake.task = None
            host.idle.pop(self.execution_id, None)
        wake.flag = False
        if self.park_requested:
            raise _Suspend
        self.woken = False
        self.deferred = True

    # --- lifecycle ---

    async def run(self) -> None:
        host = self.host
        try:
            assert self.scope is not None
            with self.scope:
                await self._run()
            if self.scope.cancelled_caught and self.cancel_reason is not None:
                await self._finish_cancelled()
        except _EngineFailure as exc:
            log.error("execution %s stopped: the store failed: %s", self.execution_id, exc)
            host.store_failed(self.execution_id, exc.error)
        except _Suspend:
            self.parked = True
        except _ReplayHung:
            log.error(
                "execution %s: replay did not reach new work within %s s (max_replay_seconds)",
                self.execution_id,
                self.parts.settings.max_replay_seconds,
            )
            self.hung = True  # the supervisor counts it as a failed recovery, tries again
        except Exception as exc:  # an engine bug: record it, never take the engine down
            log.exception("internal error in execution %s", self.execution_id)
            try:
                await self.finish(
                    ExecutionFailed(at=self.parts.clock.now_ms(), error=error_info(exc)),
                    reason="internal error in durably (please report it)",
                )
            except BaseException:
                log.exception("could not record the failure of %s", self.execution_id)
        finally:
            host.actor_exited(self)

    def _timeout_deadline(self, events: list[Event]) -> float:
        """The trio deadline of the workflow's timeout (``inf`` without one).

        The timeout's timer goes into the timers index too, so that an execution parked
        past its deadline is woken to fail.
        """
        self.facts = history_facts(events)
        self.rollback_round = self.facts.rollback_round
        self.timeout_timer = timeout_timer(
            self.execution_id, self.definition.timeout, self.facts, self.record_.created_ms
        )
        if self.timeout_timer is None:
            return float("inf")
        return self.parts.clock.deadline(self.timeout_timer.due_ms)

    async def _run(self) -> None:
        if self.cancel_reason is not None:
            raws = self.parts.store.read_events(self.execution_id)
            self.seq = len(raws)
            try:  # so that finish removes the timeout's timer
                self._timeout_deadline(decode_all(raws, self.execution_id))
            except CorruptRecordError:
                pass
            await self._finish_cancelled()
            return
        deadline = await self._load()
        if deadline is None:
            return
        try:
            result = await self._call_workflow(deadline)
            if self.deferred:
                await self.settle()
            self.replayer.finish()
            shaped = _codec.shape(result, f"result of workflow {self.definition.name!r}")
        except (_Suspend, _EngineFailure, _ReplayHung, trio.Cancelled):
            raise
        except _CompensationFailure as exc:
            await self._compensation_failed(exc)
            return
        except Exception as raised:
            await self._failed(raised)
            return
        try:
            await self.finish(ExecutionCompleted(at=self.parts.clock.now_ms(), result=shaped))
        except PayloadError as exc:  # the result is over max_payload_bytes: fail, clearly
            await self.finish(ExecutionFailed(at=self.parts.clock.now_ms(), error=error_info(exc)))

    async def _load(self) -> float | None:
        """Read the log into the replayer, arm the timeout; its deadline (``None``: the
        log is corrupt and the execution was quarantined)."""
        eid = self.execution_id
        events = self.fresh_events
        self.fresh_events = None
        if events is None:
            try:
                events = decode_all(self.parts.store.read_events(eid), eid)
            except CorruptRecordError as exc:
                await self.host.quarantine(self.record_, exc)
                return None
        self.seq = len(events)
        self.replayer = Replayer(events, eid)
        deadline = self._timeout_deadline(events)
        if self.timeout_timer is not None:
            self.stage_record(ops=[AddTimer(self.timeout_timer)])  # idempotent
            self.parts.scheduler.arm(self.timeout_timer)
        if self.record_.status == "pending":
            self.stage_record(ops=[], status="running")
        return deadline

    async def _call_workflow(self, deadline: float) -> Any:
        """Run the workflow function, bounded by its timeout and the replay hang bound."""
        definition = self.definition
        eid = self.execution_id
        ctx = Context(self)
        data = _codec.load(self.record_.input, definition.input_type, f"input of execution {eid}")
        timed_out = trio.current_time() >= deadline
        bound = self.parts.settings.max_replay_seconds
        guarded = bound is not None and self.replayer.replaying
        result: Any = None
        if not timed_out and deadline == math.inf and not guarded:
            # The common fresh start: no cancel scopes to pay for.
            return await definition.fn(ctx, data)
        if not timed_out:
            guard = trio.CancelScope()
            if guarded:
                assert bound is not None
                guard.deadline = trio.current_time() + bound
                self.replay_guard = guard
            with trio.move_on_at(deadline) as timeout_scope, guard:
                result = await definition.fn(ctx, data)
            timed_out = timeout_scope.cancelled_caught
            if guard.cancelled_caught:
                raise _ReplayHung
            self.replay_guard = None
        if timed_out:
            raise WorkflowTimeoutError(
                f"execution {eid} timed out: workflow {definition.name!r} allows "
                f"{definition.timeout} s from its start (or its last operator retry); "
                "raise the workflow's timeout= or retry the execution"
            )
        return result

    async def _failed(self, raised: Exception) -> None:
        """Record how the workflow failed: a compensation, a divergence, its own error."""
        now = self.parts.clock.now_ms()
        if isinstance(raised, NonDeterminismError):
            await self.finish(
                ExecutionFailed(at=now, error=error_info(raised)),
                reason="non-determinism: the code no longer matches the history",
            )
            return
        error = _unwrap(raised)
        if await self._diverged_before(error):
            return
        await self.finish(ExecutionFailed(at=now, error=error_info(error)))

    async def _compensation_failed(self, exc: _CompensationFailure) -> None:
        if await self._diverged_before(exc):
            return
        await self.finish(
            ExecutionFailed(
                at=self.parts.clock.now_ms(), error=exc.error, status="compensation_failed"
            ),
            reason="a compensation failed; operator.retry_rollback runs it again",
        )

    async def _diverged_before(self, exc: BaseException) -> bool:
        """A workflow that raises while recorded commands are still ahead of it has
        diverged (changed code that now fails earlier): record that as non-determinism,
        not as the workflow's own error. A legitimate re-raise (a replayed failure) has
        passed every recorded command first, so it is not caught here."""
        if not self.replayer.replaying or isinstance(exc, WorkflowTimeoutError):
            return False  # a timeout cut the replay short: not the code's divergence
        try:
            self.replayer.finish()
        except NonDeterminismError as nde:
            nde.__cause__ = exc
            await self.finish(
                ExecutionFailed(at=self.parts.clock.now_ms(), error=error_info(nde)),
                reason="non-determinism: the code no longer matches the history",
            )
            return True
        return False

    async def _finish_cancelled(self) -> None:
        # Consume the durable cancellation request(s) in the same transaction.
        takes: list[Op] = [
            TakeSignal(self.execution_id, entry.seq)
            for entry in self.parts.store.mailbox(self.execution_id)
            if entry.signal == CANCEL_SIGNAL
        ]
        await self.finish(
            ExecutionCancelled(
                at=self.parts.clock.now_ms(), reason=self.cancel_reason, by=self.cancel_by
            ),
            ops=takes,
            reason=self.cancel_reason,
        )

    async def finish(self, event: Event, *, ops: list[Op] | None = None, **changes: Any) -> None:
        """Record the execution's final ``event``: its status, result or error follow from
        it (``core/_status.py``), its timers leave the index, all in one commit."""
        ops = list(ops or ())
        if self.record_.timer is not None:
            due, timer_id = self.record_.timer
            timer = Timer(due, self.execution_id, timer_id)
            ops.append(RemoveTimer(timer))
            self.parts.scheduler.disarm(timer)
        if self.timeout_timer is not None:
            ops.append(RemoveTimer(self.timeout_timer))
            self.parts.scheduler.disarm(self.timeout_timer)
        fields = dict(record_changes(event))
        if isinstance(event, ExecutionCompleted):
            fields["result"] = event.result
        elif isinstance(event, ExecutionFailed):
            fields["error"] = event.error
        with trio.CancelScope(shield=True):
            await self.append(event, None, ops, **{**fields, **changes})
        self.host.finished(self.execution_id, fields["status"])
