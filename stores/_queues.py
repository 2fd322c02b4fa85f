"""The store's side of durable queues: enqueue with dedup, debounce, admission, and the
log of recent admissions; one layout for every store, like ``_layout.py``.

Tables (integers big-endian)::

    queues       queue name                           -> framed declaration (JSON)
    queue_dedup  queue 0x00 dedup id (or its hash)    -> eid of its holder
    debounce     workflow 0x00 key (or its hash)      -> eid of the latest debounced start
    admissions   queue 0x00 at_ms:u64 0x00 eid        -> b""

A dedup or debounce entry is never removed when its execution ends: the next write
with the same id reads the holder's record, and takes the entry over if it has ended.
An admission entry lives as long as the rate window (or the stats minute) needs it.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from ..core._errors import CorruptRecordError
from ..core._records import (
    INBOX_START,
    TERMINAL_STATUSES,
    Admit,
    AdmitResult,
    Debounce,
    DebounceResult,
    Enqueue,
    EnqueueResult,
    ForgetAdmissions,
    PutQueue,
)
from ._codec import encode_value, frame
from ._inbox import _inbox_key
from ._keys import BadKey, id_part
from ._layout import (
    _append,
    _create,
    _part,
    _put_record,
    find_idempotent,
    get_execution,
    read_events,
)
from ._txn import Txn

_U64 = struct.Struct(">Q")


def _dedup_key(queue: str, dedup_id: str) -> bytes:
    return _part(queue) + b"\x00" + _part(dedup_id)


def _admission_key(queue: str, at_ms: int, eid: str) -> bytes:
    return queue.encode() + b"\x00" + _U64.pack(at_ms) + b"\x00" + eid.encode()


def _holder(txn: Txn, table: str, key: bytes) -> str | None:
    """The execution a dedup or debounce entry names, if it has not ended."""
    raw = txn.get(table, key)
    if raw is None:
        return None
    try:
        eid = id_part(raw, "execution id")
    except BadKey:
        return None  # damaged: the entry is taken over, as for an ended holder
    try:
        record = get_execution(txn, eid)
    except CorruptRecordError:
        return None
    if record is None or record.status in TERMINAL_STATUSES:
        return None
    return eid


def _enqueue(txn: Txn, op: Enqueue) -> EnqueueResult:
    record = op.create.record
    assert record.queue is not None
    if record.idempotency_key is not None:
        # Before the dedup check: a retried enqueue (a workflow's, replayed) finds its
        # own execution, which holds the dedup id itself.
        owner = find_idempotent(txn, record.workflow, record.idempotency_key)
        if owner is not None:
            return EnqueueResult(owner)
    if record.dedup_id is not None:
        key = _dedup_key(record.queue, record.dedup_id)
        holder = _holder(txn, "queue_dedup", key)
        if holder is not None:
            return EnqueueResult(holder, duplicate_of=holder)
        txn.put("queue_dedup", key, record.id.encode())
    return EnqueueResult(_create(txn, op.create))


def _debounce(txn: Txn, op: Debounce) -> DebounceResult:
    new = op.create.record
    key = _part(new.workflow) + b"\x00" + _part(op.key)
    holder = _holder(txn, "debounce", key)
    record = get_execution(txn, holder) if holder is not None else None
    if record is None or record.status != "queued":
        _create(txn, op.create)
        txn.put("debounce", key, new.id.encode())
        result = DebounceResult(new.id, True, new)
    else:
        due = new.not_before
        if op.max_wait_ms is not None and due is not None:
            due = min(due, record.created_ms + op.max_wait_ms)
        moved = attrs.evolve(record, input=new.input, not_before=due, updated_ms=new.updated_ms)
        _put_record(txn, moved, record)
        prefix = record.id.encode() + b"\x00"
        for stale in [k for k, _ in txn.scan("events", prefix, prefix)]:
            txn.delete("events", stale)
        _append(txn, record.id, 0, op.create.events)
        result = DebounceResult(record.id, False, moved)
    if op.notify:
        txn.put("inbox", _inbox_key(result.execution_id, INBOX_START), b"")
    return result


def _admit(txn: Txn, op: Admit) -> AdmitResult:
    record = get_execution(txn, op.execution_id)
    if record is None or record.status != "queued":
        return AdmitResult()
    if record.not_before is not None and record.not_before > op.at_ms:
        return AdmitResult(later=record)
    admitted = attrs.evolve(
        record, status="running", admitted_ms=op.at_ms, updated_ms=op.at_ms, not_before=None
    )
    _put_record(txn, admitted, record)
    if record.queue is not None:
        txn.put("admissions", _admission_key(record.queue, op.at_ms, record.id), b"")
    return AdmitResult(admitted=admitted, events=read_events(txn, record.id, 0))


def apply_queue_op(txn: Txn, op: Any) -> Any:
    match op:
        case Enqueue():
            return _enqueue(txn, op)
        case Debounce():
            return _debounce(txn, op)
        case Admit():
            return _admit(txn, op)
        case ForgetAdmissions(queue=queue, entries=entries):
            for at_ms, eid in entries:
                txn.delete("admissions", _admission_key(queue, at_ms, eid))
            return None
        case PutQueue(name=name, data=data):
            txn.put("queues", name.encode(), frame(encode_value(data)))
            return None
    raise TypeError(f"not a store op: {op!r}")


def admissions(txn: Txn, queue: str) -> list[tuple[int, str]]:
    """The queue's recent admissions ``(at_ms, eid)``, oldest first."""
    prefix = queue.encode() + b"\x00"
    start = len(prefix)
    out = []
    for key, _ in txn.scan("admissions", prefix, prefix):
        try:
            at_ms = _U64.unpack_from(key, start)[0]
            if key[start + 8 : start + 9] != b"\x00":
                raise BadKey("no separator after the time")
            eid = id_part(key[start + 9 :], "execution id")
        except (BadKey, struct.error) as exc:
            raise CorruptRecordError(
                f"an admission entry of queue {queue!r} is damaged ({key!r}: {exc}); "
                "run `durably check`"
            ) from None
        out.append((at_ms, eid))
    return out
