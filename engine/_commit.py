"""The commit actor: group commit of many producers' ops in one store transaction.

Rules of this module:

- A producer's ops are acknowledged (``commit`` returns) only after the transaction that
  holds them is durable. Nothing is acknowledged that was not written.
- Ops of one producer keep their order (they are appended to the batch in order, and a
  producer waits for its ack before sending more).
- Whatever queued while the previous transaction was being written goes into the next:
  under load batches grow by themselves, alone a batch is one producer's ops.
- A store error (disk full, ...) fails every producer of that batch. Any other error
  (an op that cannot apply, or one that reads a corrupt record) is isolated by re-applying
  each producer's ops alone, so one producer's bad op never fails another's.
- A producer cancelled while waiting still gets its ops committed (they were handed
  over); the wait is shielded, because an execution must know what its log holds.
- The store runs inline on the event loop when it says it is cheap (``store.inline``) or
  when nothing else is runnable (the thread hop then costs more than it overlaps);
  otherwise in a worker thread, begin to commit inside one call (LMDB write transactions
  are bound to their thread).
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from durably.stores import Op, Store

from ._errors import CorruptRecordError, StoreError


class _Batch:
    __slots__ = ("done", "errors", "ops", "results", "slices")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.slices: list[tuple[int, int]] = []
        self.done = trio.Event()
        self.results: list[Any] = []
        self.errors: dict[int, BaseException] = {}


@attrs.frozen
class CommitStatistics:
    batches: int
    ops: int
    inline_batches: int
    largest_batch: int


class Committer:
    """Accepts op lists from many tasks; ``run`` writes them in group commits."""

    def __init__(self, store: Store, *, max_batch_ops: int = 20_000, inline: str = "auto"):
        if inline not in ("auto", "always", "never"):
            raise ValueError("inline must be 'auto', 'always' or 'never'")
        self._store = store
        self._max_batch_ops = max_batch_ops
        self._inline_mode = "always" if store.inline else inline
        self._pending = _Batch()
        self._work = trio.Event()
        self._space = trio.Event()
        self._closed = False
        self._batches = 0
        self._ops = 0
        self._inline_batches = 0
        self._largest = 0

    def statistics(self) -> CommitStatistics:
        return CommitStatistics(self._batches, self._ops, self._inline_batches, self._largest)

    async def commit(self, ops: list[Op]) -> list[Any]:
        """Hand ``ops`` to the next group commit; return their results once durable."""
        if self._closed:
            raise StoreError("the engine is shutting down; nothing more is committed")
        while len(self._pending.ops) >= self._max_batch_ops:
            await self._space.wait()  # backpressure: the committer is behind
        batch = self._pending
        index = len(batch.slices)
        start = len(batch.ops)
        batch.ops.extend(ops)
        batch.slices.append((start, len(batch.ops)))
        self._work.set()
        with trio.CancelScope(shield=True):
            await batch.done.wait()
        error = batch.errors.get(index)
        if error is not None:
            raise error
        return batch.results[start : start + len(ops)]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor's loop; ends after ``close`` once every handed-over op is written."""
        task_status.started()
        # Shielded: ops handed over are written even while the engine is being cancelled.
        with trio.CancelScope(shield=True):
            while True:
                await self._work.wait()
                self._work = trio.Event()
                batch = self._pending
                if not batch.ops and not batch.slices:
                    if self._closed:
                        return
                    continue
                self._pending = _Batch()
                space, self._space = self._space, trio.Event()
                space.set()
                await self._write(batch)
                batch.done.set()

    def close(self) -> None:
        """Stop accepting; ``run`` returns after writing what was handed over."""
        self._closed = True
        self._work.set()

    async def _write(self, batch: _Batch) -> None:
        self._batches += 1
        self._ops += len(batch.ops)
        self._largest = max(self._largest, len(batch.ops))
        try:
            batch.results = await self._apply(batch.ops)
            return
        except CorruptRecordError:
            pass  # one execution's corrupt record: isolate it like a bad op
        except StoreError as exc:
            for index in range(len(batch.slices)):
                batch.errors[index] = exc
            return
        except Exception:
            pass
        # Isolate the producer whose ops cannot apply; the others commit.
        batch.results = [None] * len(batch.ops)
        for index, (start, end) in enumerate(batch.slices):
            try:
                batch.results[start:end] = await self._apply(batch.ops[start:end])
            except Exception as exc:
                batch.errors[index] = exc

    async def _apply(self, ops: list[Op]) -> list[Any]:
        mode = self._inline_mode
        if mode == "always" or (
            mode == "auto" and trio.lowlevel.current_statistics().tasks_runnable == 0
        ):
            self._inline_batches += 1
            return self._store.apply(ops)
        return await trio.to_thread.run_sync(self._store.apply, ops)
