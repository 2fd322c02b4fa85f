"""The ``Store`` protocol: the whole contract between the engine and its storage.

Writes are batches (:meth:`Store.apply`), so that the engine's commit actor can put many
executions' events into one transaction. Reads are small point or range reads. Every
method is synchronous: the commit actor runs ``apply`` in a worker thread (or inline when
``inline`` is true), and reads are cheap enough (an LMDB read is a memory-mapped lookup)
to run on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..core._errors import CorruptRecordError
from ..core._records import ExecutionRecord, LeaseInfo, MailboxEntry, Op, Timer


@runtime_checkable
class Store(Protocol):
    """What the engine needs from storage; ``LmdbStore`` and ``MemoryStore`` provide it.

    Implement it to put durably on other storage; the layout module and the conformance
    tests define the semantics every op must keep.
    """

    inline: bool
    """True when ``apply`` is fast enough to call on the event loop (a memory store), and
    required under a trio ``MockClock``, whose autojump would otherwise run ahead of a
    worker thread."""

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        """Apply ``ops`` in one transaction and return one result per op.

        Raises ``durably.StoreError`` (or a subclass) if nothing was written.
        """
        ...

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's record, or ``None`` for an unknown id."""
        ...

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        """The execution's events from ``from_seq`` on, in sequence order."""
        ...

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        """Executions ordered by id (ids sort by creation time), after ``after``.

        With ``status`` the status index is used: no full scan.
        """
        ...

    def list_fields(self, status: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """``list_executions(status=...)`` as each record's stored fields by name (sparse
        ones may be absent; ``timer`` a list), checked as it is: for recovery, which
        reads every active record and looks at few of their fields."""
        ...

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        """Timers due strictly before ``before_ms``, earliest first."""
        ...

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        """The execution's buffered signals, oldest first."""
        ...

    def mailboxes(self) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
        """Every execution's buffered signals, read in one pass (recovery's read); an
        execution whose entries are damaged maps to the ``CorruptRecordError``."""
        ...

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        """The execution id that owns ``key`` for ``workflow``, if any."""
        ...

    def get_schedule(self, schedule_id: str) -> Any | None:
        """The stored schedule ``schedule_id`` (JSON-shaped), or ``None``."""
        ...

    def list_schedules(self) -> list[tuple[str, Any]]:
        """Every schedule as ``(id, data)``, by id."""
        ...

    def get_meta(self, name: str) -> Any | None:
        """A store-wide value, such as the layout's ``schema`` version."""
        ...

    def list_queues(self) -> list[tuple[str, Any]]:
        """Every queue a worker declared, as ``(name, declaration)``, by name."""
        ...

    def admissions(self, queue: str) -> list[tuple[int, str]]:
        """The queue's recent admissions as ``(at_ms, execution_id)``, oldest first (the
        rate window and the stats minute; older ones are removed as they expire)."""
        ...

    def leases(self) -> list[LeaseInfo]:
        """Every held or once-held shard lease of the workers of many (``Heartbeat``),
        in shard order; empty for a store served by one worker."""
        ...

    def inbox_waiting(self) -> bool:
        """Whether a client's write waits in the inbox for the worker (``Notify``,
        ``PutCall``). The worker asks every ``poll_interval`` from a thread of its own,
        so it must be cheap and safe to call from any thread."""
        ...

    def close(self) -> None:
        """Release the store (and a worker's lock); further use raises ``StoreClosedError``."""
        ...
