"""Describing what differs: between an interrupted run and the uninterrupted one, as a
:class:`ReplayMismatch` that names the boundary, the step and both sides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from durably.stores import Append, CreateExecution, Op, PutSignal

from ._report import ReplayMismatch
from ._run import _Observed


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
