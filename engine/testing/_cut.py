"""The interrupting store: what a crash at a durable boundary leaves behind."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from durably.stores import ExecutionRecord, LeaseInfo, MailboxEntry, Op, Store, Timer

from ..core._errors import CorruptRecordError, StoreError

_CUT_MESSAGE = "durably.testing: the engine was stopped at this boundary"


class _QuietCuts(logging.Filter):
    """Drops the engine's error logs about the interruptions a check makes on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _CUT_MESSAGE not in record.getMessage()


class _CutStore:
    """A store that forwards to ``inner`` and refuses every commit after the first ``allow``.

    Refusing with ``StoreError`` is what a dying disk or process looks like to the engine:
    the batch is not acknowledged, the actors stop without writing, nothing half-done is
    recorded. The inner store then holds exactly what a crash at that point would leave.
    """

    def __init__(self, inner: Store, allow: int | None) -> None:
        self.inner = inner
        self.inline = inner.inline
        self.allow = allow
        self.applied = 0
        self.batches: list[list[Op]] = []
        self.refused: list[Op] = []
        self.tripped = trio.Event()

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self.allow is not None and self.applied >= self.allow:
            if not self.tripped.is_set():
                self.refused = list(ops)
                self.tripped.set()
            raise StoreError(_CUT_MESSAGE)
        results = self.inner.apply(ops)
        self.applied += 1
        self.batches.append(list(ops))
        return results

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return self.inner.get_execution(execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        return self.inner.read_events(execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        return self.inner.list_executions(
            status=status, workflow=workflow, after=after, limit=limit
        )

    def list_fields(self, status: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        return self.inner.list_fields(status, after, limit)

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        return self.inner.due_timers(before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        return self.inner.mailbox(execution_id)

    def mailboxes(self) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
        return self.inner.mailboxes()

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        return self.inner.find_idempotent(workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        return self.inner.get_schedule(schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        return self.inner.list_schedules()

    def get_meta(self, name: str) -> Any | None:
        return self.inner.get_meta(name)

    def list_queues(self) -> list[tuple[str, Any]]:
        return self.inner.list_queues()

    def admissions(self, queue: str) -> list[tuple[int, str]]:
        return self.inner.admissions(queue)

    def leases(self) -> list[LeaseInfo]:
        return self.inner.leases()

    def inbox_waiting(self) -> bool:
        return self.inner.inbox_waiting()

    def close(self) -> None:
        """The inner store outlives the engine that used this one: it is not closed."""
