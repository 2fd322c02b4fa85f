"""Child workflows: ``ctx.start_child``, ``ctx.child`` and ``ChildHandle.result``.

Rules of this module:

- Starting is durable and happens once: the child's record and first event are created in
  the same transaction as the parent's ``ChildStarted``, so a crash either did both or
  neither, and a replay finds the recorded child instead of starting another.
- A child tells its parent it ended through the parent's durable mailbox, in the
  transaction that records the child's end (``child_signal``): the parent's wait is a
  signal wait underneath, so parking, waking and recovery are the signal machinery's.
- The parent records what it took (``ChildEnded``) with its next durable call, with the
  mailbox entry's removal: never lost, never taken twice.
- Parent-close policy: when a parent ends (completed, failed or cancelled), its children
  still running are cancelled, in the parent's final transaction, unless started with
  ``detached=True``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

import attrs

from durably.stores import CreateExecution, ExecutionRecord, TakeSignal

from ..core import _codec
from ..core._errors import (
    ChildFailedError,
    DuplicateEnqueueError,
    DurablyError,
    ExecutionCancelledError,
    PayloadError,
)
from ..core._events import (
    ChildEnded,
    ChildStarted,
    ChildWaiting,
    Enqueued,
    ExecutionStarted,
    encode,
)
from ..core._history import due_after
from ..core._queue import Queue
from ..core._records import Enqueue, child_signal
from ..core._shards import shard_of
from ..core._status import Wait
from ..core._workflow import WorkflowDefinition
from ._enqueue import QueueArgs, queued_record
from ._ports import first_signal, new_execution_id
from ._primitive import ContextBase, _EngineFailure
from ._tracecontext import traceparent

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen(eq=False)
class ChildHandle(Generic[O]):
    """A started child workflow: its id, and ``result()`` to wait for it (durably)."""

    execution_id: str
    step_id: str
    _definition: WorkflowDefinition[Any, O]
    _ctx: Children

    async def result(self) -> O:
        """The child's result, once it ends; waiting parks the parent like a signal wait.

        Raises ``ChildFailedError`` if the child failed, ``ExecutionCancelledError`` if
        it was cancelled. Recorded: a replay answers at once.
        """
        ctx = self._ctx
        ctx._enter()
        try:
            outcome: O = await ctx._child_outcome(self)
            return outcome
        finally:
            ctx._leave()


class Children(ContextBase):
    """The child-workflow half of ``Context``."""

    @overload
    async def start_child(
        self,
        workflow: WorkflowDefinition[I, O],
        input: I,
        *,
        step_id: str | None = None,
        detached: bool = False,
    ) -> ChildHandle[O]: ...

    @overload
    async def start_child(
        self, workflow: str, input: Any, *, step_id: str | None = None, detached: bool = False
    ) -> ChildHandle[Any]: ...

    async def start_child(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        step_id: str | None = None,
        detached: bool = False,
    ) -> ChildHandle[Any]:
        """Start ``workflow`` as a child execution, once; its handle.

        ``detached=True`` lets the child outlive its parent (by default a parent that
        ends cancels its children still running).
        """
        sid = self._step_id(step_id, "child", True)
        self._enter()
        try:
            actor = self._actor
            definition = actor.parts.registry.resolve(workflow)
            recorded = actor.replayer.issue(sid, "child")
            if recorded is not None:
                started = recorded[0]
                assert isinstance(started, ChildStarted)
                if not started.detached and not any(type(e) is ChildEnded for e in recorded):
                    actor.child_started_before(started.child_id)
                return ChildHandle(started.child_id, sid, definition, self)
            where = f"input of child {sid!r} of execution {actor.execution_id}"
            shaped = _codec.check(input, definition.input_type, where)
            # A child lives in its parent's shard: the same worker owns both, so a
            # child's end wakes its parent without crossing to another worker.
            own = actor.parts.ownership
            child_id = new_execution_id(
                None if own is None else frozenset((shard_of(actor.execution_id),))
            )
            now = actor.parts.clock.now_ms()
            record = ExecutionRecord(
                id=child_id,
                workflow=definition.name,
                status="pending",
                input=shaped,
                created_ms=now,
                updated_ms=now,
                parent_id=actor.execution_id,
                trace=traceparent(),  # the parent's run span, if telemetry is on
            )
            first = ExecutionStarted(at=now, workflow=definition.name, input=shaped)
            raw = encode(first)
            limit = actor.parts.settings.max_payload_bytes
            if len(raw) > limit:
                raise PayloadError(
                    f"{where} is {len(raw)} bytes encoded, over max_payload_bytes ({limit}); "
                    "keep large data outside the log and pass a reference"
                )
            event = ChildStarted(
                at=now, step_id=sid, child_id=child_id, workflow=definition.name, detached=detached
            )
            await actor.append(event, sid, [CreateExecution(record, [raw])])
            actor.child_started(record, first, detached)
            return ChildHandle(child_id, sid, definition, self)
        finally:
            self._leave()

    @overload
    async def child(
        self,
        workflow: WorkflowDefinition[I, O],
        input: I,
        *,
        step_id: str | None = None,
        detached: bool = False,
    ) -> O: ...

    @overload
    async def child(
        self, workflow: str, input: Any, *, step_id: str | None = None, detached: bool = False
    ) -> Any: ...

    async def child(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        step_id: str | None = None,
        detached: bool = False,
    ) -> Any:
        """Start ``workflow`` as a child execution and return its result (see
        ``start_child`` and ``ChildHandle.result``)."""
        handle = await self.start_child(workflow, input, step_id=step_id, detached=detached)
        return await handle.result()

    async def enqueue(
        self,
        queue: Queue | str,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any = None,
        *,
        priority: int = 0,
        dedup_id: str | None = None,
        partition: str | None = None,
        delay: float | None = None,
        step_id: str | None = None,
    ) -> str:
        """Queue an execution on one of the engine's queues, once; its id.

        Not a child: it runs when its queue admits it, and outlives this execution. A
        ``dedup_id`` held by a queued or running execution raises
        ``DuplicateEnqueueError`` (recorded: a replay raises it again).
        """
        sid = self._step_id(step_id, "enqueue", True)
        self._enter()
        try:
            actor = self._actor
            name = queue.name if isinstance(queue, Queue) else queue
            recorded = actor.replayer.issue(sid, "enqueue")
            if recorded is None:
                declared = actor.queues.queue(name)
                args = QueueArgs(name, declared, priority, dedup_id, partition)
                recorded = [await self._enqueue_once(sid, args, workflow, input, delay)]
            event = recorded[0]
            assert isinstance(event, Enqueued)
            if event.duplicate_of is not None:
                raise DuplicateEnqueueError(event.queue, dedup_id or "", event.duplicate_of)
            return event.execution_id
        finally:
            self._leave()

    async def _enqueue_once(
        self,
        sid: str,
        args: QueueArgs,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        delay: float | None,
    ) -> Enqueued:
        # Two commits: the enqueue, keyed by this step (so a replay after a crash
        # between them finds the same execution), then the event saying what it did.
        actor = self._actor
        now = actor.parts.clock.now_ms()
        key = f"durably.enqueue:{actor.execution_id}:{sid}"
        own = actor.parts.ownership
        eid = None if own is None else new_execution_id(frozenset((shard_of(actor.execution_id),)))
        record, raw = queued_record(actor.parts.registry, now, args, workflow, input, key, eid)
        if delay:
            record = attrs.evolve(record, not_before=due_after(now, delay))
        limit = actor.parts.settings.max_payload_bytes
        if len(raw) > limit:
            raise PayloadError(
                f"the input of enqueue {sid!r} of execution {actor.execution_id} is "
                f"{len(raw)} bytes encoded, over max_payload_bytes ({limit}); keep large "
                "data outside the log and pass a reference"
            )
        try:
            result = (
                await actor.parts.committer.commit([Enqueue(CreateExecution(record, [raw]))])
            )[0]
        except DurablyError as exc:
            raise _EngineFailure(exc) from exc
        assert args.name is not None
        event = Enqueued(
            at=now,
            step_id=sid,
            execution_id=result.execution_id,
            queue=args.name,
            duplicate_of=result.duplicate_of,
        )
        await actor.append(event, sid)
        if result.duplicate_of is None and result.execution_id == record.id:
            actor.queues.offer(record)
        return event

    async def _child_outcome(self, handle: ChildHandle[Any]) -> Any:
        actor = self._actor
        sid = handle.step_id
        ended = next((e for e in actor.replayer.events_of(sid) if type(e) is ChildEnded), None)
        if ended is None:
            ended = await self._await_child(handle)
        return _outcome(ended, handle)

    async def _await_child(self, handle: ChildHandle[Any]) -> ChildEnded:
        actor = self._actor
        eid = actor.execution_id
        sid = handle.step_id
        name = child_signal(handle.execution_id)
        store = actor.parts.store
        # Recorded whether or not the child has ended yet, so the log does not depend on
        # which finished first. The record then names what the parent waits for: a child
        # that ends while it is parked wakes it, and so does recovery.
        if not any(type(e) is ChildWaiting for e in actor.replayer.events_of(sid)):
            now = actor.parts.clock.now_ms()
            waiting = ChildWaiting(at=now, step_id=sid, child_id=handle.execution_id)
            await actor.append(waiting, sid, [], **self._changes(waiting))
        entry = first_signal(store, eid, name)
        if entry is None:
            await self._resume_wait(Wait("waiting", name, None))
            while (entry := first_signal(store, eid, name)) is None:
                await actor.wait_wake(None)
        outcome = entry.payload if isinstance(entry.payload, dict) else {}
        event = ChildEnded(
            at=actor.parts.clock.now_ms(),
            step_id=sid,
            child_id=handle.execution_id,
            status=str(outcome.get("status", "failed")),
            result=outcome.get("result"),
            error=outcome.get("error"),
            mailbox_seq=entry.seq,
        )
        await self._took(event, sid, [TakeSignal(eid, entry.seq)])
        actor.child_ended(handle.execution_id)
        return event


def _outcome(ended: ChildEnded, handle: ChildHandle[Any]) -> Any:
    if ended.status == "completed":
        where = f"result of child {handle.step_id!r} ({handle.execution_id})"
        return _codec.load(ended.result, handle._definition.output_type, where)
    if ended.status == "cancelled":
        reason = (ended.error or {}).get("message")
        raise ExecutionCancelledError(ended.child_id, reason if isinstance(reason, str) else None)
    raise ChildFailedError(ended.child_id, ended.step_id, ended.error)
