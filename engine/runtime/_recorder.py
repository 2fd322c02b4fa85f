"""How an execution actor writes its log: staging, appending, the replay slot, settling.

Rules of this module:

- The actor is the only writer of its execution's log while it lives (the supervisor
  never runs two actors for one execution), so sequence numbers are simply counted.
- ``append`` hands events to the commit actor and returns only once they are durable;
  what a workflow is told has always been written first.
- Values recorded without an await (``ctx.now()``) and record changes that need no event
  of their own (a retry's next attempt starting) are staged and ride with the next commit.
- A store error under an append stops the actor without writing more (``_EngineFailure``);
  the supervisor retries the execution once the store accepts writes again.
- The crash-loop counter (``recoveries``) is cleared by progress only, in the commit that
  records it (``append``): no commit of its own on the way to a step body, so a process
  that dies in the body is counted against the execution like one that dies replaying.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import trio

from durably.stores import Append, ExecutionRecord, Op, PutExecution, RemoveTimer, Timer

from ..core._errors import DurablyError, PayloadError
from ..core._events import Event, TimerFired, encode
from ..core._replay import Replayer
from ._latch import REFUSE, park
from ._primitive import _EngineFailure as _EngineFailure

if TYPE_CHECKING:
    from ._ports import ActorHost, LogWriter, Parts, QueuePort
    from ._solo import Turn

log = logging.getLogger("durably")


_NO_CHANGES: Mapping[str, Any] = MappingProxyType({})


class Recorder:
    """The execution actor's writing half (``ExecutionActor`` is the rest)."""

    __slots__ = (
        "_fired",
        "_staged_changes",
        "_staged_events",
        "_staged_ops",
        "catching_up",
        "deferred",
        "execution_id",
        "fresh_events",
        "host",
        "parts",
        "record_",
        "replay_guard",
        "replay_slot",
        "replayer",
        "seq",
        "writer",
    )

    def __init__(self, host: ActorHost, record: ExecutionRecord) -> None:
        self.host = host
        self.parts: Parts = host.parts
        self.record_ = record
        self.execution_id = record.id
        self.seq = 0
        self.replayer = Replayer([], record.id)
        self.deferred = False
        self._fired: tuple[Timer, int] | None = None
        self.replay_guard: trio.CancelScope | None = None
        #: A suspect's solo turn (``_solo.py``), held until its first progress.
        self.replay_slot: Turn | None = None
        #: Until the run reaches new work: the replay bound or a solo turn is to be told.
        self.catching_up = True
        self._staged_events: Sequence[Event] = ()
        # Empty until something is staged (most appends stage nothing): shared empties,
        # replaced rather than mutated, so that a waiting actor holds no containers.
        self._staged_ops: Sequence[Op] = ()
        self._staged_changes: Mapping[str, Any] = _NO_CHANGES
        #: The log of an execution just created here (not read back from the store).
        self.fresh_events: list[Event] | None = None
        #: While a ``ctx.gather`` runs: who writes the log for its members (``_batch``).
        self.writer: LogWriter | None = None

    @property
    def record(self) -> ExecutionRecord:
        return self.record_

    @property
    def queues(self) -> QueuePort:
        return self.host.queues

    # --- recording ---

    def timer_fired(self, timer: Timer, at: int) -> None:
        """Note that ``timer`` (of a ``ctx.sleep``) fired now; its ``TimerFired`` is built
        and staged by the next recording call (``_stage_fired``).

        The note is one tuple: thousands of executions woken together each make it while
        they resume, before any of them does durable work, and objects made then are what
        pushes CPython's collector into a full pass in the middle of the burst. Sleeps of
        one gather may fire together: an earlier note is staged first.
        """
        if self._fired is not None:
            self._stage_fired()
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
        if self.writer is not None:
            await self._append_gathered(event, step_id, ops or [], changes)
            return
        if self._fired is not None:
            self._stage_fired()
        staged = self._staged_events
        events = [*staged, event] if staged else [event]
        try:
            raws = [encode(e) for e in events] if staged else [encode(event)]
        except TypeError as exc:
            raise PayloadError(f"event {event.tag} cannot be stored: {exc}") from None
        self._check_size(raws[-1], event, step_id)
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

    async def _append_gathered(
        self, event: Event, step_id: str | None, ops: list[Op], changes: Mapping[str, Any]
    ) -> None:
        assert self.writer is not None
        try:
            raw = encode(event)
        except TypeError as exc:
            raise PayloadError(f"event {event.tag} cannot be stored: {exc}") from None
        self._check_size(raw, event, step_id)
        await self.writer.append(event, raw, step_id, ops, changes)
        await trio.lowlevel.checkpoint_if_cancelled()

    def _check_size(self, raw: bytes, event: Event, step_id: str | None) -> None:
        limit = self.parts.settings.max_payload_bytes
        if len(raw) > limit:
            what = f"step {step_id!r}" if step_id is not None else "the workflow's outcome"
            raise PayloadError(
                f"{what} of execution {self.execution_id}: the {event.tag} event is "
                f"{len(raw)} bytes encoded, over max_payload_bytes ({limit}); nothing "
                "was written. Keep large data outside the log (a file, an object store) and "
                "record a reference to it, or raise Engine(max_payload_bytes=...)."
            )

    def log_extra(self) -> dict[str, str]:
        """What a log record about this execution carries (``durably worker`` shows it)."""
        return {"execution_id": self.execution_id, "workflow": self.record_.workflow}

    def log_end(self, event: Event, status: str) -> None:
        """One line (``INFO``: an embedding host that configured no logging sees none) for
        the execution's end, with the error if it failed."""
        error = getattr(event, "error", None)
        why = f": {error.get('type')}: {error.get('message')}" if isinstance(error, dict) else ""
        log.info("execution %s %s%s", self.execution_id, status, why, extra=self.log_extra())

    def caught_up(self) -> None:
        """Replay has reached new work, user code runs next: lift the replay hang bound
        (a step body may take as long as it takes), and bound a suspect's solo turn.

        Writes nothing: the crash-loop counter stays until progress clears it, so a
        process that dies in this body counts against this execution.
        """
        if self.replayer.replaying:
            return
        self._lift_replay_bound()
        if self.replay_slot is not None:
            self.replay_slot.bound(self.parts.settings.max_replay_seconds)

    async def forgive(self) -> None:
        """The engine is stopping while this execution runs past its replay: clear its
        crash-loop counter, since no death interrupted it. Without this, every worker
        restart during a long step body would count as a crash."""
        record = attrs.evolve(self.record_, recoveries=0)
        with trio.CancelScope(shield=True):
            try:
                await self.parts.committer.commit([PutExecution(record)])
            except DurablyError as exc:  # counted on: a later progress clears it
                log.warning("execution %s: recovery count not cleared: %s", self.execution_id, exc)
                return
        self.record_ = record

    def replay_done(self) -> None:
        """Progress is durable, or a wait is reached: lift the hang bound, end the turn."""
        if self.replayer.replaying:
            return
        self._lift_replay_bound()
        self.release_replay_slot()

    def _lift_replay_bound(self) -> None:
        self.catching_up = False
        if self.replay_guard is not None:
            self.replay_guard.deadline = float("inf")
            self.replay_guard = None

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
            await park(REFUSE)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
