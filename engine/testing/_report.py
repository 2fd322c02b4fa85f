"""What a check reports: :class:`ReplayReport` when the workflow replays, :class:`ReplayMismatch`
when it does not, and the normalised events both carry."""

from __future__ import annotations

from typing import Any

import attrs
import orjson

#: Fields of a stored event that legitimately differ between runs of the same history:
#: durations are real time, and the id of a child or of an enqueued execution is drawn
#: fresh like any id.
#: Timestamps (``at``) are virtual and restarts happen at the same virtual instant, so they
#: must match: a deadline recomputed on replay shows there.
_VOLATILE = frozenset(("duration_ms", "child_id", "execution_id", "duplicate_of"))


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
    # Concurrent children end in either order: where a child's end sits in the parent's
    # mailbox differs between equal runs (a signal's place does not).
    volatile = _VOLATILE | {"mailbox_seq"} if data.get("t") == "child.ended" else _VOLATILE
    for key, value in data.items():
        if key in volatile:
            continue
        if key == "error" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "traceback"}
        out[key] = value
    return out


def canonical_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``history`` with each gather's member events in step-id order.

    Members of a ``ctx.gather`` run concurrently, so their events interleave in finishing
    order, which may differ between equal runs; each member's own events keep their order.
    """
    out: list[dict[str, Any]] = []
    index = 0
    while index < len(history):
        event = history[index]
        out.append(event)
        index += 1
        if event.get("t") != "gather.started":
            continue
        gather = event.get("step_id")
        members: list[dict[str, Any]] = []
        while index < len(history):
            inner = history[index]
            if inner.get("t") == "gather.ended" and inner.get("step_id") == gather:
                break
            members.append(inner)
            index += 1
        members.sort(key=lambda e: str(e.get("step_id")))  # stable: a member's order stays
        out.extend(members)
    return out
