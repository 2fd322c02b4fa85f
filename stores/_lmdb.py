"""``LmdbStore``: the durable default, the layout over LMDB named databases.

Facts this module is built on (measured on this kind of machine, see docs/architecture.md):

- A write transaction belongs to the thread that began it, so ``apply`` begins and
  commits inside one call, whatever thread runs it.
- ``MapFullError`` surfaces at commit and kills the transaction: abort, grow the map
  (never while a write transaction is open), retry the whole batch.
- LMDB lets two processes write one environment; only one *worker* may, so a worker
  takes ``flock(LOCK_EX | LOCK_NB)`` on a lock file, which the kernel frees when the
  holder dies, even by SIGKILL. Clients (``lock=False``) write small batches too: LMDB
  serialises writers across processes.
- A reader slot of a killed process stays taken until ``reader_check()``: run at open.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import dropwhile
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, cast

import lmdb

from durably.core._errors import (
    CorruptRecordError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
)

from ..core._records import ExecutionRecord, LeaseInfo, MailboxEntry, Op, PutMeta, Timer
from . import _layout, _leases, _queues, _scans
from ._apply import apply_ops
from ._flock import holder, try_lock

T = TypeVar("T")
log = logging.getLogger("durably")
_MIB = 1 << 20
#: Free space under which an I/O error at commit is reported as a full disk.
_LOW_SPACE = 4 * _MIB
#: What LMDB raises when a page it reads is not what it wrote (it keeps no checksum, so
#: these are the damage it happens to notice); a read that meets one fails its
#: transaction as a whole. Decoding errors of stored bytes are damage too.
_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.IncompatibleError,
    lmdb.VersionMismatchError,
    lmdb.BadTxnError,
    lmdb.BadValsizeError,
    lmdb.BadChecksumError,
    lmdb.CursorFullError,
    lmdb.PageFullError,
    lmdb.PanicError,
    lmdb.ProblemError,
)
_DECODING = (UnicodeDecodeError, struct.error)


class _LmdbTxn:
    __slots__ = ("_dbs", "_txn", "failed_get")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs
        #: The key whose read met damage: LMDB fails the whole transaction then, and a
        #: listing goes on past that key in a new one.
        self.failed_get: bytes | None = None

    def get(self, table: str, key: bytes) -> bytes | None:
        if len(key) > _layout.MAX_KEY_BYTES:
            return None  # no store holds such a key (LMDB would refuse the lookup)
        try:
            return cast("bytes | None", self._txn.get(key, db=self._dbs[table]))
        except lmdb.Error:
            self.failed_get = key
            raise

    def put(self, table: str, key: bytes, value: bytes) -> None:
        _layout.check_key(table, key)
        self._txn.put(key, value, db=self._dbs[table])

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        _layout.check_key(table, key)
        inserted: bool = self._txn.put(key, value, db=self._dbs[table], overwrite=False)
        return inserted

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[table])

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        first = max(start, prefix)
        # LMDB refuses to seek past its key limit: seek to the limit, skip what is before.
        seek = first[: _layout.MAX_KEY_BYTES]
        if len(prefix) > _layout.MAX_KEY_BYTES:
            return
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(seek):
            return
        # Typed once here rather than cast per item: replay scans every event of a log.
        items = cast("Iterator[tuple[bytes, bytes]]", cursor.iternext())
        if len(seek) < len(first):
            items = dropwhile(lambda item: item[0] < first, items)
        for item in items:
            if not item[0].startswith(prefix):
                if prefix:
                    _check_order(table, cursor, item[0], prefix)
                return
            yield item


def _check_order(table: str, cursor: lmdb.Cursor, key: bytes, prefix: bytes) -> None:
    """Refuse the end of a prefix's run that is no end: a damaged key, out of order.

    LMDB finds keys by binary search and walks them in stored order, trusting both: a
    key whose bytes changed stops a prefix scan early and hides the keys after it (the
    tail of a log, a mailbox's entries, a status's executions), silently. The key that
    ends a run sorts after the prefix, and the one after it does not start with it.
    """
    if key < prefix or (cursor.next() and bytes(cursor.key()).startswith(prefix)):
        raise lmdb.CorruptedError(
            f"the keys of the {table} table are out of order at {key!r} (a damaged key)"
        )


class LmdbStore:
    """A durable store in an LMDB environment at ``path`` (a directory).

    ``sync=True`` (the default) fsyncs every commit: an acknowledged batch survives a
    crash. ``lock=True`` makes this the one worker of the path; clients that only start,
    signal and read pass ``lock=False``; ``lock="shared"`` is a worker of many
    (``Engine(many_workers=True)``), beside others of many but never beside the one.
    ``inline=True`` commits on the calling thread (needed under a trio ``MockClock``); by
    default the engine commits in a worker thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = 64 * _MIB,
        max_map_size: int | None = None,
        sync: bool = True,
        lock: bool | Literal["shared"] = True,
        inline: bool = False,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.inline = inline
        self.max_map_size = max_map_size
        self.readonly = readonly
        # set_mapsize() is only allowed with no transaction open in this process, but
        # apply() may grow the map in a worker thread while the event loop reads: reads
        # and resizes exclude each other (measured: reads failed with EINVAL without it).
        self._resize_lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        if readonly:
            if not (self.path / "data.mdb").exists():
                raise StoreError(
                    f"there is no store at {self.path} to open read-only; check the path "
                    "(a worker creates the store when it first opens it)"
                )
        else:
            # Owner-only: whoever can open the files (or reach the socket beside them)
            # can act as the operator, so the directory is the access control.
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if lock and not readonly:
            self._lock_file = _take_worker_lock(self.path, lock == "shared")
        try:
            self._env, self._dbs = self._open(map_size, sync)
        except BaseException:
            self._release_lock()
            raise
        self._closed = False
        try:
            schema = self.get_meta("schema")
            if schema is None and not readonly:
                # A new store, or one whose creation was cut short before this write.
                self.apply([PutMeta("schema", _layout.SCHEMA_VERSION)])
            elif schema is not None and schema != _layout.SCHEMA_VERSION:
                raise CorruptRecordError(
                    f"the store at {self.path} has schema version {schema}; this durably "
                    f"reads version {_layout.SCHEMA_VERSION}. Upgrade durably to open it."
                )
        except BaseException:
            self.close()
            raise

    def _open(self, map_size: int, sync: bool) -> tuple[lmdb.Environment, dict[str, Any]]:
        """The environment and its tables. A data file that is damaged as a whole is
        refused with ``StoreCorruptError`` before any of its pages is read."""
        data = self.path / "data.mdb"
        new = not data.exists()
        if self.readonly and data.stat().st_size == 0:
            raise StoreCorruptError(
                f"the data file {data} is empty: the store was never written (its creation "
                "was cut short) or the file was truncated; restore it from a backup "
                "(docs/operations.md, Backups)"
            )
        # 0 adopts the size stored in an existing environment; a smaller number would
        # shrink the map to the used size and forget how far it had grown.
        options = {"map_size": map_size if new else 0, "sync": sync, "metasync": sync}
        try:
            try:
                env = self._env_open(options)
            except lmdb.MemoryError:
                if new:
                    raise
                # The header asks for a map no address space holds (a flipped bit in its
                # size field, measured): ask for ours; LMDB maps at least what is in use.
                log.warning("the header of %s asks for an impossible map size", data)
                env = self._env_open({**options, "map_size": map_size})
        except lmdb.Error as exc:
            raise self._unopenable(exc) from exc
        try:
            _check_size(env, data)
            # The larger of the configured and the stored size.
            if env.info()["map_size"] < map_size and not self.readonly:
                env.set_mapsize(map_size)
            env.reader_check()
            return env, self._open_tables(env)
        except lmdb.Error as exc:
            env.close()
            raise self._unopenable(exc) from exc
        except BaseException:
            env.close()
            raise

    def _env_open(self, options: dict[str, Any]) -> lmdb.Environment:
        return lmdb.open(
            str(self.path),
            max_dbs=len(_layout.TABLES) + 2,
            readonly=self.readonly,
            writemap=False,  # writemap turned a full disk into SIGBUS when measured
            max_readers=1024,
            mode=0o600,
            **options,
        )

    def _open_tables(self, env: lmdb.Environment) -> dict[str, Any]:
        dbs = {}
        for name in _layout.TABLES:
            while True:
                try:
                    dbs[name] = env.open_db(name.encode(), create=not self.readonly)
                    break
                except lmdb.NotFoundError:
                    if not (self.readonly and name in _layout.OPTIONAL_TABLES):
                        raise
                    break  # a store from before the inbox or queues, read only: nothing there
                except lmdb.MapFullError:
                    # Creating a table writes too: a tiny map can fill at creation.
                    env.set_mapsize(env.info()["map_size"] * 2)
        return dbs

    def _unopenable(self, exc: lmdb.Error) -> StoreError:
        if isinstance(exc, _DAMAGE):
            return StoreCorruptError(
                f"the data file {self.path / 'data.mdb'} is damaged ({exc}); restore the "
                "store from a backup (docs/operations.md, Backups)"
            )
        return StoreError(f"cannot open the LMDB store at {self.path}: {exc}")

    # --- writes ---

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self.readonly:
            raise StoreError(
                f"the store at {self.path} was opened read-only; open it with "
                "readonly=False to write"
            )
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return apply_ops(_LmdbTxn(txn, self._dbs), ops)
            except lmdb.MapFullError:
                with self._resize_lock:
                    self._grow()
            except lmdb.MapResizedError:
                with self._resize_lock:
                    self._env.set_mapsize(0)  # another process grew it: adopt its size
            except lmdb.BadValsizeError as exc:
                # A bad op, not a failed store: not a StoreError, so that group commit
                # fails only the producer that sent it.
                raise ValueError(f"a key or value does not fit LMDB: {exc}") from exc
            except (*_DAMAGE, *_DECODING) as exc:
                # A CorruptRecordError, which group commit isolates like a bad op: the
                # damaged page fails the batches that touch it, not every batch.
                raise CorruptRecordError(
                    f"{self._damaged(exc, 'a write')}",
                    execution_id=_owner(ops),
                ) from exc
            except lmdb.Error as exc:
                raise self._classify(exc) from exc

    def _grow(self) -> None:
        size = self._env.info()["map_size"]
        new = size * 2
        if self.max_map_size is not None:
            if size >= self.max_map_size:
                raise StoreFullError(
                    f"the store at {self.path} reached its max_map_size "
                    f"({self.max_map_size} bytes); raise max_map_size or free space"
                )
            new = min(new, self.max_map_size)
        self._env.set_mapsize(new)

    def _classify(self, exc: lmdb.Error) -> StoreError:
        full = isinstance(exc, lmdb.DiskError) or "No space" in str(exc)
        if not full and ("Input/output" in str(exc) or getattr(exc, "errno", 0) == errno.EIO):
            # A full disk shows up as EIO here, not ENOSPC: ask the filesystem.
            stat = os.statvfs(self.path)
            full = stat.f_bavail * stat.f_frsize < _LOW_SPACE
        if full:
            return StoreFullError(
                f"the disk holding {self.path} is full: nothing of this batch was "
                "acknowledged; free space and retry"
            )
        return StoreError(f"the LMDB store at {self.path} failed: {exc}")

    # --- reads ---

    @contextmanager
    def _read(self, eid: str | None = None, what: str = "a read") -> Iterator[lmdb.Transaction]:
        """A read transaction; damage met in it is raised as ``CorruptRecordError`` of
        execution ``eid`` (quarantine), or without one as ``StoreCorruptError``."""
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        with self._resize_lock:
            try:
                txn = self._env.begin(buffers=False)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size
                txn = self._env.begin(buffers=False)
            with txn:
                try:
                    yield txn
                except (*_DAMAGE, *_DECODING) as exc:
                    if eid is not None:
                        raise CorruptRecordError(
                            self._damaged(exc, f"{what} of execution {eid}"), execution_id=eid
                        ) from exc
                    raise StoreCorruptError(self._damaged(exc, what)) from exc
                except StoreCorruptError as exc:  # the layout's: this store's path added
                    raise StoreCorruptError(f"the store at {self.path}: {exc}") from None

    def _damaged(self, exc: Exception, what: str) -> str:
        return (
            f"{what} met damage in {self.path / 'data.mdb'} ({type(exc).__name__}: {exc}); "
            f"run `durably check --store {self.path}` and restore the store from a backup "
            "(docs/operations.md, Backups)"
        )

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        with self._read(execution_id, "the record") as txn:
            return _layout.get_execution(_LmdbTxn(txn, self._dbs), execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        with self._read(execution_id, "the log") as txn:
            return _layout.read_events(_LmdbTxn(txn, self._dbs), execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        if limit is not None and limit <= 0:
            return []

        def page(view: _LmdbTxn, after: str | None) -> Iterator[tuple[str, ExecutionRecord]]:
            for record in _layout.iter_executions(view, status, after):
                if workflow is None or record.workflow == workflow:
                    yield record.id, record

        return self._listing(status, after, limit, page)

    def list_fields(self, status: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        def page(view: _LmdbTxn, after: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
            for fields in _scans.iter_fields(view, status, after):
                yield fields["id"], fields

        return self._listing(status, after, limit, page)

    def _listing(
        self,
        status: str | None,
        after: str | None,
        limit: int | None,
        page: Callable[[_LmdbTxn, str | None], Iterator[tuple[str, T]]],
    ) -> list[T]:
        out: list[T] = []
        what = f"listing {status or 'all'} executions"
        unreadable: set[bytes] = set()
        while True:
            view: _LmdbTxn | None = None
            try:
                with self._read(None, what) as txn:
                    view = _LmdbTxn(txn, self._dbs)
                    for eid, item in page(view, after):
                        after = eid
                        out.append(item)
                        if limit is not None and len(out) >= limit:
                            break
                    return out
            except StoreCorruptError:
                # One record's page is damaged, and LMDB failed the whole transaction:
                # go on after it in a new one (get_execution shows it quarantined).
                failed = None if view is None else view.failed_get
                if status is None or failed is None or failed in unreadable:
                    raise
                unreadable.add(failed)
                after = failed.decode()

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        with self._read(None, "reading the timers index") as txn:
            return _layout.due_timers(_LmdbTxn(txn, self._dbs), before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        with self._read(execution_id, "the mailbox") as txn:
            return _layout.mailbox(_LmdbTxn(txn, self._dbs), execution_id)

    def mailboxes(self) -> dict[str, list[MailboxEntry] | CorruptRecordError]:
        with self._read(None, "reading every mailbox") as txn:
            return _scans.mailboxes(_LmdbTxn(txn, self._dbs))

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        with self._read(None, "reading the idempotency index") as txn:
            return _layout.find_idempotent(_LmdbTxn(txn, self._dbs), workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        with self._read(None, f"reading schedule {schedule_id!r}") as txn:
            return _layout.get_value(_LmdbTxn(txn, self._dbs), "schedules", schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        with self._read(None, "listing schedules") as txn:
            return _layout.list_values(_LmdbTxn(txn, self._dbs), "schedules")

    def get_meta(self, name: str) -> Any | None:
        with self._read(None, f"reading meta entry {name!r}") as txn:
            return _layout.get_value(_LmdbTxn(txn, self._dbs), "meta", name)

    def list_queues(self) -> list[tuple[str, Any]]:
        if "queues" not in self._dbs:
            return []  # read-only, over a store older than queues
        with self._read(None, "listing queues") as txn:
            return _layout.list_values(_LmdbTxn(txn, self._dbs), "queues")

    def admissions(self, queue: str) -> list[tuple[int, str]]:
        if "admissions" not in self._dbs:
            return []
        with self._read(None, f"reading the admissions of queue {queue!r}") as txn:
            return _queues.admissions(_LmdbTxn(txn, self._dbs), queue)

    def leases(self) -> list[LeaseInfo]:
        if "leases" not in self._dbs:
            return []
        with self._read(None, "reading the shard leases") as txn:
            return _leases.leases(_LmdbTxn(txn, self._dbs))

    def inbox_waiting(self) -> bool:
        if "inbox" not in self._dbs:
            return False  # read-only, over a store older than the inbox
        with self._read() as txn:
            return _layout.inbox_waiting(_LmdbTxn(txn, self._dbs))

    @contextmanager
    def reading(self) -> Iterator[tuple[_layout.Txn, tuple[str, ...]]]:
        """One read transaction over the store as the layout's ``Txn``, and the tables it
        has, for reading the store whole (``durably check``). After an LMDB error in it the
        transaction is over: the reader catches it, leaves, and reads on in a new one."""
        with self._read() as txn:
            yield _LmdbTxn(txn, self._dbs), tuple(self._dbs)

    def backup(self, destination: str | os.PathLike[str], *, compact: bool = True) -> Path:
        """Copy the store into ``destination`` (a new or empty directory) and return it.

        LMDB copies from one read transaction: the copy is a consistent snapshot, safe
        to take while the worker writes (it is not blocked, and nothing acknowledged
        after the snapshot is in the copy). ``compact`` leaves out free pages.
        """
        target = Path(destination)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise StoreError(
                f"the backup destination {target} is not empty; give a new directory "
                "(a backup never overwrites one)"
            )
        try:
            try:
                self._env.copy(str(target), compact=compact)
            except lmdb.MapResizedError:
                (target / "data.mdb").unlink(missing_ok=True)
                self._env.set_mapsize(0)  # the worker grew the map: adopt its size, again
                self._env.copy(str(target), compact=compact)
            (target / "data.mdb").chmod(0o600)  # as private as the store it copies
        except lmdb.Error as exc:
            (target / "data.mdb").unlink(missing_ok=True)  # no half copy left to restore
            if isinstance(exc, _DAMAGE):
                raise StoreCorruptError(self._damaged(exc, "the backup")) from exc
            raise StoreError(f"the backup of {self.path} into {target} failed: {exc}") from exc
        return target

    def file_facts(self) -> dict[str, int]:
        """The data file's size and what its header says it uses (``durably check``)."""
        info, stat = self._env.info(), self._env.stat()
        return {
            "file_bytes": (self.path / "data.mdb").stat().st_size,
            "page_bytes": stat["psize"],
            "pages_used": info["last_pgno"] + 1,
            "last_txn": info["last_txnid"],
        }

    def map_size(self) -> int:
        """The current map size in bytes: the ceiling the data file may grow to now."""
        size: int = self._env.info()["map_size"]
        return size

    def close(self) -> None:
        """Close the environment and release the worker lock (idempotent)."""
        if not self._closed:
            self._closed = True
            self._env.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None


def _check_size(env: lmdb.Environment, data: Path) -> None:
    """Refuse a data file shorter than the pages its header says are in use.

    LMDB maps the file into memory: reading a page past its end is SIGBUS, which kills
    the process in C, beyond any handler. The header (read without the map) says how
    many pages the last commit used; the file can be longer, never shorter.
    """
    used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = data.stat().st_size
    if size < used:
        raise StoreCorruptError(
            f"the data file {data} is truncated: it has {size} bytes, and its header says "
            f"its pages use {used}; restore the store from a backup (docs/operations.md, "
            "Backups)"
        )


def _owner(ops: Sequence[Op]) -> str | None:
    """The one execution a batch writes to, if it writes to one only."""
    ids = set()
    for op in ops:
        record = getattr(op, "record", None)
        timer = getattr(op, "timer", None)
        ids.add(
            getattr(op, "execution_id", None)
            or getattr(record, "id", None)
            or getattr(timer, "owner", None)
        )
    eid = ids.pop() if len(ids) == 1 else None
    return eid if isinstance(eid, str) else None


def _take_worker_lock(path: Path, shared: bool) -> IO[str]:
    handle = try_lock(path, shared)
    if handle is None and shared:
        raise StoreLockedError(
            f"the store at {path} is held by its one worker (pid {holder(path)}, started "
            "without many_workers) or by a client acting for it; every worker of a store "
            "served by many must pass many_workers=True"
        )
    if handle is None and (probe := try_lock(path, True)) is not None:
        probe.close()  # a shared holder: workers of many serve the store
        raise StoreLockedError(
            f"the store at {path} is served by workers of many (many_workers=True); a "
            "worker of it must be one of them: pass many_workers=True (durably worker "
            "--many-workers)"
        )
    if handle is None:
        raise StoreLockedError(
            f"the store at {path} is held by another worker (pid {holder(path)}); run one "
            "worker per store, and open clients with durably.Client(path) (or lock=False)"
        )
    return handle
