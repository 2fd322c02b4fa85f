"""The queue calls of every face: ``enqueue``, ``debounce`` and ``queue_stats`` (a half of
``Gateway``).

Rules of this module:

- An enqueue is one store op (``Enqueue``): the record, in status ``queued``, with its
  first event, and the queue's dedup check, in one transaction; the id it returns is
  durable. Admission is the worker's (``_queues.py``), told by the face's
  ``_enqueued`` hook (a client's batch carries an inbox entry for it).
- A debounce is one store op too (``Debounce``): the latest call's input replaces the
  queued execution's, and its due time moves; once admitted, the next call starts anew.
- What a face cannot check (a client does not know a queue no worker has declared yet)
  is accepted, and waits for a worker that declares the queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from durably.stores import ACTIVE_STATUSES, CreateExecution, ExecutionRecord

from ..core import _codec
from ..core._errors import ConfigurationError, DuplicateEnqueueError
from ..core._events import ExecutionStarted, encode
from ..core._history import due_after
from ..core._queue import STATS_WINDOW_MS, Queue, QueueStats, check_priority
from ..core._records import INBOX_START, Debounce, DebounceResult, Enqueue, EnqueueResult
from ..core._workflow import WorkflowDefinition
from ._exchange import _check_id
from ._ports import new_execution_id

if TYPE_CHECKING:
    from durably.stores import Op, Store

    from ._clock import Clock
    from ._commit import Committer
    from ._ports import Registry


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ConfigurationError(f"{what} must be a number of seconds >= 0 or a timedelta")
    return float(seconds)


class Enqueuing:
    """``enqueue``, ``debounce`` and ``queue_stats``; ``Gateway`` supplies the rest."""

    store: Store
    clock: Clock
    _registry: Registry
    _committer: Committer
    _notifies_worker: bool

    def _new_id(self) -> str:
        raise NotImplementedError  # the Gateway's

    if TYPE_CHECKING:

        def _check_running(self) -> None: ...

        def _check_size(self, size: int, what: str) -> None: ...

        def _noted(self, op: Op, execution_id: str, kind: str) -> list[Op]: ...

    # --- hooks the faces fill in ---

    def _declared_queue(self, name: str) -> Queue | None:
        """The queue's declaration, if this face knows it (an engine must)."""
        raise NotImplementedError

    def _enqueued(self, record: ExecutionRecord) -> None:
        raise NotImplementedError

    async def enqueue(
        self,
        queue: Queue | str,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any = None,
        *,
        priority: int = 0,
        dedup_id: str | None = None,
        partition: str | None = None,
        delay: float | timedelta | None = None,
    ) -> str:
        """Queue an execution of ``workflow`` on ``queue``; its id, once durable.

        It stays ``queued`` until the queue admits it (its limits allow, and ``delay``
        has passed). A ``dedup_id`` held by a queued or running execution of the queue
        raises ``DuplicateEnqueueError`` naming it, and queues nothing.
        """
        record, raw = self._queued_record(queue, workflow, input, priority, dedup_id, partition)
        wait = _seconds(delay, "delay")
        if wait:
            record = _with(record, not_before=due_after(record.created_ms, wait))
        ops = self._noted(Enqueue(CreateExecution(record, [raw])), record.id, INBOX_START)
        result: EnqueueResult = (await self._committer.commit(ops))[0]
        if result.duplicate_of is not None:
            assert record.queue is not None and record.dedup_id is not None
            raise DuplicateEnqueueError(record.queue, record.dedup_id, result.duplicate_of)
        self._enqueued(record)
        return result.execution_id

    async def debounce(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any = None,
        *,
        key: str,
        period: float | timedelta,
        queue: Queue | str | None = None,
        max_wait: float | timedelta | None = None,
    ) -> str:
        """Start ``workflow`` once calls with this ``key`` stop for ``period``, with the
        last call's input; the id of the execution the calls share.

        Each call within the period moves the start to ``period`` after it (but never
        past ``max_wait`` after the first call). A call after the execution was admitted
        starts the next one. With ``queue``, the start then waits for that queue too.
        """
        _check_id(key, "key")
        quiet = _seconds(period, "period")
        if not quiet:
            raise ConfigurationError("period must be a positive number of seconds")
        cap = _seconds(max_wait, "max_wait")
        record, raw = self._queued_record(queue, workflow, input, 0, None, None)
        record = _with(record, not_before=due_after(record.created_ms, quiet))
        op = Debounce(
            CreateExecution(record, [raw]),
            key,
            None if cap is None else due_after(0, cap),
            notify=self._notifies_worker,
        )
        result: DebounceResult = (await self._committer.commit([op]))[0]
        self._enqueued(result.record)
        return result.execution_id

    def _queued_record(
        self,
        queue: Queue | str | None,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        priority: int,
        dedup_id: str | None,
        partition: str | None,
    ) -> tuple[ExecutionRecord, bytes]:
        self._check_running()
        name = queue.name if isinstance(queue, Queue) else queue
        declared = None if name is None else self._declared_queue(name)
        record, raw = queued_record(
            self._registry,
            self.clock.now_ms(),
            QueueArgs(name, declared, priority, dedup_id, partition),
            workflow,
            input,
            eid=self._new_id(),
        )
        self._check_size(len(raw), f"the input of workflow {record.workflow!r}")
        return record, raw

    async def queue_stats(self, name: str) -> QueueStats:
        """How queue ``name`` stands: queued, running, admitted per second, oldest wait."""
        self._check_running()
        return self._queue_stats(name)

    def _queue_stats(self, name: str) -> QueueStats:
        return stats_from_store(self.store, name, self.clock.now_ms())


@attrs.frozen
class QueueArgs:
    """Where an enqueue puts its execution: the queue (and its declaration, if known),
    priority, dedup id and partition."""

    name: str | None
    declared: Queue | None
    priority: int = 0
    dedup_id: str | None = None
    partition: str | None = None


def queued_record(
    registry: Registry,
    now: int,
    args: QueueArgs,
    workflow: WorkflowDefinition[Any, Any] | str,
    input: Any,
    idempotency_key: str | None = None,
    eid: str | None = None,
) -> tuple[ExecutionRecord, bytes]:
    """The checked record (status ``queued``) and first event of an enqueued execution."""
    name = args.name
    if name is not None:
        _check_id(name, "queue")
        check_priority(args.priority)
        if args.priority and args.declared is not None and not args.declared.priority:
            raise ConfigurationError(
                f"queue {name!r} admits in arrival order; declare it with "
                "durably.Queue(..., priority=True) to order by priority"
            )
    for value, what in ((args.dedup_id, "dedup_id"), (args.partition, "partition")):
        if value is not None:
            _check_id(value, what)
    workflow_name, definition = registry.to_start(workflow)
    tp = Any if definition is None else definition.input_type
    shaped = _codec.check(input, tp, f"input of workflow {workflow_name!r}")
    record = ExecutionRecord(
        id=eid or new_execution_id(),
        workflow=workflow_name,
        status="queued",
        input=shaped,
        created_ms=now,
        updated_ms=now,
        idempotency_key=idempotency_key,
        queue=name,
        priority=args.priority,
        partition=args.partition,
        dedup_id=args.dedup_id,
    )
    return record, encode(ExecutionStarted(at=now, workflow=workflow_name, input=shaped))


def _with(record: ExecutionRecord, **changes: Any) -> ExecutionRecord:
    return attrs.evolve(record, **changes)


def stats_from_store(store: Store, name: str, now_ms: int) -> QueueStats:
    """A queue's stats read from the store (a client's view; the worker's is in memory)."""
    queued = delayed = running = 0
    oldest: int | None = None
    for status in ACTIVE_STATUSES:
        after: str | None = None
        while page := store.list_executions(status=status, after=after, limit=1000):
            after = page[-1].id
            for record in page:
                if record.queue != name:
                    continue
                if status != "queued":
                    running += 1
                    continue
                queued += 1
                ready = record.not_before or record.created_ms
                if ready > now_ms:
                    delayed += 1
                elif oldest is None or ready < oldest:
                    oldest = ready
    recent = sum(1 for at, _ in store.admissions(name) if at > now_ms - STATS_WINDOW_MS)
    return QueueStats(
        name=name,
        queued=queued,
        delayed=delayed,
        running=running,
        admitted_per_second=recent / (STATS_WINDOW_MS / 1000),
        oldest_wait_s=None if oldest is None else (now_ms - oldest) / 1000,
    )
