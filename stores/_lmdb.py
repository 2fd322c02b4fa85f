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
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import lmdb

from durably.core._errors import (
    CorruptRecordError,
    StoreClosedError,
    StoreError,
    StoreFullError,
    StoreLockedError,
)

from ..core._records import ExecutionRecord, MailboxEntry, Op, PutMeta, Timer
from . import _layout
from ._flock import holder, try_lock

_MIB = 1 << 20
#: Free space under which an I/O error at commit is reported as a full disk.
_LOW_SPACE = 4 * _MIB


class _LmdbTxn:
    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, table: str, key: bytes) -> bytes | None:
        return cast("bytes | None", self._txn.get(key, db=self._dbs[table]))

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
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(max(start, prefix)):
            return
        # Typed once here rather than cast per item: replay scans every event of a log.
        items = cast("Iterator[tuple[bytes, bytes]]", cursor.iternext())
        for item in items:
            if not item[0].startswith(prefix):
                return
            yield item


class LmdbStore:
    """A durable store in an LMDB environment at ``path`` (a directory).

    ``sync=True`` (the default) fsyncs every commit: an acknowledged batch survives a
    crash. ``lock=True`` makes this the one worker of the path; clients that only start,
    signal and read pass ``lock=False``. ``inline=True`` commits on the calling thread
    (needed under a trio ``MockClock``); by default the engine commits in a worker thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = 64 * _MIB,
        max_map_size: int | None = None,
        sync: bool = True,
        lock: bool = True,
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
            self.path.mkdir(parents=True, exist_ok=True)
        if lock and not readonly:
            self._lock_file = _take_worker_lock(self.path)
        new = not (self.path / "data.mdb").exists()
        try:
            self._env = lmdb.open(
                str(self.path),
                # 0 adopts the size stored in an existing environment; a smaller number
                # would shrink the map to the used size and forget how far it had grown.
                map_size=map_size if new else 0,
                max_dbs=len(_layout.TABLES) + 2,
                sync=sync,
                metasync=sync,
                readonly=readonly,
                writemap=False,  # writemap turned a full disk into SIGBUS when measured
                max_readers=1024,
            )
            # The larger of the configured and the stored size.
            current = self._env.info()["map_size"]
            if current < map_size and not readonly:
                self._env.set_mapsize(map_size)
            self._env.reader_check()
            self._dbs = {}
            for name in _layout.TABLES:
                while True:
                    try:
                        self._dbs[name] = self._env.open_db(name.encode(), create=not readonly)
                        break
                    except lmdb.MapFullError:
                        # Creating a table writes too: a tiny map can fill at creation.
                        self._env.set_mapsize(self._env.info()["map_size"] * 2)
        except lmdb.Error as exc:
            self._release_lock()
            raise StoreError(f"cannot open the LMDB store at {self.path}: {exc}") from exc
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
                    return _layout.apply_ops(_LmdbTxn(txn, self._dbs), ops)
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
    def _read(self) -> Iterator[lmdb.Transaction]:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        with self._resize_lock:
            try:
                txn = self._env.begin(buffers=False)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size
                txn = self._env.begin(buffers=False)
            with txn:
                yield txn

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        with self._read() as txn:
            return _layout.get_execution(_LmdbTxn(txn, self._dbs), execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        with self._read() as txn:
            return _layout.read_events(_LmdbTxn(txn, self._dbs), execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        with self._read() as txn:
            return _layout.list_executions(_LmdbTxn(txn, self._dbs), status, workflow, after, limit)

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        with self._read() as txn:
            return _layout.due_timers(_LmdbTxn(txn, self._dbs), before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        with self._read() as txn:
            return _layout.mailbox(_LmdbTxn(txn, self._dbs), execution_id)

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        with self._read() as txn:
            return _layout.find_idempotent(_LmdbTxn(txn, self._dbs), workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        with self._read() as txn:
            return _layout.get_value(_LmdbTxn(txn, self._dbs), "schedules", schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        with self._read() as txn:
            return _layout.list_values(_LmdbTxn(txn, self._dbs), "schedules")

    def get_meta(self, name: str) -> Any | None:
        with self._read() as txn:
            return _layout.get_value(_LmdbTxn(txn, self._dbs), "meta", name)

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


def _take_worker_lock(path: Path) -> IO[str]:
    handle = try_lock(path)
    if handle is None:
        raise StoreLockedError(
            f"the store at {path} is held by another worker (pid {holder(path)}); run one "
            "worker per store, and open clients with durably.Client(path) (or lock=False)"
        )
    return handle
