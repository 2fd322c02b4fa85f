"""What a store holds and the operations a batch is made of.

Invariants (every store keeps them, the conformance suite checks them):

- ``Store.apply(ops)`` is one transaction: all of the batch is visible afterwards, or none.
- Ops are applied in list order, so a later op sees an earlier op's effect.
- Logical outcomes (an idempotency key already taken, a duplicate signal, a signal for a
  finished execution) are *results*, never exceptions: one producer's bad luck must not
  fail the other producers sharing its group commit.
- Values are JSON-shaped builtins (dict, list, str, int, float, bool, None) except event
  bodies, which are opaque bytes encoded by the engine.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

#: Status values of an execution as the store keeps them. The engine's ``durably.Status``
#: enum uses exactly these strings.
ACTIVE_STATUSES = ("queued", "pending", "running", "sleeping", "waiting", "retrying")
TERMINAL_STATUSES = ("completed", "failed", "compensation_failed", "cancelled")
ALL_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES

#: The reserved mailbox name under which a cancellation request is made durable (a user
#: signal cannot take it: names starting ``durably.`` are refused).
CANCEL_SIGNAL = "durably.cancel"

#: The reserved mailbox names by which a child tells its parent how it ended.
CHILD_SIGNAL = "durably.child:"


def child_signal(child_id: str) -> str:
    """The mailbox name of child ``child_id``'s outcome, in its parent's mailbox."""
    return CHILD_SIGNAL + child_id


def cancel_args(payload: Any) -> tuple[str | None, str | None]:
    """``(reason, by)`` of a durable cancellation request's payload."""
    if isinstance(payload, dict):
        reason, by = payload.get("reason"), payload.get("by")
        return (
            reason if isinstance(reason, str) else None,
            by if isinstance(by, str) else None,
        )
    return None, None


#: What a client may ask the store's worker to run for it (``Gateway._in_worker``).
OPERATOR_ACTIONS = ("retry", "cancel", "force_fail", "skip_step", "retry_rollback")
SCHEDULE_CALLS = (
    "schedule",
    "ensure_schedule",
    "pause_schedule",
    "resume_schedule",
    "update_schedule",
    "remove_schedule",
)

#: A due time later than any timer: "no deadline" (and "every timer" as a scan bound).
NEVER_MS = 2**63 - 1


@attrs.frozen
class ExecutionRecord:
    """The summary row of one execution (its log holds the detail)."""

    id: str
    workflow: str
    status: str
    input: Any
    created_ms: int
    updated_ms: int
    result: Any = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    #: 1 for the first run; incremented by an operator's retry.
    attempt: int = 1
    #: Recoveries started since the execution last made progress (crash-loop guard).
    recoveries: int = 0
    #: The one pending timer of the execution, as ``(due_ms, timer_id)``.
    timer: tuple[int, str] | None = None
    #: Name of the signal the execution waits for, while it waits.
    waiting_signal: str | None = None
    #: Schedule that started the execution, if any.
    schedule_id: str | None = None
    #: Why the execution reached its current status, where that is worth saying.
    reason: str | None = None
    #: The execution that started this one as its child (``ctx.child``), if any.
    parent_id: str | None = None
    #: How many runs the execution has had (``ctx.continue_as_new`` starts the next).
    run: int = 1
    #: The queue the execution was enqueued on (``engine.enqueue``), if any.
    queue: str | None = None
    #: Its priority in the queue (lower first, if the queue orders by priority).
    priority: int = 0
    #: Its partition key in the queue (``partition_concurrency``), if any.
    partition: str | None = None
    #: While queued: the earliest it may be admitted (a delay, a debounce), epoch ms.
    not_before: int | None = None
    #: When its queue admitted it, epoch ms.
    admitted_ms: int | None = None
    #: Its dedup id in the queue, if any.
    dedup_id: str | None = None
    #: The W3C ``traceparent`` of the span its start was made in (``durably[otel]``).
    trace: str | None = None

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> ExecutionRecord:
        """The record of stored fields (``Store.list_fields``), which it takes over (its
        ``timer`` becomes a tuple in place); ``TypeError`` if they are not a record's."""
        timer = data.get("timer")
        if timer is not None:
            data["timer"] = (timer[0], timer[1])
        return cls(**data)


def quarantined_record(execution_id: str, error: Exception) -> ExecutionRecord:
    """What a listing (and the engine) shows for an execution whose record cannot be read.

    Nothing is written: the corrupt bytes stay as they are for whoever restores them.
    """
    return ExecutionRecord(
        id=execution_id,
        workflow="",
        status="failed",
        input=None,
        created_ms=0,
        updated_ms=0,
        error={"type": "durably.CorruptRecordError", "message": str(error), "traceback": ""},
        reason="quarantined: its record is corrupt; restore the store from a backup",
    )


@attrs.frozen(order=True)
class Timer:
    """One entry of the timers index, ordered by due time.

    ``owner`` is an execution id, or ``"schedule:" + schedule_id`` for a schedule.
    """

    due_ms: int
    owner: str
    timer_id: str


@attrs.frozen
class MailboxEntry:
    """A signal buffered for an execution, numbered in commit order."""

    seq: int
    signal: str
    payload: Any
    dedup_key: str | None = None
    #: When it was sent (the sender's engine clock, epoch ms): a wait takes only a signal
    #: sent at or before its deadline. ``None`` (an entry written before durably kept it)
    #: counts as sent in time.
    at: int | None = None
    #: Who sent it and why, if the sender said; the wait's event records them.
    by: str | None = None
    reason: str | None = None


class SignalOutcome(enum.Enum):
    """What ``PutSignal`` did; the engine turns it into the caller's answer."""

    BUFFERED = "buffered"
    DUPLICATE = "duplicate"
    FINISHED = "finished"
    UNKNOWN = "unknown"


@attrs.frozen
class PutSignalResult:
    outcome: SignalOutcome
    seq: int | None = None
    status: str | None = None
    #: The signal the execution was waiting for when this one was buffered (read in the
    #: same transaction, so the caller needs no second read to say "delivered").
    waiting_signal: str | None = None
    #: True when the wait that is open takes this very signal: it waits for this name, no
    #: older entry it would take first is buffered, no cancellation is pending, and the
    #: signal was sent by the wait's deadline (``core/_decide.py`` ``receipt``).
    delivered: bool = False


# --- operations -------------------------------------------------------------------------


@attrs.frozen
class CreateExecution:
    """Create an execution with its first events, unless its idempotency key is taken.

    Result: the id of the execution that owns the key (``record.id`` if this op created it).
    """

    record: ExecutionRecord
    events: list[bytes]


@attrs.frozen
class Append:
    """Append events at ``seq``, ``seq + 1``, ... of an execution's log.

    Result: ``None``. A sequence number already taken means two writers raced, an engine
    bug: the store raises and the batch is retried op by op to isolate it.
    """

    execution_id: str
    seq: int
    events: list[bytes]


@attrs.frozen
class PutExecution:
    """Replace an execution's record (and its place in the status index)."""

    record: ExecutionRecord


@attrs.frozen
class AddTimer:
    timer: Timer


@attrs.frozen
class RemoveTimer:
    """Remove a timer; removing one that is not there is not an error."""

    timer: Timer


@attrs.frozen
class PutSignal:
    """Buffer a signal for an execution, checked in the same transaction.

    Result: a ``PutSignalResult``. Unknown or finished executions are refused, and a
    ``dedup_key`` already accepted for the execution is refused as a duplicate (the key is
    remembered after the signal is consumed).
    """

    execution_id: str
    signal: str
    payload: Any
    dedup_key: str | None = None
    #: When the sender sent it (its engine clock, epoch ms); kept with the entry.
    at: int | None = None
    #: Who sent it and why (an operator's signal), kept with the entry for the audit trail.
    by: str | None = None
    reason: str | None = None


@attrs.frozen
class SignalWithStart:
    """Create ``create``'s execution unless its idempotency key is taken, then buffer the
    signal for whichever execution owns the key, with an inbox entry for each if
    ``notify``: one transaction (``engine.signal_with_start``).

    Result: a ``SignalWithStartResult``.
    """

    create: CreateExecution
    signal: str
    payload: Any
    at: int | None = None
    notify: bool = False


@attrs.frozen
class SignalWithStartResult:
    execution_id: str
    created: bool
    signal: PutSignalResult


@attrs.frozen
class ResetLog:
    """Replace the whole log of an execution with ``events`` (``continue_as_new``: the
    next run starts with a fresh log under the same id). Result: ``None``."""

    execution_id: str
    events: list[bytes]


class SignalArrived(Exception):
    """Raised by ``RequireNoSignal``: a signal the wait takes is buffered after all."""


@attrs.frozen
class RequireNoSignal:
    """Refuse the whole batch (raise ``SignalArrived``) if a signal ``signal`` that a wait
    with ``deadline`` takes is buffered for the execution.

    Rides with a wait's timeout, so that the timeout is recorded only if no signal the
    wait takes committed since the wait looked: a sender told ``DELIVERED`` is never
    contradicted. The one op that raises for a logical outcome: the commit actor then
    re-applies each producer's ops alone, so only this producer's batch is refused.
    """

    execution_id: str
    signal: str
    deadline: int | None


@attrs.frozen
class TakeSignal:
    """Remove a consumed mailbox entry (its dedup key stays remembered)."""

    execution_id: str
    seq: int


@attrs.frozen
class PutSchedule:
    schedule_id: str
    data: Any


@attrs.frozen
class DeleteSchedule:
    schedule_id: str


@attrs.frozen
class PutMeta:
    name: str
    value: Any


# --- the inbox: what clients' writes ask of the store's worker ---------------------------

#: Kinds of inbox entry. An entry says only "look at this"; what to do is read from the
#: store, so an entry carries no authority of its own.
INBOX_START = "start"
INBOX_SIGNAL = "signal"
INBOX_CANCEL = "cancel"
INBOX_CALL = "call"


@attrs.frozen
class InboxEntry:
    """One thing a client asked the worker to look at: an execution, or a call's token."""

    key: str
    kind: str
    #: A call's request (its stored bytes), or the ``CorruptRecordError`` met reading it.
    request: bytes | Exception | None = None


@attrs.frozen
class Notify:
    """An inbox entry for ``execution_id``: a client's write asks the worker to look.

    Put in the batch of the write it announces, so the two are one transaction. Result:
    ``None``; notifying the same execution and kind again before a drain keeps one entry.
    ``unless``: a worker of many's ``(worker, epoch)``: no entry if that lease still holds
    the execution's shard in this transaction (the writer acts on it itself).
    """

    execution_id: str
    kind: str
    unless: tuple[str, int] | None = None


@attrs.frozen
class TakeInbox:
    """Remove and return up to ``limit`` inbox entries, in key order, each call entry with
    its request (removed too; a damaged one is returned as its error, never kept).

    Result: a list of ``InboxEntry``. With ``shards``, only entries of those shards
    (``core/_shards.py``): a worker of many takes what its leases cover.
    """

    limit: int
    shards: frozenset[int] | None = None


@attrs.frozen
class PutCall:
    """A client's request for the worker to run (JSON bytes), with its inbox entry."""

    token: str
    request: bytes


@attrs.frozen
class WithdrawCall:
    """Remove a request the worker has not taken. Result: whether it was still there."""

    token: str


@attrs.frozen
class PutReply:
    """The worker's answer (JSON bytes) to the call ``token``, written at ``at_ms``."""

    token: str
    at_ms: int
    reply: bytes


@attrs.frozen
class TakeReply:
    """Remove and return the answer to ``token``: its bytes, ``None`` if there is none
    yet, or the ``CorruptRecordError`` met reading it (the entry is removed all the same)."""

    token: str


@attrs.frozen
class ExpireReplies:
    """Remove answers written before ``before_ms`` (their callers are gone). Result: how
    many were removed."""

    before_ms: int


# --- queues -----------------------------------------------------------------------------


@attrs.frozen
class Enqueue:
    """Create ``create``'s execution (its record in status ``queued``), unless its
    idempotency key is taken (the owner is the result), or its queue has its
    ``dedup_id`` held by an execution that has not ended (nothing is created).

    Result: an ``EnqueueResult``.
    """

    create: CreateExecution


@attrs.frozen
class EnqueueResult:
    #: The execution created, or the one that owns the idempotency key.
    execution_id: str
    #: The execution that holds the dedup id (nothing was created), if refused.
    duplicate_of: str | None = None


@attrs.frozen
class Debounce:
    """A debounced start: if ``(workflow, key)`` names an execution still queued, give it
    this input and ``create``'s due time (capped at its creation plus ``max_wait_ms``),
    its log replaced by ``create``'s first event; otherwise create ``create``'s execution
    and let the key name it. Result: a ``DebounceResult``.
    """

    create: CreateExecution
    key: str
    max_wait_ms: int | None = None
    #: With an inbox entry for the execution it names (a client's debounce).
    notify: bool = False


@attrs.frozen
class DebounceResult:
    execution_id: str
    created: bool
    #: The record as this op left it.
    record: ExecutionRecord


@attrs.frozen
class Admit:
    """Admit a queued execution at ``at_ms``: if its record is still ``queued`` and due,
    it turns ``running`` (with ``admitted_ms``) and the admission joins its queue's log of
    recent admissions, which rate limits are counted from after a restart.

    Result: an ``AdmitResult``.
    """

    execution_id: str
    at_ms: int


@attrs.frozen
class AdmitResult:
    #: The admitted record, if admitted.
    admitted: ExecutionRecord | None = None
    #: The record, still queued but due later (a debounce moved it), if so; neither
    #: field set: it left the queue (cancelled, or gone).
    later: ExecutionRecord | None = None
    #: The admitted execution's log (encoded events), read in the admitting transaction:
    #: its actor starts from them without reading the store again.
    events: list[bytes] = attrs.field(factory=list, eq=False)


@attrs.frozen
class ForgetAdmissions:
    """Remove admissions older than any window needs from the queue's log."""

    queue: str
    entries: list[tuple[int, str]]


@attrs.frozen
class PutQueue:
    """A worker's declaration of a queue (JSON-shaped), for clients and the CLI to read."""

    name: str
    data: Any


# --- many workers: shard leases (core/_shards.py) ----------------------------------------


@attrs.frozen
class Heartbeat:
    """A worker's beat: its own entry in ``workers`` (alive until ``now_ms + lease_ms``),
    every lease it still holds renewed, those in ``release`` given up (free at once),
    and, if ``claim``, free or expired shards claimed (epoch + 1) up to a fair share of
    the live workers. ``leaving``: release every lease and remove the worker's entry.

    Result: a ``Leases``.
    """

    worker: str
    now_ms: int
    lease_ms: int
    release: frozenset[int] = frozenset()
    claim: bool = True
    leaving: bool = False


@attrs.frozen
class Leases:
    #: shard -> epoch, every lease the worker holds after the beat.
    held: dict[int, int]
    #: Live workers (this one included), as the beat counted them.
    workers: int


@attrs.frozen
class Fence:
    """Refuse the batch's ops of ``worker`` (``LeaseLostError``) unless it still holds each
    ``(shard, epoch)`` lease: the check every write of a worker of many carries."""

    worker: str
    leases: tuple[tuple[int, int], ...]


@attrs.frozen
class LeaseInfo:
    """One shard's lease, as ``Store.leases()`` lists it."""

    shard: int
    worker: str
    epoch: int
    expires_ms: int


Op = (
    Heartbeat
    | Fence
    | CreateExecution
    | Enqueue
    | Debounce
    | Admit
    | ForgetAdmissions
    | PutQueue
    | SignalWithStart
    | ResetLog
    | Append
    | PutExecution
    | AddTimer
    | RemoveTimer
    | PutSignal
    | RequireNoSignal
    | TakeSignal
    | PutSchedule
    | DeleteSchedule
    | PutMeta
    | Notify
    | TakeInbox
    | PutCall
    | WithdrawCall
    | PutReply
    | TakeReply
    | ExpireReplies
)
