"""The queue manager: admits queued executions as their queues' limits allow.

Rules of this module:

- The store is the truth (``core/_queue.py``): what is queued and what runs is read from
  the records at recovery, and the rate windows from the store's log of admissions.
  Nothing is admitted before recovery has counted every admitted execution.
- Admission is driven by events, never by polling: an offer (an enqueue, a client's
  hint, recovery), an admitted execution ending (``ended``), or the one deadline the
  queues need next (a delay passing, a rate window opening), waited for with a trio
  deadline.
- One pass admits what every queue allows in one commit of ``Admit`` ops (each checks,
  in the transaction, that the record is still queued and due), then launches them. A
  reservation is held from the choice to the commit, so no limit is passed meanwhile.
- A store that fails the commit admits nothing: the reservations are given back and the
  pass is tried again after ``store_retry_seconds``.
- A worker of many admits only from queues without limits (the engine refuses limited
  ones), and only executions of the shards it holds: one whose shard was lost is
  dropped here, and offered again by its new owner's recovery.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import trio

from durably.stores import ExecutionRecord

from ..core._errors import DurablyError, UnknownQueueError
from ..core._queue import Admission, Item, Queue, QueueStats
from ..core._records import Admit, AdmitResult, ForgetAdmissions, Op, PutQueue
from ._ports import Parts

log = logging.getLogger("durably")

#: The admission of executions queued without a queue (a debounce, a delayed start):
#: no limits, only their due time.
UNQUEUED = Queue("durably.unqueued")


class QueueManager:
    """Admits the queued executions of one engine; see the module's rules."""

    def __init__(self, parts: Parts, queues: Sequence[Queue]) -> None:
        self.parts = parts
        self.declared = {queue.name: queue for queue in queues}
        self._admissions: dict[str | None, Admission] = {
            name: Admission(queue) for name, queue in self.declared.items()
        }
        self._admissions[None] = Admission(UNQUEUED)
        self._where: dict[str, str | None] = {}
        self._undeclared: set[str] = set()
        self._wake = trio.Event()
        self._recovered = False
        self._stopped = False
        #: Runs an admitted execution (the supervisor's ``admitted``).
        self.launch: Callable[[ExecutionRecord, list[bytes]], None] = lambda record, log: None

    def queue(self, name: str) -> Queue:
        """The declared queue ``name``; ``UnknownQueueError`` if there is none."""
        queue = self.declared.get(name)
        if queue is None:
            raise UnknownQueueError(name, sorted(self.declared))
        return queue

    # --- what it is told ---

    def offer(self, record: ExecutionRecord) -> None:
        """A record in status ``queued``: line it up (again)."""
        admission = self._admissions.get(record.queue)
        if admission is None:
            self._not_declared(record)
            return
        ready = record.not_before if record.not_before is not None else record.created_ms
        admission.offer(record.id, record.priority, record.partition, ready)
        self._where[record.id] = record.queue
        self._wake.set()

    def admitted_before(self, record: ExecutionRecord) -> None:
        """An admitted execution of a queue, found active (recovery, a launch): it holds
        its place until it ends."""
        admission = self._admissions.get(record.queue)
        if admission is None:
            self._not_declared(record)
            return
        admission.admitted_before(record.id, record.partition)
        self._where[record.id] = record.queue

    def ended(self, execution_id: str) -> None:
        """The execution ended: its place frees, and the queue may admit the next."""
        if execution_id not in self._where:
            return
        admission = self._admissions[self._where.pop(execution_id)]
        admission.ended(execution_id)
        self._wake.set()

    def recovered(self) -> None:
        """Recovery has counted every admitted execution: admission may begin, with the
        rate windows the store remembers."""
        if not self._recovered:
            for name, admission in self._admissions.items():
                if name is not None and admission.queue.rate_limit is not None:
                    for at_ms, eid in self.parts.store.admissions(name):
                        admission.remember(at_ms, eid)
            self._recovered = True
        self._wake.set()

    def stop(self) -> None:
        """The engine drains: admit nothing more (what is queued stays queued)."""
        self._stopped = True
        self._wake.set()

    def _not_declared(self, record: ExecutionRecord) -> None:
        name = str(record.queue)
        if name not in self._undeclared:
            self._undeclared.add(name)
            log.warning(
                "execution %s is on queue %r, which this engine does not declare; it stays "
                "queued until a worker that declares the queue runs",
                record.id,
                name,
            )

    # --- admitting ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._declare()
        clock = self.parts.clock
        while True:
            deadline = self._next_deadline()
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            if not self._recovered or self._stopped:
                continue
            try:
                await self._pass(clock.now_ms())
            except DurablyError as exc:
                if self._stopped:  # the engine stopped under a pass: its commit was refused
                    continue
                log.error("queue admission stopped, tried again soon: %s", exc)
                await trio.sleep(self.parts.settings.store_retry_seconds)
                self._wake.set()

    async def _declare(self) -> None:
        """Write the declarations that changed, for clients and the CLI to read; they
        inform, they do not govern (admission follows this engine's own), so a failing
        store is only logged."""
        try:
            stored = dict(self.parts.store.list_queues())
            ops: list[Op] = [
                PutQueue(name, data)
                for name, queue in self.declared.items()
                if stored.get(name) != (data := queue.to_data())
            ]
            if ops:
                await self.parts.committer.commit(ops)
        except DurablyError as exc:
            log.warning("the queues' declarations were not written: %s", exc)

    def _next_deadline(self) -> float:
        # Asked after the pass, at a later instant than its takes: a rate window may have
        # opened since (or ``stats`` lined up a due item); ``next_ms`` then says "now",
        # and the deadline, already past, starts the next pass at once.
        if not self._recovered or self._stopped:
            return math.inf
        now = self.parts.clock.now_ms()
        due = [d for a in self._admissions.values() if (d := a.next_ms(now)) is not None]
        return self.parts.clock.deadline(min(due)) if due else math.inf

    async def _pass(self, now: int) -> None:
        ops: list[Op] = []
        taken: list[tuple[Admission, Item]] = []
        own = self.parts.ownership
        for name, admission in self._admissions.items():
            for item in admission.take(now):
                if own is not None and not own.owns(item.execution_id):
                    # Its shard went to another worker of many, whose recovery offers it.
                    admission.refused(item)
                    self._where.pop(item.execution_id, None)
                    continue
                ops.append(Admit(item.execution_id, now))
                taken.append((admission, item))
            expired = admission.expired(now)
            if expired and name is not None:
                ops.append(ForgetAdmissions(name, expired))
        if not ops:
            return
        try:
            results = await self.parts.committer.commit(ops)
        except BaseException:
            for admission, item in taken:  # nothing was admitted: back in line
                admission.refused(item)
                admission.offer(item.execution_id, item.priority, item.partition, item.ready_ms)
            raise
        admitted = (r for r in results if isinstance(r, AdmitResult))
        for (admission, item), result in zip(taken, admitted, strict=True):
            if result.admitted is not None:
                self.launch(result.admitted, result.events)
                continue
            admission.refused(item)
            self._where.pop(item.execution_id, None)
            if result.later is not None:
                self.offer(result.later)  # a debounce moved it: line it up again

    # --- seeing it ---

    def stats(self, name: str) -> QueueStats:
        self.queue(name)
        return self._admissions[name].stats(self.parts.clock.now_ms())
