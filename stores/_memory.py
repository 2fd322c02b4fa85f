"""``MemoryStore``: the layout over sorted in-memory tables, for tests and development.

Same semantics as ``LmdbStore`` (same layout code), no durability. A batch that raises
half-way is rolled back from an undo log, so atomicity holds here too.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from durably.core._errors import CorruptRecordError, StoreClosedError

from ..core._records import ExecutionRecord, LeaseInfo, MailboxEntry, Op, PutMeta, Timer
from . import _layout, _leases, _queues, _scans
from ._apply import apply_ops


class _Table:
    __slots__ = ("data", "keys")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []  # sorted

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.data:
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)  # the common case: logs grow at their end
            else:
                bisect.insort(keys, key)
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        if key in self.data:
            del self.data[key]
            del self.keys[bisect.bisect_left(self.keys, key)]


_MISSING = object()


class _MemoryTxn:
    """A transaction over the tables that remembers how to undo itself."""

    def __init__(self, tables: dict[str, _Table], write: bool) -> None:
        self._tables = tables
        self._undo: list[tuple[str, bytes, object]] | None = [] if write else None

    def _remember(self, table: str, key: bytes) -> None:
        assert self._undo is not None, "write in a read transaction"
        self._undo.append((table, key, self._tables[table].data.get(key, _MISSING)))

    def rollback(self) -> None:
        assert self._undo is not None
        for table, key, old in reversed(self._undo):
            if old is _MISSING:
                self._tables[table].delete(key)
            else:
                assert isinstance(old, bytes)
                self._tables[table].put(key, old)
        self._undo.clear()

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._tables[table].data.get(key)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        _layout.check_key(table, key)
        self._remember(table, key)
        self._tables[table].put(key, value)

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        if key in self._tables[table].data:
            return False
        self.put(table, key, value)
        return True

    def delete(self, table: str, key: bytes) -> None:
        if key in self._tables[table].data:
            self._remember(table, key)
            self._tables[table].delete(key)

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        tab = self._tables[table]
        keys = tab.keys
        idx = bisect.bisect_left(keys, max(start, prefix))
        # Iterate over a snapshot position by position: the caller may not mutate while
        # scanning (the layout never does), but the list may be long.
        while idx < len(keys):
            key = keys[idx]
            if not key.startswith(prefix):
                return
            yield key, tab.data[key]
            idx += 1


class MemoryStore:
    """A store in this process's memory: fast, exact, and gone when the process ends."""

    inline = True

    def __init__(self) -> None:
        self._tables = {name: _Table() for name in _layout.TABLES}
        self._closed = False
        self.apply([PutMeta("schema", _layout.SCHEMA_VERSION)])

    def _txn(self, write: bool = False) -> _MemoryTxn:
        if self._closed:
            raise StoreClosedError("this MemoryStore is closed; create a new one")
        return _MemoryTxn(self._tables, write)

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        txn = self._txn(write=True)
        try:
            return apply_ops(txn, ops)
        except BaseException:
            txn.rollback()
            raise

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return _layout.get_execution(self._txn(), execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        return _layout.read_events(self._txn(), execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        return _layout.list_executions(self._txn(), status, workflow, after, limit)

    def list_fields(self, status: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        return list(itertools.islice(_scans.iter_fields(self._txn(), status, after), limit))

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        return _layout.due_timers(self._txn(), before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        return _layout.mailbox(self._txn(), execution_id)

    def mailboxes(self) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
        return _scans.mailboxes(self._txn())

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        return _layout.find_idempotent(self._txn(), workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        return _layout.get_value(self._txn(), "schedules", schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        return _layout.list_values(self._txn(), "schedules")

    def get_meta(self, name: str) -> Any | None:
        return _layout.get_value(self._txn(), "meta", name)

    def list_queues(self) -> list[tuple[str, Any]]:
        return _layout.list_values(self._txn(), "queues")

    def admissions(self, queue: str) -> list[tuple[int, str]]:
        return _queues.admissions(self._txn(), queue)

    def leases(self) -> list[LeaseInfo]:
        return _leases.leases(self._txn())

    def inbox_waiting(self) -> bool:
        self._txn()  # refuses a closed store
        # One dict length read: atomic under the GIL, so safe from the worker's poll thread.
        return bool(self._tables["inbox"].data)

    def close(self) -> None:
        self._closed = True
