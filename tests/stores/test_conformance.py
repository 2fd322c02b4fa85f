"""Every store passes the conformance suite, and the suite catches stores that break it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from durably.stores import LmdbStore, MemoryStore, Op, Store, Timer
from durably.stores._checks import check_store


def test_memory_store_conforms() -> None:
    check_store(MemoryStore)


def test_lmdb_store_conforms(tmp_path: Path) -> None:
    counter = itertools.count()
    check_store(lambda: LmdbStore(tmp_path / f"s{next(counter)}", map_size=1 << 20, inline=True))


def test_lmdb_store_conforms_unsynced_and_tiny_map(tmp_path: Path) -> None:
    """The map grows under the suite's big events; sync does not change semantics."""
    counter = itertools.count()
    check_store(lambda: LmdbStore(tmp_path / f"s{next(counter)}", map_size=64 << 10, sync=False))


def test_postgres_store_conforms(postgres_dsn: str) -> None:
    """Each check in a schema of its own: a new, empty store in the test's database."""
    from durably.stores import PostgresStore

    counter = itertools.count()
    check_store(lambda: PostgresStore(postgres_dsn, schema=f"s{next(counter)}"))


# --- the suite has teeth: each broken store below must be caught, by the right check ---


class _NotAtomic(MemoryStore):
    """Applies each op in its own transaction: a failing op leaves the earlier ones."""

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        return [super(_NotAtomic, self).apply([op])[0] for op in ops]


class _InclusiveTimers(MemoryStore):
    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        return super().due_timers(before_ms + 1, limit)


class _ForgetfulDedup(MemoryStore):
    """Forgets dedup keys along with the consumed signal."""

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        from durably.stores import TakeSignal

        results = super().apply(ops)
        for op in ops:
            if isinstance(op, TakeSignal):
                table = self._tables["dedup"]
                for key in [k for k in table.keys if k.startswith(op.execution_id.encode())]:
                    table.delete(key)
        return results


class _LifoMailbox(MemoryStore):
    def mailbox(self, execution_id: str) -> list[Any]:
        return list(reversed(super().mailbox(execution_id)))


class _StaleStatusIndex(MemoryStore):
    """Lists by status from the records' insertion, ignoring later status changes."""

    def list_executions(self, *, status: str | None = None, **kw: Any) -> list[Any]:
        records = super().list_executions(**kw)
        if status is None:
            return records
        return [r for r in records if r.created_ms and status in self._first.get(r.id, ())]

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        super().__init__()

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        from durably.stores import CreateExecution

        results = super().apply(ops)
        for op in ops:
            if isinstance(op, CreateExecution):
                self._first.setdefault(op.record.id, op.record.status)
        return results


class _TruncatedKeys(MemoryStore):
    """Keeps only the first 200 characters of idempotency and dedup keys."""

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        import attrs

        from durably.stores import CreateExecution, PutSignal

        fixed: list[Op] = []
        for op in ops:
            if isinstance(op, CreateExecution) and op.record.idempotency_key:
                key = op.record.idempotency_key[:200]
                op = CreateExecution(attrs.evolve(op.record, idempotency_key=key), op.events)
            elif isinstance(op, PutSignal) and op.dedup_key:
                op = attrs.evolve(op, dedup_key=op.dedup_key[:200])
            fixed.append(op)
        return super().apply(fixed)


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_NotAtomic, "batches are atomic"),
        (_InclusiveTimers, "due_timers order, before_ms, limit"),
        (_ForgetfulDedup, "mailbox dedup"),
        (_LifoMailbox, "mailbox FIFO"),
        (_StaleStatusIndex, "list_executions by status, workflow, after, limit"),
        (_TruncatedKeys, "long idempotency and dedup keys"),
    ],
)
def test_suite_catches_a_broken_store(broken: type[Store], check: str) -> None:
    with pytest.raises(AssertionError, match=f"store check {check!r} failed"):
        check_store(broken)


def test_suite_refuses_a_factory_that_reuses_a_store() -> None:
    shared = MemoryStore()
    shared.apply([__import__("durably.stores").stores.PutMeta("x", 1)])
    from durably.stores import AddTimer

    shared.apply([AddTimer(Timer(1, "e", "t"))])
    with pytest.raises(AssertionError, match="fresh store is empty"):
        check_store(lambda: shared)
