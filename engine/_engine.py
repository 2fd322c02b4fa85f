"""``durably.Engine``: the public face, and the supervisor of every actor.

The engine owns one trio nursery. In it run the commit actor, the scheduler actor and a
host nursery for execution actors; nothing outlives ``async with Engine(...)``. Leaving
it parks every execution (their state is in the log), then lets the commit actor write
whatever was handed to it: nothing acknowledged is lost, nothing half-done is recorded.

Admission: at most ``max_live_executions`` actors live at once. Beyond that, executions
queue, and waiting actors are asked to park to make room (oldest first).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs
import trio

from durably.stores import (
    ACTIVE_STATUSES,
    CreateExecution,
    ExecutionRecord,
    LmdbStore,
    MailboxEntry,
    PutExecution,
    PutSignal,
    SignalOutcome,
    Store,
    Timer,
    quarantined_record,
)

from .core import _codec
from .core._audit import AuditEntry, audit_trail
from .core._errors import (
    ConfigurationError,
    CorruptRecordError,
    DurablyError,
    ExecutionCancelledError,
    ExecutionFailedError,
    PayloadError,
    UnknownExecutionError,
    UnknownWorkflowError,
    WaitTimeoutError,
)
from .core._events import Event, ExecutionStarted, decode_all, encode
from .core._types import (
    Execution,
    Result,
    Signal,
    SignalDelivery,
    SignalOutcome as PublicSignalOutcome,
    Status,
)
from .core._workflow import WorkflowDefinition
from .remote import _wire
from .remote._channel import CANCEL_SIGNAL, OPERATOR_ACTIONS, Channel, cancel_args
from .runtime._actor import ExecutionActor
from .runtime._bus import Bus, Subscription
from .runtime._clock import Clock
from .runtime._commit import Committer
from .runtime._describe import FlowShape, describe
from .runtime._operator import Operator
from .runtime._scheduler import Scheduler
from .runtime._schedules import CatchUp, Overlap, Schedule, ScheduleManager

log = logging.getLogger("durably")

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

_UNSET: Any = object()


@attrs.frozen
class RecoveryReport:
    """What ``engine.recover()`` found and did."""

    resumed: int
    """Executions that were running (or pending) and now run again."""
    parked: int
    """Executions waiting on a timer or a signal, left parked with their timers armed."""
    woken: int
    """Waiting executions with a matching signal already buffered, woken now."""
    unknown_workflows: list[str]
    """Workflow names found in the store that this engine does not register (left as is)."""
    timers: int
    """Timers armed from the store's index."""


def new_execution_id() -> str:
    """A 32-hex-digit id that sorts by creation time (ms), then 80 random bits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


class Engine:
    """A durable workflow engine over ``store`` (a ``Store``, or a path for ``LmdbStore``).

    Use as ``async with durably.Engine(path, workflows=[...]) as engine:``.

    Options: ``max_live_executions`` bounds the actors held in memory (waiting executions
    beyond it are parked and replayed on wake); ``implicit_step_ids`` (``"allow"``,
    ``"warn"`` or ``"error"``) governs sleeps, signal waits and emits without ``step_id=``;
    ``clock`` lets tests share one virtual clock across engine restarts;
    ``max_recovery_attempts`` dead-letters an execution whose replay keeps failing to
    make progress (the process dies, or replay hangs past ``max_replay_seconds`` of trio
    time without reaching new work; ``None`` disables the bound); ``commit_inline``
    (``"auto"``, ``"always"``, ``"never"``) says when a batch is written on the event loop
    rather than in a worker thread; ``worker=False`` makes a client (see
    ``durably.Client``), which re-reads the store every ``poll_interval`` seconds while it
    waits in case a wake-up is lost; ``max_payload_bytes``
    bounds one encoded value (input, step result, signal payload, outcome): a bigger one
    raises ``PayloadError`` at the call that produced it and nothing is written;
    ``store_retry_seconds`` is the first pause before executions stopped by a failing
    store (a full disk) are tried again (doubling up to a minute).
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        workflows: Iterable[WorkflowDefinition[Any, Any]] = (),
        max_live_executions: int = 10_000,
        implicit_step_ids: Literal["allow", "warn", "error"] = "allow",
        clock: Clock | None = None,
        max_recovery_attempts: int = 5,
        commit_inline: Literal["auto", "always", "never"] = "auto",
        worker: bool = True,
        poll_interval: float = 1.0,
        max_payload_bytes: int = 16 * 1024 * 1024,
        max_replay_seconds: float | None = 60.0,
        store_retry_seconds: float = 1.0,
    ) -> None:
        if max_live_executions < 1:
            raise ConfigurationError("max_live_executions must be at least 1")
        if implicit_step_ids not in ("allow", "warn", "error"):
            raise ConfigurationError("implicit_step_ids must be 'allow', 'warn' or 'error'")
        self._owns_store = not isinstance(store, Store)
        self._store_arg = store
        self.store: Store = store if isinstance(store, Store) else None  # type: ignore[assignment]
        self._definitions: dict[str, WorkflowDefinition[Any, Any]] = {}
        for definition in workflows:
            self.register(definition)
        self.max_live_executions = max_live_executions
        self.implicit_step_ids = implicit_step_ids
        self.clock = clock if clock is not None else Clock()
        self.max_recovery_attempts = max_recovery_attempts
        if max_payload_bytes < 1:
            raise ConfigurationError("max_payload_bytes must be at least 1")
        if max_replay_seconds is not None and not max_replay_seconds > 0:
            raise ConfigurationError("max_replay_seconds must be positive (or None)")
        if not store_retry_seconds > 0:
            raise ConfigurationError("store_retry_seconds must be positive")
        self.max_payload_bytes = max_payload_bytes
        self.max_replay_seconds = max_replay_seconds
        self.store_retry_seconds = store_retry_seconds
        self._stalled: set[str] = set()
        self._retrying_stalled = False
        self._commit_inline = commit_inline
        self.worker = worker
        self.poll_interval = poll_interval
        self._channel = Channel(self)
        self.live: dict[str, ExecutionActor] = {}
        self.idle: dict[str, ExecutionActor] = {}
        self._runq: dict[str, tuple[str | None, str | None] | None] = {}
        self._replayed_here: set[str] = set()
        self._replay_slot = trio.Semaphore(1)
        self._finished_events: dict[str, trio.Event] = {}
        self._subscribers: list[Callable[[str, Sequence[Event]], None]] = []
        self._bus: Bus | None = None
        self._operator: Operator | None = None
        #: Executions an operator action holds: launches wait (requests kept) until done.
        self._held: dict[str, list[tuple[str | None, str | None] | None]] = {}
        self._closing = False
        self._running = False
        self._actor_nursery: trio.Nursery | None = None
        self._actors_scope: trio.CancelScope | None = None
        self._actors_done = trio.Event()
        self.peak_live = 0
        """The most executions live at once so far: at most ``max_live_executions``."""
        self.last_recovery: RecoveryReport | None = None
        """What the recovery at start found (``None`` before start, and for clients)."""

    # --- registration ---

    def register(self, definition: WorkflowDefinition[Any, Any]) -> None:
        """Add a workflow definition (as ``workflows=[...]`` does); names must be unique."""
        if not isinstance(definition, WorkflowDefinition):
            raise ConfigurationError(
                f"{definition!r} is not a workflow definition; decorate it with "
                "@durably.workflow(name)"
            )
        existing = self._definitions.get(definition.name)
        if existing is not None and existing is not definition:
            raise ConfigurationError(f"two workflows are registered as {definition.name!r}")
        self._definitions[definition.name] = definition

    def workflows(self) -> list[WorkflowDefinition[Any, Any]]:
        """The registered workflow definitions."""
        return list(self._definitions.values())

    def _resolve(
        self, workflow: WorkflowDefinition[Any, Any] | str
    ) -> WorkflowDefinition[Any, Any]:
        name = workflow if isinstance(workflow, str) else workflow.name
        definition = self._definitions.get(name)
        if definition is None:
            raise UnknownWorkflowError(name, list(self._definitions))
        return definition

    # --- lifecycle ---

    async def __aenter__(self) -> Engine:
        if self._running:
            raise DurablyError("this engine is already running; create one engine per run")
        if self._owns_store:
            self.store = LmdbStore(self._store_arg, lock=self.worker)  # type: ignore[arg-type]
        self.clock.bind()
        self.committer = Committer(self.store, inline=self._commit_inline)
        self.scheduler = Scheduler(self.store, self.clock, self._on_timer)
        self._schedules = ScheduleManager(self)
        store_path = getattr(self.store, "path", None)
        if store_path is not None:
            self._channel.worker_path = _wire.worker_socket_path(store_path)
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        self._nursery = nursery
        self._running = True
        try:
            await nursery.start(self.committer.run)
            if self.worker:
                await nursery.start(self.scheduler.run)
                await nursery.start(self._schedules.run)
                await nursery.start(self._host_actors)
                if self._channel.worker_path is not None:
                    await nursery.start(self._channel.listen)
                self.last_recovery = await self.recover()
            elif self._channel.worker_path is not None:
                await self._channel.open_client(nursery)
        except BaseException as exc:
            await self._shutdown()
            try:
                await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                if self._owns_store:
                    self.store.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._shutdown()
        try:
            return await self._nursery_cm.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The engine's actors do not fail on their own; a group holding only the
            # body's exception is that exception, and users should see it unwrapped.
            if exc is not None and group.exceptions == (exc,):
                raise exc from None
            raise
        finally:
            if self._owns_store:
                self.store.close()

    async def _host_actors(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                self._actors_scope = scope
                async with trio.open_nursery() as nursery:
                    self._actor_nursery = nursery
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._actor_nursery = None
            self._actors_done.set()

    async def _shutdown(self) -> None:
        with trio.CancelScope(shield=True):
            self._closing = True
            if self._actors_scope is not None:
                self._actors_scope.cancel()
                await self._actors_done.wait()
            self.committer.close()
            if self._bus is not None:
                self._bus.close()  # subscriptions end instead of waiting forever
            self._nursery.cancel_scope.cancel()
        self._running = False
        self._channel.close_client()

    # --- starting and waiting ---

    async def start(
        self,
        workflow: WorkflowDefinition[I, O] | str,
        input: I | None = None,
        *,
        idempotency_key: str | None = None,
        _schedule_id: str | None = None,
    ) -> str:
        """Start an execution; return its id once the start is durable.

        With ``idempotency_key``, starting the same workflow with the same key again
        returns the first execution's id (the first input wins) and starts nothing.
        """
        self._check_running()
        definition = self._resolve(workflow)
        if idempotency_key is not None:
            _check_id(idempotency_key, "idempotency_key")
            existing = self.store.find_idempotent(definition.name, idempotency_key)
            if existing is not None:
                return existing
        shaped = _codec.check(
            input, definition.input_type, f"input of workflow {definition.name!r}"
        )
        eid = new_execution_id()
        now = self.clock.now_ms()
        record = ExecutionRecord(
            id=eid,
            workflow=definition.name,
            status="pending",
            input=shaped,
            created_ms=now,
            updated_ms=now,
            idempotency_key=idempotency_key,
            schedule_id=_schedule_id,
        )
        first = ExecutionStarted(at=now, workflow=definition.name, input=shaped)
        started = encode(first)
        self._check_size(len(started), f"the input of workflow {definition.name!r}")
        [winner] = await self.committer.commit([CreateExecution(record, [started])])
        if winner == eid:
            if self._bus is not None:
                self._bus.publish(eid, [first], 0)
            self._replayed_here.add(eid)
            self.spawn(eid, fresh=(record, [first]))
        return str(winner)

    async def start_and_wait(
        self,
        workflow: WorkflowDefinition[I, O] | str,
        input: I | None = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[O]:
        """Start an execution and wait for its result."""
        eid = await self.start(workflow, input, idempotency_key=idempotency_key)
        data = await self.wait(eid, timeout=timeout)
        return Result(eid, data)

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Any:
        """The execution's result once it finishes.

        Raises ``ExecutionFailedError``, ``ExecutionCancelledError``, ``WaitTimeoutError``
        (the execution goes on) or ``UnknownExecutionError``.
        """
        self._check_running()
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            while True:
                record = self._get_record(execution_id)
                if record.status in ("completed", "failed", "compensation_failed", "cancelled"):
                    return self._outcome(record)
                await self._wait_finished(execution_id)
        assert scope.cancelled_caught
        raise WaitTimeoutError(
            f"execution {execution_id} did not finish within {timeout} s; it goes on"
        )

    def _outcome(self, record: ExecutionRecord) -> Any:
        if record.status == "completed":
            definition = self._definitions.get(record.workflow)
            tp = definition.output_type if definition is not None else Any
            return _codec.load(record.result, tp, f"result of execution {record.id}")
        if record.status == "cancelled":
            raise ExecutionCancelledError(record.id, record.reason)
        raise ExecutionFailedError(record.id, record.error)

    def _get_record(self, execution_id: str) -> ExecutionRecord:
        if not isinstance(execution_id, str) or not execution_id or "\x00" in execution_id:
            raise UnknownExecutionError(str(execution_id))
        try:
            record = self.store.get_execution(execution_id)
        except CorruptRecordError as exc:
            return quarantined_record(execution_id, exc)  # shown failed, left as it is
        if record is None:
            raise UnknownExecutionError(execution_id)
        return record

    async def get_execution(self, execution_id: str) -> Execution:
        """A read-only view of the execution's current record."""
        return Execution.from_record(self._get_record(execution_id))

    async def list_executions(
        self,
        *,
        status: Status | str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = 100,
    ) -> list[Execution]:
        """Executions by id order (creation order), optionally by status and workflow."""
        st = Status(status).value if status is not None else None
        return [
            Execution.from_record(r)
            for r in self.store.list_executions(
                status=st, workflow=workflow, after=after, limit=limit
            )
        ]

    async def cancel(
        self, execution_id: str, *, reason: str | None = None, by: str | None = None
    ) -> None:
        """Cancel an execution: a running step is cancelled, nothing more runs.

        Cancelling a finished execution is a no-op. The cancellation is recorded in the
        log (with ``reason`` and ``by``) before the call returns... for a live execution,
        once its actor has unwound.
        """
        await self.request_cancel(execution_id, reason=reason, by=by)
        await self.wait_settled(execution_id)

    async def request_cancel(
        self, execution_id: str, *, reason: str | None = None, by: str | None = None
    ) -> None:
        """Make a cancellation request durable and hand it to the worker; do not wait."""
        self._check_running()
        record = self._get_record(execution_id)
        if Status(record.status).terminal:
            return
        # The request is made durable (in the mailbox, under a reserved name), so that a
        # worker that crashes before the actor records the cancellation still honours it
        # on recovery, and a client's cancel reaches the worker through the store. A
        # worker tells its live actor at once, not after that commit: the cancellation
        # lands at the actor's next checkpoint, and is recorded (with the request taken)
        # by the actor itself.
        if self.worker:
            self.spawn(execution_id, cancel=(reason, by))
        await self.committer.commit(
            [PutSignal(execution_id, CANCEL_SIGNAL, {"reason": reason, "by": by})]
        )
        if not self.worker:
            self.spawn(execution_id, cancel=(reason, by))

    async def wait_settled(self, execution_id: str) -> None:
        """Wait until the execution is terminal (no result, no raise)."""
        while True:
            record = self._get_record(execution_id)
            if Status(record.status).terminal:
                return
            await self._wait_finished(execution_id)

    async def _wait_finished(self, execution_id: str) -> None:
        """Return when the execution may have finished (the caller re-reads the store).

        A worker is told by its own actors. A client asks the worker to tell it, and
        re-reads the store every ``poll_interval`` in case the worker is not running.
        """
        event = self._finished_events.get(execution_id)
        if event is None:
            event = self._finished_events[execution_id] = trio.Event()
        if self.worker:
            await event.wait()
            return
        await self._channel.hint({"op": "watch", "eid": execution_id, "reply": self._channel.path})
        with trio.move_on_after(self.poll_interval):
            await event.wait()

    # --- observing and operating: bus, audit, describe, operator ---

    def subscribe(
        self,
        *,
        emits: bool = True,
        audit: bool = False,
        execution_id: str | None = None,
        events: Iterable[str] | None = None,
        buffer: int = 1000,
    ) -> Subscription:
        """Listen to the event bus: ``async with engine.subscribe() as sub: async for m in sub``.

        Yields ``durably.Emission`` for each ``ctx.emit`` (filtered by ``events`` names)
        and, with ``audit=True``, each ``durably.AuditEntry`` as it is appended. Delivery
        is best-effort: only messages committed while subscribed arrive, and when the
        ``buffer`` is full further ones are dropped (counted in ``sub.dropped``); read
        ``engine.audit`` for the durable record.
        """
        if self._bus is None:
            self._bus = Bus()
        return self._bus.subscribe(
            emits=emits, audit=audit, execution_id=execution_id, events=events, buffer=buffer
        )

    async def audit(self, execution_id: str) -> list[AuditEntry]:
        """The execution's audit trail, derived from its log (oldest first)."""
        self._get_record(execution_id)
        return audit_trail(execution_id, decode_all(self.store.read_events(execution_id)))

    async def describe(
        self, workflow: WorkflowDefinition[Any, Any] | str, input: Any = None
    ) -> FlowShape:
        """The workflow's shape (its durable calls), recorded without running any step.

        Without ``input`` the workflow's ``defaults`` are used. A definition need not be
        registered; a name must be.
        """
        definition = workflow if isinstance(workflow, WorkflowDefinition) else None
        return await describe(definition or self._resolve(workflow), input)

    @property
    def operator(self) -> Operator:
        """Inspect and repair executions; actions on live ones go through this engine."""
        if self._operator is None:
            self._operator = Operator(self)
        return self._operator

    # --- signals ---

    async def signal(
        self,
        execution_id: str,
        signal: Signal[Any] | str,
        payload: Any = None,
        *,
        dedup_key: str | None = None,
    ) -> PublicSignalOutcome:
        """Send ``signal`` to an execution; say whether it was delivered, buffered or not.

        A signal for a finished execution is rejected with the reason (never dropped
        silently); one for an unknown execution raises ``UnknownExecutionError``; a
        ``dedup_key`` already accepted for the execution is rejected as a duplicate.
        """
        self._check_running()
        sig = signal if isinstance(signal, Signal) else Signal(signal)
        if dedup_key is not None:
            _check_id(dedup_key, "dedup_key")
        if not isinstance(execution_id, str) or "\x00" in execution_id or not execution_id:
            raise UnknownExecutionError(str(execution_id))
        shaped = _codec.check(payload, sig.payload_type, f"payload of signal {sig.name!r}")
        self._check_size(len(_codec.dump(shaped, "")), f"the payload of signal {sig.name!r}")
        [result] = await self.committer.commit(
            [PutSignal(execution_id, sig.name, shaped, dedup_key)]
        )
        outcome = result.outcome
        if outcome is SignalOutcome.UNKNOWN:
            raise UnknownExecutionError(execution_id)
        if outcome is SignalOutcome.FINISHED:
            return PublicSignalOutcome(
                SignalDelivery.REJECTED,
                execution_id,
                sig.name,
                f"the execution has finished ({result.status}); signals are not kept for it",
            )
        if outcome is SignalOutcome.DUPLICATE:
            return PublicSignalOutcome(
                SignalDelivery.REJECTED,
                execution_id,
                sig.name,
                f"a signal with dedup_key {dedup_key!r} was already accepted",
            )
        waiting = result.waiting_signal == sig.name
        self._signalled(execution_id, sig.name, waiting)
        return PublicSignalOutcome(
            SignalDelivery.DELIVERED if waiting else SignalDelivery.BUFFERED,
            execution_id,
            sig.name,
        )

    def _signalled(self, execution_id: str, name: str, waiting: bool) -> None:
        if not self.worker:
            self._channel.hint_soon({"op": "signal", "eid": execution_id, "name": name})
            return
        actor = self.live.get(execution_id)
        if actor is not None:
            actor.wake_up()
        elif waiting:
            self.spawn(execution_id)

    def first_signal(self, execution_id: str, name: str) -> MailboxEntry | None:
        for entry in self.store.mailbox(execution_id):
            if entry.signal == name:
                return entry
        return None

    # --- schedules ---

    async def schedule(
        self,
        workflow: WorkflowDefinition[I, O] | str,
        input: I | None = None,
        *,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
        catch_up: CatchUp = "latest",
        id: str | None = None,
    ) -> str:
        """Start ``workflow`` once, at ``at`` (an aware datetime) or after ``delay`` seconds.

        Returns the **schedule id**, not an execution id: the execution does not exist
        until the schedule fires (``get_schedule(id).executions`` then lists it).
        """
        self._check_running()
        wire = {
            "workflow": _name_of(workflow),
            "input": _codec.shape(input, "schedule input"),
            "at": None if at is None else at.isoformat(),
            "delay": _seconds(delay),
            "catch_up": catch_up,
            "id": id,
        }
        return str(
            await self._channel.in_worker(
                "schedule",
                wire,
                lambda: self._schedules.schedule(
                    workflow, input, at=at, delay=delay, catch_up=catch_up, id=id
                ),
            )
        )

    async def ensure_schedule(
        self,
        workflow: WorkflowDefinition[I, O] | str,
        input: I | None = None,
        *,
        id: str,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        timezone: str | None = None,
        catch_up: CatchUp = "latest",
        overlap: Overlap = "allow",
    ) -> str:
        """Create or update the recurring schedule ``id`` (cron or interval seconds).

        Idempotent: the same definition again writes nothing; a new cadence, input or
        policy updates it (a paused schedule stays paused); another workflow for the same
        id is an error. Returns ``id``.
        """
        self._check_running()
        wire = {
            "workflow": _name_of(workflow),
            "input": _codec.shape(input, "schedule input"),
            "id": id,
            "cron": cron,
            "interval": _seconds(interval),
            "timezone": timezone,
            "catch_up": catch_up,
            "overlap": overlap,
        }
        return str(
            await self._channel.in_worker(
                "ensure_schedule",
                wire,
                lambda: self._schedules.ensure(
                    workflow,
                    input,
                    id=id,
                    cron=cron,
                    interval=interval,
                    timezone=timezone,
                    catch_up=catch_up,
                    overlap=overlap,
                ),
            )
        )

    async def pause_schedule(self, schedule_id: str) -> None:
        """Stop a schedule's fires, keeping the schedule (no-op if paused)."""
        self._check_running()
        await self._channel.in_worker(
            "pause_schedule",
            {"schedule_id": schedule_id},
            lambda: self._schedules.pause(schedule_id),
        )

    async def resume_schedule(self, schedule_id: str) -> None:
        """Fire again, from the next fire time after now (missed fires are not run)."""
        self._check_running()
        await self._channel.in_worker(
            "resume_schedule",
            {"schedule_id": schedule_id},
            lambda: self._schedules.resume(schedule_id),
        )

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """A read-only view of the schedule, with the executions it started."""
        self._check_running()
        return self._schedules.get(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        self._check_running()
        return list(self._schedules.list())

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        timezone: str | None = None,
        input: Any = _UNSET,
        catch_up: CatchUp | None = None,
        overlap: Overlap | None = None,
    ) -> Schedule:
        """Change what is given; a new cadence fires from now. Returns the new view."""
        self._check_running()
        wire: dict[str, Any] = {
            "schedule_id": schedule_id,
            "cron": cron,
            "interval": _seconds(interval),
            "timezone": timezone,
            "catch_up": catch_up,
            "overlap": overlap,
        }
        if input is not _UNSET:
            wire["input"] = _codec.shape(input, "schedule input")
        await self._channel.in_worker(
            "update_schedule",
            wire,
            lambda: self._schedules.update(
                schedule_id,
                cron=cron,
                interval=interval,
                timezone=timezone,
                input=None if input is _UNSET else input,
                has_input=input is not _UNSET,
                catch_up=catch_up,
                overlap=overlap,
            ),
        )
        return self._schedules.get(schedule_id)

    async def remove_schedule(self, schedule_id: str) -> None:
        """Delete the schedule and its timer; executions it started are not touched."""
        self._check_running()
        await self._channel.in_worker(
            "remove_schedule",
            {"schedule_id": schedule_id},
            lambda: self._schedules.remove(schedule_id),
        )

    # --- recovery ---

    async def recover(self) -> RecoveryReport:
        """Resume every unfinished execution: run the running, arm the waiting.

        Runs on engine start; safe to call again (live executions are left alone).
        """
        self._check_running()
        timers = self.scheduler.load()
        resumed = parked = woken = 0
        unknown: set[str] = set()
        for status in ACTIVE_STATUSES:
            after: str | None = None
            while True:
                page = self.store.list_executions(status=status, after=after, limit=1000)
                if not page:
                    break
                after = page[-1].id
                for record in page:
                    if Status(record.status).terminal:
                        continue
                    if record.workflow not in self._definitions:
                        unknown.add(record.workflow)
                        continue
                    if record.id in self.live:
                        continue
                    # One mailbox read answers both questions: a cancel request, and
                    # whether the awaited signal is already buffered.
                    mail = {e.signal for e in self.store.mailbox(record.id)}
                    if CANCEL_SIGNAL in mail:
                        cancel = self.first_signal(record.id, CANCEL_SIGNAL)
                        assert cancel is not None
                        resumed += 1
                        self.spawn(record.id, cancel=cancel_args(cancel.payload))
                    elif status in ("pending", "running"):
                        resumed += 1
                        self.spawn(record.id)
                    elif status == "waiting" and record.waiting_signal in mail:
                        woken += 1
                        self.spawn(record.id)
                    else:
                        parked += 1
        if unknown:
            log.warning(
                "executions of unregistered workflows left as they are: %s", sorted(unknown)
            )
        return RecoveryReport(resumed, parked, woken, sorted(unknown), timers)

    # --- actors: the supervisor's side ---

    def spawn(
        self,
        execution_id: str,
        *,
        cancel: tuple[str | None, str | None] | None = None,
        fresh: tuple[ExecutionRecord, list[Event]] | None = None,
    ) -> None:
        """Make sure the execution runs: wake its live actor, or start (or queue) one.

        ``fresh``: the record and log of an execution this engine just created, so that
        its actor need not read back what was just written.
        """
        if not self.worker:
            self._channel.hint_soon({"op": "cancel" if cancel else "wake", "eid": execution_id})
            return
        actor = self.live.get(execution_id)
        if actor is not None:
            if cancel is not None:
                actor.cancel_reason, actor.cancel_by = cancel[0] or "cancelled", cancel[1]
                if actor.scope is not None:
                    actor.scope.cancel()
            else:
                actor.wake_up()
            return
        if self._closing or self._actor_nursery is None:
            return
        if execution_id in self._runq:
            if cancel is not None:
                self._runq[execution_id] = cancel
            return
        if len(self.live) >= self.max_live_executions:
            self._runq[execution_id] = cancel
            if self.idle:
                victim = self.idle.pop(next(iter(self.idle)))
                victim.request_park()
            return
        self._launch(execution_id, cancel, fresh)

    def _launch(
        self,
        execution_id: str,
        cancel: tuple[str | None, str | None] | None,
        fresh: tuple[ExecutionRecord, list[Event]] | None = None,
    ) -> None:
        assert self._actor_nursery is not None
        held = self._held.get(execution_id)
        if held is not None:
            held.append(cancel)
            return
        if fresh is not None:
            record: ExecutionRecord | None = fresh[0]
        else:
            try:
                record = self.store.get_execution(execution_id)
            except CorruptRecordError as exc:
                log.error("execution %s cannot be read: %s", execution_id, exc)
                return
        if record is None or Status(record.status).terminal:
            return
        definition = self._definitions.get(record.workflow)
        if definition is None:
            log.warning("execution %s: workflow %r is not registered", record.id, record.workflow)
            return
        actor = ExecutionActor(self, record, definition)
        if fresh is not None:
            actor.fresh_events = fresh[1]
        if cancel is not None:
            actor.cancel_reason, actor.cancel_by = cancel[0] or "cancelled", cancel[1]
        self.live[execution_id] = actor
        self.peak_live = max(self.peak_live, len(self.live))
        if execution_id in self._replayed_here or actor.cancel_reason is not None:
            # Nothing to count before it runs (see _run_actor): its own task, without
            # the wrapper's coroutine held for as long as it waits.
            self._actor_nursery.start_soon(actor.run)
        else:
            self._actor_nursery.start_soon(self._run_actor, actor)

    async def _run_actor(self, actor: ExecutionActor) -> None:
        eid = actor.execution_id
        try:
            if eid not in self._replayed_here and actor.cancel_reason is None:
                # First replay of this execution in this process: count it durably
                # *before* replaying, so that code which kills the process on replay is
                # dead-lettered after max_recovery_attempts instead of crash-looping.
                # A suspect (counted before without progress since) replays alone, until
                # it reaches new work or a wait: a process death is then counted against
                # it only. An innocent execution counted once for dying beside a culprit
                # is a suspect next time and clears itself by replaying alone, so it never
                # reaches the limit; the others replay concurrently, their counts batched.
                self._replayed_here.add(eid)
                if actor.record.recoveries:
                    await self._replay_slot.acquire()
                    actor.replay_slot = self._replay_slot
                record = actor.record
                if record.recoveries >= self.max_recovery_attempts:
                    await self._dead_letter(actor)
                    self.actor_exited(actor)
                    return
                bumped = attrs.evolve(record, recoveries=record.recoveries + 1)
                try:
                    await self.committer.commit([PutExecution(bumped)])
                except DurablyError as exc:
                    self._replayed_here.discard(eid)  # not counted: count it on the retry
                    self.engine_failure(eid, exc)
                    self.actor_exited(actor)
                    return
                actor.record_ = bumped
            await actor.run()
        finally:
            actor.release_replay_slot()

    async def _dead_letter(self, actor: ExecutionActor) -> None:
        from .core._events import ExecutionFailed

        record = actor.record
        reason = (
            f"dead-lettered: recovery was attempted {record.recoveries} times without "
            "progress (the process died while replaying it, or its replay hung past "
            "max_replay_seconds); fix the workflow code, then retry the execution"
        )
        error = {"type": "durably.CrashLoop", "message": reason, "traceback": ""}
        actor.seq = len(self.store.read_events(actor.execution_id))
        await actor._finish(
            ExecutionFailed(at=self.clock.now_ms(), error=error),
            "failed",
            error=error,
            reason=reason,
        )

    def actor_exited(self, actor: ExecutionActor) -> None:
        eid = actor.execution_id
        actor.mark_exited()
        if self.live.get(eid) is actor:
            del self.live[eid]
        self.idle.pop(eid, None)
        if actor.parked and actor.woken:
            self.spawn(eid)  # woken as it parked: the wake must not be lost
        if actor.hung:
            self._replayed_here.discard(eid)  # the next attempt counts as a recovery
            cancel: tuple[str | None, str | None] | None = None
            if actor.cancel_reason is not None:  # a cancel that met the hang still holds
                cancel = (actor.cancel_reason, actor.cancel_by)
            self.spawn(eid, cancel=cancel)
        while self._runq and len(self.live) < self.max_live_executions and not self._closing:
            next_id = next(iter(self._runq))
            cancel = self._runq.pop(next_id)
            self._launch(next_id, cancel)

    def should_park(self) -> bool:
        return self._closing or bool(self._runq)

    def _on_timer(self, due_ms: int, owner: str, timer_id: str) -> None:
        # Called for each of thousands of timers due together: a Timer is built only for
        # a schedule's fire, which needs one.
        if owner.startswith("schedule:"):
            self._schedules.due(Timer(due_ms, owner, timer_id))
            return
        self.spawn(owner)

    def finished(self, execution_id: str, status: str) -> None:
        self._replayed_here.discard(execution_id)
        event = self._finished_events.pop(execution_id, None)
        if event is not None:
            event.set()
        for reply in self._channel.watchers.pop(execution_id, ()):
            self._channel.hint_soon({"op": "done", "eid": execution_id}, reply)

    async def operate(self, action: str, execution_id: str, **kwargs: Any) -> None:
        """Run an operator action (``retry``, ``cancel``, ``force_fail``, ``skip_step``,
        ``retry_rollback``) where it is safe: in this worker, or, from a client, in the
        store's worker (asked over the wake-up channel, answered when done).

        A client with no worker running acts on the store itself, holding the worker
        lock for the duration so that no worker starts meanwhile.
        """
        self._check_running()
        if action not in OPERATOR_ACTIONS:
            raise ConfigurationError(
                f"unknown operator action {action!r}; one of {', '.join(OPERATOR_ACTIONS)}"
            )
        await self._channel.in_worker(
            action,
            {"execution_id": execution_id, **kwargs},
            lambda: getattr(self.operator, action)(execution_id, **kwargs),
        )

    def engine_failure(self, execution_id: str, error: BaseException) -> None:
        """The store refused a write of this execution (e.g. a full disk): nothing of it
        was acknowledged; try the execution again (a replay) once the store accepts writes.
        """
        log.error("execution %s stopped, retried later: %s", execution_id, error)
        self._stalled.add(execution_id)
        if not self._retrying_stalled and not self._closing:
            self._retrying_stalled = True
            self._nursery.start_soon(self._retry_stalled)

    async def _retry_stalled(self) -> None:
        delay = self.store_retry_seconds
        try:
            while self._stalled and not self._closing:
                await trio.sleep(delay)
                stalled, self._stalled = self._stalled, set()
                for eid in stalled:
                    self.spawn(eid)
                delay = min(delay * 2, 60.0)
        finally:
            self._retrying_stalled = False

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_payload_bytes:
            raise PayloadError(
                f"{what} is {size} bytes encoded, over max_payload_bytes "
                f"({self.max_payload_bytes}); nothing was written. Keep large data outside "
                "the log (a file, an object store) and pass a reference to it."
            )

    async def quarantine(self, record: ExecutionRecord, error: CorruptRecordError) -> None:
        """A corrupt log: mark the execution failed (nothing replayed, nothing repaired)."""
        info = {"type": "durably.CorruptRecordError", "message": str(error), "traceback": ""}
        quarantined = attrs.evolve(
            record,
            status="failed",
            error=info,
            reason="quarantined: its log is corrupt; restore the store from a backup",
            updated_ms=self.clock.now_ms(),
            timer=None,
        )
        await self.committer.commit([PutExecution(quarantined)])
        self.finished(record.id, "failed")

    def published(self, execution_id: str, events: Sequence[Event]) -> None:
        for subscriber in self._subscribers:
            subscriber(execution_id, events)
        if self._bus is not None:
            actor = self.live.get(execution_id)
            first = None if actor is None else actor.seq - len(events)
            self._bus.publish(execution_id, events, first)

    def _check_running(self) -> None:
        if not self._running:
            raise DurablyError(
                "the engine is not running; use it inside `async with durably.Engine(...)`"
            )


def Client(
    store: Store | str | os.PathLike[str],
    *,
    workflows: Iterable[WorkflowDefinition[Any, Any]] = (),
    poll_interval: float = 1.0,
    clock: Clock | None = None,
) -> Engine:
    """An engine that executes nothing: it starts, signals, cancels, waits and reads.

    Use it in processes beside the one worker of a store (web servers, scripts). Its
    writes are durable at once; a hint over a local socket makes the worker act on them
    within milliseconds, and the worker's recovery finds them if it was not running.
    """
    return Engine(
        store, workflows=workflows, worker=False, poll_interval=poll_interval, clock=clock
    )


def _name_of(workflow: WorkflowDefinition[Any, Any] | str) -> str:
    return workflow if isinstance(workflow, str) else workflow.name


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"{what} must be a non-empty string without NUL")
