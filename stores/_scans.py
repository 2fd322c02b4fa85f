"""Whole-table reads for recovery: every active record as its stored fields, every
mailbox in one pass. Recovery reads all of it at each start, so these read in as few
Python calls per item as the layout's checks allow (see ``_layout`` for the tables)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from zlib import crc32

import orjson

from durably.core._errors import CorruptRecordError, StoreCorruptError

from ..core._records import MailboxEntry
from ._codec import FORMAT_VERSION, decode_mail, unframe
from ._keys import BadKey, id_part
from ._layout import _FRAME_SIZE, _U32, _frame_pack, _index_damage, log
from ._txn import Txn


def iter_fields(txn: Txn, status: str, after: str | None) -> Iterator[dict[str, Any]]:
    """``iter_executions(status)`` as each record's stored fields (its JSON object, as
    ``_codec.encode_record`` wrote it), checked the same way (frame, id, status against
    the index), without building each record: recovery reads every active record and,
    for most, looks at four fields. Decoded here, not in ``_codec``: a call per record
    is a tenth of its cost."""
    prefix = status.encode() + b"\x00"
    start = prefix + (after.encode() + b"\x00" if after else b"")
    size = len(prefix)
    for key, _ in txn.scan("by_status", start, prefix):
        raw_id = key[size:]
        try:
            eid = id_part(raw_id, "execution id")
        except BadKey as exc:
            raise StoreCorruptError(_index_damage(key, str(exc))) from None
        raw = txn.get("executions", raw_id)
        if raw is None:
            raise StoreCorruptError(_index_damage(key, "its execution has no record"))
        body = raw[_FRAME_SIZE:]
        try:
            if len(raw) < _FRAME_SIZE or raw[:_FRAME_SIZE] != _frame_pack(
                FORMAT_VERSION, crc32(body)
            ):
                body = unframe(raw, f"record of execution {eid}", eid)
            fields = orjson.loads(body)
        except (CorruptRecordError, ValueError):
            continue  # as iter_executions: get_execution shows it quarantined
        if type(fields) is not dict:
            continue
        timer = fields.get("timer")
        if (
            fields.get("id") != eid  # a damaged key: get_execution raises it for this id
            or type(fields.get("workflow")) is not str
            or (timer is not None and (type(timer) is not list or len(timer) != 2))
        ):
            continue  # not a record's fields: as iter_executions, get_execution shows it
        if fields.get("status") != status:
            found = f"a record in status {fields.get('status')}"
            raise StoreCorruptError(_index_damage(key, f"its execution has {found}"))
        yield fields


def mailboxes(txn: Txn) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
    """Every execution's buffered signals, in one pass over the table (recovery's read).

    An execution whose entries do not read maps to the error, so that it alone is
    quarantined; a key with no execution id in it is logged and skipped (the verifier
    reports it), as a damaged timer key is.
    """
    out: dict[str, list[MailboxEntry] | CorruptRecordError] = {}
    for key, raw in txn.scan("mailbox", b"", b""):
        cut = key.find(b"\x00")
        try:
            eid = id_part(key[:cut] if cut >= 0 else key, "execution id")
        except BadKey as exc:
            log.error("the mailbox table holds a damaged key %r (%s); skipped", key, exc)
            continue
        entries = out.setdefault(eid, [])
        if isinstance(entries, CorruptRecordError):
            continue
        try:
            if cut < 0 or len(key) != cut + 1 + _U32.size:
                raise CorruptRecordError(
                    f"a mailbox key of execution {eid} is damaged ({key!r})", execution_id=eid
                )
            what = f"mailbox entry of execution {eid}"
            body = unframe(raw, what, eid)
            entries.append(decode_mail(_U32.unpack_from(key, cut + 1)[0], body, what, eid))
        except CorruptRecordError as exc:
            out[eid] = exc
    return out
