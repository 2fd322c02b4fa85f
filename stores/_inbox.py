"""The inbox half of the layout: what clients' writes ask of the store's worker, and the
answers to the calls a worker runs for a client (``_layout.apply_op`` dispatches here)."""

from __future__ import annotations

import struct
from itertools import islice
from typing import TYPE_CHECKING

from durably.core._errors import CorruptRecordError

from ..core._records import INBOX_CALL, InboxEntry
from ..core._shards import inbox_shard
from ._codec import unframe

if TYPE_CHECKING:
    from ._txn import Txn

_U64 = struct.Struct(">Q")


def _inbox_key(key: str, kind: str) -> bytes:
    return key.encode() + b"\x00" + kind.encode()


def _shard(raw_key: bytes) -> int:
    name, _, kind = raw_key.rpartition(b"\x00")
    return inbox_shard(name.decode(errors="replace"), kind.decode(errors="replace"), INBOX_CALL)


def inbox_waiting(txn: Txn) -> bool:
    """Whether the inbox holds an entry: the worker's periodic look, one cursor step."""
    return next(iter(txn.scan("inbox", b"", b"")), None) is not None


def _take_inbox(txn: Txn, limit: int, shards: frozenset[int] | None = None) -> list[InboxEntry]:
    # Keys first, deletes after: neither backend's scan may see its table change under it.
    items = (key for key, _ in txn.scan("inbox", b"", b""))
    if shards is not None:
        items = (key for key in items if _shard(key) in shards)
    keys = list(islice(items, max(limit, 0)))
    out: list[InboxEntry] = []
    for raw_key in keys:
        txn.delete("inbox", raw_key)
        name, _, kind_raw = raw_key.rpartition(b"\x00")
        key, kind = name.decode(errors="replace"), kind_raw.decode(errors="replace")
        request: bytes | Exception | None = None
        if kind == INBOX_CALL and name:  # (an empty key is no LMDB key: never a call)
            raw = txn.get("calls", name)
            if raw is not None:
                txn.delete("calls", name)
                try:
                    request = unframe(raw, f"the request of call {key!r}")
                except CorruptRecordError as exc:
                    request = exc
        out.append(InboxEntry(key, kind, request))
    return out


def _take_reply(txn: Txn, token: str) -> bytes | Exception | None:
    raw = txn.get("replies", token.encode())
    if raw is None:
        return None
    txn.delete("replies", token.encode())
    try:
        body = unframe(raw, f"the answer to call {token!r}")
    except CorruptRecordError as exc:
        return exc
    if len(body) < _U64.size:
        return CorruptRecordError(f"the answer to call {token!r} is truncated")
    return body[_U64.size :]


def _expire_replies(txn: Txn, before_ms: int) -> int:
    stale = []
    for key, raw in txn.scan("replies", b"", b""):
        try:
            body = unframe(raw, "an answer")
        except CorruptRecordError:
            body = b""  # a damaged answer can never be read: it goes too
        if len(body) < _U64.size or _U64.unpack_from(body)[0] < before_ms:
            stale.append(key)
    for key in stale:
        txn.delete("replies", key)
    return len(stale)
