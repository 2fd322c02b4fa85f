"""The commit actor: group commit of many producers' ops in one store transaction.

Rules of this module:

- A producer's ops are acknowledged (``commit`` returns) only after the transaction that
  holds them is durable. Nothing is acknowledged that was not written.
- Ops of one producer keep their order (they are appended to the batch in order, and a
  producer waits for its ack before sending more).
- Whatever queued while the previous transaction was being written goes into the next:
  under load batches grow by themselves, alone a batch is one producer's ops.
- A store error (disk full, ...) fails every producer of that batch. Any other error
  (an op that cannot apply, or a corrupt record one op read) is isolated by re-applying
  each producer's ops alone, so one producer's bad op never fails another's.
- A producer cancelled while waiting still gets its ops committed (they were handed
  over); the wait is shielded, because an execution must know what its log holds.
- The store runs inline on the event loop when it says it is cheap (``store.inline``) or
  when nothing else is runnable (the thread hop then costs more than it overlaps);
  otherwise in a worker thread, begin to commit inside one call (LMDB write transactions
  are bound to their thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from durably.stores import Fence, Op, Store

from ..core._errors import CorruptRecordError, StoreError
from ._latch import REFUSE, Done, park


def _public_runnable() -> int:
    return trio.lowlevel.current_statistics().tasks_runnable


def _runnable_counter() -> Callable[[], int]:
    """A function returning how many tasks are runnable, as cheap as it can be had.

    ``current_statistics()`` builds a statistics object (about 2 us) and every commit asks;
    the run queue's own length is the same number. Used only where the private run queue
    is found and agrees with the public figure (checked in the running loop); otherwise
    the public API.
    """
    try:
        runq = trio._core._run.GLOBAL_RUN_CONTEXT.runner.runq
        length = runq.__len__
        if length() == _public_runnable():
            return length
    except AttributeError:
        pass
    return _public_runnable


class _Batch:
    __slots__ = ("done", "errors", "fences", "ops", "results", "slices")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.slices: list[tuple[int, int]] = []
        self.done = Done()
        self.results: list[Any] = []
        self.errors: dict[int, BaseException] = {}
        #: A worker of many: each producer's lease check, by slice (merged into one).
        self.fences: dict[int, Fence] = {}


def _merged(fences: dict[int, Fence]) -> Fence:
    """One check for the whole batch: the union of its producers' leases (one worker's)."""
    first = next(iter(fences.values()))
    leases = dict(pair for fence in fences.values() for pair in fence.leases)
    return Fence(first.worker, tuple(leases.items()))


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
        self._writing = False
        self._deciding = 0
        self._pending = _Batch()
        self._work = trio.Event()
        self._space = trio.Event()
        self._closed = False
        self._batches = 0
        self._ops = 0
        self._inline_batches = 0
        self._largest = 0
        self._runnable: Callable[[], int] = _public_runnable
        #: Told each batch's op count and write seconds (telemetry); ``None``: not timed.
        self.on_commit: Callable[[int, float], None] | None = None
        #: A worker of many: the lease check a producer's ops must pass (``None`` if they
        #: write nothing only an owner may), or refuses them (``Ownership.fence``).
        #: ``None`` for the one worker of a store. A batch carries one merged check.
        self.fence: Callable[[list[Op]], Fence | None] | None = None

    def statistics(self) -> CommitStatistics:
        return CommitStatistics(self._batches, self._ops, self._inline_batches, self._largest)

    async def commit(self, ops: list[Op]) -> list[Any]:
        """Hand ``ops`` to the next group commit; return their results once durable."""
        fence = None if self.fence is None else self.fence(ops)
        if not self._pending.slices and not self._writing and self._inline_mode != "never":
            # Maybe alone: let the rest of this scheduler tick run first, then look again.
            # Producers that yield here together are rescheduled together, and trio's
            # run-queue count does not see tasks of the tick in progress: count them.
            self._deciding += 1
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()
            finally:
                self._deciding -= 1
            if (
                self._deciding == 0
                and not self._pending.slices
                and not self._writing
                and self._runnable() == 0
            ):
                if self._closed:
                    raise StoreError("the engine is shutting down; nothing more is committed")
                if fence is None:
                    return self._commit_alone(ops)
                return self._commit_alone([fence, *ops])[1:]
        while len(self._pending.ops) >= self._max_batch_ops and not self._closed:
            await self._space.wait()  # backpressure: the committer is behind
        if self._closed:  # also when closed while waiting for space: nothing handed over
            raise StoreError("the engine is shutting down; nothing more is committed")
        batch = self._pending
        index = len(batch.slices)
        start = len(batch.ops)
        batch.ops.extend(ops)
        batch.slices.append((start, len(batch.ops)))
        if fence is not None:
            batch.fences[index] = fence
        self._work.set()
        # Uncancellable (see Done): ops handed over are written. Parked in this frame, not
        # in Done.wait: every step's commit wait resumes through each frame it holds.
        if batch.done.join():
            await park(REFUSE)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        error = batch.errors.get(index)
        if error is not None:
            raise error
        return batch.results[start : start + len(ops)]

    def _commit_alone(self, ops: list[Op]) -> list[Any]:
        """A producer with the loop to itself commits on the spot.

        Nothing else is runnable, queued or being written, so handing the ops to the
        actor task would only add two task switches to a commit that cannot overlap with
        anything. Same transaction, same acknowledgement rule.
        """
        self._batches += 1
        self._ops += len(ops)
        self._inline_batches += 1
        self._largest = max(self._largest, len(ops))
        self._writing = True
        observe = self.on_commit
        began = 0.0 if observe is None else time.perf_counter()
        try:
            return self._store.apply(ops)
        finally:
            self._writing = False
            if observe is not None:
                observe(len(ops), time.perf_counter() - began)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor's loop; ends after ``close`` once every handed-over op is written."""
        self._runnable = _runnable_counter()
        task_status.started()
        # Shielded: ops handed over are written even while the engine is being cancelled.
        with trio.CancelScope(shield=True):
            while True:
                batch = self._pending
                if not batch.slices:
                    if self._closed:
                        return
                    # Only an idle actor waits: after close() no new work wakes it.
                    await self._work.wait()
                    self._work = trio.Event()
                    continue
                self._pending = _Batch()
                space, self._space = self._space, trio.Event()
                space.set()
                self._writing = True
                try:
                    await self._write(batch)
                except BaseException as exc:
                    # Never leave a producer waiting on a batch whose fate is unknown.
                    for index in range(len(batch.slices)):
                        batch.errors.setdefault(
                            index, StoreError(f"the commit actor failed: {exc!r}")
                        )
                    raise
                finally:
                    self._writing = False
                    batch.done.set()

    def close(self) -> None:
        """Stop accepting; ``run`` returns after writing what was handed over."""
        self._closed = True
        self._work.set()

    async def _write(self, batch: _Batch) -> None:
        self._batches += 1
        self._ops += len(batch.ops)
        self._largest = max(self._largest, len(batch.ops))
        observe = self.on_commit
        try:
            began = 0.0 if observe is None else time.perf_counter()
            if batch.fences:
                batch.results = (await self._apply([_merged(batch.fences), *batch.ops]))[1:]
            else:
                batch.results = await self._apply(batch.ops)
            if observe is not None:
                observe(len(batch.ops), time.perf_counter() - began)
            return
        except CorruptRecordError:
            pass  # one execution's bad record: isolate it like a bad op
        except StoreError as exc:
            for index in range(len(batch.slices)):
                batch.errors[index] = exc
            return
        except Exception:
            pass
        # Isolate the producer whose ops cannot apply; the others commit.
        batch.results = [None] * len(batch.ops)
        for index, (start, end) in enumerate(batch.slices):
            ops = batch.ops[start:end]
            fence = batch.fences.get(index)
            try:
                if fence is None:
                    batch.results[start:end] = await self._apply(ops)
                else:
                    batch.results[start:end] = (await self._apply([fence, *ops]))[1:]
            except Exception as exc:
                batch.errors[index] = exc

    async def _apply(self, ops: list[Op]) -> list[Any]:
        mode = self._inline_mode
        if mode == "always" or (mode == "auto" and self._runnable() == 0):
            self._inline_batches += 1
            return self._store.apply(ops)
        return await trio.to_thread.run_sync(self._store.apply, ops)
