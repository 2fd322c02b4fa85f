"""One run of a check: the workflow under test, driven in virtual time, optionally stopped
at a durable boundary and resumed on a fresh engine over the same store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import attrs
import trio
import trio.testing

from durably.stores import MailboxEntry, Op, Store

from .._engine import Engine
from ..core._errors import StoreError
from ..core._queue import Queue
from ..core._types import Status
from ..core._workflow import WorkflowDefinition
from ..runtime import _context
from ..runtime._clock import Clock
from ._cut import _CutStore, _QuietCuts
from ._deliveries import Delivery, _signal_name
from ._entropy import _Entropy
from ._report import canonical_history, normalize_event

_TERMINAL = frozenset(s.value for s in Status if s.terminal)


@attrs.frozen
class _Observed:
    """Everything one run of a check saw."""

    execution_id: str | None
    status: str
    result: Any
    error: dict[str, Any] | None
    raw_history: list[bytes]
    history: list[dict[str, Any]]
    accepted: list[int]
    """Indexes of the deliveries the engine accepted (delivered or buffered)."""
    rejected: list[int]
    mailbox: list[MailboxEntry]
    tripped: bool
    commits: int
    """Commits the (first) engine made: for an uncut run, its durable boundaries."""
    batches: list[list[Op]]
    """The batches the (first) engine committed, in order."""
    refused: list[Op]
    """The batch the interrupted engine could not commit."""
    durable_at_cut: list[bytes]
    """The execution's events that were durable when the engine was stopped."""
    unrecorded_values: int
    """``ctx.random()``/``ctx.uuid()`` values the workflow got that the log lacks (0 unless
    the engine is wrong; only counted once the execution finished)."""


@contextmanager
def _seeded(entropy: _Entropy) -> Any:
    saved = _context.entropy
    _context.entropy = entropy
    quiet = _QuietCuts()
    logger = logging.getLogger("durably")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        _context.entropy = saved
        logger.removeFilter(quiet)


class _Run:
    """One execution of the workflow under test, optionally interrupted at a boundary."""

    def __init__(
        self,
        workflow: WorkflowDefinition[Any, Any],
        input: Any,
        deliveries: Sequence[Delivery],
        *,
        resume_with: WorkflowDefinition[Any, Any] | None,
        workflows: Sequence[WorkflowDefinition[Any, Any]],
        cut: int | None,
        queues: Sequence[Queue] = (),
        start: datetime,
        horizon: float,
        seed: int,
        open_store: Callable[[], Store],
        reopen_store: Callable[[Store], Store],
        on_phase: Callable[[int], None] | None,
    ) -> None:
        self.workflow = workflow
        self.resume_with = resume_with
        self.input = input
        self.deliveries = list(deliveries)
        self.workflows = list(workflows)
        self.queues = list(queues)
        self.cut = cut
        self.start = start
        self.horizon = horizon
        self.entropy = _Entropy(seed)
        self.open_store = open_store
        self.reopen_store = reopen_store
        self.on_phase = on_phase
        self.eid: str | None = None
        self.next_delivery = 0
        self.accepted: list[int] = []
        self.rejected: list[int] = []
        self.t0 = 0.0

    async def run(self) -> _Observed:
        inner = self.open_store()
        try:
            return await self._run(inner)
        finally:
            self._inner.close()

    async def _run(self, inner: Store) -> _Observed:
        self._inner = inner
        clock = self.clock = Clock(self.start)
        clock.bind()
        self.start_ms = clock.now_ms()
        cut = _CutStore(inner, self.cut)
        self.t0 = trio.current_time()
        with _seeded(self.entropy):
            if self.on_phase is not None:
                self.on_phase(1)
            async with Engine(
                cut, workflows=self._defs(self.workflow), clock=clock, queues=self.queues
            ) as engine:
                await self._drive(engine, cut)
            durable_at_cut: list[bytes] = []
            if cut.tripped.is_set():
                inner = self._inner = self.reopen_store(inner)
                if self.eid is not None:
                    durable_at_cut = inner.read_events(self.eid)
                self.entropy.resume_from(durable_at_cut)
                if self.on_phase is not None:
                    self.on_phase(2)
                second = self.resume_with or self.workflow
                async with Engine(
                    inner, workflows=self._defs(second), clock=clock, queues=self.queues
                ) as engine:
                    await self._drive(engine, None)
        return self._observe(inner, cut, durable_at_cut)

    def _defs(self, main: WorkflowDefinition[Any, Any]) -> list[WorkflowDefinition[Any, Any]]:
        return [main, *(w for w in self.workflows if w.name != main.name)]

    async def _drive(self, engine: Engine, cut: _CutStore | None) -> None:
        changed = [trio.Event()]

        def on_events(_eid: str, _events: Sequence[Any]) -> None:
            changed[0].set()

        # The engine's event bus is how the driver learns that the execution now waits.
        engine._supervisor.subscribers.append(on_events)  # type: ignore[union-attr]
        with trio.move_on_at(self.t0 + self.horizon):
            async with trio.open_nursery() as nursery:
                if cut is not None:
                    nursery.start_soon(_cancel_when, cut.tripped, nursery.cancel_scope)
                if self.eid is None:
                    try:
                        self.eid = await engine.start(self.workflow, self.input)
                    except StoreError:
                        return
                nursery.start_soon(self._deliver, engine, changed)
                await engine.wait_settled(self.eid)
                nursery.cancel_scope.cancel()

    async def _deliver(self, engine: Engine, changed: list[trio.Event]) -> None:
        assert self.eid is not None
        while self.next_delivery < len(self.deliveries):
            index = self.next_delivery
            when, signal, payload = self.deliveries[index]
            name = _signal_name(signal)
            if when == "waiting":
                while True:
                    changed[0] = trio.Event()
                    record = engine.store.get_execution(self.eid)
                    if record is None or record.status in _TERMINAL:
                        return
                    # Waiting for it with none of it buffered: right after a delivery the
                    # record still says "waiting" until the execution consumes it, and a
                    # second delivery then would race the first one's consumption.
                    if record.waiting_signal == name and not any(
                        entry.signal == name for entry in engine.store.mailbox(self.eid)
                    ):
                        break
                    await changed[0].wait()
            else:
                # Through the engine's clock, to the millisecond, so the delivery has the
                # same timestamp in every run wherever the run sits on the trio timeline.
                await trio.sleep_until(self.clock.deadline(self.start_ms + round(when * 1000)))
            # Only once the engine has done all it does at this instant (timers due now
            # fired, the execution advanced until it waits): what the signal meets is then
            # the same in every run. At one instant the order would otherwise be trio's
            # scheduling order, which is random.
            await trio.testing.wait_all_tasks_blocked()
            try:
                outcome = await engine.signal(self.eid, signal, payload)
            except StoreError:
                return  # not acknowledged: sent again after the restart
            (self.accepted if outcome.accepted else self.rejected).append(index)
            self.next_delivery = index + 1

    def _observe(self, inner: Store, cut: _CutStore, durable_at_cut: list[bytes]) -> _Observed:
        record = inner.get_execution(self.eid) if self.eid is not None else None
        raws = inner.read_events(self.eid) if self.eid is not None else []
        error = None
        if record is not None and record.error is not None:
            error = {k: v for k, v in record.error.items() if k != "traceback"}
        return _Observed(
            execution_id=self.eid,
            status=record.status if record is not None else "not started",
            result=record.result if record is not None else None,
            error=error,
            raw_history=raws,
            history=canonical_history([normalize_event(raw) for raw in raws]),
            accepted=list(self.accepted),
            rejected=list(self.rejected),
            mailbox=inner.mailbox(self.eid) if self.eid is not None else [],
            tripped=cut.tripped.is_set(),
            commits=cut.applied,
            batches=cut.batches,
            refused=cut.refused,
            durable_at_cut=durable_at_cut,
            unrecorded_values=self.entropy.unrecorded(raws)
            if record is not None and record.status in _TERMINAL
            else 0,
        )


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
