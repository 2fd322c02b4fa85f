"""The layout's ``Txn`` over one PostgreSQL transaction (``PostgresStore``'s half that
speaks SQL), and the keys a batch is known to read before it runs.

Rules of this module:

- Every layout table is rows of one table, ``durably_kv(tbl, k, v)``, keyed by
  ``(tbl, k)``; ``k`` is ``bytea``, which PostgreSQL orders byte by byte, as LMDB does.
- Writes are buffered (the overlay, one dict per table) and sent at commit in two
  statements whatever their number (``unnest`` of arrays); every read of the
  transaction looks at the overlay first, and a scan merges it into the server's rows.
- What the server said about a key is cached for the transaction (``known``): a write
  transaction holds the store's writer lock, so no one else changes a key under it, and
  a read transaction reads one snapshot. ``prefetch`` fills the cache for many keys in
  one statement, so the reads a batch's ops will make cost no round trip each.
- Scans fetch in chunks (64 rows, growing to 1,024), so a long scan never loads a whole
  table and a short one is one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..core._records import (
    Admit,
    Append,
    CreateExecution,
    Debounce,
    Enqueue,
    Fence,
    Notify,
    Op,
    PutExecution,
    PutSignal,
    SignalWithStart,
)
from ..core._shards import shard_of
from ._layout import MAX_KEY_BYTES, _idem_key, _part, check_key, event_key
from ._leases import lease_key

if TYPE_CHECKING:
    import psycopg

_FIRST_CHUNK = 64
_MAX_CHUNK = 1024
_ABSENT = object()


@attrs.frozen
class Sql:
    """The statements, with the store's schema-qualified table name filled in."""

    get: str
    scan_from: str  # k >= start
    scan_from_to: str  # start <= k < end
    scan_after: str  # k > last
    scan_after_to: str  # last < k < end
    prefetch: str
    upsert: str
    delete: str

    @classmethod
    def for_table(cls, kv: str) -> Sql:
        # %b: parameters go in binary (arrays of bytes are sent as they are, no escaping).
        cols = f"SELECT k, v FROM {kv} WHERE tbl = %b"
        return cls(
            get=f"SELECT v FROM {kv} WHERE tbl = %b AND k = %b",
            scan_from=f"{cols} AND k >= %b ORDER BY k LIMIT %b",
            scan_from_to=f"{cols} AND k >= %b AND k < %b ORDER BY k LIMIT %b",
            scan_after=f"{cols} AND k > %b ORDER BY k LIMIT %b",
            scan_after_to=f"{cols} AND k > %b AND k < %b ORDER BY k LIMIT %b",
            prefetch=(
                f"SELECT r.tbl, r.k, kv.v FROM unnest(%b::text[], %b::bytea[]) AS r(tbl, k) "
                f"LEFT JOIN {kv} kv ON kv.tbl = r.tbl AND kv.k = r.k"
            ),
            upsert=(
                f"INSERT INTO {kv} (tbl, k, v) "
                "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[]) "
                "ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v"
            ),
            delete=(
                f"DELETE FROM {kv} WHERE (tbl, k) IN "
                "(SELECT * FROM unnest(%b::text[], %b::bytea[]))"
            ),
        )


def upper_bound(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with ``prefix`` (None: no such key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class PgTxn:
    """One transaction of a ``PostgresStore`` as the layout's ``Txn``."""

    __slots__ = ("_conn", "_sql", "known", "round_trips", "writes")

    def __init__(self, conn: psycopg.Connection[Any], sql: Sql) -> None:
        self._conn = conn
        self._sql = sql
        #: (table, key) -> the server's value in this transaction, None if absent.
        self.known: dict[tuple[str, bytes], bytes | None] = {}
        #: table -> key -> value written by this transaction, None if deleted.
        self.writes: dict[str, dict[bytes, bytes | None]] = {}
        #: Statements whose answer was waited for (commit not counted).
        self.round_trips = 0

    def _rows(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.round_trips += 1
        return self._conn.execute(query, params, binary=True).fetchall()

    def get(self, table: str, key: bytes) -> bytes | None:
        written = self.writes.get(table)
        if written is not None and key in written:
            return written[key]
        if len(key) > MAX_KEY_BYTES:
            return None  # no store holds such a key
        found = self.known.get((table, key), _ABSENT)
        if found is _ABSENT:
            rows = self._rows(self._sql.get, (table, key))
            found = self.known[(table, key)] = rows[0][0] if rows else None
        return found  # type: ignore[return-value]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        check_key(table, key)
        self.writes.setdefault(table, {})[key] = value

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        check_key(table, key)
        if self.get(table, key) is not None:
            return False
        self.writes.setdefault(table, {})[key] = value
        return True

    def delete(self, table: str, key: bytes) -> None:
        if len(key) <= MAX_KEY_BYTES:  # (a longer key is in no store: nothing to delete)
            self.writes.setdefault(table, {})[key] = None

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if len(prefix) > MAX_KEY_BYTES:
            return
        first = max(start, prefix)
        end = upper_bound(prefix)
        written = self.writes.get(table)
        # The layout never writes a table while it scans it (it collects keys first).
        mine = (
            sorted(
                item
                for item in written.items()
                if item[0] >= first and (end is None or item[0] < end)
            )
            if written
            else []
        )
        yield from _merge(self._server_scan(table, first, end), mine)

    def _server_scan(
        self, table: str, first: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        sql, size = self._sql, _FIRST_CHUNK
        if end is None:
            rows = self._rows(sql.scan_from, (table, first, size))
        else:
            rows = self._rows(sql.scan_from_to, (table, first, end, size))
        while True:
            if table == "by_status":
                # A listing by status reads each entry's record next: one statement for all.
                self.prefetch(("executions", key.partition(b"\x00")[2]) for key, _ in rows)
            yield from rows
            if len(rows) < size:
                return
            last = rows[-1][0]
            size = min(size * 4, _MAX_CHUNK)
            if end is None:
                rows = self._rows(sql.scan_after, (table, last, size))
            else:
                rows = self._rows(sql.scan_after_to, (table, last, end, size))

    def prefetch(self, keys: Iterable[tuple[str, bytes]]) -> None:
        """Ask the server for every key not yet known, in one statement."""
        wanted = {
            key: None for key in keys if key not in self.known and len(key[1]) <= MAX_KEY_BYTES
        }
        if not wanted:
            return
        tables = [table for table, _ in wanted]
        raw = [key for _, key in wanted]
        for table, key, value in self._rows(self._sql.prefetch, (tables, raw)):
            self.known[(table, key)] = value

    def flush(self) -> None:
        """Send the overlay: the deletes, then the puts, without waiting for an answer
        (the commit that follows is where an error would show)."""
        doomed_t: list[str] = []
        doomed_k: list[bytes] = []
        put_t: list[str] = []
        put_k: list[bytes] = []
        put_v: list[bytes] = []
        for table, written in self.writes.items():
            for key, value in written.items():
                if value is None:
                    if self.known.get((table, key), _ABSENT) is not None:  # (absent: no-op)
                        doomed_t.append(table)
                        doomed_k.append(key)
                else:
                    put_t.append(table)
                    put_k.append(key)
                    put_v.append(value)
        if doomed_k:
            self._conn.execute(self._sql.delete, (doomed_t, doomed_k))
        if put_k:
            self._conn.execute(self._sql.upsert, (put_t, put_k, put_v))


def _merge(
    server: Iterator[tuple[bytes, bytes]], mine: list[tuple[bytes, bytes | None]]
) -> Iterator[tuple[bytes, bytes]]:
    """The server's rows with this transaction's writes over them, in key order."""
    index, count = 0, len(mine)
    for key, value in server:
        while index < count and mine[index][0] < key:
            own_key, own = mine[index]
            index += 1
            if own is not None:
                yield own_key, own
        if index < count and mine[index][0] == key:
            own = mine[index][1]
            index += 1
            if own is not None:
                yield key, own
            continue
        yield key, value
    for own_key, own in mine[index:]:
        if own is not None:
            yield own_key, own


def reads_of(ops: Sequence[Op]) -> Iterator[tuple[str, bytes]]:
    """The keys the layout will read to apply ``ops`` (the common ops), to prefetch.

    Only a hint: a key missed here costs a round trip when it is read, a key named here
    that is not read costs nothing but its row in the answer.
    """
    for op in ops:
        if type(op) is Append:
            eid = op.execution_id
            for offset in range(len(op.events)):
                yield "events", event_key(eid, op.seq + offset)
        elif type(op) is PutExecution:
            yield "executions", op.record.id.encode()
        elif isinstance(op, CreateExecution):
            yield from _creates(op)
        elif isinstance(op, Enqueue | Debounce | SignalWithStart):
            yield from _creates(op.create)
            if isinstance(op, SignalWithStart):
                yield "mailbox_seq", op.create.record.id.encode()
        elif type(op) is PutSignal:
            eid_key = op.execution_id.encode()
            yield "executions", eid_key
            yield "mailbox_seq", eid_key
            if op.dedup_key is not None:
                yield "dedup", eid_key + b"\x00" + _part(op.dedup_key)
        elif type(op) is Admit:
            yield "executions", op.execution_id.encode()
        elif type(op) is Fence:
            for shard, _ in op.leases:
                yield "leases", lease_key(shard)
        elif type(op) is Notify and op.unless is not None:
            yield "leases", lease_key(shard_of(op.execution_id))


def _creates(op: CreateExecution) -> Iterator[tuple[str, bytes]]:
    record = op.record
    if record.idempotency_key is not None:
        yield "idempotency", _idem_key(record.workflow, record.idempotency_key)
    yield "executions", record.id.encode()
    for seq in range(len(op.events)):
        yield "events", event_key(record.id, seq)
