"""``durably.testing``: prove that your workflows survive a crash at any moment.

A durable workflow is only as good as its replay. :func:`check_replay` runs a workflow in
virtual time, then runs it again once per *durable boundary* (each store commit the first
run made), stopping the engine abruptly right before that commit and resuming the
execution on a fresh engine over the same store. Every resumed run must end with the same
outcome and the same recorded history as the uninterrupted one; if not, it raises
:class:`ReplayMismatch` (an ``AssertionError``) saying which boundary, which step, what was
recorded and what the code did.

Restarts happen at the same virtual instant (no downtime), so that timers and signals land
exactly as in the first run and any difference is the workflow's or the engine's doing. A
signal is delivered once the engine is idle at its instant (a timer due then has fired, the
execution has advanced as far as it can), in every run: in production a tie is a race,
here it has one answer.

``ctx.random()`` and ``ctx.uuid()`` draw from a seeded source while a check runs: the n-th
value an execution records is the same in every run, which is what lets a value that was
lost in the crash (drawn, not yet committed) be drawn again identically.

Also here: :func:`virtual_engine` (an engine on a ``MemoryStore`` for tests under a
``MockClock``), :func:`check_upgrade` (would this code change break running executions?),
execution snapshots for golden-log tests, and the Hypothesis strategy :func:`deliveries`.
The pytest fixtures live in ``durably._pytest_plugin`` (loaded automatically by pytest).
"""

from __future__ import annotations

import logging
import random as _random_module
import uuid as _uuid_module
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs
import orjson
import trio
import trio.testing

from durably.stores import (
    AddTimer,
    Append,
    CreateExecution,
    ExecutionRecord,
    MailboxEntry,
    MemoryStore,
    Op,
    PutExecution,
    PutSignal,
    Store,
    TakeSignal,
    Timer,
)

from .._engine import Engine
from ..core._errors import ConfigurationError, StoreError
from ..core._events import decode
from ..core._types import Signal, Status
from ..core._workflow import WorkflowDefinition
from ..runtime import _context
from ..runtime._clock import Clock
from ..stores._checks import check_store as check_store

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "DEFAULT_START",
    "Delivery",
    "ExecutionSnapshot",
    "ReplayMismatch",
    "ReplayReport",
    "check_replay",
    "check_replay_async",
    "check_store",
    "check_upgrade",
    "check_upgrade_async",
    "deliveries",
    "normalize_event",
    "restore_execution",
    "snapshot_execution",
    "virtual_engine",
]

#: One signal delivery: ``(when, signal, payload)``. ``when`` is seconds after the
#: execution started (virtual time, to the millisecond), or ``"waiting"``: as soon as the
#: execution waits for that signal with none of it buffered. Deliveries are made in
#: sequence order, each once the engine is idle at that instant (a timer due then fired,
#: the execution advanced as far as it can).
Delivery = tuple[float | Literal["waiting"], Signal[Any] | str, Any]

#: Fields of a stored event that legitimately differ between runs of the same history:
#: durations are real time. Timestamps (``at``) are virtual and restarts happen at the
#: same virtual instant, so they must match: a deadline recomputed on replay shows there.
_VOLATILE = frozenset(("duration_ms",))
_TERMINAL = frozenset(s.value for s in Status if s.terminal)
_DEFAULT_HORIZON = 366 * 24 * 3600.0


# --- results and the mismatch report ------------------------------------------------------


class ReplayMismatch(AssertionError):
    """A resumed run did not reproduce the uninterrupted one.

    ``boundary`` is the index of the commit the engine was stopped before (0 is the start
    of the execution); ``step_id`` the first step whose history differs; ``recorded`` what
    the uninterrupted run recorded there and ``attempted`` what the resumed run did.
    """

    def __init__(
        self,
        message: str,
        *,
        boundary: int | None,
        step_id: str | None,
        recorded: Any,
        attempted: Any,
    ) -> None:
        super().__init__(message)
        self.boundary = boundary
        self.step_id = step_id
        self.recorded = recorded
        self.attempted = attempted


@attrs.frozen
class ReplayReport:
    """What :func:`check_replay` checked, and the workflow's outcome."""

    status: str
    """The execution's final status (non-terminal if it was still waiting at the horizon)."""
    result: Any
    """The workflow's result as stored (JSON-shaped), if it completed."""
    error: dict[str, Any] | None
    """The failure's type and message, if it failed."""
    history: list[dict[str, Any]]
    """The recorded events, normalised (see :func:`normalize_event`)."""
    boundaries: int
    """How many durable boundaries were interrupted and resumed."""


def normalize_event(raw: bytes) -> dict[str, Any]:
    """A stored event as a dict without what differs between equal runs.

    Drops durations (real time) and the traceback of recorded errors (it names the frames
    of the run that raised, which a replay does not reproduce).
    """
    data: dict[str, Any] = orjson.loads(raw)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _VOLATILE:
            continue
        if key == "error" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "traceback"}
        out[key] = value
    return out


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


# --- the interrupting store ---------------------------------------------------------------


class _CutStore:
    """A store that forwards to ``inner`` and refuses every commit after the first ``allow``.

    Refusing with ``StoreError`` is what a dying disk or process looks like to the engine:
    the batch is not acknowledged, the actors stop without writing, nothing half-done is
    recorded. The inner store then holds exactly what a crash at that point would leave.
    """

    def __init__(self, inner: Store, allow: int | None) -> None:
        self.inner = inner
        self.inline = inner.inline
        self.allow = allow
        self.applied = 0
        self.batches: list[list[Op]] = []
        self.refused: list[Op] = []
        self.tripped = trio.Event()

    def apply(self, ops: Sequence[Op]) -> list[Any]:
        if self.allow is not None and self.applied >= self.allow:
            if not self.tripped.is_set():
                self.refused = list(ops)
                self.tripped.set()
            raise StoreError(_CUT_MESSAGE)
        results = self.inner.apply(ops)
        self.applied += 1
        self.batches.append(list(ops))
        return results

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return self.inner.get_execution(execution_id)

    def read_events(self, execution_id: str, from_seq: int = 0) -> list[bytes]:
        return self.inner.read_events(execution_id, from_seq)

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        return self.inner.list_executions(
            status=status, workflow=workflow, after=after, limit=limit
        )

    def due_timers(self, before_ms: int, limit: int | None = None) -> list[Timer]:
        return self.inner.due_timers(before_ms, limit)

    def mailbox(self, execution_id: str) -> list[MailboxEntry]:
        return self.inner.mailbox(execution_id)

    def find_idempotent(self, workflow: str, key: str) -> str | None:
        return self.inner.find_idempotent(workflow, key)

    def get_schedule(self, schedule_id: str) -> Any | None:
        return self.inner.get_schedule(schedule_id)

    def list_schedules(self) -> list[tuple[str, Any]]:
        return self.inner.list_schedules()

    def get_meta(self, name: str) -> Any | None:
        return self.inner.get_meta(name)

    def close(self) -> None:
        """The inner store outlives the engine that used this one: it is not closed."""


# --- deterministic values -----------------------------------------------------------------


class _Entropy:
    """Seeded stand-ins for the ``random`` and ``uuid`` modules as ``_context`` uses them.

    The n-th value of each kind an execution records is a function of (seed, kind, n).
    After a restart the counters are set to what the log already holds, so a value lost in
    the crash is drawn again identically, while an engine that wrongly re-drew a recorded
    value would get the next one, and differ.
    """

    UUID = _uuid_module.UUID

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.counts: dict[str, int] = {}
        self.drawn = 0
        """Values drawn since the engine (re)started: each must reach the log."""
        self.durable = 0
        """Values the log held when the engine restarted."""

    def _rng(self, kind: str) -> _random_module.Random:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        self.drawn += 1
        return _random_module.Random(f"{self.seed}:{kind}:{n}")

    def random(self) -> float:
        return self._rng("random").random()

    def uuid4(self) -> _uuid_module.UUID:
        return _uuid_module.UUID(int=self._rng("uuid").getrandbits(128), version=4)

    def resume_from(self, raws: Iterable[bytes]) -> None:
        self.counts = {}
        self.drawn = 0
        for raw in raws:
            data = orjson.loads(raw)
            if data.get("t") == "value" and data.get("kind") in ("random", "uuid"):
                self.counts[data["kind"]] = self.counts.get(data["kind"], 0) + 1
        self.durable = sum(self.counts.values())

    def unrecorded(self, raws: Iterable[bytes]) -> int:
        """How many values drawn since the restart the final log does not hold.

        Without this check the seeding would hide an engine that forgets to record a
        value: each replay would draw it again, identically.
        """
        recorded = sum(
            1
            for raw in raws
            if (data := orjson.loads(raw)).get("t") == "value"
            and data.get("kind") in ("random", "uuid")
        )
        return self.drawn - (recorded - self.durable)


_CUT_MESSAGE = "durably.testing: the engine was stopped at this boundary"


class _QuietCuts(logging.Filter):
    """Drops the engine's error logs about the interruptions a check makes on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _CUT_MESSAGE not in record.getMessage()


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


# --- one run ------------------------------------------------------------------------------


def _signal_name(signal: Signal[Any] | str) -> str:
    return signal.name if isinstance(signal, Signal) else signal


def _check_deliveries(signals: Sequence[Delivery]) -> list[Delivery]:
    out: list[Delivery] = []
    for item in signals:
        if not isinstance(item, tuple) or len(item) != 3:
            raise ConfigurationError(
                f"signals=: each delivery is (when, signal, payload), got {item!r}"
            )
        when, signal, _payload = item
        if when != "waiting" and (
            isinstance(when, bool) or not isinstance(when, int | float) or when < 0
        ):
            raise ConfigurationError(
                f"signals=: when must be seconds >= 0 or 'waiting', got {when!r}"
            )
        if not isinstance(signal, Signal | str):
            raise ConfigurationError(f"signals=: {signal!r} is not a signal name or Signal")
        out.append(item)
    return out


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
            async with Engine(cut, workflows=self._defs(self.workflow), clock=clock) as engine:
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
                async with Engine(inner, workflows=self._defs(second), clock=clock) as engine:
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
            history=[normalize_event(raw) for raw in raws],
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


# --- describing what differs --------------------------------------------------------------


def _describe_event(event: dict[str, Any] | None) -> str:
    if event is None:
        return "(nothing)"
    rest = {k: v for k, v in event.items() if k not in ("t", "step_id")}
    step = f" {event['step_id']!r}" if "step_id" in event else ""
    return f"{event.get('t')}{step} {orjson.dumps(rest).decode()}"


def _describe_batch(ops: Sequence[Op]) -> str:
    parts: list[str] = []
    for op in ops:
        if isinstance(op, CreateExecution):
            parts.append("the start of the execution")
        elif isinstance(op, Append):
            for raw in op.events:
                event = orjson.loads(raw)
                step = f" {event['step_id']!r}" if "step_id" in event else ""
                parts.append(f"{event['t']}{step}")
        elif isinstance(op, PutSignal):
            parts.append(f"the delivery of signal {op.signal!r}")
    if not parts:
        parts = [type(op).__name__ for op in ops] or ["an empty batch"]
    return ", ".join(parts)


def _compare(
    label: str, boundary: int, total: int, base: _Observed, run: _Observed
) -> ReplayMismatch | None:
    """The mismatch between ``run`` (interrupted at ``boundary``) and ``base``, if any."""
    where = (
        f"{label}: stopped the engine at durable boundary {boundary} of {total}, before "
        f"committing {_describe_batch(run.refused)}, then resumed on a fresh engine"
    )
    base_type = base.error.get("type") if base.error else None
    if run.error is not None and str(run.error.get("type", "")).endswith("NonDeterminismError"):
        if base_type != run.error.get("type"):
            return ReplayMismatch(
                f"{where}: the resumed execution FAILED with NonDeterminismError:\n"
                f"  {run.error.get('message')}",
                boundary=boundary,
                step_id=_first_step_diff(base.history, run.history),
                recorded=None,
                attempted=run.error,
            )
    for index in range(max(len(base.history), len(run.history))):
        recorded = base.history[index] if index < len(base.history) else None
        attempted = run.history[index] if index < len(run.history) else None
        if recorded != attempted:
            step = (recorded or attempted or {}).get("step_id")
            return ReplayMismatch(
                f"{where}: the history differs at event #{index}"
                + (f" (step {step!r})" if step else "")
                + f":\n  uninterrupted run recorded: {_describe_event(recorded)}"
                f"\n  resumed run recorded:       {_describe_event(attempted)}"
                f"\n  outcome: {base.status} -> {run.status}"
                + (f" ({run.error.get('type')}: {run.error.get('message')})" if run.error else ""),
                boundary=boundary,
                step_id=step,
                recorded=recorded,
                attempted=attempted,
            )
    left = [(e.signal, e.payload) for e in base.mailbox]
    resumed_left = [(e.signal, e.payload) for e in run.mailbox]
    if left != resumed_left:
        return ReplayMismatch(
            f"{where}: same history, different signals left unconsumed: uninterrupted "
            f"{left}, resumed {resumed_left}",
            boundary=boundary,
            step_id=None,
            recorded=left,
            attempted=resumed_left,
        )
    if (base.status, base.result, base.error) != (run.status, run.result, run.error):
        return ReplayMismatch(
            f"{where}: same history, different outcome: uninterrupted {base.status} "
            f"{base.result!r} {base.error!r}, resumed {run.status} {run.result!r} {run.error!r}",
            boundary=boundary,
            step_id=None,
            recorded=(base.status, base.result, base.error),
            attempted=(run.status, run.result, run.error),
        )
    return None


def _first_step_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str | None:
    for x, y in zip(a, b, strict=False):
        if x != y:
            step: str | None = x.get("step_id") or y.get("step_id")
            return step
    return None


# --- the checks ---------------------------------------------------------------------------


def _check_values(label: str, boundary: int | None, run: _Observed) -> None:
    if run.unrecorded_values:
        where = "the uninterrupted run" if boundary is None else f"boundary {boundary}"
        raise ReplayMismatch(
            f"{label}: at {where}, the workflow got {run.unrecorded_values} value(s) from "
            "ctx.random()/ctx.uuid() that its log does not record: a replay would see "
            "different values (a durably bug: please report it)",
            boundary=boundary,
            step_id=None,
            recorded=None,
            attempted=run.unrecorded_values,
        )


def _require_mock_clock(what: str) -> None:
    if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        raise ConfigurationError(
            f"{what} needs virtual time: run it under trio.testing.MockClock (in pytest-trio, "
            "take the autojump_clock fixture), or call the sync variant, which does"
        )


#: Where virtual time starts by default: fixed, so that ``ctx.now()`` is the same in every
#: run of a check (and of every check).
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


async def _check(
    label: str,
    workflow: WorkflowDefinition[Any, Any],
    input: Any,
    signals: Sequence[Delivery],
    *,
    resume_with: WorkflowDefinition[Any, Any] | None,
    workflows: Sequence[WorkflowDefinition[Any, Any]],
    start: datetime | None,
    horizon: float,
    seed: int,
    before_run: Callable[[], Any] | None,
    boundaries: Iterable[int] | None,
) -> ReplayReport:
    if not isinstance(workflow, WorkflowDefinition):
        raise ConfigurationError(
            f"{label} takes a workflow definition (decorated with @durably.workflow), "
            f"got {workflow!r}"
        )
    _require_mock_clock(label)
    deliveries = _check_deliveries(signals)
    begin = start if start is not None else DEFAULT_START

    def make(cut: int | None, resume: WorkflowDefinition[Any, Any] | None) -> _Run:
        if before_run is not None:
            before_run()
        return _Run(
            workflow,
            input,
            deliveries,
            resume_with=resume,
            workflows=workflows,
            cut=cut,
            start=begin,
            horizon=horizon,
            seed=seed,
            open_store=MemoryStore,
            reopen_store=lambda s: s,
            on_phase=None,
        )

    recorder = make(None, None)
    base = await recorder.run()
    _check_values(label, None, base)
    total = base.commits
    chosen = range(total) if boundaries is None else sorted(set(boundaries))
    checked = 0
    for k in chosen:
        if not 0 <= k < total:
            continue
        run = await make(k, resume_with).run()
        checked += 1
        _check_values(label, k, run)
        if resume_with is not None:
            if run.error is not None and "NonDeterminism" in str(run.error.get("type")):
                raise ReplayMismatch(
                    f"{label}: an execution of the old code interrupted at durable boundary "
                    f"{k} of {total} (before committing {_describe_batch(run.refused)}) cannot "
                    f"be resumed by the new code: it FAILED with NonDeterminismError:\n  "
                    f"{run.error.get('message')}",
                    boundary=k,
                    step_id=None,
                    recorded=None,
                    attempted=run.error,
                )
            continue
        mismatch = _compare(label, k, total, base, run)
        if mismatch is not None:
            raise mismatch
    return ReplayReport(base.status, base.result, base.error, base.history, checked)


async def check_replay_async(
    workflow: WorkflowDefinition[Any, Any],
    input: Any = None,
    *,
    signals: Sequence[Delivery] = (),
    workflows: Sequence[WorkflowDefinition[Any, Any]] = (),
    start: datetime | None = None,
    horizon: float = _DEFAULT_HORIZON,
    seed: int = 0,
    before_run: Callable[[], Any] | None = None,
    boundaries: Iterable[int] | None = None,
) -> ReplayReport:
    """:func:`check_replay` inside a running trio test (under a ``MockClock``)."""
    return await _check(
        f"check_replay({workflow!r})",
        workflow,
        input,
        signals,
        resume_with=None,
        workflows=workflows,
        start=start,
        horizon=horizon,
        seed=seed,
        before_run=before_run,
        boundaries=boundaries,
    )


def check_replay(
    workflow: WorkflowDefinition[Any, Any],
    input: Any = None,
    *,
    signals: Sequence[Delivery] = (),
    workflows: Sequence[WorkflowDefinition[Any, Any]] = (),
    start: datetime | None = None,
    horizon: float = _DEFAULT_HORIZON,
    seed: int = 0,
    before_run: Callable[[], Any] | None = None,
    boundaries: Iterable[int] | None = None,
) -> ReplayReport:
    """Check that ``workflow(input)`` resumes identically after a crash at any commit.

    Runs the execution once in virtual time on a ``MemoryStore`` (delivering ``signals``),
    then once per durable boundary of that run: the engine is stopped before that commit
    and a fresh engine resumes the execution. Raises :class:`ReplayMismatch` at the first
    resumed run whose history or outcome differs. ``workflows`` registers other workflows
    the one under test needs; ``before_run`` is called before every run (reset the state
    your step bodies touch); ``horizon`` (virtual seconds) ends a run that waits forever;
    ``boundaries`` restricts the check to some boundary indexes. Returns a
    :class:`ReplayReport`. From a trio test, await :func:`check_replay_async` instead.
    """
    return trio.run(
        lambda: check_replay_async(
            workflow,
            input,
            signals=signals,
            workflows=workflows,
            start=start,
            horizon=horizon,
            seed=seed,
            before_run=before_run,
            boundaries=boundaries,
        ),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def check_upgrade_async(
    old: WorkflowDefinition[Any, Any],
    new: WorkflowDefinition[Any, Any],
    input: Any = None,
    *,
    signals: Sequence[Delivery] = (),
    workflows: Sequence[WorkflowDefinition[Any, Any]] = (),
    start: datetime | None = None,
    horizon: float = _DEFAULT_HORIZON,
    seed: int = 0,
    before_run: Callable[[], Any] | None = None,
) -> ReplayReport:
    """:func:`check_upgrade` inside a running trio test (under a ``MockClock``)."""
    if old.name != new.name:
        raise ConfigurationError(
            f"check_upgrade compares two versions of one workflow; got {old.name!r} and "
            f"{new.name!r} (a renamed workflow is a new workflow: old executions keep the old)"
        )
    return await _check(
        f"check_upgrade({old!r} -> new code)",
        old,
        input,
        signals,
        resume_with=new,
        workflows=workflows,
        start=start,
        horizon=horizon,
        seed=seed,
        before_run=before_run,
        boundaries=None,
    )


def check_upgrade(
    old: WorkflowDefinition[Any, Any],
    new: WorkflowDefinition[Any, Any],
    input: Any = None,
    *,
    signals: Sequence[Delivery] = (),
    workflows: Sequence[WorkflowDefinition[Any, Any]] = (),
    start: datetime | None = None,
    horizon: float = _DEFAULT_HORIZON,
    seed: int = 0,
    before_run: Callable[[], Any] | None = None,
) -> ReplayReport:
    """Check that executions started by ``old`` can be finished by ``new``.

    Runs ``old`` and stops it at each of its durable boundaries, as a deploy would, then
    resumes the execution with ``new`` (same workflow name). Raises :class:`ReplayMismatch`
    if any resumed execution fails with ``NonDeterminismError`` (renamed, reordered or
    removed steps under a running execution). The new code's results may differ: only
    replay compatibility is checked.
    """
    return trio.run(
        lambda: check_upgrade_async(
            old,
            new,
            input,
            signals=signals,
            workflows=workflows,
            start=start,
            horizon=horizon,
            seed=seed,
            before_run=before_run,
        ),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


# --- a virtual-time engine for tests -------------------------------------------------------


@asynccontextmanager
async def virtual_engine(
    *workflows: WorkflowDefinition[Any, Any],
    store: Store | None = None,
    start: datetime | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> AsyncIterator[Engine]:
    """``async with virtual_engine(wf) as engine:``: an engine for tests, in virtual time.

    Runs on ``store`` (a fresh ``MemoryStore`` by default) with a clock that starts at
    ``start`` (:data:`DEFAULT_START` by default), so ``ctx.now()`` is reproducible. To
    restart an engine over the same store, pass the same ``store`` and ``clock`` again.
    Needs a ``MockClock`` (pytest-trio's ``autojump_clock`` fixture).
    """
    _require_mock_clock("virtual_engine")
    if clock is None:
        clock = Clock(start if start is not None else DEFAULT_START)
    async with Engine(
        store if store is not None else MemoryStore(),
        workflows=workflows,
        clock=clock,
        **options,
    ) as engine:
        yield engine


# --- snapshots: golden logs ---------------------------------------------------------------


@attrs.frozen
class ExecutionSnapshot:
    """One execution as the store holds it: its record, its events, its mailbox.

    Serialised as JSON lines (:meth:`to_jsonl`): the first line is the record, then one
    line per stored event (the event bytes exactly as the engine wrote them), then one per
    buffered signal. Commit these as golden logs: a change to the event format or to the
    replay rules that breaks old executions then fails the test that resumes them.
    """

    record: ExecutionRecord
    events: list[bytes]
    mailbox: list[MailboxEntry] = attrs.field(factory=list)

    def to_jsonl(self) -> str:
        lines = [orjson.dumps({"record": attrs.asdict(self.record)})]
        lines += [orjson.dumps({"event": orjson.loads(raw)}) for raw in self.events]
        lines += [orjson.dumps({"mail": attrs.asdict(entry)}) for entry in self.mailbox]
        return b"\n".join(lines).decode() + "\n"

    @classmethod
    def from_jsonl(cls, text: str) -> ExecutionSnapshot:
        record: ExecutionRecord | None = None
        events: list[bytes] = []
        mailbox: list[MailboxEntry] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            item = orjson.loads(line)
            if "record" in item:
                data = item["record"]
                if data.get("timer") is not None:
                    data["timer"] = tuple(data["timer"])
                record = ExecutionRecord(**data)
            elif "event" in item:
                events.append(orjson.dumps(item["event"]))
            elif "mail" in item:
                mailbox.append(MailboxEntry(**item["mail"]))
            else:
                raise ConfigurationError(f"snapshot line {number}: unknown item {line[:80]!r}")
        if record is None:
            raise ConfigurationError("a snapshot needs a record line")
        return cls(record, events, mailbox)


def snapshot_execution(store: Store, execution_id: str) -> ExecutionSnapshot:
    """The execution ``execution_id`` of ``store``, to save or to restore elsewhere."""
    record = store.get_execution(execution_id)
    if record is None:
        raise ConfigurationError(f"no execution {execution_id!r} in this store")
    return ExecutionSnapshot(record, store.read_events(execution_id), store.mailbox(execution_id))


def restore_execution(store: Store, snapshot: ExecutionSnapshot) -> str:
    """Write ``snapshot`` into ``store`` through ordinary store ops; return its id.

    Mailbox sequence numbers are reproduced (consumed ones are taken again at once), so
    signals consumed after the restore get the numbers they would have had.
    """
    record = snapshot.record
    eid = record.id
    for raw in snapshot.events:
        decode(raw, eid)  # refuse a damaged snapshot before writing anything
    consumed = [
        orjson.loads(raw).get("mailbox_seq", -1)
        for raw in snapshot.events
        if orjson.loads(raw).get("t") == "signal.received"
    ]
    pending = {entry.seq: entry for entry in snapshot.mailbox}
    top = max([*consumed, *pending, -1]) + 1
    opening = attrs.evolve(record, status="running", timer=None, waiting_signal=None)
    ops: list[Op] = [CreateExecution(opening, list(snapshot.events))]
    for seq in range(top):
        entry = pending.get(seq)
        if entry is not None:
            ops.append(PutSignal(eid, entry.signal, entry.payload, entry.dedup_key))
        else:
            ops += [PutSignal(eid, "durably.restored", None), TakeSignal(eid, seq)]
    ops.append(PutExecution(record))
    if record.timer is not None:
        ops.append(AddTimer(Timer(record.timer[0], eid, record.timer[1])))
    store.apply(ops)
    return eid


# --- Hypothesis ---------------------------------------------------------------------------


def deliveries(
    signals: Sequence[tuple[Signal[Any] | str, Any]],
    *,
    max_delay: float = 3600.0,
) -> SearchStrategy[list[Delivery]]:
    """A Hypothesis strategy: ``signals`` delivered in a random order, at random times.

    Each ``(signal, payload)`` is delivered once, either after a random delay (seconds,
    up to ``max_delay``) or as soon as the execution waits for it. Use it with
    ``@given(durably.testing.deliveries([...]))`` and pass the drawn list to
    ``check_replay(..., signals=...)``.
    """
    from hypothesis import strategies as st

    items = list(signals)
    when: SearchStrategy[float | Literal["waiting"]] = st.one_of(
        st.just("waiting"),
        st.floats(min_value=0, max_value=max_delay, allow_nan=False, allow_infinity=False),
    )

    def build(order: list[int], times: list[float | Literal["waiting"]]) -> list[Delivery]:
        return [(t, items[i][0], items[i][1]) for i, t in zip(order, times, strict=True)]

    return st.builds(
        build,
        st.permutations(range(len(items))),
        st.lists(when, min_size=len(items), max_size=len(items)),
    )
