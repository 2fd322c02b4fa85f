"""The narrow ports the runtime's parts talk through.

Rules of this module:

- A part receives what it uses, named here, and never a pointer to the engine: the
  execution actor sees an ``ActorHost`` (the supervisor), ``Context`` sees an
  ``ExecutionPort`` (its actor), the operator an ``OperatorHost``, the schedule runner a
  ``ScheduleHost`` (a record of three callables). Each is a ``typing.Protocol`` or a
  record, so the import graph stays one-way: this
  module imports no other part of the runtime at run time.
- ``Parts`` is the bundle every actor shares (the store, the commit actor, the scheduler,
  the clock, the settings and the registered workflows): data, not behaviour.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from durably.stores import ExecutionRecord, MailboxEntry, Op, Store, Timer

from ..core._errors import ConfigurationError, CorruptRecordError, UnknownWorkflowError
from ..core._events import Event
from ..core._history import HistoryFacts
from ..core._queue import Queue
from ..core._replay import Replayer
from ..core._shards import shard_of
from ..core._workflow import WorkflowDefinition

if TYPE_CHECKING:
    import trio

    from ._clock import Clock
    from ._commit import Committer
    from ._latch import Wake
    from ._ownership import Ownership
    from ._scheduler import Scheduler


_last_id = [0, 0]


def new_execution_id(within: frozenset[int] | None = None) -> str:
    """A 32-hex-digit id that sorts by creation time (ms), then 80 random bits.

    Within a process the ids also sort in the order they were made (the random part
    counts up within one millisecond, or if the wall clock steps back): a queue's
    arrival order survives a restart, which rebuilds it from ids. ``within``: an id of
    one of those shards (a worker of many starts executions in shards it holds; the
    random part counts on until one lands there, so the order still holds).
    """
    ms = int(time.time() * 1000)
    last = _last_id
    if ms <= last[0]:
        ms, tail = last[0], last[1] + 1
    else:
        tail = secrets.randbits(79)  # room to count up without carrying into the time
    eid = f"{ms:012x}{tail:020x}"
    if within:
        while shard_of(eid) not in within:
            tail += 1
            eid = f"{ms:012x}{tail:020x}"
    last[0], last[1] = ms, tail
    return eid


@attrs.frozen
class Settings:
    """The engine options the runtime reads (validated once, by ``Settings.check``)."""

    max_live_executions: int = 10_000
    implicit_step_ids: Literal["allow", "warn", "error"] = "allow"
    max_recovery_attempts: int = 5
    max_payload_bytes: int = 16 * 1024 * 1024
    max_replay_seconds: float | None = 60.0
    store_retry_seconds: float = 1.0

    def check(self) -> Settings:
        if self.max_live_executions < 1:
            raise ConfigurationError("max_live_executions must be at least 1")
        if self.implicit_step_ids not in ("allow", "warn", "error"):
            raise ConfigurationError("implicit_step_ids must be 'allow', 'warn' or 'error'")
        if self.max_payload_bytes < 1:
            raise ConfigurationError("max_payload_bytes must be at least 1")
        if self.max_replay_seconds is not None and not self.max_replay_seconds > 0:
            raise ConfigurationError("max_replay_seconds must be positive (or None)")
        if not self.store_retry_seconds > 0:
            raise ConfigurationError("store_retry_seconds must be positive")
        return self


class Registry:
    """The workflows one engine (or client) knows, by name.

    ``face`` says whose they are: an engine (a worker) runs only what it knows, so it
    refuses other names; a client may start a name it does not know, since the worker
    that runs the execution checks it then.
    """

    def __init__(self, face: Literal["engine", "client"] = "engine") -> None:
        self.definitions: dict[str, WorkflowDefinition[Any, Any]] = {}
        self.face = face

    def register(self, definition: WorkflowDefinition[Any, Any]) -> None:
        if not isinstance(definition, WorkflowDefinition):
            raise ConfigurationError(
                f"{definition!r} is not a workflow definition; decorate it with "
                "@durably.workflow(name)"
            )
        existing = self.definitions.get(definition.name)
        if existing is not None and existing is not definition:
            raise ConfigurationError(f"two workflows are registered as {definition.name!r}")
        self.definitions[definition.name] = definition

    def get(self, name: str) -> WorkflowDefinition[Any, Any] | None:
        return self.definitions.get(name)

    def resolve(self, workflow: WorkflowDefinition[Any, Any] | str) -> WorkflowDefinition[Any, Any]:
        name = workflow if isinstance(workflow, str) else workflow.name
        definition = self.definitions.get(name)
        if definition is None:
            raise UnknownWorkflowError(name, list(self.definitions), face=self.face)
        return definition

    def to_start(
        self, workflow: WorkflowDefinition[Any, Any] | str
    ) -> tuple[str, WorkflowDefinition[Any, Any] | None]:
        """The name to start and the definition to check the input with: ``None`` for a
        name a client does not know (its input is stored as given; the worker checks it)."""
        if self.face == "engine":
            definition = self.resolve(workflow)
            return definition.name, definition
        if isinstance(workflow, WorkflowDefinition):
            return workflow.name, self.definitions.get(workflow.name, workflow)
        if not isinstance(workflow, str) or not workflow or "\x00" in workflow:
            raise ConfigurationError(
                f"a workflow to start is a definition or its name (a non-empty string "
                f"without NUL), not {workflow!r}"
            )
        return workflow, self.definitions.get(workflow)


class StepSpan(Protocol):
    """One step body's span: ended once, by ``end`` or ``failed``."""

    def end(self) -> None: ...

    def failed(self, exc: BaseException) -> None: ...


class Telemetry(Protocol):
    """The telemetry hook (``durably.telemetry``), ``None`` on ``Parts`` unless it is on:
    the hot path pays one ``is None`` check per step for it."""

    def run(self, actor: Any) -> AbstractContextManager[None]: ...

    def loaded(self, actor: Any, events: int) -> None: ...

    def step(self, actor: Any, step_id: str, attempt: int) -> StepSpan: ...


@attrs.define
class Parts:
    """What every actor of one engine shares."""

    store: Store
    committer: Committer
    scheduler: Scheduler
    clock: Clock
    settings: Settings
    registry: Registry
    telemetry: Telemetry | None = None
    #: A worker of many's leases (``_ownership.py``); ``None`` for the one worker.
    ownership: Ownership | None = None


def first_signal(store: Store, execution_id: str, name: str) -> MailboxEntry | None:
    """The oldest buffered signal ``name`` of the execution (commit order), if any."""
    for entry in store.mailbox(execution_id):
        if entry.signal == name:
            return entry
    return None


class QueuePort(Protocol):
    """What a workflow's ``ctx.enqueue`` needs of the queue manager."""

    def queue(self, name: str) -> Queue: ...

    def offer(self, record: ExecutionRecord) -> None: ...


class ActorHost(Protocol):
    """What an execution actor needs of its supervisor."""

    @property
    def queues(self) -> QueuePort: ...

    parts: Parts
    idle: dict[str, Any]

    def should_park(self) -> bool: ...

    def actor_exited(self, actor: Any) -> None: ...

    def store_failed(self, execution_id: str, error: BaseException) -> None: ...

    def finished(self, execution_id: str, status: str) -> None: ...

    def published(self, execution_id: str, events: Sequence[Event], first_seq: int) -> None: ...

    async def quarantine(self, record: ExecutionRecord, error: CorruptRecordError) -> None: ...

    def spawn(
        self,
        execution_id: str,
        *,
        cancel: tuple[str | None, str | None] | None = None,
        fresh: tuple[ExecutionRecord, list[Event]] | None = None,
    ) -> None: ...

    def signalled(self, execution_id: str, waiting: bool) -> None: ...


class LogWriter(Protocol):
    """Who writes an execution's log while a gather runs (``_batch.GatherWriter``)."""

    async def append(
        self, event: Event, raw: bytes, step_id: str | None, ops: list[Op], changes: Any
    ) -> None: ...

    def close(self) -> None: ...

    async def run(self) -> None: ...


class ExecutionPort(Protocol):
    """What ``Context`` needs of the execution actor it belongs to."""

    execution_id: str
    replayer: Replayer
    facts: HistoryFacts
    definition: WorkflowDefinition[Any, Any]
    deferred: bool
    #: Until the run reaches new work (then ``caught_up`` lifts the replay's bounds).
    catching_up: bool
    rollback_round: int
    #: While a gather runs: mailbox entries its members took, not yet written.
    claimed: set[int] | None
    #: While a gather runs: set (and replaced) on every wake, for its members' waits.
    broadcast: trio.Event | None
    wake: Wake

    @property
    def record(self) -> ExecutionRecord: ...

    @property
    def parts(self) -> Parts: ...

    @property
    def queues(self) -> QueuePort: ...

    async def settle(self) -> None: ...

    def caught_up(self) -> None: ...

    async def append(
        self,
        event: Event,
        step_id: str | None,
        ops: list[Op] | None = None,
        **changes: Any,
    ) -> None: ...

    def stage(self, event: Event, step_id: str, ops: list[Op], **changes: Any) -> None: ...

    def stage_record(self, *, ops: list[Op], **changes: Any) -> None: ...

    def record_later(self, event: Event, step_id: str) -> None: ...

    async def put_record(self, ops: list[Op], **changes: Any) -> None: ...

    async def wait_wake(self, timer: Timer | None) -> None: ...

    def wait_begin(self, timer: Timer | None) -> bool: ...

    def unidle(self) -> None: ...

    def woke(self) -> None: ...

    def timer_fired(self, timer: Timer, at: int) -> None: ...

    def begin_gather(self) -> LogWriter: ...

    def end_gather(self) -> None: ...

    def child_started(self, record: ExecutionRecord, first: Event, detached: bool) -> None: ...

    def child_started_before(self, child_id: str) -> None: ...

    def child_ended(self, child_id: str) -> None: ...


class LiveActor(Protocol):
    """What the operator needs of a live execution actor: interrupt it, await its end."""

    scope: Any

    async def wait_exited(self) -> None: ...


class OperatorHost(Protocol):
    """What the operator needs of a running engine's supervisor."""

    parts: Parts
    held: dict[str, list[tuple[str | None, str | None] | None]]

    def check_running(self) -> None: ...

    def live_actor(self, execution_id: str) -> LiveActor | None: ...

    def spawn(
        self, execution_id: str, *, cancel: tuple[str | None, str | None] | None = None
    ) -> None: ...

    def finished(self, execution_id: str, status: str) -> None: ...

    def published(self, execution_id: str, events: Sequence[Event], first_seq: int) -> None: ...


class StartRun(Protocol):
    """Start one run of a workflow for a schedule (the face's private start)."""

    async def __call__(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        idempotency_key: str | None,
        schedule_id: str | None,
        scheduled_at: int | None = None,
    ) -> str: ...


@attrs.frozen
class ScheduleHost:
    """What the schedule runner needs of its face: the parts, a way to start a run, and
    whether the face is stopping. A record, so the face lends these three and no more."""

    parts: Parts
    start: StartRun
    closing: Callable[[], bool]
