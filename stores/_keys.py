"""Keys read back from a store, checked part by part before anything obeys them.

A stored value carries a checksum (``_codec.frame``); a key cannot (its bytes are its sort
order) and LMDB keeps none. So each key the layout decodes is checked for what its table
can hold, and a key that cannot be one is reported as damage: a flipped bit in a timer key
must not become a wrong due time, nor one in an index key a wrong execution. What a key
alone cannot tell (a due time flipped to another plausible one) is checked against the
owning record by the engine's recovery and by ``durably check``.
"""

from __future__ import annotations

import hashlib
import struct

from ..core._records import ALL_STATUSES, NEVER_MS, Timer

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
KNOWN_STATUSES = frozenset(ALL_STATUSES)


class BadKey(ValueError):
    """A key (or an index value) that no write of this layout can have produced."""


def id_part(raw: bytes, what: str) -> str:
    """An id read from a key: UTF-8 and not empty (ids never hold NUL: it separates)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BadKey(f"its {what} {raw!r} is not UTF-8") from None
    if not text:
        raise BadKey(f"its {what} is empty")
    return text


def hashed(text: str) -> bytes:
    """The key part that stands for a part too long for a key (``_layout._part``)."""
    return b"#" + hashlib.sha256(text.encode()).hexdigest().encode()


def timer_from_item(key: bytes, value: bytes) -> Timer:
    """A timers-index entry: ``due_ms:u64 owner NUL timer_id``, the value holding a timer
    id too long for the key (whose SHA-256 the key then holds, checked here)."""
    if len(key) < 11:  # the due time, one byte of owner, NUL, one byte of timer id
        raise BadKey(f"it is {len(key)} bytes long")
    due = _U64.unpack_from(key)[0]
    if due > NEVER_MS:
        raise BadKey(f"its due time {due} is past any time the engine writes")
    owner_raw, sep, tid_raw = key[8:].partition(b"\x00")
    if not sep:
        raise BadKey("it has no NUL between owner and timer id")
    owner = id_part(owner_raw, "owner")
    if value:
        timer_id = id_part(value, "timer id")
        if tid_raw != hashed(timer_id):
            raise BadKey("its hashed timer id does not match the timer id it keeps")
    else:
        timer_id = id_part(tid_raw, "timer id")
    return Timer(due, owner, timer_id)


def status_entry(key: bytes) -> tuple[str, str]:
    """A status-index key: ``status NUL execution_id``, the status one the engine knows."""
    status_raw, sep, eid_raw = key.partition(b"\x00")
    status = status_raw.decode(errors="replace")
    if not sep or status not in KNOWN_STATUSES:
        raise BadKey(f"its status {status_raw!r} is not one of {sorted(KNOWN_STATUSES)}")
    return status, id_part(eid_raw, "execution id")


def seq_entry(key: bytes, what: str) -> tuple[str, int]:
    """An events or mailbox key: ``execution_id NUL seq:u32`` (ids hold no NUL, so the
    first NUL separates, whatever bytes the sequence number has)."""
    eid_raw, sep, seq_raw = key.partition(b"\x00")
    if not sep or len(seq_raw) != _U32.size:
        raise BadKey(f"it is not an execution id and a 4-byte {what} number")
    return id_part(eid_raw, "execution id"), _U32.unpack(seq_raw)[0]
