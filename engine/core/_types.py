"""Public value types: statuses, results, signals, the execution view."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

import attrs

from ._errors import ConfigurationError
from ._records import TERMINAL_STATUSES, ExecutionRecord

T = TypeVar("T")


class Status(enum.StrEnum):
    """Where an execution is. The last four are terminal.

    ``QUEUED`` waits for its queue to admit it (``engine.enqueue``, ``engine.debounce``);
    ``SLEEPING``, ``WAITING`` and ``RETRYING`` wait on a durable timer or a signal;
    ``COMPENSATION_FAILED`` means a rollback step failed after the execution failed.
    """

    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the execution has finished: nothing more will run or change."""
        return self.value in TERMINAL_STATUSES


@attrs.frozen
class Result(Generic[T]):
    """What ``start_and_wait`` returns: the execution id and the workflow's result."""

    execution_id: str
    data: T


@attrs.frozen
class Execution:
    """A read-only view of an execution's record (``engine.get_execution``).

    ``result`` and ``input`` are as stored (JSON-shaped; ``engine.wait`` restores the
    result's type). ``error`` is ``{"type", "message", "traceback"}`` for a failed
    execution. ``waiting_for`` names the signal it waits for and ``wake_at`` its next
    timer, while it waits. ``attempt`` counts operator retries from 1; ``reason`` says
    why it reached its status, where that is worth saying (a cancel, a dead-letter).
    """

    id: str
    workflow: str
    status: Status
    input: Any
    result: Any
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    attempt: int
    idempotency_key: str | None
    waiting_for: str | None
    wake_at: datetime | None
    schedule_id: str | None
    reason: str | None
    #: The execution that started this one as its child (``ctx.child``), if any.
    parent_id: str | None = None
    #: 1 for the first run; each ``continue_as_new`` begins the next under the same id.
    run: int = 1

    @classmethod
    def from_record(cls, record: ExecutionRecord) -> Execution:
        return cls(
            id=record.id,
            workflow=record.workflow,
            status=Status(record.status),
            input=record.input,
            result=record.result,
            error=record.error,
            created_at=from_ms(record.created_ms),
            updated_at=from_ms(record.updated_ms),
            attempt=record.attempt,
            idempotency_key=record.idempotency_key,
            waiting_for=record.waiting_signal,
            wake_at=from_ms(record.timer[0]) if record.timer else None,
            schedule_id=record.schedule_id,
            reason=record.reason,
            parent_id=record.parent_id,
            run=record.run,
        )


@attrs.frozen
class Signal(Generic[T]):
    """A named signal with a payload type: ``Approved = durably.Signal("approved", Payload)``.

    The payload type checks ``engine.signal(...)`` payloads at the call and restores the
    payload's type in ``wait_for_signal``; ``Any`` accepts any serialisable value.
    """

    name: str
    payload_type: type[T] = attrs.field(default=cast("type[T]", Any))

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "\x00" in self.name:
            raise ConfigurationError("a signal name must be a non-empty string without NUL")
        if self.name.startswith("durably."):
            raise ConfigurationError(
                f"signal name {self.name!r}: names starting with 'durably.' are reserved "
                "for the engine (a cancellation is engine.cancel); choose another name"
            )


@attrs.frozen
class Received(Generic[T]):
    """``wait_for_signal(..., timeout=...)`` got the signal."""

    payload: T


@attrs.frozen
class TimedOut:
    """``wait_for_signal(..., timeout=...)`` ran out of time first."""


class SignalDelivery(enum.StrEnum):
    """What happened to a sent signal; see ``SignalOutcome``."""

    DELIVERED = "delivered"
    BUFFERED = "buffered"
    REJECTED = "rejected"


@attrs.frozen
class SignalOutcome:
    """What ``engine.signal`` did with a signal.

    ``DELIVERED``: the execution was waiting for this signal and was woken.
    ``BUFFERED``: kept durably for the execution's next wait on it.
    ``REJECTED``: not kept; ``reason`` says why (a duplicate ``dedup_key``, or the
    execution had finished).
    """

    delivery: SignalDelivery
    execution_id: str
    signal: str
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True if the signal was kept (delivered or buffered)."""
        return self.delivery is not SignalDelivery.REJECTED


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
