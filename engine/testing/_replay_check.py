"""The replay checks: :func:`check_replay` (does a resumed execution reproduce the
uninterrupted one?) and :func:`check_upgrade` (can new code finish old executions?), each in
a sync form and an async form for trio tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
import trio

from durably.stores import MemoryStore

from .. import _engine
from ..core._errors import ConfigurationError
from ..core._queue import Queue
from ..core._types import from_ms
from ..core._workflow import WorkflowDefinition
from ..runtime._clock import Clock
from ._compare import _check_values, _compare, _describe_batch
from ._deliveries import Delivery, _check_deliveries
from ._env import DEFAULT_START, _require_mock_clock, _sync_form
from ._report import ReplayMismatch, ReplayReport
from ._run import _Run
from ._snapshot import ExecutionSnapshot, restore_execution

_DEFAULT_HORIZON = 366 * 24 * 3600.0


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
    queues: Sequence[Queue] = (),
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
            queues=queues,
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
    queues: Sequence[Queue] = (),
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
        queues=queues,
    )


@_sync_form(check_replay_async)
def check_replay(  # type: ignore[empty-body]  # _sync_form supplies the body
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
    queues: Sequence[Queue] = (),
) -> ReplayReport:
    """Check that ``workflow(input)`` resumes identically after a crash at any commit.

    Runs the execution once in virtual time on a ``MemoryStore`` (delivering ``signals``),
    then once per durable boundary of that run: the engine is stopped before that commit
    and a fresh engine resumes the execution. Raises :class:`ReplayMismatch` at the first
    resumed run whose history or outcome differs. ``workflows`` registers other workflows
    the one under test needs; ``before_run`` is called before every run (reset the state
    your step bodies touch); ``horizon`` (virtual seconds) ends a run that waits forever;
    ``boundaries`` restricts the check to some boundary indexes; ``queues`` declares the
    queues the workflow enqueues on (``ctx.enqueue``). Returns a
    :class:`ReplayReport`. From a trio test, await :func:`check_replay_async` instead.
    """


async def _replay_golden(
    new: WorkflowDefinition[Any, Any],
    workflows: Sequence[WorkflowDefinition[Any, Any]],
    snapshot: ExecutionSnapshot,
    index: int,
) -> None:
    """Resume one golden log with ``new``: its replay must not diverge."""
    record = snapshot.record
    if record.workflow != new.name:
        raise ConfigurationError(
            f"golden log {index} is an execution of {record.workflow!r}, not {new.name!r}"
        )
    store = MemoryStore()
    # Restored as running, so that the engine replays it now (a parked wait would wait).
    opening = attrs.evolve(record, status="running", waiting_signal=None, timer=None)
    eid = restore_execution(store, attrs.evolve(snapshot, record=opening))
    clock = Clock(from_ms(record.updated_ms))
    async with _engine.Engine(store, workflows=[new, *workflows], clock=clock):
        await trio.sleep(1)  # virtual: the replay reaches its first new work or wait
    after = store.get_execution(eid)
    error = None if after is None else after.error
    if error is not None and "NonDeterminism" in str(error.get("type")):
        raise ReplayMismatch(
            f"golden log {index} (execution {eid}) cannot be replayed by the new code: it "
            f"FAILED with NonDeterminismError:\n  {error.get('message')}",
            boundary=None,
            step_id=None,
            recorded=None,
            attempted=error,
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
    golden: Sequence[ExecutionSnapshot] = (),
) -> ReplayReport:
    """:func:`check_upgrade` inside a running trio test (under a ``MockClock``)."""
    if old.name != new.name:
        raise ConfigurationError(
            f"check_upgrade compares two versions of one workflow; got {old.name!r} and "
            f"{new.name!r} (a renamed workflow is a new workflow: old executions keep the old)"
        )
    for index, snapshot in enumerate(golden):
        await _replay_golden(new, workflows, snapshot, index)
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


@_sync_form(check_upgrade_async)
def check_upgrade(  # type: ignore[empty-body]  # _sync_form supplies the body
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
    golden: Sequence[ExecutionSnapshot] = (),
) -> ReplayReport:
    """Check that executions started by ``old`` can be finished by ``new``.

    Runs ``old`` and stops it at each of its durable boundaries, as a deploy would, then
    resumes the execution with ``new`` (same workflow name). Raises :class:`ReplayMismatch`
    if any resumed execution fails with ``NonDeterminismError`` (renamed, reordered or
    removed steps under a running execution). The new code's results may differ: only
    replay compatibility is checked. ``golden`` logs (``snapshot_execution``) recorded on
    older code are each replayed by ``new`` too: with ``ctx.patched`` around a change,
    every one of them must pass.
    """
