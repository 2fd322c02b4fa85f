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

from ._model import ExecutionRecord, MailboxEntry, Op, Timer


@runtime_checkable
class Store(Protocol):
    #: True when ``apply`` is fast enough to call on the event loop (a memory store), and
    #: required under a trio ``MockClock`` whose autojump would otherwise run ahead of a
    #: worker thread.
    inline: bool

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        """Apply ``ops`` in one transaction and return one result per op.

        Raises :class:`durably.StoreError` (or a subclass) if nothing was written.
        """
        ...

    def get_execution(self, execution_id: str) -> ExecutionRecord | None: ...

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

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        """Timers due strictly before ``before_ms``, earliest first."""
        ...

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        """The execution's buffered signals, oldest first."""
        ...

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        """The execution id that owns ``key`` for ``workflow``, if any."""
        ...

    def get_schedule(self, schedule_id: str) -> Any | None: ...

    def list_schedules(self) -> list[tuple[str, Any]]: ...

    def get_meta(self, name: str) -> Any | None: ...

    def close(self) -> None: ...
