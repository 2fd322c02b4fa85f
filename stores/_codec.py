"""How a store turns its records into bytes, and the frame around every stored value.

Every value a store writes is framed: one format-version byte, a CRC-32 of the body, the
body. LMDB keeps no checksum of its own (a flipped bit comes back silently), so the frame
is how a corrupt record is detected instead of being replayed.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

from durably.core._errors import CorruptRecordError

from ..core._records import ExecutionRecord, MailboxEntry

FORMAT_VERSION = 1
_HEADER = struct.Struct(">BI")
_HEADER_SIZE = _HEADER.size


def frame(body: bytes) -> bytes:
    return _HEADER.pack(FORMAT_VERSION, zlib.crc32(body)) + body


def unframe(raw: bytes, what: str, execution_id: str | None = None) -> bytes:
    """Check the frame and return the body, or raise :class:`CorruptRecordError`."""
    if len(raw) < _HEADER_SIZE:
        raise CorruptRecordError(
            f"{what} is truncated ({len(raw)} bytes)", execution_id=execution_id
        )
    version, crc = _HEADER.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise CorruptRecordError(
            f"{what} has format version {version}, this durably reads {FORMAT_VERSION}; "
            "upgrade durably to read it",
            execution_id=execution_id,
        )
    body = bytes(raw[_HEADER_SIZE:])
    if zlib.crc32(body) != crc:
        raise CorruptRecordError(
            f"{what} failed its checksum: the stored bytes are corrupt",
            execution_id=execution_id,
        )
    return body


_RECORD_FIELDS = tuple(a.name for a in ExecutionRecord.__attrs_attrs__)


#: Fields written only when they differ from their default: most executions have no
#: parent, one run and no queue, and every record write would otherwise carry them.
_SPARSE = {
    "parent_id": None,
    "run": 1,
    "queue": None,
    "priority": 0,
    "partition": None,
    "not_before": None,
    "admitted_ms": None,
    "dedup_id": None,
    "trace": None,
}
_DENSE = tuple(name for name in _RECORD_FIELDS if name not in _SPARSE)


def encode_record(record: ExecutionRecord) -> bytes:
    data = {name: getattr(record, name) for name in _DENSE}
    for name, default in _SPARSE.items():
        value = getattr(record, name)
        if value != default:
            data[name] = value
    return orjson.dumps(data)


def decode_record(
    body: bytes, what: str = "a record", execution_id: str | None = None
) -> ExecutionRecord:
    try:
        return ExecutionRecord.from_fields(orjson.loads(body))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _unreadable(what, exc, execution_id) from exc


def encode_value(value: Any) -> bytes:
    return orjson.dumps(value)


def decode_value(body: bytes, what: str = "a value") -> Any:
    try:
        return orjson.loads(body)
    except ValueError as exc:
        raise _unreadable(what, exc, None) from exc


def encode_mail(entry: MailboxEntry) -> bytes:
    data = {"signal": entry.signal, "payload": entry.payload, "dedup_key": entry.dedup_key}
    if entry.at is not None:  # the send time; an entry without one reads as before
        data["at"] = entry.at
    if entry.by is not None:
        data["by"] = entry.by
    if entry.reason is not None:
        data["reason"] = entry.reason
    return orjson.dumps(data)


def decode_mail(
    seq: int, body: bytes, what: str = "a mailbox entry", execution_id: str | None = None
) -> MailboxEntry:
    try:
        data = orjson.loads(body)
        at = data.get("at")
        if at is not None and type(at) is not int:
            raise TypeError(f"its send time is {at!r}, not epoch milliseconds")
        by, reason = data.get("by"), data.get("reason")
        for name, text in (("sender", by), ("reason", reason)):
            if text is not None and type(text) is not str:
                raise TypeError(f"its {name} is {text!r}, not text")
        return MailboxEntry(seq, data["signal"], data["payload"], data["dedup_key"], at, by, reason)
    except (ValueError, TypeError, KeyError) as exc:
        raise _unreadable(what, exc, execution_id) from exc


def _unreadable(what: str, exc: Exception, execution_id: str | None) -> CorruptRecordError:
    # The checksum held, so these bytes are what was written: by another format, or by a
    # writer that is not this layout. Either way it is not a record this durably can use.
    return CorruptRecordError(
        f"{what} passed its checksum but does not decode ({type(exc).__name__}: {exc}); "
        "was it written by another version of durably?",
        execution_id=execution_id,
    )
