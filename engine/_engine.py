"""``durably.Engine``: the public face of a worker, and the lifecycle of its actors.

The engine owns one trio nursery. In it run the commit actor, the scheduler actor, the
schedule runner, the supervisor (which hosts every execution actor) and the wake-up
channel's listener; nothing outlives ``async with Engine(...)``. Leaving it parks every
execution (their state is in the log), then lets the commit actor write whatever was
handed to it: nothing acknowledged is lost, nothing half-done is recorded.

The calls themselves (start, signal, cancel, wait, schedules) are the ``Gateway``'s,
shared with ``durably.Client``; this module fills in how a worker acts on them: it tells
its own supervisor.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from durably.stores import ExecutionRecord, Notify, Op, Store

from .core._audit import AuditEntry, audit_trail
from .core._errors import ConfigurationError, DurablyError, OperatorError
from .core._events import Event, decode_all
from .core._flow import FlowShape
from .core._queue import Queue, QueueStats
from .core._records import OPERATOR_ACTIONS, SCHEDULE_CALLS
from .core._workflow import WorkflowDefinition
from .remote._listener import Listener
from .remote._wire import worker_socket_path
from .runtime import _gc
from .runtime._bus import Bus, Subscription
from .runtime._clock import Clock
from .runtime._commit import CommitStatistics, Committer
from .runtime._describe import describe
from .runtime._gateway import Gateway
from .runtime._host import exit_nursery, require_trio
from .runtime._operator import Operator
from .runtime._ownership import Ownership
from .runtime._paths import open_store, shared, store_path
from .runtime._ports import Parts, ScheduleHost, Settings, new_execution_id
from .runtime._scheduler import Scheduler
from .runtime._schedules import ScheduleManager
from .runtime._supervisor import RecoveryReport, Supervisor

if TYPE_CHECKING:
    from .telemetry import Telemetry

__all__ = ["Engine", "EngineStatistics", "RecoveryReport"]


@attrs.frozen
class EngineStatistics:
    """A snapshot of a running engine (``engine.statistics()``)."""

    live: int
    """Executions with an actor in memory now."""
    peak_live: int
    """The most live at once so far: at most ``max_live_executions``."""
    queued: int
    """Executions waiting for a live slot."""
    timers_fired: int
    """Timers the scheduler has fired since start."""
    commit: CommitStatistics
    """The commit actor's batches and ops."""


class Engine(Gateway):
    """A durable workflow engine over ``store`` (a ``Store``, or a path for ``LmdbStore``:
    the store's directory is created if it is missing, but not its parent, so a typo in
    the path is a ``StorePathError``).

    Use as ``async with durably.Engine(path, workflows=[...]) as engine:``.

    Options: ``max_live_executions`` bounds the actors held in memory (waiting executions
    beyond it are parked and replayed on wake); ``implicit_step_ids`` (``"allow"``,
    ``"warn"`` or ``"error"``) governs sleeps, signal waits and emits without ``step_id=``;
    ``clock`` lets tests share one virtual clock across engine restarts;
    ``max_recovery_attempts`` dead-letters an execution whose runs keep failing to make
    progress (the process dies while it replays or runs a step body, or replay hangs past
    ``max_replay_seconds`` of trio time without reaching new work; ``None`` disables the
    bound); ``commit_inline``
    (``"auto"``, ``"always"``, ``"never"``) says when a batch is written on the event loop
    rather than in a worker thread; ``poll_interval`` is how often (in real seconds)
    the worker looks at the store's inbox for clients' writes, whatever hints it got, so
    a write whose hint was lost waits at most that long; ``max_payload_bytes``
    bounds one encoded value (input, step result, signal payload, outcome): a bigger one
    raises ``PayloadError`` at the call that produced it and nothing is written;
    ``store_retry_seconds`` is the first pause before executions stopped by a failing
    store (a full disk) are tried again (doubling up to a minute); ``freeze_gc_in_bursts``
    lets the scheduler ``gc.freeze()`` while a burst of 1,000 or more due timers fires,
    so the cyclic collector does not walk the woken executions mid-burst (off: the
    collector is never touched; it is also left alone if the host froze objects itself);
    ``gc_threshold`` raises the cyclic collector's first threshold to at least that while
    the engine runs (``None``: leave it as the host set it; see ``runtime/_gc.py``);
    ``queues`` declares the durable queues this worker admits for (``durably.Queue``:
    ``enqueue`` on another name raises ``UnknownQueueError``); ``telemetry`` turns on
    OpenTelemetry spans and metrics (``durably[otel]``): ``True`` records through the
    host's global providers, a ``durably.telemetry.Telemetry`` through its own; off by
    default, when the hot path pays one ``None`` check per step for it.

    ``many_workers`` lets any number of worker processes serve this store (every core
    of a host on one LMDB store, or many hosts on PostgreSQL): each holds leases on
    shards of the executions, renewed every ``lease_seconds / 3``, and the others take
    a dead worker's shards over after ``lease_seconds``; every worker of the store must
    turn it on (see docs/deployment.md). Off: this is the store's one worker.
    """

    # Its own starts run at once: their record says so from the start, no commit for it.
    _start_status = "running"

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
        poll_interval: float = 1.0,
        max_payload_bytes: int = 16 * 1024 * 1024,
        max_replay_seconds: float | None = 60.0,
        store_retry_seconds: float = 1.0,
        freeze_gc_in_bursts: bool = True,
        gc_threshold: int | None = 20_000,
        queues: Iterable[Queue] = (),
        telemetry: bool | Telemetry = False,
        many_workers: bool = False,
        lease_seconds: float = 5.0,
    ) -> None:
        self._telemetry = _telemetry(telemetry)
        self._freeze_gc = freeze_gc_in_bursts
        if gc_threshold is not None and (
            not isinstance(gc_threshold, int) or isinstance(gc_threshold, bool) or gc_threshold < 1
        ):
            raise ConfigurationError(
                f"gc_threshold must be a positive int or None, not {gc_threshold!r}"
            )
        self._gc_threshold = gc_threshold
        self._queues = _check_queues(queues)
        self._lease_seconds = _check_many(many_workers, lease_seconds, self._queues)
        self._ownership: Ownership | None = None
        settings = Settings(
            max_live_executions=max_live_executions,
            implicit_step_ids=implicit_step_ids,
            max_recovery_attempts=max_recovery_attempts,
            max_payload_bytes=max_payload_bytes,
            max_replay_seconds=max_replay_seconds,
            store_retry_seconds=store_retry_seconds,
        )
        if not isinstance(store, Store):
            store = store_path(store, "Engine")
        super().__init__(store, workflows=workflows, clock=clock, settings=settings)
        self._commit_inline = commit_inline
        self._poll_interval = poll_interval
        self._supervisor: Supervisor | None = None
        self._listener: Listener | None = None
        self._bus: Bus | None = None
        self._operator: Operator | None = None
        self._scheduler: Scheduler | None = None
        self.last_recovery: RecoveryReport | None = None
        """What the recovery at start found (``None`` before start)."""

    # --- lifecycle ---

    async def __aenter__(self) -> Engine:
        require_trio("Engine")
        if self._running:
            raise DurablyError("this engine is already running; create one engine per run")
        if self._owns_store:  # a path: checked, then created (its parent must exist)
            lock = "shared" if self._lease_seconds else True
            self.store = open_store(self._store_arg, face="Engine", lock=lock, create=True)  # type: ignore[arg-type]
        self.clock.bind()
        own = None
        if self._lease_seconds:
            own = self._ownership = Ownership(self.store, self.clock.now_ms, self._lease_seconds)
            # Its starts and signals carry inbox entries, as a client's do: a shard may
            # change hands before the write lands, and the entry reaches the owner then.
            self._notifies_worker = True
        self._committer = Committer(self.store, inline=self._commit_inline)
        supervisor: Supervisor
        scheduler = Scheduler(
            self.store,
            self.clock,
            lambda *a: supervisor.on_timer(*a),
            freeze_gc=self._freeze_gc,
        )
        self._parts = Parts(
            self.store,
            self._committer,
            scheduler,
            self.clock,
            self._settings,
            self._registry,
            self._telemetry,
            own,
        )
        self._schedules = ScheduleManager(
            ScheduleHost(self._parts, self._start, lambda: self._closing)
        )
        supervisor = Supervisor(self._parts, self._schedules.due, self._queues)
        scheduler.on_timer = supervisor.on_timer
        supervisor.bus = self._bus
        self._supervisor, self._scheduler = supervisor, scheduler
        if own is not None:
            self._committer.fence = own.fence
            scheduler.accepts = own.owns
            supervisor.ownership = own
        if shared(self.store) or own is not None:  # others write it: drain the inbox they fill
            self._listener = self._listen(supervisor, own)
        if self._gc_threshold is not None:
            _gc.hold(self._gc_threshold)
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        self._running = True
        try:
            await nursery.start(self._committer.run)
            if own is not None:
                own.first_beat()  # the first shards, before anything reads what it owns
            await nursery.start(scheduler.run)
            await nursery.start(self._schedules.run)
            await nursery.start(supervisor.run)
            await nursery.start(supervisor.queues.run)
            if self._listener is not None:
                await nursery.start(self._listener.run)
            self.last_recovery = await self.recover()
            if own is not None:
                own.on_lost, own.on_gained = supervisor.shards_lost, self._gained
                nursery.start_soon(own.run, self._committer.commit)
            if self._telemetry is not None:
                self._telemetry.watch(self, self._parts)
        except BaseException as exc:
            await self._shutdown(nursery)
            try:  # the start's own error, unwrapped (a damaged store says so plainly)
                await exit_nursery(self._nursery_cm, type(exc), exc, exc.__traceback__)
            finally:
                self._release_gc()
                if self._owns_store:
                    self.store.close()
            raise
        self._nursery = nursery
        return self

    def _listen(self, supervisor: Supervisor, own: Ownership | None) -> Listener:
        """The worker's end of the wake-up channel (its socket beside the store's)."""
        store_path = getattr(self.store, "path", None)
        sock = None if store_path is None else worker_socket_path(store_path, own is not None)
        listener = Listener(supervisor, self._answer, sock, self._poll_interval)
        supervisor.on_finished = listener.finished
        if own is not None:
            listener.ownership = own
            listener.on_schedule = self._schedules.changed
        return listener

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._shutdown(self._nursery)
        try:
            return await exit_nursery(self._nursery_cm, exc_type, exc, tb)
        finally:
            self._release_gc()
            if self._owns_store:
                self.store.close()

    def _release_gc(self) -> None:
        if self._gc_threshold is not None:
            _gc.release()

    async def drain(self, grace: float = 30.0) -> bool:
        """Stop taking new work, then wait up to ``grace`` seconds for running step bodies.

        From this call on the engine runs nothing new: no start (its own, a client's, a
        schedule's fire, a child's) is launched, no parked execution is resumed by its
        timer or a signal, no queue admits, and the inbox is not taken; all of it stays
        durable in the store for the next start. Executions waiting in memory park at
        once, running ones at their next wait or their next commit (a running
        ``ctx.gather`` once it has ended), so a step body running now finishes and is
        recorded, and its execution does not go on to the next. Returns ``True`` as
        soon as no step body runs, ``False`` if bodies still run when the grace runs
        out. Leave ``async with`` next: that parks the rest (a step body still running
        is cancelled and runs again at the next start) and writes every op handed to
        the commit actor. ``durably worker`` calls this on ``SIGTERM`` or ``SIGINT``.
        """
        self._check_running()
        if not grace >= 0:
            raise ConfigurationError(f"drain(grace=) takes seconds, at least 0; not {grace!r}")
        assert self._supervisor is not None
        self._supervisor.drain()
        with trio.move_on_after(grace):
            await self._supervisor.bodies_done()
        return not self._supervisor.bodies_running()

    async def _shutdown(self, nursery: trio.Nursery) -> None:
        with trio.CancelScope(shield=True):
            if self._telemetry is not None:
                self._telemetry.unwatch(self._parts)
            if self._supervisor is not None:
                await self._supervisor.stop()
            if self._ownership is not None:  # after the actors: the others take over now
                await self._ownership.leave(self._committer.commit)
            self._committer.close()
            if self._bus is not None:
                self._bus.close()  # subscriptions end instead of waiting forever
            nursery.cancel_scope.cancel()
        self._running = False

    @property
    def _closing(self) -> bool:
        return self._supervisor is None or self._supervisor.closing

    # --- the Gateway's hooks: a worker tells its own supervisor ---

    def _new_id(self) -> str:
        own = self._ownership
        return new_execution_id(None if own is None else own.shards)

    def _noted(self, op: Op, execution_id: str, kind: str) -> list[Op]:
        own = self._ownership
        if own is None:
            return [op]
        # An inbox entry unless this worker still holds the shard when the write lands:
        # then it acts itself, at once (``_started``, ``_signalled``).
        return [op, Notify(execution_id, kind, own.token(execution_id))]

    def _foreign(self, execution_id: str) -> bool:
        """Whether another worker of many owns it (then it was told through the inbox;
        the hint makes it look now)."""
        own = self._ownership
        if own is None or own.owns(execution_id):
            return False
        if self._listener is not None:
            self._listener.hint_siblings()
        return True

    def _gained(self, shards: frozenset[int]) -> None:
        assert self._supervisor is not None
        self._supervisor.shards_gained(shards)
        self._schedules.arm_from_records()
        if self._listener is not None:
            self._listener.kick()

    def _started(self, record: ExecutionRecord, first: Event) -> None:
        assert self._supervisor is not None
        if self._foreign(record.id):
            return
        if self._bus is not None:
            self._bus.publish(record.id, [first], 0)
        self._supervisor.started(record, first)

    def _signalled(self, execution_id: str, name: str, waiting: bool) -> None:
        assert self._supervisor is not None
        if not self._foreign(execution_id):
            self._supervisor.signalled(execution_id, waiting)

    def _declared_queue(self, name: str) -> Queue:
        assert self._supervisor is not None
        return self._supervisor.queues.queue(name)

    def _enqueued(self, record: ExecutionRecord) -> None:
        assert self._supervisor is not None
        if record.status == "queued":
            self._supervisor.queues.offer(record)

    def _queue_stats(self, name: str) -> QueueStats:
        assert self._supervisor is not None
        return self._supervisor.queues.stats(name)

    def _cancel_requested(
        self, execution_id: str, reason: str | None, by: str | None, *, durable: bool
    ) -> None:
        # The live actor is told at once, before the request is durable: the cancellation
        # lands at its next checkpoint and is recorded (with the request taken) by the
        # actor itself, after the request's commit (the commit actor keeps order).
        if not durable and not self._foreign(execution_id):
            assert self._supervisor is not None
            self._supervisor.spawn(execution_id, cancel=(reason, by))

    async def _wait_finished(self, execution_id: str) -> None:
        assert self._supervisor is not None
        if self._ownership is None or self._ownership.owns(execution_id):
            await self._supervisor.wait_finished(execution_id)
        else:  # another worker's end is read from the store (its owner may change too)
            with trio.move_on_after(self._poll_interval):
                await self._supervisor.wait_finished(execution_id)

    async def _in_worker(
        self, method: str, wire: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        return await local()

    async def _wait_published(self, execution_id: str) -> None:
        # Subscribed before the first await: an append after the caller's read is seen.
        assert self._supervisor is not None
        changed = trio.Event()

        def seen(eid: str, events: Sequence[Event]) -> None:
            if eid == execution_id:
                changed.set()

        subscribers = self._supervisor.subscribers
        subscribers.append(seen)
        try:
            await changed.wait()
        finally:
            subscribers.remove(seen)

    # --- recovery and statistics ---

    async def recover(self) -> RecoveryReport:
        """Resume every unfinished execution: run the running, arm the waiting.

        Runs on engine start; safe to call again (live executions are left alone).
        """
        self._check_running()
        assert self._supervisor is not None
        return self._supervisor.recover()

    @property
    def peak_live(self) -> int:
        """The most executions live at once so far: at most ``max_live_executions``."""
        return 0 if self._supervisor is None else self._supervisor.peak_live

    def statistics(self) -> EngineStatistics:
        """Live and queued executions, timers fired, the commit actor's figures."""
        self._check_running()
        assert self._supervisor is not None and self._scheduler is not None
        return EngineStatistics(
            live=len(self._supervisor.live),
            peak_live=self._supervisor.peak_live,
            queued=len(self._supervisor.runq),
            timers_fired=self._scheduler.fired,
            commit=self._committer.statistics(),
        )

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
            if self._supervisor is not None:
                self._supervisor.bus = self._bus
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
        return await describe(definition or self._registry.resolve(workflow), input)

    @property
    def operator(self) -> Operator:
        """Inspect and repair executions; actions on live ones go through this engine."""
        if self._supervisor is None:
            raise OperatorError(
                "the engine has not opened its store yet; use engine.operator inside "
                "`async with engine:`"
            )
        if self._operator is None:
            self._operator = Operator(self._supervisor)
        return self._operator

    async def operate(self, action: str, execution_id: str, **kwargs: Any) -> None:
        """Run an operator action (``retry``, ``cancel``, ``force_fail``, ``skip_step``,
        ``retry_rollback``) in this worker."""
        self._check_running()
        if action not in OPERATOR_ACTIONS:
            raise ConfigurationError(
                f"unknown operator action {action!r}; one of {', '.join(OPERATOR_ACTIONS)}"
            )
        await getattr(self.operator, action)(execution_id, **kwargs)

    async def _answer(self, method: str, args: dict[str, Any]) -> Any:
        """Run a call a client asked this worker to run (see ``Gateway._in_worker``);
        ``args`` passed ``core/_calls.py``'s checks against the call's signature."""
        if method in OPERATOR_ACTIONS:
            eid = args.pop("execution_id")
            await getattr(self.operator, method)(eid, **args)
            return None
        if method in SCHEDULE_CALLS:
            return await getattr(self, method)(**args)
        raise ConfigurationError(f"unknown call {method!r}")


def _telemetry(option: bool | Telemetry) -> Telemetry | None:
    """The engine's telemetry hook: ``None`` when off (nothing of OpenTelemetry imported)."""
    if option is False:
        return None
    from .telemetry import Telemetry

    if option is True:
        return Telemetry.shared()
    if not isinstance(option, Telemetry):
        raise ConfigurationError(
            f"telemetry takes True, False or a durably.telemetry.Telemetry, not {option!r}"
        )
    return option


def _check_many(many_workers: bool, lease_seconds: float, queues: Sequence[Queue]) -> float:
    """The lease period of a worker of many (0.0 for the one worker of a store)."""
    if not isinstance(many_workers, bool):
        raise ConfigurationError(f"many_workers takes True or False, not {many_workers!r}")
    if not many_workers:
        return 0.0
    if isinstance(lease_seconds, bool) or not (
        isinstance(lease_seconds, (int, float)) and 0.1 <= lease_seconds <= 3600
    ):
        raise ConfigurationError(
            f"lease_seconds takes seconds between 0.1 and 3600, not {lease_seconds!r}"
        )
    limited = [
        q.name
        for q in queues
        if (q.concurrency, q.rate_limit, q.partition_concurrency) != (None,) * 3
    ]
    if limited:
        raise ConfigurationError(
            f"queues {limited} have limits, which one worker keeps: a worker of many "
            "(many_workers=True) admits only from queues without concurrency or rate "
            "limits. Serve limited queues from a store with one worker (docs/deployment.md)"
        )
    return float(lease_seconds)


def _check_queues(queues: Iterable[Queue]) -> tuple[Queue, ...]:
    declared = tuple(queues)
    names = [queue.name for queue in declared]
    for queue in declared:
        if not isinstance(queue, Queue):
            raise ConfigurationError(f"queues takes durably.Queue declarations, not {queue!r}")
        if queue.name.startswith("durably."):
            raise ConfigurationError(
                f"queue name {queue.name!r}: names starting 'durably.' are reserved"
            )
        if names.count(queue.name) > 1:
            raise ConfigurationError(f"queue {queue.name!r} is declared twice")
    return declared
