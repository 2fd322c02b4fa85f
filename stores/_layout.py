"""The store layout and the meaning of every op, written once over a tiny key-value API.

Both stores run this same code: ``MemoryStore`` over sorted in-memory tables, ``LmdbStore``
over LMDB named databases. So the conformance suite tests one set of semantics, and the
two differ only in durability.

Tables and keys (integers big-endian so that byte order is numeric order)::

    executions   eid                                -> framed record
    events       eid 0x00 seq:u32                   -> framed event (opaque bytes)
    by_status    status 0x00 eid                    -> b""
    timers       due_ms:u64 owner 0x00 timer_id     -> b"" (or the timer id, if hashed)
    mailbox      eid 0x00 seq:u32                   -> framed {signal, payload, dedup_key}
    mailbox_seq  eid                                -> next mailbox seq:u32
    dedup        eid 0x00 key-or-hash               -> seq:u32
    idempotency  workflow 0x00 key (or its hash)    -> eid
    schedules    schedule id                        -> framed value
    meta         name                               -> framed value

Ids never contain NUL (the engine checks), so NUL separates key parts unambiguously.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Protocol
from zlib import crc32

from durably.core._errors import CorruptRecordError

from ..core._records import (
    TERMINAL_STATUSES,
    AddTimer,
    Append,
    CreateExecution,
    DeleteSchedule,
    ExecutionRecord,
    MailboxEntry,
    Op,
    PutExecution,
    PutMeta,
    PutSchedule,
    PutSignal,
    PutSignalResult,
    RemoveTimer,
    SignalOutcome,
    TakeSignal,
    Timer,
    quarantined_record,
)
from ._codec import (
    FORMAT_VERSION,
    decode_mail,
    decode_record,
    decode_value,
    encode_mail,
    encode_record,
    encode_value,
    frame,
    unframe,
)

TABLES = (
    "executions",
    "events",
    "by_status",
    "timers",
    "mailbox",
    "mailbox_seq",
    "dedup",
    "idempotency",
    "schedules",
    "meta",
)

SCHEMA_VERSION = 1
#: LMDB's key limit, kept by every store so that a key refused by one is refused by all.
MAX_KEY_BYTES = 511
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
#: The frame header (format version, CRC-32 of the body) that ``_codec.frame`` writes.
_FRAME = struct.Struct(">BI")
_FRAME_SIZE = _FRAME.size
_frame_pack = _FRAME.pack
#: Key parts longer than this are replaced by their SHA-256 (LMDB keys stop at 511 bytes).
_MAX_KEY_PART = 200


class Txn(Protocol):
    """The key-value operations the layout needs; one transaction of a backend."""

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Put unless the key exists; False (and nothing written) if it does."""
        ...

    def delete(self, table: str, key: bytes) -> None: ...

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items with key >= ``start`` and starting with ``prefix``, in key order."""
        ...


def check_key(table: str, key: bytes) -> None:
    """Refuse a key no store can hold, before anything is written.

    A ``ConfigurationError``, not a ``StoreError``: the op is at fault, not the store, so the
    commit actor fails only the producer that sent it.
    """
    if len(key) > MAX_KEY_BYTES:
        from durably.core._errors import ConfigurationError

        shown = key[:60].decode(errors="replace").replace("\x00", "|")
        raise ConfigurationError(
            f"a {table} key of {len(key)} bytes is longer than the store's limit of "
            f"{MAX_KEY_BYTES} ({shown!r}...); use shorter ids (execution, schedule, step "
            "and timer ids well under 200 characters)"
        )


def _part(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > _MAX_KEY_PART:
        return b"#" + hashlib.sha256(raw).hexdigest().encode()
    return raw


def event_key(eid: str, seq: int) -> bytes:
    return eid.encode() + b"\x00" + _U32.pack(seq)


def _status_key(status: str, eid: str) -> bytes:
    return status.encode() + b"\x00" + eid.encode()


def timer_key(timer: Timer) -> bytes:
    # A timer id is a step id, which may be long: _part hashes it, and the value keeps it.
    return _U64.pack(timer.due_ms) + timer.owner.encode() + b"\x00" + _part(timer.timer_id)


def _timer_value(timer: Timer) -> bytes:
    return b"" if len(timer.timer_id.encode()) <= _MAX_KEY_PART else timer.timer_id.encode()


def _timer_from_item(key: bytes, value: bytes) -> Timer:
    due = _U64.unpack_from(key)[0]
    owner, _, timer_id = key[8:].partition(b"\x00")
    return Timer(due, owner.decode(), value.decode() if value else timer_id.decode())


def _idem_key(workflow: str, key: str) -> bytes:
    return _part(workflow) + b"\x00" + _part(key)


# --- reads ------------------------------------------------------------------------------


def get_execution(txn: Txn, eid: str) -> ExecutionRecord | None:
    raw = txn.get("executions", eid.encode())
    if raw is None:
        return None
    return decode_record(unframe(raw, f"record of execution {eid}", eid))


def read_events(txn: Txn, eid: str, from_seq: int) -> list[bytes]:
    prefix = eid.encode() + b"\x00"
    start = len(prefix)
    out: list[bytes] = []
    append = out.append
    expected = from_seq
    # The hot loop of every replay: the frame is checked inline, and ``unframe`` (which
    # builds the error message) runs only for a frame that fails the check.
    for key, raw in txn.scan("events", prefix + _U32.pack(from_seq), prefix):
        seq = _U32.unpack_from(key, start)[0]
        if seq != expected:
            raise CorruptRecordError(
                f"event {expected} of execution {eid} is missing (found {seq})",
                execution_id=eid,
            )
        body = raw[_FRAME_SIZE:]
        if len(raw) < _FRAME_SIZE or raw[:_FRAME_SIZE] != _frame_pack(FORMAT_VERSION, crc32(body)):
            body = unframe(raw, f"event {seq} of execution {eid}", eid)
        append(body)
        expected += 1
    return out


def list_executions(
    txn: Txn,
    status: str | None,
    workflow: str | None,
    after: str | None,
    limit: int | None,
) -> list[ExecutionRecord]:
    out: list[ExecutionRecord] = []
    if limit is not None and limit <= 0:
        return out
    if status is not None:
        prefix = status.encode() + b"\x00"
        start = prefix + (after.encode() + b"\x00" if after else b"")
        for key, _ in txn.scan("by_status", start, prefix):
            eid = key[len(prefix) :].decode()
            try:
                record = get_execution(txn, eid)
            except CorruptRecordError:
                continue  # in no status: get_execution and unfiltered listings show it
            if record is None or (workflow is not None and record.workflow != workflow):
                continue
            out.append(record)
            if limit is not None and len(out) >= limit:
                break
        return out
    start = after.encode() + b"\x00" if after else b""
    for key, raw in txn.scan("executions", start, b""):
        eid = key.decode()
        try:
            record = decode_record(unframe(raw, f"record of execution {eid}", eid))
        except CorruptRecordError as exc:
            record = quarantined_record(eid, exc)
        if workflow is not None and record.workflow != workflow:
            continue
        out.append(record)
        if limit is not None and len(out) >= limit:
            break
    return out


def due_timers(txn: Txn, before_ms: int, limit: int | None) -> list[Timer]:
    out: list[Timer] = []
    if limit is not None and limit <= 0:
        return out
    for key, value in txn.scan("timers", b"", b""):
        timer = _timer_from_item(key, value)
        if timer.due_ms >= before_ms:
            break
        out.append(timer)
        if limit is not None and len(out) >= limit:
            break
    return out


def mailbox(txn: Txn, eid: str) -> list[MailboxEntry]:
    prefix = eid.encode() + b"\x00"
    return [
        decode_mail(
            _U32.unpack_from(key, len(prefix))[0],
            unframe(raw, f"mailbox entry of execution {eid}", eid),
        )
        for key, raw in txn.scan("mailbox", prefix, prefix)
    ]


def find_idempotent(txn: Txn, workflow: str, key: str) -> str | None:
    raw = txn.get("idempotency", _idem_key(workflow, key))
    return None if raw is None else raw.decode()


def get_value(txn: Txn, table: str, name: str) -> Any | None:
    raw = txn.get(table, name.encode())
    return None if raw is None else decode_value(unframe(raw, f"{table} entry {name!r}"))


def list_values(txn: Txn, table: str) -> list[tuple[str, Any]]:
    return [
        (key.decode(), decode_value(unframe(raw, f"{table} entry {key.decode()!r}")))
        for key, raw in txn.scan(table, b"", b"")
    ]


# --- writes -----------------------------------------------------------------------------


def _put_record(txn: Txn, record: ExecutionRecord, old: ExecutionRecord | None) -> None:
    if old is not None and old.status != record.status:
        txn.delete("by_status", _status_key(old.status, old.id))
    if old is None or old.status != record.status:
        txn.put("by_status", _status_key(record.status, record.id), b"")
    txn.put("executions", record.id.encode(), frame(encode_record(record)))


def _append(txn: Txn, eid: str, seq: int, events: list[bytes]) -> None:
    for offset, body in enumerate(events):
        if not txn.insert("events", event_key(eid, seq + offset), frame(body)):
            raise RuntimeError(
                f"event {seq + offset} of execution {eid} already exists: two writers raced"
            )


def _create(txn: Txn, op: CreateExecution) -> str:
    record = op.record
    if record.idempotency_key is not None:
        key = _idem_key(record.workflow, record.idempotency_key)
        if not txn.insert("idempotency", key, record.id.encode()):
            existing = txn.get("idempotency", key)
            assert existing is not None
            return existing.decode()
    if txn.get("executions", record.id.encode()) is not None:
        raise RuntimeError(f"execution id {record.id} already exists")
    _put_record(txn, record, None)
    _append(txn, record.id, 0, op.events)
    return record.id


def _put_signal(txn: Txn, op: PutSignal) -> PutSignalResult:
    eid = op.execution_id
    record = get_execution(txn, eid)
    if record is None:
        return PutSignalResult(SignalOutcome.UNKNOWN)
    if record.status in TERMINAL_STATUSES:
        return PutSignalResult(SignalOutcome.FINISHED, status=record.status)
    raw_next = txn.get("mailbox_seq", eid.encode())
    seq = 0 if raw_next is None else _U32.unpack(raw_next)[0]
    if op.dedup_key is not None:
        dkey = eid.encode() + b"\x00" + _part(op.dedup_key)
        if not txn.insert("dedup", dkey, _U32.pack(seq)):
            return PutSignalResult(
                SignalOutcome.DUPLICATE,
                seq=_U32.unpack(txn.get("dedup", dkey) or _U32.pack(0))[0],
                status=record.status,
            )
    entry = MailboxEntry(seq, op.signal, op.payload, op.dedup_key)
    txn.put("mailbox", eid.encode() + b"\x00" + _U32.pack(seq), frame(encode_mail(entry)))
    txn.put("mailbox_seq", eid.encode(), _U32.pack(seq + 1))
    return PutSignalResult(
        SignalOutcome.BUFFERED, seq=seq, status=record.status, waiting_signal=record.waiting_signal
    )


def apply_op(txn: Txn, op: Op) -> Any:
    match op:
        case Append(execution_id=eid, seq=seq, events=events):
            _append(txn, eid, seq, events)
            return None
        case PutExecution(record=record):
            _put_record(txn, record, get_execution(txn, record.id))
            return None
        case CreateExecution():
            return _create(txn, op)
        case AddTimer(timer=timer):
            txn.put("timers", timer_key(timer), _timer_value(timer))
            return None
        case RemoveTimer(timer=timer):
            txn.delete("timers", timer_key(timer))
            return None
        case PutSignal():
            return _put_signal(txn, op)
        case TakeSignal(execution_id=eid, seq=seq):
            txn.delete("mailbox", eid.encode() + b"\x00" + _U32.pack(seq))
            return None
        case PutSchedule(schedule_id=sid, data=data):
            txn.put("schedules", sid.encode(), frame(encode_value(data)))
            return None
        case DeleteSchedule(schedule_id=sid):
            txn.delete("schedules", sid.encode())
            return None
        case PutMeta(name=name, value=value):
            txn.put("meta", name.encode(), frame(encode_value(value)))
            return None
    raise TypeError(f"not a store op: {op!r}")


def apply_ops(txn: Txn, ops: Sequence[Op]) -> list[Any]:
    return [apply_op(txn, op) for op in ops]
