"""Ownership for a worker of many (``Engine(many_workers=True)``): this worker's shard
leases, their heartbeat, and the fence every one of its writes carries.

Rules of this module (the layout side is ``stores/_leases.py``, the keys ``core/_shards.py``):

- A lease is claimed by a heartbeat (at start, and at every beat while this worker holds
  less than its fair share), renewed by every beat (each ``lease_seconds / 3``), and left
  to expire if the worker dies; a graceful stop releases them all at once.
- Every batch of this worker that writes an execution's log, record, timers or mailbox
  takes carries a ``Fence`` with the epochs it holds, checked in the same transaction
  (``fence``): a worker whose lease was taken over (it paused, it was cut off) has every
  such write refused with ``LeaseLostError``, and its actor stops without writing.
- What a beat changes is handed to the host: shards lost (their actors stop, their
  timers are forgotten) before shards gained (recovered from the store, as at start).
  Shards held beyond the fair share are given up in two beats: their actors stop first,
  then the release, so that another worker can take them at once.
- The store decides, never the clock: a beat that fails changes nothing here, and a
  worker that cannot beat for a lease period stops its actors, since its leases may be
  taken over (their writes would be refused anyway).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from operator import attrgetter
from typing import Any

import trio

from durably.stores import (
    AddTimer,
    Append,
    Fence,
    Heartbeat,
    Leases,
    Op,
    PutExecution,
    RemoveTimer,
    ResetLog,
    TakeInbox,
    TakeSignal,
)

from ..core._errors import DurablyError, LeaseLostError
from ..core._records import Admit
from ..core._shards import SHARDS, fair_share, shard_of

log = logging.getLogger("durably")

Shards = frozenset[int]


def new_worker_id() -> str:
    """A name for this worker that says where it runs (host, pid) and is never reused."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def _timer_owner(op: Any) -> str | None:
    owner: str = op.timer.owner
    # A schedule's timer is written by whichever worker changes the schedule; its fires
    # are the owner's (only the owner arms it), and start nothing twice.
    return None if owner.startswith("schedule:") else owner


#: The execution (or timer owner) each kind of op writes that only an owner may write.
#: A creation (a start, an enqueue) is not here: it is a message like a signal, with an
#: inbox entry, run by whoever owns its shard when it lands (a child's rides in its
#: parent's fenced append).
_OWNED: dict[type, Callable[[Any], str | None]] = {
    Append: attrgetter("execution_id"),
    ResetLog: attrgetter("execution_id"),
    TakeSignal: attrgetter("execution_id"),
    Admit: attrgetter("execution_id"),
    PutExecution: attrgetter("record.id"),
    AddTimer: _timer_owner,
    RemoveTimer: _timer_owner,
}


class Ownership:
    """This worker's leases: who it is, what it holds, the beat, the fence."""

    def __init__(
        self,
        store: Any,
        now_ms: Callable[[], int],
        lease_seconds: float,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.now_ms = now_ms
        self.lease_seconds = lease_seconds
        self.worker = worker_id or new_worker_id()
        self.held: dict[int, int] = {}
        self.shards: Shards = frozenset()
        self.workers = 1
        #: Told of shards lost (stop their actors; ``handed_over``: on purpose, the
        #: lease still held) and gained (recover them). Neither may block.
        self.on_lost: Callable[..., None] | None = None
        self.on_gained: Callable[[Shards], None] | None = None
        self._last_beat = trio.current_time() if _in_trio() else 0.0
        #: Shards given up on purpose, still leased until the next beat releases them:
        #: their stopping actors may still write (a crash-loop count cleared).
        self._handing: dict[int, int] = {}
        #: The fence of one (shard, epoch), made once (an epoch is never reused).
        self._single: dict[tuple[int, int], Fence] = {}

    # --- the fence (called by the committer for every batch of this worker) ---

    def owns(self, key: str) -> bool:
        return shard_of(key) in self.shards

    def fence(self, ops: list[Op]) -> Fence | None:
        """The ``Fence`` the transaction of ``ops`` must pass, or ``None`` if none writes
        an owner's data. Refused here (nothing sent) for a shard this worker does not
        hold now."""
        # Called for every commit of a worker of many: one dict lookup per op, one shard
        # per run of ops of the same execution (an append and its record, typically).
        held, handing, owned = self.held, self._handing, _OWNED
        leases: dict[int, int] = {}
        last: str | None = None
        for op in ops:
            key_of = owned.get(type(op))
            if key_of is not None:
                key = key_of(op)
                if key is None or key == last:
                    continue
                last = key
                shards: Iterable[int] = (shard_of(key),)
            elif type(op) is TakeInbox:
                shards = op.shards or ()
            else:
                continue
            for shard in shards:
                epoch = held.get(shard)
                if epoch is None and (epoch := handing.get(shard)) is None:
                    raise LeaseLostError(
                        f"worker {self.worker} does not hold shard {shard} now; nothing "
                        "was written: the shard's owner carries on"
                    )
                leases[shard] = epoch
        if not leases:
            return None
        if len(leases) == 1:  # the common case: one execution's ops; its check is kept
            [pair] = leases.items()
            fence = self._single.get(pair)
            if fence is None:
                fence = self._single[pair] = Fence(self.worker, (pair,))
            return fence
        return Fence(self.worker, tuple(leases.items()))

    def token(self, key: str) -> tuple[str, int] | None:
        """``(worker, epoch)`` if this worker holds the key's shard now (``Notify.unless``)."""
        epoch = self.held.get(shard_of(key))
        return None if epoch is None else (self.worker, epoch)

    def take_inbox(self, limit: int) -> TakeInbox:
        return TakeInbox(limit, self.shards)

    # --- the beat ---

    def first_beat(self) -> None:
        """Claim this worker's first shards, before recovery (which then recovers only
        those); called on the event loop at start, like the store's other first reads."""
        [leases] = self.store.apply([self._beat_op(claim=True)])
        self._took(leases)

    async def run(
        self, commit: Callable[[list[Op]], Awaitable[list[Any]]], *, task_status: Any = None
    ) -> None:
        """Beat every third of the lease period until cancelled; meanwhile a watchdog
        stops every actor once no beat has succeeded for a lease period (a beat may be
        stuck behind a store that does not answer, or behind another writer that holds
        its lock: this worker's leases may be taken over by now)."""
        if task_status is not None:
            task_status.started()
        period = self.lease_seconds / 3
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog, period)
            while True:
                await trio.sleep(period)
                await self.beat(commit)

    async def _watchdog(self, period: float) -> None:
        while True:
            await trio.sleep(period)
            silent = self.silent_for()
            if self.held and silent > self.lease_seconds:
                log.warning(
                    "durably: worker %s has not renewed its leases for %.1f s; its "
                    "executions stop until a beat succeeds",
                    self.worker,
                    silent,
                )
                self._lose(frozenset(self.held))

    def silent_for(self) -> float:
        """Seconds since the last beat that reached the store."""
        return trio.current_time() - self._last_beat

    async def beat(self, commit: Callable[[list[Op]], Awaitable[list[Any]]]) -> None:
        release = frozenset(self._handing)
        try:
            [leases] = await commit([self._beat_op(release=release)])
        except DurablyError as exc:
            log.warning("durably: worker %s could not renew its leases: %s", self.worker, exc)
            if trio.current_time() - self._last_beat > self.lease_seconds and self.held:
                self._lose(frozenset(self.held))  # they may be taken over by now
            return
        self._handing = {}
        lost = frozenset(s for s, e in self.held.items() if leases.held.get(s) != e)
        if lost:
            self._lose(lost)
        self._took(leases)
        excess = len(self.held) - fair_share(leases.workers)
        if excess > 0:
            # Give up the highest shards: stop their actors now, release at the next beat.
            self._lose(frozenset(sorted(self.held)[-excess:]), handed_over=True)

    async def leave(self, commit: Callable[[list[Op]], Awaitable[list[Any]]]) -> None:
        """A graceful stop: release every lease now, so others take over at once."""
        try:
            await commit([self._beat_op(leaving=True)])
        except DurablyError as exc:
            log.warning(
                "durably: worker %s left without releasing its leases: %s", self.worker, exc
            )
        self.held, self.shards, self._handing = {}, frozenset(), {}

    def _beat_op(
        self, *, claim: bool = True, release: Shards = frozenset(), leaving: bool = False
    ) -> Heartbeat:
        lease_ms = int(self.lease_seconds * 1000)
        return Heartbeat(self.worker, self.now_ms(), lease_ms, release, claim, leaving)

    def _took(self, leases: Leases) -> None:
        self._last_beat = trio.current_time()
        self.workers = leases.workers
        gained = frozenset(s for s, e in leases.held.items() if self.held.get(s) != e)
        self.held = dict(leases.held)
        self.shards = frozenset(self.held)
        if gained:
            log.info(
                "durably: worker %s holds %d of %d shards (%d live workers)",
                self.worker,
                len(self.held),
                SHARDS,
                leases.workers,
            )
            if self.on_gained is not None:
                self.on_gained(gained)

    def _lose(self, shards: Shards, *, handed_over: bool = False) -> None:
        for shard in shards:
            epoch = self.held.pop(shard, None)
            if handed_over and epoch is not None:
                self._handing[shard] = epoch
        self.shards = frozenset(self.held)
        log.info("durably: worker %s gives up shards %s", self.worker, sorted(shards))
        if self.on_lost is not None:
            self.on_lost(shards, handed_over=handed_over)


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
