"""The supervisor: which executions live, which wait their turn, and what happens when
an actor ends.

Rules of this module:

- One actor per live execution, at most ``max_live_executions`` at once; beyond that,
  executions queue (``runq``) and idle actors are asked to park (oldest first).
- Recovery count: the first run of an execution in this process is counted durably
  before it replays, and only its progress clears the count, so that code which kills
  the process (on replay or in a step body) is dead-lettered after
  ``max_recovery_attempts`` instead of crash-looping (see ``_run_counted``, ``_solo.py``).
- Executions an operator action holds (``held``) are not launched; requests to run them
  are kept and honoured when the hold ends.
- A store that refuses a write (a full disk) stops that execution only; it is tried again
  with a doubling pause (``store_failed``).
- Everything runs in the supervisor's own nursery (``run``): nothing outlives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from durably.stores import ExecutionRecord, PutExecution, Timer

from ..core._errors import CorruptRecordError, DurablyError, LeaseLostError
from ..core._events import Event, ExecutionFailed, decode_all
from ..core._queue import Queue
from ..core._shards import shard_of
from ..core._status import TERMINAL
from ._actor import ExecutionActor
from ._bus import Bus
from ._ownership import Ownership
from ._ports import Parts, first_signal
from ._primitive import _current_step
from ._queues import QueueManager
from ._recovery import Recovery, RecoveryReport as RecoveryReport
from ._solo import SoloGate

log = logging.getLogger("durably")

#: How often a drain looks whether step bodies still run (trio seconds).
_DRAIN_POLL = 0.02

Cancel = tuple[str | None, str | None]


class Supervisor:
    """Spawns, admits, parks, recovers and dead-letters the executions of one engine."""

    def __init__(
        self,
        parts: Parts,
        on_schedule_timer: Callable[[Timer], None],
        queues: Sequence[Queue] = (),
    ) -> None:
        self.parts = parts
        self._on_schedule_timer = on_schedule_timer
        self.live: dict[str, ExecutionActor] = {}
        self.idle: dict[str, Any] = {}
        self.runq: dict[str, Cancel | None] = {}
        #: Executions an operator action holds: launches wait (requests kept) until done.
        self.held: dict[str, list[Cancel | None]] = {}
        self.bus: Bus | None = None
        #: Called with every committed batch of events (the testing kit listens here).
        self.subscribers: list[Callable[[str, Sequence[Event]], None]] = []
        self.peak_live = 0
        self.closing = False
        self._replayed_here: set[str] = set()
        self._solo = SoloGate()
        self._finished: dict[str, trio.Event] = {}
        self._stalled: set[str] = set()
        self._retrying_stalled = False
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        #: Told when an execution finishes (the wake-up channel answers its watchers).
        self.on_finished: Callable[[str], None] | None = None
        self.queues = QueueManager(parts, queues)
        self.queues.launch = self.admitted
        #: A worker of many: the shards it holds (``_ownership.py``); None for the one.
        self.ownership: Ownership | None = None

    # --- lifecycle ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = self._solo.nursery = nursery
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._nursery = self._solo.nursery = None
            self._done.set()

    async def stop(self) -> None:
        """Park every live execution and wait until every actor has ended."""
        self.closing = True
        self.queues.stop()  # no admission from here on (a pass in flight ends quietly)
        if self._scope is not None:
            self._scope.cancel()
            await self._done.wait()

    def drain(self) -> None:
        """Take no new work: launch nothing (a start, a wake of a parked execution, the
        run queue), fire no schedule, admit from no queue, take no inbox (``closing``).
        Idle actors park now, the others at their next wait or once their next write is
        committed (before another step body), except a gather's, which run on together."""
        if self.closing:
            return
        self.closing = True
        self.queues.stop()
        for actor in list(self.idle.values()):
            actor.request_park()
        self.subscribers.append(self._stop_after_commit)

    def _stop_after_commit(self, execution_id: str, events: Sequence[Event]) -> None:
        # Called after each commit of an execution's events, while draining only: the
        # append's checkpoint then delivers the cancel, before the next step body.
        actor = self.live.get(execution_id)
        if actor is not None and actor.writer is None and actor.scope is not None:
            actor.scope.cancel()

    async def bodies_done(self) -> None:
        """Return once no step body runs in this supervisor's tasks. Polled, reading each
        task's ``current_step`` context, so that the step path pays nothing for it; the
        first look comes after a pause, once what was runnable at the drain has run."""
        while True:
            await trio.sleep(_DRAIN_POLL)
            if not self.bodies_running():
                return

    def bodies_running(self) -> bool:
        return self._nursery is not None and _bodies_running(self._nursery)

    def check_running(self) -> None:
        if self._nursery is None:
            raise DurablyError(
                "the engine is not running; use it inside `async with durably.Engine(...)`"
            )

    # --- recovery ---

    def recover(self) -> RecoveryReport:
        """Resume every unfinished execution: run the running, arm the waiting, and
        quarantine those the store's indexes disagree with (``_recovery.py``)."""
        shards = None if self.ownership is None else self.ownership.shards
        report = Recovery(self, shards).run()
        self.queues.recovered()
        return report

    # --- a worker of many: shards gained and lost (``_ownership.py``) ---

    def shards_gained(self, shards: frozenset[int]) -> None:
        """Recover the executions of shards this worker just took (taken over from a
        dead or departed worker, or spread to it), as recovery at start does."""
        if self.closing or self._nursery is None:
            return
        report = Recovery(self, shards).run()
        log.info(
            "durably: took over %d shards: %d executions resumed, %d woken, %d parked",
            len(shards),
            report.resumed,
            report.woken,
            report.parked,
        )

    def shards_lost(self, shards: frozenset[int], *, handed_over: bool) -> None:
        """Stop, without writing, every actor of shards this worker no longer holds (a
        write would be refused anyway), and forget their queued launches and timers.
        ``handed_over``: given up on purpose, the lease still held until the release, so
        an actor past its replay clears its crash-loop count as at a graceful stop.

        Never waits for the actors to end (the heartbeat calls this): one that has not
        entered its scope yet (waiting for its turn, or for its recovery count's commit)
        sees at its next step that its shard is gone (``_run_counted``)."""
        for eid in [eid for eid in self.runq if shard_of(eid) in shards]:
            del self.runq[eid]
        self.parts.scheduler.disarm_where(lambda owner: shard_of(owner) in shards)
        for eid, actor in list(self.live.items()):
            if shard_of(eid) in shards:
                actor.cancel_reason = None  # nothing is recorded: the new owner carries on
                actor.handed_over, actor.moved = handed_over, True
                if actor.scope is not None:
                    actor.scope.cancel()
        self._replayed_here = {e for e in self._replayed_here if shard_of(e) not in shards}

    def _gone(self, actor: ExecutionActor) -> bool:
        """Whether its shard went to another worker of many while it waited to run."""
        own = self.ownership
        if own is None or own.owns(actor.execution_id):
            return False
        self.actor_exited(actor)
        return True

    def quarantine_soon(
        self,
        record: ExecutionRecord,
        why: str,
        *,
        retry_resumes: bool = True,
        error: CorruptRecordError | None = None,
    ) -> None:
        """Quarantine an execution the store is damaged for (recovery found its timer
        damaged, or a write of it met a damaged page); held (nothing launches it) until
        that is recorded. ``retry_resumes``: its log is intact, an operator's retry
        resumes it. ``error`` is kept as its error (``why`` if none)."""
        assert self._nursery is not None
        self.held[record.id] = []
        if error is None:
            error = CorruptRecordError(why, execution_id=record.id)
        then = "restore the store from a backup"
        if retry_resumes:
            then = (
                f"its log is intact: retry it (`durably retry {record.id}`) to resume it, or {then}"
            )
        self._nursery.start_soon(
            self._quarantine_held, record, error, f"quarantined: {why}; {then}"
        )

    async def _quarantine_held(
        self, record: ExecutionRecord, error: CorruptRecordError, reason: str
    ) -> None:
        try:
            await self.quarantine(record, error, reason=reason)
        except DurablyError as exc:
            log.error("execution %s: its quarantine was not recorded: %s", record.id, exc)
        finally:
            for cancel in self.held.pop(record.id, []):
                self.spawn(record.id, cancel=cancel)

    # --- spawning ---

    def started(self, record: ExecutionRecord, first: Event) -> None:
        """An execution this engine just created: run it without reading it back."""
        self._replayed_here.add(record.id)
        self.spawn(record.id, fresh=(record, [first]))

    def admitted(self, record: ExecutionRecord, raw_events: list[bytes]) -> None:
        """Its queue admitted the execution (the admission is durable): run it from the
        record and log the admission read; like a fresh start, its first run needs no
        recovery count."""
        self._replayed_here.add(record.id)
        try:
            fresh = (record, decode_all(raw_events, record.id))
        except CorruptRecordError:
            self.spawn(record.id)  # its actor reads the log again, and quarantines it
            return
        self.spawn(record.id, fresh=fresh)

    def spawn(
        self,
        execution_id: str,
        *,
        cancel: Cancel | None = None,
        fresh: tuple[ExecutionRecord, list[Event]] | None = None,
    ) -> None:
        """Make sure the execution runs: wake its live actor, or start (or queue) one."""
        actor = self.live.get(execution_id)
        if actor is not None:
            if cancel is not None:
                actor.cancel_reason, actor.cancel_by = cancel[0] or "cancelled", cancel[1]
                if actor.scope is not None:
                    actor.scope.cancel()
            else:
                actor.wake_up()
            return
        if self.closing or self._nursery is None:
            return
        if execution_id in self.runq:
            if cancel is not None:
                self.runq[execution_id] = cancel
            return
        if len(self.live) >= self.parts.settings.max_live_executions:
            self.runq[execution_id] = cancel
            if self.idle:
                victim = self.idle.pop(next(iter(self.idle)))
                victim.request_park()
            return
        self._launch(execution_id, cancel, fresh)

    def signalled(self, execution_id: str, waiting: bool) -> None:
        """A signal was buffered for the execution: wake it if it may be waiting for it."""
        actor = self.live.get(execution_id)
        if actor is not None:
            actor.wake_up()
        elif waiting:
            self.spawn(execution_id)

    def live_actor(self, execution_id: str) -> ExecutionActor | None:
        return self.live.get(execution_id)

    def _launch(
        self,
        execution_id: str,
        cancel: Cancel | None,
        fresh: tuple[ExecutionRecord, list[Event]] | None = None,
    ) -> None:
        assert self._nursery is not None
        held = self.held.get(execution_id)
        if held is not None:
            held.append(cancel)
            return
        if self.ownership is not None and not self.ownership.owns(execution_id):
            return  # another worker's (told through the inbox)
        if fresh is not None:
            record: ExecutionRecord | None = fresh[0]
        else:
            try:
                record = self.parts.store.get_execution(execution_id)
            except CorruptRecordError as exc:
                log.error("execution %s cannot be read: %s", execution_id, exc)
                return
        if record is None or record.status in TERMINAL:
            return
        if record.status == "queued" and cancel is None:
            self.queues.offer(record)  # its queue admits it (a cancel needs no admission)
            return
        if record.queue is not None:
            self.queues.admitted_before(record)
        definition = self.parts.registry.get(record.workflow)
        if definition is None:
            log.warning(
                "execution %s: workflow %r is not registered",
                record.id,
                record.workflow,
                extra={"execution_id": record.id, "workflow": record.workflow},
            )
            return
        actor = ExecutionActor(self, record, definition)
        if fresh is not None:
            actor.fresh_events = fresh[1]
        if cancel is not None:
            actor.cancel_reason, actor.cancel_by = cancel[0] or "cancelled", cancel[1]
        self.live[execution_id] = actor
        self.peak_live = max(self.peak_live, len(self.live))
        if execution_id in self._replayed_here or actor.cancel_reason is not None:
            # Nothing to count before it runs (see _run_counted): its own task, without
            # the wrapper's coroutine held for as long as it waits.
            self._nursery.start_soon(actor.run)
        else:
            self._nursery.start_soon(self._run_counted, actor)

    async def _run_counted(self, actor: ExecutionActor) -> None:
        eid = actor.execution_id
        try:
            # First run of this execution in this process: count it durably *before* it
            # replays; its first progress clears the count (in that progress's commit). A
            # suspect (counted before without progress since) runs alone among suspects,
            # most-counted first, until its progress or a wait (_solo.py): a process death
            # is then counted against it, and an innocent counted once for dying beside a
            # culprit waits behind it instead of being counted again. The others run
            # concurrently, their counts batched. A pending execution (a client's start)
            # says running from this same commit on.
            self._replayed_here.add(eid)
            if actor.record.recoveries:
                actor.replay_slot = await self._solo.turn(actor.record.recoveries)
                if self._gone(actor):
                    return
            record = actor.record
            if record.recoveries >= self.parts.settings.max_recovery_attempts:
                await self._dead_letter(actor)
                self.actor_exited(actor)
                return
            bumped = attrs.evolve(record, recoveries=record.recoveries + 1)
            if record.status == "pending":
                bumped = attrs.evolve(
                    bumped, status="running", updated_ms=self.parts.clock.now_ms()
                )
            try:
                await self.parts.committer.commit([PutExecution(bumped)])
            except DurablyError as exc:
                self._replayed_here.discard(eid)  # not counted: count it on the retry
                self.store_failed(eid, exc)
                self.actor_exited(actor)
                return
            actor.record_ = bumped
            if self._gone(actor):
                return
            await actor.run()
        finally:
            actor.release_replay_slot()

    async def _dead_letter(self, actor: ExecutionActor) -> None:
        record = actor.record
        reason = (
            f"dead-lettered: recovery was attempted {record.recoveries} times without "
            "progress (the process died while it ran, replaying or in a step body, or its "
            "replay hung past max_replay_seconds); fix the workflow code, then retry the "
            "execution"
        )
        error = {"type": "durably.CrashLoop", "message": reason, "traceback": ""}
        actor.seq = len(self.parts.store.read_events(actor.execution_id))
        await actor.finish(
            ExecutionFailed(at=self.parts.clock.now_ms(), error=error), reason=reason
        )

    # --- the actors' side (ActorHost) ---

    def actor_exited(self, actor: Any) -> None:
        eid = actor.execution_id
        actor.mark_exited()
        if self.live.get(eid) is actor:
            del self.live[eid]
        self.idle.pop(eid, None)
        if actor.parked and actor.woken:
            self.spawn(eid)  # woken as it parked: the wake must not be lost
        elif actor.moved and self.ownership is not None and self.ownership.owns(eid):
            self.spawn(eid)  # its shard came back while it stopped: recovery skipped it
        if actor.hung:
            self._replayed_here.discard(eid)  # the next attempt counts as a recovery
            cancel: Cancel | None = None
            if actor.cancel_reason is not None:  # a cancel that met the hang still holds
                cancel = (actor.cancel_reason, actor.cancel_by)
            self.spawn(eid, cancel=cancel)
        limit = self.parts.settings.max_live_executions
        while self.runq and len(self.live) < limit and not self.closing:
            next_id = next(iter(self.runq))
            self._launch(next_id, self.runq.pop(next_id))

    def should_park(self) -> bool:
        return self.closing or bool(self.runq)

    def on_timer(self, due_ms: int, owner: str, timer_id: str) -> None:
        # Called for each of thousands of timers due together: a Timer is built only for
        # a schedule's fire, which needs one.
        actor = self.live.get(owner)
        if actor is not None:
            actor.wake_up()  # the common case, without spawn's call and checks
        elif owner.startswith("schedule:"):
            if not self.closing:  # draining: the fire stays in the index for the next start
                self._on_schedule_timer(Timer(due_ms, owner, timer_id))
        else:
            self.spawn(owner)

    def finished(self, execution_id: str, status: str) -> None:
        self._replayed_here.discard(execution_id)
        self.queues.ended(execution_id)
        event = self._finished.pop(execution_id, None)
        if event is not None:
            event.set()
        if self.on_finished is not None:
            self.on_finished(execution_id)

    async def wait_finished(self, execution_id: str) -> None:
        """Return when the execution may have finished (the caller re-reads the store)."""
        event = self._finished.get(execution_id)
        if event is None:
            event = self._finished[execution_id] = trio.Event()
        await event.wait()

    def published(self, execution_id: str, events: Sequence[Event], first_seq: int) -> None:
        for subscriber in self.subscribers:
            subscriber(execution_id, events)
        if self.bus is not None:
            self.bus.publish(execution_id, events, first_seq)

    def store_failed(self, execution_id: str, error: BaseException) -> None:
        """The store refused a write of this execution (e.g. a full disk): nothing of it
        was acknowledged; try the execution again (a replay) once the store accepts writes.
        Not when the store is damaged where it writes: that does not pass with time, so
        the execution is quarantined instead.
        """
        if isinstance(error, LeaseLostError):
            return  # its shard's new owner carries on (the actor logged why it stopped)
        if isinstance(error, CorruptRecordError):
            log.error(
                "execution %s stopped, quarantined: %s",
                execution_id,
                error,
                extra={"execution_id": execution_id},
            )
            self._quarantine_unwritable(execution_id, error)
            return
        log.error(
            "execution %s stopped, retried later: %s",
            execution_id,
            error,
            extra={"execution_id": execution_id},
        )
        self._stalled.add(execution_id)
        if not self._retrying_stalled and not self.closing and self._nursery is not None:
            self._retrying_stalled = True
            self._nursery.start_soon(self._retry_stalled)

    def _quarantine_unwritable(self, execution_id: str, error: CorruptRecordError) -> None:
        # Its record is written alone, which may fit where its log's pages did not.
        if self.closing or self._nursery is None or execution_id in self.held:
            return
        try:
            record = self.parts.store.get_execution(execution_id)
        except DurablyError:
            return  # its record is unreadable: it shows quarantined as it is
        if record is not None and record.status not in TERMINAL:
            why = "a write of it met a damaged page of the store"
            self.quarantine_soon(record, why, retry_resumes=False, error=error)

    async def _retry_stalled(self) -> None:
        delay = self.parts.settings.store_retry_seconds
        try:
            while self._stalled and not self.closing:
                await trio.sleep(delay)
                stalled, self._stalled = self._stalled, set()
                for eid in stalled:
                    self.spawn(eid)
                delay = min(delay * 2, 60.0)
        finally:
            self._retrying_stalled = False

    async def quarantine(
        self,
        record: ExecutionRecord,
        error: CorruptRecordError,
        *,
        reason: str = "quarantined: its log is corrupt; restore the store from a backup",
    ) -> None:
        """A corrupt log: mark the execution failed (nothing replayed, nothing repaired)."""
        info = {"type": "durably.CorruptRecordError", "message": str(error), "traceback": ""}
        quarantined = attrs.evolve(
            record,
            status="failed",
            error=info,
            reason=reason,
            updated_ms=self.parts.clock.now_ms(),
            timer=None,
        )
        await self.parts.committer.commit([PutExecution(quarantined)])
        self.finished(record.id, "failed")

    def first_signal(self, execution_id: str, name: str) -> Any:
        return first_signal(self.parts.store, execution_id, name)


def _bodies_running(nursery: trio.Nursery) -> bool:
    for task in nursery.child_tasks:
        if task.context.get(_current_step) is not None:
            return True
        if any(_bodies_running(child) for child in task.child_nurseries):
            return True
    return False
