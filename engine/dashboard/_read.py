"""What the pages show, read from the store: listings, what needs attention, one
execution's detail.

Everything here reads; nothing writes. The store pages executions by id, and ids begin
with their creation time in milliseconds (``new_execution_id``), so a creation-time
range starts its scan at the id of its start. Filters the store has no index for (queue,
time range, idempotency key) are applied while scanning, within a budget of records per
request; a page the budget cut short says so and offers the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from durably.stores import ACTIVE_STATUSES, ExecutionRecord, Store

from ..core._audit import AuditEntry, audit_trail
from ..core._errors import CorruptRecordError, StoreError
from ..core._events import Event, decode_all
from ..core._records import MailboxEntry, quarantined_record
from ..core._steps import ChildView, StepView, children_of, published_of, steps_of
from ..core._types import Execution

#: Records looked at, at most, to fill one page of a filtered listing.
SCAN_BUDGET = 20_000
#: Records read from the store per call while scanning.
CHUNK = 500
#: How far before a range's start the id scan begins: the clock that stamps
#: ``created_ms`` and the wall clock in an id may differ a little.
ID_MARGIN_MS = 24 * 3600 * 1000
#: At most this many executions per section of the attention page.
SECTION_CAP = 100
#: The most mailbox entries an execution's page lists.
_MAX_MAIL = 50
#: Error types the engine gives executions it gave up on by itself.
DEAD_LETTER = "durably.CrashLoop"
QUARANTINE = "durably.CorruptRecordError"


@attrs.frozen
class Filters:
    """A listing's query (``GET /?status=&workflow=&queue=&from=&to=&q=&after=``)."""

    status: str | None = None
    workflow: str | None = None
    queue: str | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    after: str | None = None
    limit: int = 50


@attrs.frozen
class Listing:
    rows: list[ExecutionRecord]
    #: Pass as ``after=`` for the next page; ``None``: this is the last one.
    next_after: str | None
    scanned: int
    #: The scan budget ran out before the page was full (``next_after`` goes on).
    cut_short: bool = False


def id_ms(execution_id: str) -> int | None:
    """The creation millisecond an execution id begins with (``None``: not such an id)."""
    head = execution_id[:12]
    if len(head) < 12:
        return None
    try:
        return int(head, 16)
    except ValueError:
        return None


def _id_floor(ms: int) -> str:
    """An id below every id made at ``ms`` or later (``after=`` is exclusive)."""
    return f"{max(ms, 0):012x}"


def scan(
    store: Store, *, status: str | None, workflow: str | None, after: str | None
) -> Iterator[ExecutionRecord]:
    """Every record by id after ``after``, of that status and workflow, chunk by chunk."""
    while True:
        chunk = store.list_executions(status=status, workflow=workflow, after=after, limit=CHUNK)
        yield from chunk
        if len(chunk) < CHUNK:
            return
        after = chunk[-1].id


def list_records(
    store: Store,
    filters: Filters,
    *,
    match: Callable[[ExecutionRecord], bool] | None = None,
    budget: int = SCAN_BUDGET,
) -> Listing:
    """One page of records that pass ``filters`` (and ``match``), oldest first."""
    after = filters.after
    lo, hi = filters.created_from_ms, filters.created_to_ms
    if lo is not None:
        floor = _id_floor(lo - ID_MARGIN_MS)
        if after is None or after < floor:
            after = floor
    rows: list[ExecutionRecord] = []
    scanned, last = 0, after
    for record in scan(store, status=filters.status, workflow=filters.workflow, after=after):
        if scanned >= budget:
            return Listing(rows, last, scanned, cut_short=True)
        scanned += 1
        last = record.id
        born = id_ms(record.id)
        if hi is not None and born is not None and born > hi + ID_MARGIN_MS:
            break  # ids sort by creation time: nothing later is in range
        if filters.queue is not None and record.queue != filters.queue:
            continue
        if lo is not None and record.created_ms < lo:
            continue
        if hi is not None and record.created_ms > hi:
            continue
        if match is not None and not match(record):
            continue
        rows.append(record)
        if len(rows) > filters.limit:
            return Listing(rows[: filters.limit], rows[filters.limit - 1].id, scanned)
    return Listing(rows, None, scanned)


def search(store: Store, query: str, filters: Filters) -> tuple[str | None, Listing]:
    """An execution by its id (the id to open), else those whose id begins with
    ``query`` or whose idempotency key is ``query``."""
    query = query.strip()
    if not query or len(query) > 256 or not query.isprintable():
        return None, Listing([], None, 0)
    try:
        if store.get_execution(query) is not None:
            return query, Listing([], None, 0)
    except CorruptRecordError:
        return query, Listing([], None, 0)  # it exists; its page shows it quarantined
    if filters.workflow is not None:
        found = store.find_idempotent(filters.workflow, query)
        if found is not None:
            return found, Listing([], None, 0)
    prefix: list[ExecutionRecord] = []
    if filters.after is None:  # ids that begin with it sort together: the first page
        ahead = scan(store, status=filters.status, workflow=filters.workflow, after=query)
        prefix = list(_take_while(ahead, lambda r: r.id.startswith(query), filters.limit))
    keyed = list_records(store, filters, match=lambda r: r.idempotency_key == query)
    rows = prefix + [r for r in keyed.rows if r not in prefix]
    return None, attrs.evolve(keyed, rows=rows[: filters.limit])


def _take_while(
    records: Iterator[ExecutionRecord], keep: Callable[[ExecutionRecord], bool], limit: int
) -> Iterator[ExecutionRecord]:
    for count, record in enumerate(records):
        if count >= limit or not keep(record):
            return
        yield record


# --- needs attention ---


@attrs.frozen
class Stuck:
    record: ExecutionRecord
    #: Seconds since its last recorded change (its log's last event, or its record's).
    idle_s: float
    why: str


@attrs.frozen
class Attention:
    failed: list[ExecutionRecord]
    dead_lettered: list[ExecutionRecord]
    quarantined: list[ExecutionRecord]
    stuck: list[Stuck]
    #: Totals per section, counted past the cap (within the scan budget).
    counts: dict[str, int]
    threshold_s: float


def attention(store: Store, now_ms: int, threshold_s: float) -> Attention:
    """Failed, dead-lettered, quarantined and stuck executions, oldest first."""
    sections: dict[str, list[ExecutionRecord]] = {"failed": [], "dead": [], "quarantined": []}
    counts = dict.fromkeys(("failed", "dead", "quarantined", "stuck"), 0)
    for status in ("failed", "compensation_failed"):
        for seen, record in enumerate(scan(store, status=status, workflow=None, after=None)):
            if seen >= SCAN_BUDGET:
                break
            kind = (record.error or {}).get("type")
            if kind == QUARANTINE:
                continue  # counted by the scan of every record, below
            section = "dead" if kind == DEAD_LETTER else "failed"
            counts[section] += 1
            if len(sections[section]) < SECTION_CAP:
                sections[section].append(record)
    # A record that cannot be read is in no status index: only a scan of every record
    # meets it (shown failed, quarantined), with those the engine quarantined.
    for seen, record in enumerate(scan(store, status=None, workflow=None, after=None)):
        if seen >= SCAN_BUDGET:
            break
        if (record.error or {}).get("type") == QUARANTINE:
            counts["quarantined"] += 1
            if len(sections["quarantined"]) < SECTION_CAP:
                sections["quarantined"].append(record)
    stuck: list[Stuck] = []
    for status in ACTIVE_STATUSES:
        for seen, record in enumerate(scan(store, status=status, workflow=None, after=None)):
            if seen >= SCAN_BUDGET:
                break
            found = _stuck(store, record, now_ms, threshold_s)
            if found is not None:
                counts["stuck"] += 1
                if len(stuck) < SECTION_CAP:
                    stuck.append(found)
    stuck.sort(key=lambda s: -s.idle_s)
    return Attention(
        sections["failed"],
        sections["dead"],
        sections["quarantined"],
        stuck,
        counts,
        threshold_s,
    )


def _stuck(store: Store, record: ExecutionRecord, now_ms: int, threshold_s: float) -> Stuck | None:
    """Whether an unfinished execution has stood still past the threshold.

    A wait with a time ahead of it (a sleep, a retry, a signal deadline, a delay) is not
    stuck: it will move by itself. Overdue, it is (is a worker running?).
    """
    limit_ms = threshold_s * 1000
    due = record.timer[0] if record.timer else record.not_before
    if due is not None and due > now_ms:
        return None
    if now_ms - record.updated_ms <= limit_ms:
        return None
    since = record.updated_ms
    try:
        raws = store.read_events(record.id)
        if raws:
            since = max(since, decode_all(raws[-1:], record.id)[0].at)
    except StoreError:
        pass  # shown by its last record change
    idle_s = (now_ms - since) / 1000
    if idle_s * 1000 <= limit_ms:
        return None
    return Stuck(record, idle_s, _why(record, now_ms, due))


def _why(record: ExecutionRecord, now_ms: int, due: int | None) -> str:
    if due is not None:
        return "its timer is overdue: is a worker running on this store?"
    match record.status:
        case "waiting" if record.waiting_signal:
            return f"waiting for signal {record.waiting_signal!r}"
        case "waiting":
            return "waiting"
        case "pending":
            return f"not started: is a worker running, and does it register {record.workflow!r}?"
        case "queued":
            return f"queued on {record.queue!r}: is a worker declaring it running?"
        case _:
            return "no progress recorded (a long step, or no worker running)"


# --- one execution ---


@attrs.frozen
class Detail:
    execution: Execution
    record: ExecutionRecord | None
    steps: list[StepView]
    audit: list[AuditEntry]
    children: list[ChildView]
    published: dict[str, Any]
    events: int
    #: Why the log could not be read (it is corrupt), if it could not.
    log_error: str | None = None
    #: Signals sent and not yet taken (the first ``_MAX_MAIL``), with who sent them and why.
    mailbox: list[MailboxEntry] = attrs.field(factory=list)

    @property
    def compensations(self) -> list[StepView]:
        return [s for s in self.steps if s.kind == "compensate"]

    @property
    def skippable(self) -> list[StepView]:
        return [s for s in self.steps if s.status in ("failed", "retrying") and s.kind == "step"]


def detail(store: Store, execution_id: str) -> Detail | None:
    """The execution's record, steps, trail, children and published values; ``None``
    for an unknown id. What ``operator.get_execution_detail`` reads, from a client."""
    try:
        record: ExecutionRecord | None = store.get_execution(execution_id)
        if record is None:
            return None
        execution = Execution.from_record(record)
    except CorruptRecordError as exc:
        record, execution = None, Execution.from_record(quarantined_record(execution_id, exc))
    try:
        raws = store.read_events(execution_id)
        events: list[Event] = decode_all(raws, execution_id)
    except StoreError as exc:
        return Detail(execution, record, [], [], [], {}, 0, log_error=str(exc))
    try:
        mailbox = store.mailbox(execution_id)[:_MAX_MAIL]
    except StoreError:
        mailbox = []  # a damaged entry: `durably check` names it; the page still shows
    return Detail(
        execution,
        record,
        steps_of(events),
        audit_trail(execution_id, events),
        children_of(events),
        published_of(events),
        len(raws),
        mailbox=mailbox,
    )


def detail_record(store: Store, execution_id: str) -> ExecutionRecord | None:
    """The record (shown quarantined if it cannot be read); ``None`` for an unknown id."""
    try:
        return store.get_execution(execution_id)
    except CorruptRecordError as exc:
        return quarantined_record(execution_id, exc)


def log_length(store: Store, execution_id: str, known: int) -> int:
    """How many events the log has, reading only those past ``known``."""
    try:
        return known + len(store.read_events(execution_id, known))
    except StoreError:
        return known
