"""The store layout and the meaning of every op, written once over a tiny key-value API.

Both stores run this same code: ``MemoryStore`` over sorted in-memory tables, ``LmdbStore``
over LMDB named databases. So the conformance suite tests one set of semantics, and the
two differ only in durability.

Tables and keys (integers big-endian so that byte order is numeric order)::

    executions   eid                                -> framed record
    events       eid 0x00 seq:u32                   -> framed event (opaque bytes)
    by_status    status 0x00 eid                    -> b""
    timers       due_ms:u64 owner 0x00 timer_id     -> b"" (or the timer id, if hashed)
    mailbox      eid 0x00 seq:u32                   -> framed mail (_codec.encode_mail)
    mailbox_seq  eid                                -> next mailbox seq:u32
    dedup        eid 0x00 key-or-hash               -> seq:u32
    idempotency  workflow 0x00 key (or its hash)    -> eid
    schedules    schedule id                        -> framed value
    meta         name                               -> framed value
    inbox        eid-or-token 0x00 kind             -> b"" (a client's write, for the worker)
    calls        token                              -> framed request (JSON bytes)
    replies      token                              -> framed at_ms:u64 + answer (JSON bytes)

Ids never contain NUL (the engine checks), so NUL separates key parts unambiguously.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterator
from typing import Any
from zlib import crc32

from durably.core._errors import CorruptRecordError, StoreCorruptError

from ..core import _decide as decide
from ..core._records import (
    CANCEL_SIGNAL,
    INBOX_CALL,
    INBOX_SIGNAL,
    INBOX_START,
    TERMINAL_STATUSES,
    AddTimer,
    Append,
    CreateExecution,
    DeleteSchedule,
    ExecutionRecord,
    ExpireReplies,
    MailboxEntry,
    Notify,
    Op,
    PutCall,
    PutExecution,
    PutMeta,
    PutReply,
    PutSchedule,
    PutSignal,
    PutSignalResult,
    RemoveTimer,
    RequireNoSignal,
    ResetLog,
    SignalArrived,
    SignalOutcome,
    SignalWithStart,
    SignalWithStartResult,
    TakeInbox,
    TakeReply,
    TakeSignal,
    Timer,
    WithdrawCall,
    quarantined_record,
)
from ..core._shards import shard_of
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
from ._inbox import (
    _expire_replies,
    _inbox_key,
    _take_inbox,
    _take_reply,
    inbox_waiting as inbox_waiting,
)
from ._keys import BadKey, id_part, timer_from_item
from ._leases import holds
from ._txn import Txn as Txn

log = logging.getLogger("durably")

#: The tables of clients' requests to the worker; a store opened read-only that was
#: created before they existed has none of them (and nothing waiting in them).
INBOX_TABLES = ("inbox", "calls", "replies")
#: The queue tables (``_queues.py``); likewise missing from a store older than queues.
QUEUE_TABLES = ("queues", "queue_dedup", "debounce", "admissions")
#: The tables of many workers (``_leases.py``); likewise missing from older stores.
LEASE_TABLES = ("leases", "workers")
OPTIONAL_TABLES = INBOX_TABLES + QUEUE_TABLES + LEASE_TABLES
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
    *INBOX_TABLES,
    *QUEUE_TABLES,
    *LEASE_TABLES,
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


def _idem_key(workflow: str, key: str) -> bytes:
    return _part(workflow) + b"\x00" + _part(key)


# --- reads ------------------------------------------------------------------------------


def get_execution(txn: Txn, eid: str) -> ExecutionRecord | None:
    raw = txn.get("executions", eid.encode())
    if raw is None:
        return None
    return read_record(eid, raw)


def read_record(eid: str, raw: bytes) -> ExecutionRecord:
    """The record stored under key ``eid``, checked: frame, shape, and that it is ``eid``'s."""
    what = f"record of execution {eid}"
    record = decode_record(unframe(raw, what, eid), what, eid)
    if record.id != eid:
        # The value is checksummed, the key is not: the key is what was damaged.
        raise CorruptRecordError(
            f"the {what} names execution {record.id!r}: its key in the executions table is damaged",
            execution_id=eid,
        )
    return record


def read_events(txn: Txn, eid: str, from_seq: int) -> list[bytes]:
    prefix = eid.encode() + b"\x00"
    start = len(prefix)
    size = start + _U32.size
    out: list[bytes] = []
    append = out.append
    expected = from_seq
    # The hot loop of every replay: the frame is checked inline, and ``unframe`` (which
    # builds the error message) runs only for a frame that fails the check.
    for key, raw in txn.scan("events", prefix + _U32.pack(from_seq), prefix):
        if len(key) != size:
            raise CorruptRecordError(
                f"the key of event {expected} of execution {eid} is damaged ({key!r})",
                execution_id=eid,
            )
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
    for record in iter_executions(txn, status, after):
        if workflow is not None and record.workflow != workflow:
            continue
        out.append(record)
        if limit is not None and len(out) >= limit:
            break
    return out


def iter_executions(txn: Txn, status: str | None, after: str | None) -> Iterator[ExecutionRecord]:
    """Records in id order after ``after``: through the status index, or every record.

    A status-index entry that disagrees with the records (an id no record has, or a
    record in another status) raises ``StoreCorruptError``: the index cannot be trusted,
    for this entry nor for the entries its damage may hide, and whoever must see every
    execution (the engine's recovery) then lists every record instead.
    """
    if status is None:
        yield from _every_record(txn, after)
        return
    prefix = status.encode() + b"\x00"
    start = prefix + (after.encode() + b"\x00" if after else b"")
    size = len(prefix)
    for key, _ in txn.scan("by_status", start, prefix):
        try:
            eid = id_part(key[size:], "execution id")
            record = get_execution(txn, eid)
        except BadKey as exc:
            raise StoreCorruptError(_index_damage(key, str(exc))) from None
        except CorruptRecordError:
            continue  # in no status: get_execution and unfiltered listings show it
        if record is None or record.status != status:
            found = "no record" if record is None else f"a record in status {record.status}"
            raise StoreCorruptError(_index_damage(key, f"its execution has {found}"))
        yield record


def _index_damage(key: bytes, why: str) -> str:
    return (
        f"the status index is damaged: entry {key!r} ({why}); listings by status cannot be "
        "trusted (a listing without a status reads every record)"
    )


def _every_record(txn: Txn, after: str | None) -> Iterator[ExecutionRecord]:
    start = after.encode() + b"\x00" if after else b""
    previous = b""
    for key, raw in txn.scan("executions", start, b""):
        if key <= previous:
            # A key out of order misleads LMDB's binary search: lookups near it (the
            # engine's reads of records by id) may miss healthy records, silently.
            raise StoreCorruptError(
                f"the executions table is damaged: key {key!r} is out of order (after "
                f"{previous!r}); records cannot be looked up reliably"
            )
        previous = key
        try:
            eid = id_part(key, "execution id")
        except BadKey as exc:
            # No id to show it under (nor to page on): the verifier reports it.
            log.error("the executions table holds a damaged key %r (%s); skipped", key, exc)
            continue
        try:
            record = read_record(eid, raw)
        except CorruptRecordError as exc:
            record = quarantined_record(eid, exc)
        yield record


def due_timers(txn: Txn, before_ms: int, limit: int | None) -> list[Timer]:
    out: list[Timer] = []
    if limit is not None and limit <= 0:
        return out
    for key, value in txn.scan("timers", b"", b""):
        try:
            timer = timer_from_item(key, value)
        except BadKey as exc:
            # Its owner cannot be told from it: the owner's record is what shows the loss
            # (the engine's recovery checks each waiting record's timer against the index).
            log.error("the timers index holds a damaged entry %r (%s); ignored", key, exc)
            continue
        if timer.due_ms >= before_ms:
            break
        out.append(timer)
        if limit is not None and len(out) >= limit:
            break
    return out


def mailbox(txn: Txn, eid: str) -> list[MailboxEntry]:
    prefix = eid.encode() + b"\x00"
    start = len(prefix)
    size = start + _U32.size
    out: list[MailboxEntry] = []
    for key, raw in txn.scan("mailbox", prefix, prefix):
        if len(key) != size:
            raise CorruptRecordError(
                f"a mailbox key of execution {eid} is damaged ({key!r})", execution_id=eid
            )
        what = f"mailbox entry of execution {eid}"
        body = unframe(raw, what, eid)
        out.append(decode_mail(_U32.unpack_from(key, start)[0], body, what, eid))
    return out


def find_idempotent(txn: Txn, workflow: str, key: str) -> str | None:
    raw = txn.get("idempotency", _idem_key(workflow, key))
    if raw is None:
        return None
    try:
        return id_part(raw, "execution id")
    except BadKey as exc:
        raise CorruptRecordError(
            f"the idempotency entry of workflow {workflow!r} and key {key!r} is damaged: {exc}"
        ) from None


def get_value(txn: Txn, table: str, name: str) -> Any | None:
    raw = txn.get(table, name.encode())
    if raw is None:
        return None
    what = f"{table} entry {name!r}"
    return decode_value(unframe(raw, what), what)


def list_values(txn: Txn, table: str) -> list[tuple[str, Any]]:
    out = []
    for key, raw in txn.scan(table, b"", b""):
        try:
            name = id_part(key, "name")
        except BadKey as exc:
            raise CorruptRecordError(f"the {table} table holds a damaged key: {exc}") from None
        what = f"{table} entry {name!r}"
        out.append((name, decode_value(unframe(raw, what), what)))
    return out


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
            existing = find_idempotent(txn, record.workflow, record.idempotency_key)
            assert existing is not None
            return existing
    if txn.get("executions", record.id.encode()) is not None:
        raise RuntimeError(f"execution id {record.id} already exists")
    _put_record(txn, record, None)
    _append(txn, record.id, 0, op.events)
    return record.id


def _signal_with_start(txn: Txn, op: SignalWithStart) -> SignalWithStartResult:
    owner = _create(txn, op.create)
    created = owner == op.create.record.id
    result = _put_signal(txn, PutSignal(owner, op.signal, op.payload, None, op.at))
    if op.notify:
        if created:
            txn.put("inbox", _inbox_key(owner, INBOX_START), b"")
        txn.put("inbox", _inbox_key(owner, INBOX_SIGNAL), b"")
    return SignalWithStartResult(owner, created, result)


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
    entry = MailboxEntry(seq, op.signal, op.payload, op.dedup_key, op.at, op.by, op.reason)
    delivered = _delivered(txn, record, entry)
    txn.put("mailbox", eid.encode() + b"\x00" + _U32.pack(seq), frame(encode_mail(entry)))
    txn.put("mailbox_seq", eid.encode(), _U32.pack(seq + 1))
    return PutSignalResult(
        SignalOutcome.BUFFERED,
        seq=seq,
        status=record.status,
        waiting_signal=record.waiting_signal,
        delivered=delivered,
    )


def _delivered(txn: Txn, record: ExecutionRecord, entry: MailboxEntry) -> bool:
    """Whether the wait the record says is open takes ``entry`` (``decide.receipt``),
    read in the signal's own transaction: the older entries, the deadline."""
    if record.waiting_signal != entry.signal:
        return False  # the common case for a running execution: no mailbox read
    try:
        older = mailbox(txn, record.id)
    except CorruptRecordError:
        return False  # kept, but which entry the wait takes cannot be told: no promise
    return decide.receipt(older, entry, record.waiting_signal, record.timer, CANCEL_SIGNAL)


def _require_no_signal(txn: Txn, op: RequireNoSignal) -> None:
    entry = decide.first_taken(mailbox(txn, op.execution_id), op.signal, op.deadline)
    if entry is not None:
        raise SignalArrived(
            f"signal {op.signal!r} (mailbox entry {entry.seq}) of execution "
            f"{op.execution_id} arrived before its wait's deadline; the wait takes it"
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
        case SignalWithStart():
            return _signal_with_start(txn, op)
        case ResetLog(execution_id=eid, events=events):
            # Keys first, deletes after: neither backend's scan may see its table change.
            prefix = eid.encode() + b"\x00"
            stale = [key for key, _ in txn.scan("events", prefix, prefix)]
            for key in stale:
                txn.delete("events", key)
            _append(txn, eid, 0, events)
            return None
        case AddTimer(timer=timer):
            txn.put("timers", timer_key(timer), _timer_value(timer))
            return None
        case RemoveTimer(timer=timer):
            txn.delete("timers", timer_key(timer))
            return None
        case PutSignal():
            return _put_signal(txn, op)
        case RequireNoSignal():
            _require_no_signal(txn, op)
            return None
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
        case Notify(execution_id=eid, kind=kind, unless=unless):
            if unless is None or not holds(txn, shard_of(eid), *unless):
                txn.put("inbox", _inbox_key(eid, kind), b"")
            return None
        case TakeInbox(limit=limit, shards=shards):
            return _take_inbox(txn, limit, shards)
        case PutCall(token=token, request=request):
            txn.put("calls", token.encode(), frame(request))
            txn.put("inbox", _inbox_key(token, INBOX_CALL), b"")
            return None
        case WithdrawCall(token=token):
            txn.delete("inbox", _inbox_key(token, INBOX_CALL))
            pending = txn.get("calls", token.encode()) is not None
            txn.delete("calls", token.encode())
            return pending
        case PutReply(token=token, at_ms=at_ms, reply=reply):
            txn.put("replies", token.encode(), frame(_U64.pack(at_ms) + reply))
            return None
        case TakeReply(token=token):
            return _take_reply(txn, token)
        case ExpireReplies(before_ms=before_ms):
            return _expire_replies(txn, before_ms)
    raise TypeError(f"not a store op: {op!r}")
