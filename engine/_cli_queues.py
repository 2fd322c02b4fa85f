"""What the command line says about queues: ``durably queues``, the queue fields of
``durably show`` and the ``--queue`` filter of ``durably list``.

Everything here is read from the store by a client, so it works beside a running worker
and with none: the declarations the workers stored at their start, and the records. The
numbers are ``stats_from_store``'s, the same as ``client.queue_stats(name)``. Times are
shown as ISO-8601 (``show``: in the local zone, or UTC with ``--utc``; ``--json``: UTC)
and durations in words, never as epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from ._cli_common import stamp
from .core._errors import ConfigurationError
from .core._queue import Queue, QueueStats
from .core._types import from_ms
from .runtime._enqueue import stats_from_store
from .stores import ACTIVE_STATUSES, ExecutionRecord, Store

#: Records read per page while filtering (``list --queue``, the queue names of ``queues``).
PAGE = 500


@attrs.frozen
class QueueLine:
    """One queue as ``durably queues`` shows it."""

    name: str
    #: The declaration a worker stored (``Queue.to_data()``), or ``None``: no worker has
    #: declared it, only records name it (a client enqueued on it).
    declaration: Any
    stats: QueueStats

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self.stats), "declaration": self.declaration}

    def text(self, width: int) -> str:
        s = self.stats
        counts = f"queued {s.queued}" + (f" ({s.delayed} delayed)" if s.delayed else "")
        wait = "-" if s.oldest_wait_s is None else seconds_text(s.oldest_wait_s)
        return (
            f"{self.name:<{width}}  {limits_text(self.name, self.declaration)}  |  {counts}, "
            f"running {s.running}, admitted {s.admitted_per_second:.3g}/s, oldest wait {wait}"
        )


def records(
    store: Store, *, status: str | None, workflow: str | None, after: str | None
) -> Iterator[ExecutionRecord]:
    """Every record (by id, after ``after``) of that status and workflow, page by page."""
    while page := store.list_executions(status=status, workflow=workflow, after=after, limit=PAGE):
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def queue_lines(store: Store, now_ms: int) -> list[QueueLine]:
    """Every queue the store knows, by name: declared by a worker, or named by an active
    record (queued on a queue that no worker has declared yet)."""
    declared = dict(store.list_queues())
    names = set(declared)
    for status in ACTIVE_STATUSES:
        for record in records(store, status=status, workflow=None, after=None):
            if record.queue is not None:
                names.add(record.queue)
    return [
        QueueLine(name, declared.get(name), stats_from_store(store, name, now_ms))
        for name in sorted(names)
    ]


def limits_text(name: str, declaration: Any) -> str:
    """A declaration in words: ``concurrency 4, rate 10 per 1 s, by priority``."""
    if declaration is None:
        return "not declared by a worker yet"
    try:
        queue = Queue.from_data(name, declaration)
    except ConfigurationError:
        return f"unreadable declaration {declaration!r}"
    parts = []
    if queue.concurrency is not None:
        parts.append(f"concurrency {queue.concurrency}")
    if queue.rate_limit is not None:
        count, seconds = queue.rate_limit
        parts.append(f"rate {count} per {seconds:g} s")
    if queue.partition_concurrency is not None:
        parts.append(f"partition concurrency {queue.partition_concurrency}")
    if queue.priority:
        parts.append("by priority")
    return ", ".join(parts) or "no limits"


def seconds_text(seconds: float) -> str:
    """A duration for a person: ``0.4 s``, ``42 s``, ``3 m 05 s``, ``2 h 10 m``, ``3 d 04 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size} {unit} {whole % size // small_size:02d} {small}"
    return f"{whole // 60} m {whole % 60:02d} s"


def iso(ms: int) -> str:
    """An epoch millisecond as ISO-8601 UTC: ``2030-01-01T12:00:00.250Z``."""
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def queue_document(record: ExecutionRecord | None) -> dict[str, Any] | None:
    """The record's queue fields (``show``), times in ISO-8601; ``None`` if it has none."""
    if record is None:
        return None
    fields = {
        "queue": record.queue,
        "priority": record.priority,
        "partition": record.partition,
        "dedup_id": record.dedup_id,
        "admitted_at": None if record.admitted_ms is None else iso(record.admitted_ms),
        "not_before": None if record.not_before is None else iso(record.not_before),
    }
    if all(v is None for k, v in fields.items() if k != "priority") and not record.priority:
        return None
    return fields


def queue_labels(document: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The queue fields that are set (priority 0 is the default), as label and value."""
    if document is None:
        return []
    return [
        (key.replace("_", " "), value)
        for key, value in document.items()
        if value is not None and not (key == "priority" and value == 0)
    ]


def queue_show_labels(record: ExecutionRecord | None) -> list[tuple[str, Any]]:
    """``show``'s lines for the record's queue fields, its times as ``stamp`` shows them
    (local, or UTC with ``--utc``)."""
    labels = queue_labels(queue_document(record))
    if record is None:
        return labels
    times = {"admitted at": record.admitted_ms, "not before": record.not_before}
    return [(label, stamp(times[label]) if label in times else v) for label, v in labels]
