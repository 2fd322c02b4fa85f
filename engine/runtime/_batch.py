"""How the members of one ``ctx.gather`` write their execution's log together.

Rules of this module:

- One execution's log has one writer, and sequence numbers are counted: members that
  append at once would race for the same number. Inside a gather, appends go to this
  writer instead, whose task commits all that is waiting as one append (one transaction,
  and with the commit actor's group commit, one fsync for many executions' work). A
  thousand steps that finish together cost a handful of commits, not a thousand.
- A member is told its event is recorded only once its batch is durable.
- A wait's timeout carries ``RequireNoSignal``, which may refuse its whole batch: it is
  written in a batch of its own, so a refusal concerns that member alone.
- The writer's commit is shielded, and an entry handed over is written even if its
  member is cancelled meanwhile (another failed): finished work is never thrown away.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from durably.stores import Append, Op, PutExecution

from ..core._errors import DurablyError
from ..core._events import Event, encode
from ..core._records import RequireNoSignal, SignalArrived
from ._primitive import _EngineFailure

if TYPE_CHECKING:
    from ._recorder import Recorder


class _Entry:
    __slots__ = ("changes", "done", "error", "event", "ops", "raw", "step_id")

    def __init__(
        self,
        event: Event,
        raw: bytes,
        step_id: str | None,
        ops: list[Op],
        changes: Mapping[str, Any],
    ) -> None:
        self.event = event
        self.raw = raw
        self.step_id = step_id
        self.ops = ops
        self.changes = changes
        self.done = trio.Event()
        self.error: BaseException | None = None


class GatherWriter:
    """The one writer of an execution's log while a gather runs (see the module's rules)."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._pending: list[_Entry] = []
        self._work = trio.Event()
        self._closing = False

    async def append(
        self,
        event: Event,
        raw: bytes,
        step_id: str | None,
        ops: list[Op],
        changes: Mapping[str, Any],
    ) -> None:
        entry = _Entry(event, raw, step_id, ops, changes)
        self._pending.append(entry)
        self._work.set()
        # A member cancelled here (another failed) leaves its entry to be written: the
        # work it records is done, and a replay then answers it instead of losing it.
        await entry.done.wait()
        if entry.error is not None:
            raise entry.error

    def close(self) -> None:
        """No member is left: write what is pending, then stop."""
        self._closing = True
        self._work.set()

    async def run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._work = trio.Event()
                await self._work.wait()
                continue
            # One yield, so that members made ready by the same wake hand theirs over too.
            await trio.lowlevel.cancel_shielded_checkpoint()
            # Entries that cannot be refused go first: a timeout waits behind a take of
            # the signal it would otherwise be refused for, instead of racing it.
            batch = [e for e in self._pending if not _refusable(e)]
            alone = not batch
            if alone:
                batch = [self._pending[0]]
            self._pending = [e for e in self._pending if e not in batch]
            with trio.CancelScope(shield=True):
                await self._commit(batch, staged=not alone)

    async def _commit(self, batch: list[_Entry], *, staged: bool) -> None:
        rec = self._recorder
        if rec._fired is not None:
            rec._stage_fired()
        events: list[Event] = [*rec._staged_events] if staged else []
        raws = [encode(e) for e in events]
        changes: dict[str, Any] = dict(rec._staged_changes) if staged else {}
        ops: list[Op] = [*rec._staged_ops] if staged else []
        for entry in batch:
            events.append(entry.event)
            raws.append(entry.raw)
            changes.update(entry.changes)
            ops.extend(entry.ops)
        if rec.record_.recoveries:
            changes["recoveries"] = 0
        record = rec.record_
        commit: list[Op] = [Append(rec.execution_id, rec.seq, raws)]
        if changes:
            record = attrs.evolve(record, updated_ms=events[-1].at, **changes)
            commit.append(PutExecution(record))
        commit.extend(ops)
        try:
            await rec.parts.committer.commit(commit)
        except SignalArrived as exc:
            batch[0].error = exc  # only a timeout is written alone, with nothing staged
            batch[0].done.set()
            return
        except DurablyError as exc:
            failure = _EngineFailure(exc)
            for entry in [*batch, *self._pending]:
                entry.error = failure
                entry.done.set()
            self._pending = []
            self._closing = True
            return
        first = rec.seq
        rec.seq += len(raws)
        rec.record_ = record
        if staged:
            rec._staged_events, rec._staged_ops = (), ()
            rec._staged_changes = {}
        for entry in batch:
            if entry.step_id is not None:
                rec.replayer.record(entry.step_id, entry.event)
            entry.done.set()
        if rec.replay_guard is not None or rec.replay_slot is not None:
            rec.replay_done()
        rec.host.published(rec.execution_id, events, first)


def _refusable(entry: _Entry) -> bool:
    return any(isinstance(op, RequireNoSignal) for op in entry.ops)
