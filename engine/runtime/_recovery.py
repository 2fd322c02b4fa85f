"""Recovery on start: resume what was running, wake what has its signal, leave the rest
parked with their timers armed, and check the store's indexes on the way.

Rules of this module:

- Every active record is read once (through the status index, a page at a time), and
  each check rides on that read: no second pass over a healthy store.
- The timers index is checked against the waiting records (``core/_consistency.py``):
  a pending timer missing from it quarantines its execution; a workflow timeout without
  a plausible entry gets one armed in memory at the latest its deadline can be.
- A damaged status index (an entry its record disagrees with) may hide executions, so
  recovery then reads every record instead; what it already did stays done.
- Nothing here writes but a quarantine, which holds its execution until it is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

import attrs

from durably.stores import ACTIVE_STATUSES, NEVER_MS, ExecutionRecord, Timer

from ..core._consistency import (
    TimerIndex,
    missing_wait_timer,
    timeout_in_window,
    timeout_window,
)
from ..core._errors import CorruptRecordError, StoreCorruptError, StoreError
from ..core._history import TIMEOUT_TIMER
from ..core._records import CANCEL_SIGNAL, MailboxEntry, cancel_args
from ..core._shards import shard_of
from ..core._status import TERMINAL
from ._ports import Parts
from ._queues import QueueManager

log = logging.getLogger("durably")

_PAGE = 1000
_NONE: frozenset[str] = frozenset()


@attrs.frozen
class RecoveryReport:
    """What ``engine.recover()`` found and did."""

    resumed: int
    """Executions that were running (or pending) and now run again."""
    parked: int
    """Executions waiting on a timer or a signal, left parked with their timers armed."""
    woken: int
    """Waiting executions with a matching signal already buffered, woken now."""
    unknown_workflows: list[str]
    """Workflow names found in the store that this engine does not register (left as is)."""
    timers: int
    """Timers armed from the store's index."""
    quarantined: list[str] = attrs.field(factory=list)
    """Executions quarantined because the store disagreed with their record (a damaged
    timer key, an unreadable mailbox): failed, with the reason; the rest run."""
    queued: int = 0
    """Executions waiting for their queue, handed back to it."""


def _record(fields: dict[str, Any]) -> ExecutionRecord:
    try:
        return ExecutionRecord.from_fields(fields)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(
            f"the record of execution {fields['id']} does not decode ({exc})",
            execution_id=fields["id"],
        ) from None


def _advances(status: str, after: str | None, last: str) -> None:
    """Pages follow id order; one that does not advance comes from a damaged table, and
    would be read again forever."""
    if after is not None and last <= after:
        raise StoreCorruptError(
            f"listing {status} executions does not advance past {after}: the store's "
            "tables are damaged; run `durably check` and restore the store from a backup"
        )


class RecoveryHost(Protocol):
    """What recovery needs of the supervisor."""

    parts: Parts
    live: dict[str, Any]
    runq: dict[str, Any]
    held: dict[str, Any]

    def spawn(
        self, execution_id: str, *, cancel: tuple[str | None, str | None] | None = None
    ) -> None: ...

    def quarantine_soon(self, record: ExecutionRecord, why: str) -> None: ...

    @property
    def queues(self) -> QueueManager: ...


class Recovery:
    """One run of recovery (``run``), with what it counts on the way."""

    def __init__(self, host: RecoveryHost, shards: frozenset[int] | None = None) -> None:
        self.host = host
        #: A worker of many recovers only the shards it holds (``core/_shards.py``).
        self.shards = shards
        self.store = host.parts.store
        self.resumed = self.parked = self.woken = self.queued = 0
        self.unknown: set[str] = set()
        self.quarantined: list[str] = []
        self.backstops: list[Timer] = []
        self.index = TimerIndex(())
        self.mail: dict[str, list[MailboxEntry] | CorruptRecordError] | None = None

    def run(self) -> RecoveryReport:
        loaded = self.store.due_timers(NEVER_MS)
        if self.shards is not None:
            loaded = [t for t in loaded if shard_of(t.owner) in self.shards]
        self.index = TimerIndex(loaded)
        try:
            # One pass over the mailboxes instead of a read per execution: most have none.
            self.mail = self.store.mailboxes()
        except StoreError as exc:
            log.error("%s; recovery reads each execution's mailbox instead", exc)
            self.mail = None
        try:
            for status in ACTIVE_STATUSES:
                for fields in self._fields(status):
                    try:
                        self._one(fields, again=False)
                    except CorruptRecordError as exc:
                        # As a listing does: the execution shows it quarantined when read.
                        log.error("recovery skipped execution %s: %s", fields["id"], exc)
        except StoreCorruptError as exc:
            log.error("%s; recovery reads every record instead", exc)
            self.parked = 0  # counted again below; the executions resumed stay resumed
            for record in self._pages():
                if record.status in ACTIVE_STATUSES:
                    self._one(attrs.asdict(record, recurse=False), again=True)
        scheduler = self.host.parts.scheduler
        for timer in loaded:
            scheduler.arm(timer)
        for timer in self.backstops:
            scheduler.arm(timer)
        if self.unknown:
            log.warning(
                "executions of unregistered workflows left as they are: %s", sorted(self.unknown)
            )
        return RecoveryReport(
            self.resumed,
            self.parked,
            self.woken,
            sorted(self.unknown),
            len(loaded),
            self.quarantined,
            self.queued,
        )

    def _fields(self, status: str) -> Iterator[dict[str, Any]]:
        """The stored fields of every record in ``status`` (``Store.list_fields``): most
        are parked, and building their records would cost more than the rest of their
        recovery."""
        after: str | None = None
        while page := self.store.list_fields(status, after, _PAGE):
            last = page[-1]["id"]
            _advances(status, after, last)
            after = last
            yield from page

    def _pages(self) -> Iterator[ExecutionRecord]:
        after: str | None = None
        while page := self.store.list_executions(after=after, limit=_PAGE):
            _advances("all", after, page[-1].id)
            after = page[-1].id
            yield from page

    def _one(self, fields: dict[str, Any], *, again: bool) -> None:
        host = self.host
        eid, status = fields["id"], fields["status"]
        if status in TERMINAL or eid in host.live or eid in host.held:
            return
        if self.shards is not None and shard_of(eid) not in self.shards:
            return  # another worker's
        if again and eid in host.runq:
            return  # resumed by the first pass already
        definition = host.parts.registry.get(fields["workflow"])
        if definition is None:
            self.unknown.add(fields["workflow"])
            return
        # Its mailbox answers both questions: a cancel request, and whether the awaited
        # signal is already buffered. Most have none.
        mail = self.mail.get(eid) if self.mail is not None else self._mailbox(eid)
        names: frozenset[str] | set[str] = _NONE
        if mail:
            if isinstance(mail, CorruptRecordError):
                self._quarantine(_record(fields), str(mail))
                return
            names = {e.signal for e in mail}
        if CANCEL_SIGNAL in names:
            assert mail and not isinstance(mail, CorruptRecordError)
            cancel = next(e for e in mail if e.signal == CANCEL_SIGNAL)
            self.resumed += 1
            host.spawn(eid, cancel=cancel_args(cancel.payload))
        elif status == "queued":
            self.queued += 1
            host.queues.offer(_record(fields))
        elif status in ("pending", "running"):
            self.resumed += 1
            host.spawn(eid)
        elif status == "waiting" and fields.get("waiting_signal") in names:
            self.woken += 1
            host.spawn(eid)
        elif (timer := fields.get("timer")) is not None and not self.index.has(
            eid, timer[0], timer[1]
        ):
            record = _record(fields)
            self._quarantine(record, missing_wait_timer(record, self.index) or "")
        elif fields.get("queue") is None and definition.timeout is None:
            self.parked += 1  # nothing more of its record to check or count
        else:
            self._parked(_record(fields), definition.timeout)

    def _mailbox(self, eid: str) -> list[MailboxEntry] | CorruptRecordError:
        try:
            return self.store.mailbox(eid)
        except CorruptRecordError as exc:
            return exc

    def _parked(self, record: ExecutionRecord, timeout_s: float | None) -> None:
        self.parked += 1
        if record.queue is not None:
            self.host.queues.admitted_before(record)  # it holds its place while it waits
        if timeout_s is not None:
            self._check_timeout(record, timeout_s)

    def _check_timeout(self, record: ExecutionRecord, timeout_s: float) -> None:
        if timeout_in_window(record, self.index, timeout_s):
            return
        _, latest = timeout_window(record, timeout_s)
        log.warning(
            "execution %s: no plausible workflow-timeout timer in the store's index (found "
            "%s); armed one at %s, the latest its deadline can be",
            record.id,
            [t.due_ms for t in self.index.of(record.id) if t.timer_id == TIMEOUT_TIMER],
            latest,
        )
        self.backstops.append(Timer(latest, record.id, TIMEOUT_TIMER))

    def _quarantine(self, record: ExecutionRecord, why: str) -> None:
        log.error("execution %s quarantined: %s", record.id, why)
        self.quarantined.append(record.id)
        self.host.quarantine_soon(record, why)
