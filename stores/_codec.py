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


def encode_record(record: ExecutionRecord) -> bytes:
    return orjson.dumps({name: getattr(record, name) for name in _RECORD_FIELDS})


def decode_record(body: bytes) -> ExecutionRecord:
    data = orjson.loads(body)
    timer = data.get("timer")
    if timer is not None:
        data["timer"] = (timer[0], timer[1])
    return ExecutionRecord(**data)


def encode_value(value: Any) -> bytes:
    return orjson.dumps(value)


def decode_value(body: bytes) -> Any:
    return orjson.loads(body)


def encode_mail(entry: MailboxEntry) -> bytes:
    return orjson.dumps(
        {"signal": entry.signal, "payload": entry.payload, "dedup_key": entry.dedup_key}
    )


def decode_mail(seq: int, body: bytes) -> MailboxEntry:
    data = orjson.loads(body)
    return MailboxEntry(seq, data["signal"], data["payload"], data["dedup_key"])
