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
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import lmdb

from durably._errors import (
    CorruptRecordError,
    StoreClosedError,
    StoreError,
    StoreFullError,
    StoreLockedError,
)

from . import _layout
from ._model import ExecutionRecord, MailboxEntry, Op, PutMeta, Timer

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
        self._txn.put(key, value, db=self._dbs[table])

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        inserted: bool = self._txn.put(key, value, db=self._dbs[table], overwrite=False)
        return inserted

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[table])

    def scan(self, table: str, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(max(start, prefix)):
            return
        for key, value in cursor.iternext():
            if not cast(bytes, key).startswith(prefix):
                return
            yield cast(bytes, key), cast(bytes, value)


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
        self._lock_file: IO[str] | None = None
        self.path.mkdir(parents=True, exist_ok=True)
        if lock and not readonly:
            self._lock_file = _take_worker_lock(self.path)
        try:
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(_layout.TABLES) + 2,
                sync=sync,
                metasync=sync,
                readonly=readonly,
                writemap=False,  # writemap turned a full disk into SIGBUS when measured
                max_readers=1024,
            )
            # Reopening with a smaller map_size would shrink the map: keep the larger.
            current = self._env.info()["map_size"]
            if current < map_size and not readonly:
                self._env.set_mapsize(map_size)
            self._env.reader_check()
            self._dbs = {
                name: self._env.open_db(name.encode(), create=not readonly)
                for name in _layout.TABLES
            }
        except lmdb.Error as exc:
            self._release_lock()
            raise StoreError(f"cannot open the LMDB store at {self.path}: {exc}") from exc
        except BaseException:
            self._release_lock()
            raise
        self._closed = False
        if not readonly:
            schema = self.get_meta("schema")
            if schema is None:
                self.apply([PutMeta("schema", _layout.SCHEMA_VERSION)])
            elif schema != _layout.SCHEMA_VERSION:
                self.close()
                raise CorruptRecordError(
                    f"the store at {self.path} has schema version {schema}; this durably "
                    f"reads version {_layout.SCHEMA_VERSION}. Upgrade durably to open it."
                )

    # --- writes ---

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return _layout.apply_ops(_LmdbTxn(txn, self._dbs), ops)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.MapResizedError:
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

    def _read(self) -> lmdb.Transaction:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        return self._env.begin(buffers=False)

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
        size: int = self._env.info()["map_size"]
        return size

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None


def _take_worker_lock(path: Path) -> IO[str]:
    lock_path = path / "worker.lock"
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreLockedError(
            f"the store at {path} is held by another worker (pid {holder}); run one worker "
            "per store, and open clients with durably.Client(path) (or lock=False)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
