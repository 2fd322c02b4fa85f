"""``PostgresStore``: the layout over PostgreSQL, through psycopg 3.

The same layout code as ``MemoryStore`` and ``LmdbStore`` (``_layout``, ``_queues``,
``apply_ops``) runs over ``PgTxn`` (``_pg_txn.py``); the tables and their migrations are
``_pg_schema.py``. How it is built, and why:

- One batch is one PostgreSQL transaction (group commit: the engine hands ``apply`` a
  batch of many executions' ops, and the server fsyncs its WAL once for all of them).
- Writers are serialised, as LMDB's are: every write transaction first takes a
  transaction-level advisory lock, and runs in READ COMMITTED so that each statement
  after the lock sees what the previous writer committed (a REPEATABLE READ snapshot
  would be taken before the lock is granted). The layout's read-check-write logic
  (first writer wins, a seq is taken once) relies on it.
- Round trips decide speed. A write transaction is sent in pipeline mode: BEGIN, the
  lock and one prefetch of every key the batch's ops are known to read go out together;
  the layout then reads from that cache and from a buffer of its own writes, and the
  writes go out at the end as two statements (deletes, upserts) with the COMMIT. A
  batch of steps costs two round trips, whatever its size (``last_round_trips``).
- Reads that are one statement run in autocommit; the others in one READ ONLY
  REPEATABLE READ transaction each, so a listing sees one snapshot.
- ``inline`` is False: ``apply`` runs in the engine's worker thread. The writer and the
  reader each have their own connection behind a lock (the event loop reads while a
  batch commits; the inbox poll reads from its own thread); a broken connection is made
  anew at the next call.
- The worker lock is a session-level advisory lock held on a connection of its own for
  the worker's life (``lock=True``); the server frees it when that connection ends,
  also when the worker is killed.
- A batch that puts an inbox entry (a client's start, signal, call) also sends
  ``NOTIFY`` on the store's channel, in its transaction: the server delivers it only if
  the batch commits. The worker ``LISTEN``s on a connection of its own
  (``listen_for_inbox``) and looks at the inbox at once; the inbox stays the truth, and
  the periodic look still finds what a lost notification would have said.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from durably.core._errors import CorruptRecordError, StoreClosedError, StoreLockedError

from ..core._records import ExecutionRecord, LeaseInfo, MailboxEntry, Op, PutMeta, Timer
from . import _layout, _leases, _queues, _scans
from ._apply import apply_ops
from ._pg_schema import describe, failure, lock_key, prepare
from ._pg_txn import PgTxn, Sql, reads_of

log = logging.getLogger("durably")
_LOCK = "SELECT pg_advisory_xact_lock(%s)"
#: How often the inbox listener looks at its stop flag, and waits after a failure (s).
_LISTEN_TICK = 0.25
_LISTEN_RETRY = 1.0
# Explicit, whatever the server's default isolation: see the module's docstring.
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


class WorkerLock:
    """A held worker lock: a session advisory lock on a connection of its own."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def close(self) -> None:
        """Release the lock (closing its connection ends the session that holds it)."""
        self._conn.close()


class PostgresStore:
    """A durable store in a PostgreSQL database, given by a libpq DSN or URI.

    ``schema`` is where durably's tables go (default: the connection's current schema,
    usually ``public``); several stores may share one database in several schemas. The
    first open creates the tables unless ``create`` is False (then a database without
    them is ``StoreNotFoundError``). ``lock=True`` makes this the one worker of the
    store; clients pass ``lock=False``; ``lock="shared"`` is a worker of many.
    ``sync=False`` commits without waiting for the server's WAL flush
    (``synchronous_commit = off``): faster, and the last moments' batches may be lost if
    the server crashes.
    """

    inline = False

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lock: bool | Literal["shared"] = True,
        create: bool = True,
        sync: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self.where = describe(dsn)
        """Where the store is, for messages: database, host and user (no password)."""
        self._sync = sync
        self._timeout = connect_timeout
        self._closed = False
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._worker_lock: WorkerLock | None = None
        self.last_round_trips = 0
        """Round trips to the server of the last ``apply`` (its commit included)."""
        try:
            writer = self._writing_connection()
            self.schema, quoted = prepare(writer, schema, create=create, where=self.where)
            self._sql = Sql.for_table(f"{quoted}.durably_kv")
            self._write_key = lock_key("write", self.schema)
            self.channel = f"durably_inbox_{lock_key('inbox', self.schema) & (2**64 - 1):016x}"
            """The ``LISTEN``/``NOTIFY`` channel of this store's inbox."""
            self._worker_key = lock_key("worker", self.schema)
            if lock:
                self._worker_lock = self._take_worker_lock(lock == "shared")
            self._check_layout(create)
        except psycopg.Error as exc:
            self.close()
            raise failure(exc, "opening the store", self.where) from exc
        except BaseException:
            self.close()
            raise

    def _check_layout(self, create: bool) -> None:
        stored = self.get_meta("schema")
        if stored is None and create:
            # A new store, or one whose creation was cut short before this write.
            self.apply([PutMeta("schema", _layout.SCHEMA_VERSION)])
        elif stored is not None and stored != _layout.SCHEMA_VERSION:
            from durably.core._errors import StoreVersionError

            raise StoreVersionError(
                f"the store in the PostgreSQL {self.where} has layout version {stored}; "
                f"this durably reads version {_layout.SCHEMA_VERSION}. Upgrade durably to "
                "open it"
            )

    # --- connections ---

    def _connect(self, role: str) -> psycopg.Connection[Any]:
        options: dict[str, Any] = {"autocommit": True}
        given = conninfo_to_dict(self._dsn)
        if "connect_timeout" not in given:
            options["connect_timeout"] = max(1, round(self._timeout))
        if role == "worker" or "application_name" not in given:
            # The worker lock's holder is found by this name for the refusal's message.
            options["application_name"] = f"durably {role} pid {os.getpid()} on {_host()}"
        return psycopg.connect(self._dsn, **options)

    def _writing_connection(self) -> psycopg.Connection[Any]:
        conn = self._writer
        if conn is None or conn.closed or conn.broken:
            conn = self._writer = self._connect("writer")
            conn.execute(f"SET synchronous_commit = {'on' if self._sync else 'off'}")
        return conn

    def _reading_connection(self) -> psycopg.Connection[Any]:
        conn = self._reader
        if conn is None or conn.closed or conn.broken:
            conn = self._reader = self._connect("reader")
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(
                f"the store in the PostgreSQL {self.where} is closed; open a new PostgresStore"
            )

    # --- the worker lock ---

    def try_worker_lock(self, shared: bool = False) -> WorkerLock | None:
        """Take the store's worker lock, or None if a worker (or a client acting for
        one) holds it. Close the returned lock to release it. ``shared``: a worker of
        many, beside the others of many."""
        self._check_open()
        try:
            conn = self._connect("worker")
        except psycopg.Error as exc:
            raise failure(exc, "taking the worker lock", self.where) from exc
        try:
            take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            row = conn.execute(f"SELECT {take}(%s)", (self._worker_key,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is None or not row[0]:
            conn.close()
            return None
        return WorkerLock(conn)

    def _take_worker_lock(self, shared: bool) -> WorkerLock:
        held = self.try_worker_lock(shared)
        if held is None and shared:
            raise StoreLockedError(
                f"the store in the PostgreSQL {self.where} (schema {self.schema!r}) is held "
                f"by its one worker ({self._holder()}), started without many_workers, or a "
                "client acting for it; every worker of a store served by many must pass "
                "many_workers=True"
            )
        if held is None and (probe := self.try_worker_lock(True)) is not None:
            probe.close()  # a shared holder: workers of many serve the store
            raise StoreLockedError(
                f"the store in the PostgreSQL {self.where} (schema {self.schema!r}) is served "
                "by workers of many (many_workers=True); a worker of it must be one of them: "
                "pass many_workers=True (durably worker --many-workers)"
            )
        if held is None:
            raise StoreLockedError(
                f"the store in the PostgreSQL {self.where} (schema {self.schema!r}) is held "
                f"by another worker ({self._holder()}); run one worker per store, and open "
                "clients with durably.Client(dsn) (or lock=False)"
            )
        return held

    def _holder(self) -> str:
        """Who holds the worker lock, as the server knows it (its application name)."""
        high, low = (self._worker_key >> 32) & 0xFFFFFFFF, self._worker_key & 0xFFFFFFFF
        try:
            with self._read() as txn:
                rows = txn._rows(
                    "SELECT a.application_name, a.client_addr::text FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                    "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE "
                    "datname = current_database()) AND l.classid = %s::bigint::oid "
                    "AND l.objid = %s::bigint::oid AND l.objsubid = 1",
                    (high, low),
                )
        except Exception:
            rows = []
        if not rows:
            return "unknown"
        name, addr = rows[0]
        return f"{name or 'a session'}{f' from {addr}' if addr else ''}"

    # --- writes ---

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        self._check_open()
        if not ops:
            return []
        with self._write_lock:
            try:
                conn = self._writing_connection()
                try:
                    # BEGIN, the lock and the prefetch go out together; the writes and the
                    # COMMIT too, waited for when the pipeline ends (its sync).
                    with conn.pipeline():
                        conn.execute(_BEGIN_WRITE)
                        conn.execute(_LOCK, (self._write_key,))
                        txn = PgTxn(conn, self._sql)
                        txn.prefetch(reads_of(ops))
                        results = apply_ops(txn, ops)
                        txn.flush()
                        if any(v is not None for v in txn.writes.get("inbox", {}).values()):
                            conn.execute(f"NOTIFY {self.channel}")  # (sent if it commits)
                        conn.execute("COMMIT")
                except BaseException:
                    _abandon(conn)
                    raise
            except errors.ProgramLimitExceeded as exc:
                # A bad op (a value past PostgreSQL's 1 GB field limit), not a failed
                # store: not a StoreError, so that group commit fails only its producer.
                raise ValueError(f"a value does not fit PostgreSQL: {exc}") from exc
            except psycopg.Error as exc:
                raise failure(exc, "writing a batch", self.where) from exc
        self.last_round_trips = txn.round_trips + 1
        return results

    # --- reads ---

    @contextmanager
    def _read(self, snapshot: bool = True, eid: str | None = None) -> Iterator[PgTxn]:
        """A read: one statement in autocommit, or a READ ONLY REPEATABLE READ
        transaction (``snapshot``) for a read of several statements."""
        self._check_open()
        with self._read_lock:
            try:
                conn = self._reading_connection()
                if not snapshot:
                    yield PgTxn(conn, self._sql)
                    return
                try:
                    with conn.pipeline():
                        conn.execute(_BEGIN_READ)
                        yield PgTxn(conn, self._sql)
                        conn.execute("COMMIT")
                except BaseException:
                    _abandon(conn)
                    raise
            except psycopg.Error as exc:
                raise failure(exc, "reading", self.where) from exc
            except UnicodeDecodeError as exc:  # a damaged key decoded by the layout
                raise CorruptRecordError(
                    f"a key in the PostgreSQL {self.where} is damaged ({exc})", execution_id=eid
                ) from exc

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        with self._read(False, execution_id) as txn:
            return _layout.get_execution(txn, execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        with self._read(True, execution_id) as txn:
            return _layout.read_events(txn, execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        with self._read() as txn:
            return _layout.list_executions(txn, status, workflow, after, limit)

    def list_fields(self, status: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        with self._read() as txn:
            return list(itertools.islice(_scans.iter_fields(txn, status, after), limit))

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        with self._read() as txn:
            return _layout.due_timers(txn, before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        with self._read(True, execution_id) as txn:
            return _layout.mailbox(txn, execution_id)

    def mailboxes(self) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
        with self._read() as txn:
            return _scans.mailboxes(txn)

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        with self._read(False) as txn:
            return _layout.find_idempotent(txn, workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        with self._read(False) as txn:
            return _layout.get_value(txn, "schedules", schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        with self._read() as txn:
            return _layout.list_values(txn, "schedules")

    def get_meta(self, name: str) -> Any | None:
        with self._read(False) as txn:
            return _layout.get_value(txn, "meta", name)

    def list_queues(self) -> list[tuple[str, Any]]:
        with self._read() as txn:
            return _layout.list_values(txn, "queues")

    def admissions(self, queue: str) -> list[tuple[int, str]]:
        with self._read() as txn:
            return _queues.admissions(txn, queue)

    def leases(self) -> list[LeaseInfo]:
        with self._read() as txn:
            return _leases.leases(txn)

    def inbox_waiting(self) -> bool:
        with self._read(False) as txn:
            return _layout.inbox_waiting(txn)

    def listen_for_inbox(self, hint: Callable[[], None], stop: threading.Event) -> None:
        """Call ``hint`` whenever a client's write puts an entry in the inbox, until
        ``stop`` is set (run it in a thread of its own). A connection that fails is made
        anew after a pause: meanwhile the worker's periodic look finds every write."""
        while not stop.is_set() and not self._closed:
            try:
                with self._connect("listener") as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    hint()  # what was written before LISTEN took effect
                    while not stop.is_set() and not self._closed:
                        for _ in conn.notifies(timeout=_LISTEN_TICK, stop_after=1):
                            hint()
            except psycopg.Error as exc:
                log.warning(
                    "durably: listening for %s's inbox failed (%s); the periodic look "
                    "finds clients' writes meanwhile",
                    self.where,
                    exc,
                )
                stop.wait(_LISTEN_RETRY)

    def close(self) -> None:
        """Close the connections and release the worker lock (idempotent)."""
        self._closed = True
        with self._write_lock, self._read_lock:
            for conn in (self._writer, self._reader):
                if conn is not None:
                    conn.close()
            self._writer = self._reader = None
            if self._worker_lock is not None:
                self._worker_lock.close()
                self._worker_lock = None


def _abandon(conn: psycopg.Connection[Any]) -> None:
    """End a transaction cut short by an error: roll it back, or drop the connection."""
    if conn.closed:
        return
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()  # made anew at the next call; the server rolls back what it had


def _host() -> str:
    return socket.gethostname()
