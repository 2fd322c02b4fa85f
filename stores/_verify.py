"""``durably check``: read a store whole and say what is damaged.

Every key and value of every table is read in one read transaction, so the check runs
beside a working worker (an LMDB reader never blocks the writer, and sees one consistent
snapshot), and checked:

- the file is at least as long as its header says its pages are (at open);
- every framed value's format byte and CRC-32;
- every key decodes as its table's keys do (``_keys.py``), and keys come in order;
- agreement: each status-index entry names a record in that status, and each record has
  its entry; each events log is contiguous from 0 and belongs to a record, and each record
  has one; each timer belongs to a record or a schedule that agrees with it (the record's
  pending timer, or a workflow timeout of an unfinished execution), and every pending
  timer a record or an active schedule names is in the index; mailbox entries, their
  counters, dedup and idempotency entries belong to records.

LMDB reports a page it cannot read as an error that ends the transaction: that is a
finding, and the next table is read in a new snapshot (then agreement across tables may
show a running worker's own changes; the report says so).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import attrs
import lmdb

from ..core._errors import CorruptRecordError, StoreError
from ..core._history import TIMEOUT_TIMER
from ..core._records import ACTIVE_STATUSES, Timer
from . import _layout
from ._codec import decode_mail, decode_value, unframe
from ._keys import KNOWN_STATUSES, BadKey, id_part, seq_entry, status_entry, timer_from_item
from ._lmdb import LmdbStore

_U32 = struct.Struct(">I")
_SCHEDULE = "schedule:"
#: Tables this module knows nothing of beyond their frames (the worker's inbox).
_FRAMED = ("calls", "replies", "queues")


@attrs.frozen
class Finding:
    table: str
    message: str
    #: False for what is odd but harmless (a finished execution's leftover timer).
    damage: bool = True


@attrs.define
class CheckReport:
    """What ``verify_store`` read and found; ``damaged`` decides ``durably check``'s exit."""

    path: str
    facts: dict[str, int] = attrs.Factory(dict)
    counts: dict[str, int] = attrs.Factory(dict)
    findings: list[Finding] = attrs.Factory(list)
    resnapshots: int = 0

    @property
    def damaged(self) -> bool:
        return any(f.damage for f in self.findings)

    def lines(self) -> list[str]:
        out = [f"durably check {self.path}"]
        if self.facts:
            f = self.facts
            out.append(
                f"  data.mdb: {f['file_bytes']} bytes; its header: {f['pages_used']} pages of "
                f"{f['page_bytes']} bytes in use, transaction {f['last_txn']}"
            )
        out += [f"  {table:<12} {count} entries read" for table, count in self.counts.items()]
        out += [
            f"{'damage' if x.damage else 'note'}: {x.table}: {x.message}" for x in self.findings
        ]
        if self.resnapshots:
            out.append(
                f"note: {self.resnapshots} table(s) were read in a new snapshot after an "
                "unreadable page; agreement across them may show a running worker's writes"
            )
        problems = sum(x.damage for x in self.findings)
        if problems:
            out.append(
                f"result: {problems} problem(s): the store is damaged; restore it from a "
                "backup (docs/operations.md, Backups)"
            )
        else:
            out.append("result: no damage found")
        return out


def verify_store(path: str | os.PathLike[str]) -> CheckReport:
    """Read the store at ``path`` whole (read-only) and report what is damaged."""
    report = CheckReport(str(path))
    try:
        store = LmdbStore(path, readonly=True)
    except StoreError as exc:
        report.findings.append(Finding("data.mdb", str(exc)))
        return report
    try:
        report.facts = store.file_facts()
        with ExitStack() as stack:
            _Verifier(store, report, stack).run()
    finally:
        store.close()
    return report


class _Verifier:
    def __init__(self, store: LmdbStore, report: CheckReport, stack: ExitStack) -> None:
        self.store = store
        self.report = report
        self.stack = stack
        self.txn, self.tables = stack.enter_context(store.reading())
        #: Each readable record: its status and pending timer.
        self.records: dict[str, tuple[str, tuple[int, str] | None]] = {}
        self.unreadable: set[str] = set()
        #: Each readable schedule's next fire, if it is active.
        self.schedules: dict[str, int | None] = {}
        self.timers: set[tuple[int, str, str]] = set()
        #: Tables read to their end: only these may show something missing.
        self.complete: set[str] = set()

    def damage(self, table: str, message: str, *, harmless: bool = False) -> None:
        self.report.findings.append(Finding(table, message, not harmless))

    def scan(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        """Every item of ``table`` in stored order, checking that order as it goes."""
        self.report.counts[table] = 0
        if table not in self.tables:
            self.complete.add(table)
            return
        previous: bytes | None = None
        try:
            for key, value in self.txn.scan(table, b"", b""):
                if previous is not None and key <= previous:
                    self.damage(table, f"key {key!r} is out of order (after {previous!r})")
                previous = key
                self.report.counts[table] += 1
                yield key, value
            self.complete.add(table)
        except lmdb.Error as exc:
            where = "at its start" if previous is None else f"after key {previous!r}"
            self.damage(table, f"LMDB cannot read the table {where}: {exc}")
            self.stack.close()  # LMDB ended the transaction: read on in a new one
            self.txn, self.tables = self.stack.enter_context(self.store.reading())
            self.report.resnapshots += 1

    def run(self) -> None:
        self.check_executions()
        self.check_schedules()
        self.check_status_index()
        self.check_events()
        self.check_timers()
        self.check_mailboxes()
        self.check_small_tables()
        for table in self.tables:
            if table not in self.report.counts:
                for key, raw in self.scan(table):
                    if table in _FRAMED:
                        self.frame(table, key, raw)

    def frame(self, table: str, key: bytes, raw: bytes) -> bytes | None:
        try:
            return unframe(raw, f"the value of key {key!r}")
        except CorruptRecordError as exc:
            self.damage(table, str(exc))
            return None

    # --- records and their index ---

    def check_executions(self) -> None:
        for key, raw in self.scan("executions"):
            try:
                eid = id_part(key, "execution id")
                record = _layout.read_record(eid, raw)
            except (BadKey, CorruptRecordError) as exc:
                self.damage("executions", f"key {key!r}: {exc}")
                self.unreadable.add(key.decode(errors="replace"))
                continue
            if record.status not in KNOWN_STATUSES:
                self.damage("executions", f"execution {eid} has unknown status {record.status!r}")
            self.records[eid] = (record.status, record.timer)

    def check_status_index(self) -> None:
        indexed: set[str] = set()
        for key, _ in self.scan("by_status"):
            try:
                status, eid = status_entry(key)
            except BadKey as exc:
                self.damage("by_status", f"entry {key!r}: {exc}")
                continue
            indexed.add(eid)
            if eid in self.unreadable:
                continue  # its record's damage is reported already
            record = self.records.get(eid)
            if record is None:
                if "executions" in self.complete:
                    self.damage("by_status", f"entry {key!r} names no execution record")
            elif record[0] != status:
                self.damage("by_status", f"entry {key!r}: the record says {record[0]}")
        if "by_status" not in self.complete:
            return
        for eid in self.records.keys() - indexed:
            self.damage(
                "by_status",
                f"execution {eid} ({self.records[eid][0]}) has no entry: recovery and "
                "listings by status do not see it",
            )

    def check_events(self) -> None:
        logged: set[str] = set()
        current, expected = "", 0
        for key, raw in self.scan("events"):
            try:
                eid, seq = seq_entry(key, "event")
            except BadKey as exc:
                self.damage("events", f"key {key!r}: {exc}")
                continue
            if eid != current:
                current, expected = eid, 0
                logged.add(eid)
                self.owned("events", eid, "a log")
            if seq != expected:
                self.damage("events", f"event {expected} of {eid} is missing (found {seq})")
            expected = seq + 1
            self.frame("events", key, raw)
        if "events" not in self.complete:
            return
        for eid in self.records.keys() - logged:
            self.damage("events", f"execution {eid} has no events (its log is lost)")

    # --- timers and schedules ---

    def check_schedules(self) -> None:
        for key, raw in self.scan("schedules"):
            body = self.frame("schedules", key, raw)
            try:
                sid = id_part(key, "schedule id")
                data: Any = None if body is None else decode_value(body, f"schedule {sid!r}")
            except (BadKey, CorruptRecordError) as exc:
                self.damage("schedules", f"key {key!r}: {exc}")
                continue
            if isinstance(data, dict):
                active = data.get("status") == "active" and isinstance(data.get("next_ms"), int)
                self.schedules[sid] = data["next_ms"] if active else None

    def check_timers(self) -> None:
        for key, value in self.scan("timers"):
            try:
                timer = timer_from_item(key, value)
            except BadKey as exc:
                self.damage("timers", f"entry {key!r}: {exc}")
                continue
            self.timers.add((timer.due_ms, timer.owner, timer.timer_id))
            self.timer_owner(timer)
        if "timers" not in self.complete:
            return
        for eid, (status, pending) in self.records.items():
            if status not in ACTIVE_STATUSES or pending is None:
                continue
            if (pending[0], eid, pending[1]) not in self.timers:
                self.damage(
                    "timers",
                    f"execution {eid} waits on timer {pending[1]!r} due at {pending[0]}, "
                    "which the index does not hold: it would never wake",
                )
        for sid, next_ms in self.schedules.items():
            owner = _SCHEDULE + sid
            if next_ms is not None and not any(
                t[0] == next_ms and t[1] == owner for t in self.timers
            ):
                self.damage("timers", f"schedule {sid!r} fires next at {next_ms}: not indexed")

    def timer_owner(self, timer: Timer) -> None:
        shown = f"timer {timer.timer_id!r} of {timer.owner} due at {timer.due_ms}"
        if timer.owner.startswith(_SCHEDULE):
            sid = timer.owner[len(_SCHEDULE) :]
            if sid not in self.schedules:
                if "schedules" in self.complete:
                    self.damage("timers", f"{shown}: no such schedule")
            elif self.schedules[sid] != timer.due_ms:
                self.damage("timers", f"{shown}: the schedule says {self.schedules[sid]}")
            return
        record = self.records.get(timer.owner)
        if record is None:
            self.owned("timers", timer.owner, f"timer {timer.timer_id!r} due at {timer.due_ms}")
            return
        status, pending = record
        if status not in ACTIVE_STATUSES:
            self.damage(
                "timers", f"{shown}: the execution is {status} (fires nothing)", harmless=True
            )
        elif (
            timer.timer_id != TIMEOUT_TIMER
            and status != "running"  # a gather's members wait on timers the record cannot name
            and pending != (timer.due_ms, timer.timer_id)
        ):
            self.damage("timers", f"{shown}: the record's pending timer is {pending}")

    # --- mailboxes and the small indexes ---

    def check_mailboxes(self) -> None:
        last: dict[str, int] = {}
        for key, raw in self.scan("mailbox"):
            try:
                eid, seq = seq_entry(key, "mailbox")
                body = unframe(raw, f"mailbox entry {seq} of {eid}", eid)
                decode_mail(seq, body, f"mailbox entry {seq} of {eid}", eid)
            except (BadKey, CorruptRecordError) as exc:
                self.damage("mailbox", f"key {key!r}: {exc}")
                continue
            last[eid] = seq
            self.owned("mailbox", eid)
        for key, raw in self.scan("mailbox_seq"):
            owner = self.owned_key("mailbox_seq", key)
            if owner is None:
                continue
            if len(raw) != _U32.size:
                self.damage("mailbox_seq", f"the counter of {owner} is {raw!r}, not 4 bytes")
            elif owner in last and _U32.unpack(raw)[0] <= last[owner]:
                self.damage(
                    "mailbox_seq", f"the counter of {owner} is not past its entry {last[owner]}"
                )

    def check_small_tables(self) -> None:
        for key, raw in self.scan("dedup"):
            self.owned_key("dedup", key.partition(b"\x00")[0])
            if len(raw) != _U32.size:
                self.damage("dedup", f"entry {key!r} holds {raw!r}, not a 4-byte number")
        for key, raw in self.scan("idempotency"):
            try:
                eid = id_part(raw, "execution id")
            except BadKey as exc:
                self.damage("idempotency", f"entry {key!r}: {exc}")
                continue
            self.owned("idempotency", eid)
        for key, raw in self.scan("meta"):
            body = self.frame("meta", key, raw)
            if body is not None:
                try:
                    decode_value(body, f"meta entry {key!r}")
                except CorruptRecordError as exc:
                    self.damage("meta", str(exc))

    def owned_key(self, table: str, key: bytes) -> str | None:
        try:
            eid = id_part(key, "execution id")
        except BadKey as exc:
            self.damage(table, f"key {key!r}: {exc}")
            return None
        self.owned(table, eid)
        return eid

    def owned(self, table: str, eid: str, what: str = "an entry") -> None:
        """Report ``what`` of execution ``eid`` if no record is there to own it."""
        known = eid in self.records or eid in self.unreadable
        if not known and "executions" in self.complete:
            self.damage(table, f"{what} of {eid}, which has no execution record")
