"""The execution actor: one trio task per live execution.

Rules of this module:

- How the actor writes its log (one writer, durable before told, staging) is its
  ``Recorder`` half, in ``_recorder.py``; this module is waking, parking and the run.
- Waking: timers and signals set ``wake``; the waiting primitive re-checks its condition,
  so a spurious wake costs a loop, never a wrong answer.
- Parking: a waiting actor that must give up its place (too many live executions, engine
  stopping) unwinds the workflow with ``_Suspend``. Its state is all in the log; a later
  wake replays it.
- Supervision: user errors fail the execution (recorded), and so does any
  ``BaseException`` the workflow raises (``SystemExit``, its own subclasses), except the
  host's ``KeyboardInterrupt``, trio's cancellation and durably's own unwinding
  (``_primitive.unwinds``); store errors stop the actor without writing (the engine
  retries it once the store accepts writes again); anything else is an engine bug,
  recorded as the execution's failure rather than taking the engine down.
- Replay hang bound: while the run is still answered from the log (``replayer.replaying``)
  it must reach new work within ``engine.max_replay_seconds`` of trio time. Replay only
  reads the log, so a replay that takes longer is awaiting something outside a step; it is
  cancelled (``_ReplayHung``) and counts as a failed recovery attempt (crash-loop guard).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from durably.stores import (
    AddTimer,
    ExecutionRecord,
    Op,
    PutExecution,
    PutSignal,
    RemoveTimer,
    ResetLog,
    TakeSignal,
    Timer,
)

from ..core import _codec
from ..core._errors import (
    CorruptRecordError,
    DurablyError,
    LeaseLostError,
    NonDeterminismError,
    PayloadError,
    WorkflowTimeoutError,
)
from ..core._events import (
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    Fields,
    decode_all,
    encode,
    load_all,
)
from ..core._history import (
    HistoryFacts,
    error_info,
    history_facts,
    open_children,
    timeout_timer,
)
from ..core._records import CANCEL_SIGNAL, child_signal
from ..core._replay import Replayer
from ..core._status import record_changes
from ._batch import GatherWriter
from ._context import Context
from ._primitive import (
    _CompensationFailure,
    _ContinueAsNew,
    _ControlFlow,
    _current_step,
    concurrent_calls,
    unwinds,
)
from ._recorder import _EngineFailure
from ._tracecontext import NO_SPAN
from ._waiting import Waiting, _Suspend

if TYPE_CHECKING:
    from ..core._workflow import WorkflowDefinition
    from ._ports import ActorHost

log = logging.getLogger("durably")


class _ReplayHung(_ControlFlow):
    """Internal: replay did not reach new work within ``engine.max_replay_seconds``."""


def _unwrap(exc: BaseException) -> BaseException:
    """The error a workflow's own nursery stands for, so the record names it: the one
    member of a group of one (a group says only "Exceptions from Trio nursery"), or the
    refusal of overlapping durable calls if the group holds one (the rule that was
    broken; the group's other members followed from the overlap)."""
    while isinstance(exc, BaseExceptionGroup):
        group = exc.subgroup(concurrent_calls)
        if group is not None:
            refused: BaseException = group
            while isinstance(refused, BaseExceptionGroup):
                refused = refused.exceptions[0]
            return refused
        if len(exc.exceptions) != 1:
            break
        exc = exc.exceptions[0]
    return exc


class ExecutionActor(Waiting):
    __slots__ = (
        "_exited_event",
        "cancel_by",
        "cancel_reason",
        "children",
        "claimed",
        "definition",
        "exited",
        "facts",
        "handed_over",
        "hung",
        "moved",
        "park_requested",
        "parked",
        "rollback_round",
        "scope",
        "timeout_timer",
    )

    def __init__(
        self,
        host: ActorHost,
        record: ExecutionRecord,
        definition: WorkflowDefinition[Any, Any],
    ) -> None:
        super().__init__(host, record)
        self.definition = definition
        self.parked = False
        self.cancel_reason: str | None = None
        self.cancel_by: str | None = None
        # Made up front so that the engine can interrupt an actor that has not entered it.
        self.scope: trio.CancelScope | None = trio.CancelScope()
        self.exited = False
        self._exited_event: trio.Event | None = None
        self.rollback_round = 0
        self.facts = HistoryFacts()
        self.timeout_timer: Timer | None = None
        self.hung = False
        #: Stopped because its shard goes to another worker of many on purpose (a
        #: rebalance): like a graceful stop, its crash-loop count is cleared.
        self.handed_over = False
        #: Stopped because its shard left this worker (a worker of many).
        self.moved = False
        #: Children this run started (or replayed starting) whose end it has not taken:
        #: the parent-close policy cancels them when it ends. Made on first child.
        self.children: set[str] | None = None
        #: While a gather runs: mailbox entries its members took, not yet written.
        self.claimed: set[int] | None = None

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

    def child_started(self, record: ExecutionRecord, first: Event, detached: bool) -> None:
        if not detached:
            self.child_started_before(record.id)
        self.host.spawn(record.id, fresh=(record, [first]))

    def child_started_before(self, child_id: str) -> None:
        if self.children is None:
            self.children = set()
        self.children.add(child_id)

    def child_ended(self, child_id: str) -> None:
        if self.children is not None:
            self.children.discard(child_id)

    def begin_gather(self) -> GatherWriter:
        self.broadcast = trio.Event()
        self.writer = GatherWriter(self)
        self.claimed = set()
        return self.writer

    def end_gather(self) -> None:
        self.broadcast = None
        self.writer = None
        self.claimed = None

    # --- lifecycle ---

    async def run(self) -> None:
        host = self.host
        if _current_step.get() is not None:
            # Launched from inside a step body (a start there): the task copied that
            # context, but this execution's code runs in no step until it calls one.
            _current_step.set(None)
        try:
            assert self.scope is not None
            telemetry = self.parts.telemetry
            with self.scope, NO_SPAN if telemetry is None else telemetry.run(self):
                await self._run()
            if self.scope.cancelled_caught and self.cancel_reason is not None:
                await self._finish_cancelled()
            elif self.handed_over and self.record_.recoveries and not self.catching_up:
                await self.forgive()  # (its lease is still held until the release)
        except _EngineFailure as exc:
            lost = isinstance(exc.error, LeaseLostError)  # its new owner carries on
            log.log(
                logging.INFO if lost else logging.ERROR,
                "execution %s stopped: %s: %s",
                self.execution_id,
                "its shard was taken over" if lost else "the store failed",
                exc,
                extra=self.log_extra(),
            )
            host.store_failed(self.execution_id, exc.error)
        except _Suspend:
            self.parked = True
        except trio.Cancelled:
            # Only the engine's own stop gets here (the actor's scope catches the rest).
            if self.record_.recoveries and not self.catching_up:
                await self.forgive()
            raise
        except _ReplayHung:
            log.error(
                "execution %s: replay did not reach new work within %s s (max_replay_seconds)",
                self.execution_id,
                self.parts.settings.max_replay_seconds,
                extra=self.log_extra(),
            )
            self.hung = True  # the supervisor counts it as a failed recovery, tries again
        except BaseException as exc:  # an engine bug: record it, never take the engine down
            if unwinds(exc):
                raise
            log.exception(
                "internal error in execution %s", self.execution_id, extra=self.log_extra()
            )
            try:
                await self.finish(
                    ExecutionFailed(at=self.parts.clock.now_ms(), error=error_info(exc)),
                    reason="internal error in durably (please report it)",
                )
            except BaseException:
                log.exception("could not record the failure of %s", self.execution_id)
        finally:
            host.actor_exited(self)

    def _timeout_deadline(self, events: Sequence[Event | Fields]) -> float:
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
            try:  # so that finish removes the timeout's timer and cancels the children
                events = decode_all(raws, self.execution_id)
                self._timeout_deadline(events)
                self.children = set(open_children(events)) or None
            except CorruptRecordError:
                pass
            await self._finish_cancelled()
            return
        while True:  # one pass per run (continue_as_new starts the next)
            deadline = await self._load()
            if deadline is None:
                return
            # The workflow is awaited in this frame, not in a helper coroutine: one frame
            # fewer held by every waiting execution.
            try:
                definition = self.definition
                ctx = Context(self)
                what = f"input of execution {self.execution_id}"
                data = _codec.load(self.record_.input, definition.input_type, what)
                bound = self.parts.settings.max_replay_seconds
                if deadline == math.inf and (bound is None or not self.replayer.replaying):
                    # The common fresh start: no cancel scopes to pay for, and the
                    # workflow awaited in this frame (every resume passes through it).
                    result = await definition.fn(ctx, data)
                else:
                    result = await self._call_workflow(deadline, ctx, data)
                if self.deferred:
                    await self.settle()
                self.replayer.finish()
                shaped = _codec.shape(result, f"result of workflow {self.definition.name!r}")
            except _ContinueAsNew as exc:
                if await self._continue_as_new(exc.input):
                    continue
                return
            except (_Suspend, _EngineFailure, _ReplayHung, trio.Cancelled):
                raise
            except _CompensationFailure as exc:
                await self._compensation_failed(exc)
                return
            except BaseException as raised:  # SystemExit too: one execution's failure
                if unwinds(raised):
                    raise
                await self._failed(raised)
                return
            await self._completed(shaped)
            return

    async def _completed(self, shaped: Any) -> None:
        try:
            await self.finish(ExecutionCompleted(at=self.parts.clock.now_ms(), result=shaped))
        except PayloadError as exc:  # the result is over max_payload_bytes: fail, clearly
            await self.finish(ExecutionFailed(at=self.parts.clock.now_ms(), error=error_info(exc)))

    async def _load(self) -> float | None:
        """Read the log into the replayer, arm the timeout; its deadline (``None``: the
        log is corrupt and the execution was quarantined)."""
        eid = self.execution_id
        events: Sequence[Event | Fields] | None = self.fresh_events
        self.fresh_events = None
        if events is None:
            try:
                events = load_all(self.parts.store.read_events(eid), eid)
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
        self.catching_up = self.replay_slot is not None or self.replayer.replaying
        if self.parts.telemetry is not None:
            self.parts.telemetry.loaded(self, len(events))
        return deadline

    async def _call_workflow(self, deadline: float, ctx: Context, data: Any) -> Any:
        """Run the workflow function, bounded by its timeout and the replay hang bound."""
        definition = self.definition
        eid = self.execution_id
        timed_out = trio.current_time() >= deadline
        bound = self.parts.settings.max_replay_seconds
        guarded = bound is not None and self.replayer.replaying
        result: Any = None
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

    async def _failed(self, raised: BaseException) -> None:
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
        info = error_info(error)
        if error is not raised:  # named by the member, but the whole group's traceback
            info["traceback"] = error_info(raised)["traceback"]
        await self.finish(ExecutionFailed(at=now, error=info))

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
        ops = [*(ops or ()), *self._remove_own_timers()]
        fields = {**record_changes(event), **changes}
        if isinstance(event, ExecutionCompleted):
            fields["result"] = event.result
        elif isinstance(event, ExecutionFailed):
            fields["error"] = event.error
        status = fields["status"]
        parent = self.record_.parent_id
        if parent is not None:  # the parent learns how its child ended, durably
            ops.append(
                PutSignal(parent, child_signal(self.execution_id), _told(event), at=event.at)
            )
        orphans, why = self._orphans(f"its parent {self.execution_id} ended ({status})")
        ops.extend(PutSignal(child, CANCEL_SIGNAL, why, at=event.at) for child in orphans)
        with trio.CancelScope(shield=True):
            await self.append(event, None, ops, **fields)
        if log.isEnabledFor(logging.INFO):
            self.log_end(event, status)
        self.host.finished(self.execution_id, status)
        if parent is not None:
            self.host.signalled(parent, True)
        for child in orphans:
            self.host.spawn(child, cancel=(why["reason"], why["by"]))

    async def _continue_as_new(self, input: Any) -> bool:
        """End this run and begin the next under the same id, with a fresh log (one
        commit); False if the new input cannot be stored (the execution failed)."""
        eid = self.execution_id
        definition = self.definition
        now = self.parts.clock.now_ms()
        try:
            shaped = _codec.check(input, definition.input_type, f"continue_as_new input of {eid}")
            run = self.record_.run + 1
            first = ExecutionStarted(at=now, workflow=definition.name, input=shaped, run=run)
            raw = encode(first)
            if len(raw) > self.parts.settings.max_payload_bytes:
                raise PayloadError(
                    f"the continue_as_new input of execution {eid} is {len(raw)} bytes "
                    "encoded, over max_payload_bytes; pass a reference instead"
                )
        except PayloadError as exc:
            await self.finish(ExecutionFailed(at=now, error=error_info(exc)))
            return False
        if self.deferred:
            await self.settle()
        if self._fired is not None:
            self._stage_fired()
        ops: list[Op] = [ResetLog(eid, [raw]), *self._staged_ops]
        ops.extend(self._remove_own_timers())
        orphans, why = self._orphans(f"its parent {eid} continued as new")
        ops.extend(PutSignal(child, CANCEL_SIGNAL, why, at=now) for child in orphans)
        record = attrs.evolve(
            self.record_,
            status="running",
            input=shaped,
            run=run,
            updated_ms=now,
            timer=None,
            waiting_signal=None,
            recoveries=0,
            attempt=1,
        )
        with trio.CancelScope(shield=True):
            try:
                await self.parts.committer.commit([PutExecution(record), *ops])
            except DurablyError as exc:
                raise _EngineFailure(exc) from exc
        self.record_ = record
        self._staged_ops, self._staged_events = (), ()
        self.children = None
        self.fresh_events = [first]
        self.host.published(eid, [first], 0)
        for child in orphans:
            self.host.spawn(child, cancel=(why["reason"], why["by"]))
        return True

    def _remove_own_timers(self) -> list[Op]:
        """Disarm the run's pending timer and its timeout's; the ops removing them."""
        timers = []
        if self.record_.timer is not None:
            timers.append(Timer(self.record_.timer[0], self.execution_id, self.record_.timer[1]))
        if self.timeout_timer is not None:
            timers.append(self.timeout_timer)
        for timer in timers:
            self.parts.scheduler.disarm(timer)
        return [RemoveTimer(timer) for timer in timers]

    def _orphans(self, reason: str) -> tuple[list[str], dict[str, str]]:
        """The open children the parent-close policy cancels, and the request's payload."""
        return sorted(self.children or ()), {"reason": reason, "by": "durably"}


def _told(event: Event) -> dict[str, Any]:
    """What a child's end tells its parent (the payload of ``child_signal``)."""
    if isinstance(event, ExecutionCompleted):
        return {"status": "completed", "result": event.result}
    if isinstance(event, ExecutionCancelled):
        message = event.reason or "cancelled"
        return {"status": "cancelled", "error": {"type": "cancelled", "message": message}}
    assert isinstance(event, ExecutionFailed)
    return {"status": event.status, "error": event.error}
