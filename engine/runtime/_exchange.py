"""Two calls of every face that combine or read what executions hold:
``signal_with_start`` and ``read_published`` (a half of ``Gateway``).

Rules of this module:

- ``signal_with_start`` is one transaction (``SignalWithStart``): the execution that owns
  the idempotency key is started if there is none, and signalled either way; a crash
  leaves both done or neither.
- ``read_published`` reads the log, the truth; waiting for a value is waiting for the
  execution's log to change (the face's ``_wait_published``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import trio

from durably.stores import (
    CreateExecution,
    ExecutionRecord,
    PutSignalResult,
    SignalOutcome,
    SignalWithStart,
    SignalWithStartResult,
    Store,
)

from ..core import _codec
from ..core._errors import ConfigurationError, DurablyError, UnknownExecutionError, WaitTimeoutError
from ..core._events import Event, ExecutionStarted, Published, decode_all, encode
from ..core._types import Signal, SignalDelivery, SignalOutcome as SignalReceipt, Status
from ..core._workflow import WorkflowDefinition

if TYPE_CHECKING:
    from ._clock import Clock
    from ._commit import Committer
    from ._ports import Registry

I = TypeVar("I")  # noqa: E741

_MISSING: Any = object()


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"{what} must be a non-empty string without NUL")


def receipt_of(
    result: PutSignalResult, execution_id: str, name: str, dedup_key: str | None
) -> SignalReceipt:
    """The caller's answer to a buffered (or refused) signal; ``UnknownExecutionError``
    for an execution the store does not have."""
    outcome = result.outcome
    if outcome is SignalOutcome.UNKNOWN:
        raise UnknownExecutionError(execution_id)
    if outcome is SignalOutcome.FINISHED:
        return SignalReceipt(
            SignalDelivery.REJECTED,
            execution_id,
            name,
            f"the execution has finished ({result.status}); signals are not kept for it",
        )
    if outcome is SignalOutcome.DUPLICATE:
        return SignalReceipt(
            SignalDelivery.REJECTED,
            execution_id,
            name,
            f"a signal with dedup_key {dedup_key!r} was already accepted",
        )
    delivery = SignalDelivery.DELIVERED if result.delivered else SignalDelivery.BUFFERED
    return SignalReceipt(delivery, execution_id, name)


class Exchange:
    """``signal_with_start`` and ``read_published``; ``Gateway`` supplies the rest."""

    store: Store
    clock: Clock
    _registry: Registry
    _committer: Committer
    _notifies_worker: bool

    def _new_id(self) -> str:
        raise NotImplementedError  # the Gateway's

    _start_status: str

    if TYPE_CHECKING:

        def _check_running(self) -> None: ...

        def _check_size(self, size: int, what: str) -> None: ...

        def _started(self, record: ExecutionRecord, first: Event) -> None: ...

        def _signalled(self, execution_id: str, name: str, waiting: bool) -> None: ...

        def _get_record(self, execution_id: str) -> ExecutionRecord: ...

    async def signal_with_start(
        self,
        workflow: WorkflowDefinition[I, Any] | str,
        input: I,
        signal: Signal[Any] | str,
        payload: Any = None,
        *,
        idempotency_key: str,
    ) -> SignalReceipt:
        """Start ``workflow`` unless the execution of ``idempotency_key`` exists, and
        signal it, in one durable transaction; the receipt names the execution.

        The key stays that execution's: once it has finished, the signal is rejected
        (``REJECTED``, the receipt says why) and nothing new starts.
        """
        self._check_running()
        _check_id(idempotency_key, "idempotency_key")
        sig = signal if isinstance(signal, Signal) else Signal(signal)
        name, definition = self._registry.to_start(workflow)
        tp = Any if definition is None else definition.input_type
        shaped = _codec.check(input, tp, f"input of workflow {name!r}")
        data = _codec.check(payload, sig.payload_type, f"payload of signal {sig.name!r}")
        self._check_size(len(_codec.dump(data, "")), f"the payload of signal {sig.name!r}")
        now = self.clock.now_ms()
        record = ExecutionRecord(
            id=self._new_id(),
            workflow=name,
            status=self._start_status,
            input=shaped,
            created_ms=now,
            updated_ms=now,
            idempotency_key=idempotency_key,
        )
        first = ExecutionStarted(at=now, workflow=name, input=shaped)
        raw = encode(first)
        self._check_size(len(raw), f"the input of workflow {name!r}")
        op = SignalWithStart(
            CreateExecution(record, [raw]), sig.name, data, now, self._notifies_worker
        )
        result: SignalWithStartResult = (await self._committer.commit([op]))[0]
        if result.created:
            self._started(record, first)
        eid = result.execution_id
        receipt = receipt_of(result.signal, eid, sig.name, None)
        if result.signal.outcome is SignalOutcome.BUFFERED:
            self._signalled(eid, sig.name, result.signal.waiting_signal == sig.name)
        return receipt

    async def read_published(
        self,
        execution_id: str,
        key: str,
        *,
        wait: bool = False,
        timeout: float | None = None,
        default: Any = None,
    ) -> Any:
        """The latest value the execution published under ``key`` (``ctx.publish``).

        Without ``wait``, ``default`` if nothing is published yet. With ``wait=True``,
        waits until it is (``WaitTimeoutError`` after ``timeout`` seconds; a
        ``DurablyError`` if the execution ends without publishing it).
        """
        self._check_running()
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            while True:
                record = self._get_record(execution_id)
                value = self._published(execution_id, key)
                if value is not _MISSING:
                    return value
                if not wait:
                    return default
                if Status(record.status).terminal:
                    raise DurablyError(
                        f"execution {execution_id} ended ({record.status}) without "
                        f"publishing {key!r}"
                    )
                await self._wait_published(execution_id)
        assert scope.cancelled_caught
        raise WaitTimeoutError(f"execution {execution_id} published no {key!r} in {timeout} s")

    def _published(self, execution_id: str, key: str) -> Any:
        events = decode_all(self.store.read_events(execution_id), execution_id)
        for event in reversed(events):
            if isinstance(event, Published) and event.key == key:
                return event.value
        return _MISSING

    async def _wait_published(self, execution_id: str) -> None:
        """Until the execution's log may have changed (a face waits better if it can)."""
        await trio.sleep(0.05)
