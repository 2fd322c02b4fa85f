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
from ..core._errors import CorruptRecordError, StoreCorruptError
from ..core._history import TIMEOUT_TIMER
from ..core._records import CANCEL_SIGNAL, cancel_args
from ..core._status import TERMINAL
from ._ports import Parts
from ._queues import QueueManager

log = logging.getLogger("durably")

_PAGE = 1000


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

    def __init__(self, host: RecoveryHost) -> None:
        self.host = host
        self.store = host.parts.store
        self.resumed = self.parked = self.woken = self.queued = 0
        self.unknown: set[str] = set()
        self.quarantined: list[str] = []
        self.backstops: list[Timer] = []
        self.index = TimerIndex(())

    def run(self) -> RecoveryReport:
        loaded = self.store.due_timers(NEVER_MS)
        self.index = TimerIndex(loaded)
        try:
            for status in ACTIVE_STATUSES:
                for record in self._pages(status):
                    self._one(record, again=False)
        except StoreCorruptError as exc:
            log.error("%s; recovery reads every record instead", exc)
            self.parked = 0  # counted again below; the executions resumed stay resumed
            for record in self._pages(None):
                if record.status in ACTIVE_STATUSES:
                    self._one(record, again=True)
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

    def _pages(self, status: str | None) -> Iterator[ExecutionRecord]:
        after: str | None = None
        while page := self.store.list_executions(status=status, after=after, limit=_PAGE):
            if after is not None and page[-1].id <= after:
                # Pages follow id order; one that does not advance comes from a damaged
                # table, and would be read again forever.
                raise StoreCorruptError(
                    f"listing {status or 'all'} executions does not advance past {after}: "
                    "the store's tables are damaged; run `durably check` and restore the "
                    "store from a backup"
                )
            after = page[-1].id
            yield from page

    def _one(self, record: ExecutionRecord, *, again: bool) -> None:
        host = self.host
        eid = record.id
        if record.status in TERMINAL or eid in host.live or eid in host.held:
            return
        if again and eid in host.runq:
            return  # resumed by the first pass already
        definition = host.parts.registry.get(record.workflow)
        if definition is None:
            self.unknown.add(record.workflow)
            return
        try:
            # One mailbox read answers both questions: a cancel request, and whether the
            # awaited signal is already buffered.
            mail = self.store.mailbox(eid)
        except CorruptRecordError as exc:
            self._quarantine(record, str(exc))
            return
        names = {e.signal for e in mail}
        if CANCEL_SIGNAL in names:
            cancel = next(e for e in mail if e.signal == CANCEL_SIGNAL)
            self.resumed += 1
            host.spawn(eid, cancel=cancel_args(cancel.payload))
        elif record.status == "queued":
            self.queued += 1
            host.queues.offer(record)
        elif record.status in ("pending", "running"):
            self.resumed += 1
            host.spawn(eid)
        elif record.status == "waiting" and record.waiting_signal in names:
            self.woken += 1
            host.spawn(eid)
        elif (why := missing_wait_timer(record, self.index)) is not None:
            self._quarantine(record, why)
        else:
            self.parked += 1
            if record.queue is not None:
                host.queues.admitted_before(record)  # it holds its place while it waits
            if definition.timeout is not None:
                self._check_timeout(record, definition.timeout)

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
