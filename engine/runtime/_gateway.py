"""The calls every face of a store offers, written once: ``Engine`` and ``Client``.

Rules of this module:

- Every call writes to the store first (one group commit) and answers only from what the
  store then shows; telling a worker is a hook the face fills in (``_started``,
  ``_signalled``, ``_cancel_requested``, ``_wait_finished``, ``_in_worker``): the engine
  tells its own supervisor; a client commits an inbox entry with the write (``_noted``)
  and hints the store's worker over the wake-up channel.
- Calls that must not race a worker's own writes (schedule changes, operator actions) go
  through ``_in_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

import trio

from durably.stores import (
    CreateExecution,
    ExecutionRecord,
    Notify,
    Op,
    PutSignal,
    SignalOutcome,
    Store,
    quarantined_record,
)

from ..core import _codec
from ..core._errors import (
    ConfigurationError,
    CorruptRecordError,
    DurablyError,
    ExecutionCancelledError,
    ExecutionFailedError,
    PayloadError,
    UnknownExecutionError,
    WaitTimeoutError,
)
from ..core._events import Event, ExecutionStarted, encode
from ..core._records import CANCEL_SIGNAL, INBOX_CANCEL, INBOX_SIGNAL, INBOX_START
from ..core._schedule import CatchUp, Overlap, Schedule
from ..core._types import (
    Execution,
    Result,
    Signal,
    SignalOutcome as SignalReceipt,
    Status,
)
from ..core._workflow import WorkflowDefinition
from ._clock import Clock
from ._commit import Committer
from ._enqueue import Enqueuing
from ._exchange import Exchange, _check_id, receipt_of
from ._ports import Registry, Settings, new_execution_id
from ._schedules import ScheduleManager
from ._tracecontext import traceparent

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

_UNSET: Any = object()


class Gateway(Exchange, Enqueuing):
    """Start, signal, cancel, wait and read; the schedule calls. See the module's rules."""

    store: Store
    """The store this engine or client works on (open while it runs)."""
    clock: Clock
    """The clock durable times are read from (a virtual one in tests)."""
    _start_status = "pending"  # a new record's status (a worker's starts: ``running``)

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        workflows: Any,
        clock: Clock | None,
        settings: Settings,
    ) -> None:
        self._owns_store = not isinstance(store, Store)
        self._store_arg = store
        self.store = store if isinstance(store, Store) else None  # type: ignore[assignment]
        self._registry = Registry()
        for definition in workflows:
            self._registry.register(definition)
        self.clock = clock if clock is not None else Clock()
        self._settings = settings.check()
        self._running = False
        self._committer: Committer = None  # type: ignore[assignment]
        self._schedules: ScheduleManager = None  # type: ignore[assignment]

    # --- registration ---

    def register(self, definition: WorkflowDefinition[Any, Any]) -> None:
        """Add a workflow definition (as ``workflows=[...]`` does); names must be unique."""
        self._registry.register(definition)

    def workflows(self) -> list[WorkflowDefinition[Any, Any]]:
        """The registered workflow definitions."""
        return list(self._registry.definitions.values())

    # --- hooks the faces fill in ---

    #: A client's writes carry an inbox entry for the worker; the worker's own need none.
    _notifies_worker = False

    def _noted(self, op: Op, execution_id: str, kind: str) -> list[Op]:
        """``[op]``, and its inbox entry if this face notifies a worker (one transaction)."""
        return [op, Notify(execution_id, kind)] if self._notifies_worker else [op]

    def _new_id(self) -> str:
        """The id of an execution this face creates (a worker of many: in its shards)."""
        return new_execution_id()

    def _started(self, record: ExecutionRecord, first: Event) -> None:
        raise NotImplementedError

    def _signalled(self, execution_id: str, name: str, waiting: bool) -> None:
        raise NotImplementedError

    def _cancel_requested(
        self, execution_id: str, reason: str | None, by: str | None, *, durable: bool
    ) -> None:
        raise NotImplementedError

    async def _wait_finished(self, execution_id: str) -> None:
        raise NotImplementedError

    async def _in_worker(
        self, method: str, wire: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        raise NotImplementedError

    def _check_running(self) -> None:
        if not self._running:
            raise DurablyError(
                "the engine is not running; use it inside `async with durably.Engine(...)`"
            )

    def _check_size(self, size: int, what: str) -> None:
        limit = self._settings.max_payload_bytes
        if size > limit:
            raise PayloadError(
                f"{what} is {size} bytes encoded, over max_payload_bytes ({limit}); nothing "
                "was written. Keep large data outside the log (a file, an object store) and "
                "pass a reference to it."
            )

    # --- starting and waiting ---

    async def start(
        self,
        workflow: WorkflowDefinition[I, O] | str,
        input: I | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Start an execution; return its id once the start is durable.

        With ``idempotency_key``, starting the same workflow with the same key again
        returns the first execution's id (the first input wins) and starts nothing.
        """
        return await self._start(workflow, input, idempotency_key=idempotency_key, schedule_id=None)

    async def _start(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        idempotency_key: str | None,
        schedule_id: str | None,
        scheduled_at: int | None = None,
    ) -> str:
        self._check_running()
        name, definition = self._registry.to_start(workflow)
        if idempotency_key is not None:
            _check_id(idempotency_key, "idempotency_key")
            existing = self.store.find_idempotent(name, idempotency_key)
            if existing is not None:
                return existing
        tp = Any if definition is None else definition.input_type  # None: the worker checks
        shaped = _codec.check(input, tp, f"input of workflow {name!r}")
        eid = self._new_id()
        now = self.clock.now_ms()
        record = ExecutionRecord(
            id=eid,
            workflow=name,
            status=self._start_status,
            input=shaped,
            created_ms=now,
            updated_ms=now,
            idempotency_key=idempotency_key,
            schedule_id=schedule_id,
            trace=traceparent(),  # its runs join the caller's trace (None: no span)
        )
        first = ExecutionStarted(at=now, workflow=name, input=shaped, scheduled_at=scheduled_at)
        started = encode(first)
        self._check_size(len(started), f"the input of workflow {name!r}")
        ops = self._noted(CreateExecution(record, [started]), eid, INBOX_START)
        winner = (await self._committer.commit(ops))[0]
        if winner == eid:
            self._started(record, first)
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
        data: O = await self.wait(eid, timeout=timeout)
        return Result(eid, data)

    @overload
    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Any: ...

    @overload
    async def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = None,
        workflow: WorkflowDefinition[Any, O],
    ) -> O: ...

    async def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = None,
        workflow: WorkflowDefinition[Any, Any] | None = None,
    ) -> Any:
        """The execution's result once it finishes.

        Pass its ``workflow`` to have the result typed (and restored to the workflow's
        output type where this face does not have the definition registered).
        Raises ``ExecutionFailedError``, ``ExecutionCancelledError``, ``WaitTimeoutError``
        (the execution goes on) or ``UnknownExecutionError``.
        """
        self._check_running()
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            while True:
                record = self._get_record(execution_id)
                if record.status in ("completed", "failed", "compensation_failed", "cancelled"):
                    return self._outcome(record, workflow)
                await self._wait_finished(execution_id)
        assert scope.cancelled_caught
        raise WaitTimeoutError(
            f"execution {execution_id} did not finish within {timeout} s; it goes on"
        )

    def _outcome(
        self, record: ExecutionRecord, workflow: WorkflowDefinition[Any, Any] | None = None
    ) -> Any:
        if record.status == "completed":
            definition = workflow or self._registry.get(record.workflow)
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
        self._cancel_requested(execution_id, reason, by, durable=False)
        request = PutSignal(execution_id, CANCEL_SIGNAL, {"reason": reason, "by": by})
        await self._committer.commit(self._noted(request, execution_id, INBOX_CANCEL))
        self._cancel_requested(execution_id, reason, by, durable=True)

    async def wait_settled(self, execution_id: str) -> None:
        """Wait until the execution is terminal (no result, no raise)."""
        while True:
            record = self._get_record(execution_id)
            if Status(record.status).terminal:
                return
            await self._wait_finished(execution_id)

    # --- signals ---

    async def signal(
        self,
        execution_id: str,
        signal: Signal[Any] | str,
        payload: Any = None,
        *,
        dedup_key: str | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> SignalReceipt:
        """Send ``signal`` to an execution; say whether it was delivered, buffered or not.

        ``DELIVERED``: the open wait takes this very signal (``decide.receipt``). A signal
        for a finished execution is rejected with the reason; for an unknown execution it
        raises ``UnknownExecutionError``; a repeated ``dedup_key`` is rejected as a duplicate.
        ``by`` and ``reason`` (an operator's signal) travel with it into the event of the
        wait that takes it, so the audit trail shows who sent it and why.
        """
        self._check_running()
        sig = signal if isinstance(signal, Signal) else Signal(signal)
        if dedup_key is not None:
            _check_id(dedup_key, "dedup_key")
        for what, text in (("by", by), ("reason", reason)):
            if text is not None and not isinstance(text, str):
                raise ConfigurationError(f"signal({what}=) must be text or None, not {text!r}")
        if not isinstance(execution_id, str) or "\x00" in execution_id or not execution_id:
            raise UnknownExecutionError(str(execution_id))
        shaped = _codec.check(payload, sig.payload_type, f"payload of signal {sig.name!r}")
        self._check_size(len(_codec.dump(shaped, "")), f"the payload of signal {sig.name!r}")
        put = PutSignal(execution_id, sig.name, shaped, dedup_key, self.clock.now_ms(), by, reason)
        result = (await self._committer.commit(self._noted(put, execution_id, INBOX_SIGNAL)))[0]
        receipt = receipt_of(result, execution_id, sig.name, dedup_key)
        if result.outcome is SignalOutcome.BUFFERED:
            # Woken if it waits for this name at all: a spurious wake costs a loop, no more.
            self._signalled(execution_id, sig.name, result.waiting_signal == sig.name)
        return receipt

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
            await self._in_worker(
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
            await self._in_worker(
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
        await self._in_worker(
            "pause_schedule",
            {"schedule_id": schedule_id},
            lambda: self._schedules.pause(schedule_id),
        )

    async def resume_schedule(self, schedule_id: str) -> None:
        """Fire again, from the next fire time after now (missed fires are not run)."""
        self._check_running()
        await self._in_worker(
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
        await self._in_worker(
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
        await self._in_worker(
            "remove_schedule",
            {"schedule_id": schedule_id},
            lambda: self._schedules.remove(schedule_id),
        )


def _name_of(workflow: WorkflowDefinition[Any, Any] | str) -> str:
    return workflow if isinstance(workflow, str) else workflow.name


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value
